//! Layered (Sugiyama-style) layout of a job's task graph, left to right.
//!
//! 1. Layers by dependency depth: a task sits one layer right of its
//!    deepest dependency (longest path from the sources).
//! 2. Edges spanning several layers get a virtual point in each layer they
//!    cross, so they route between tasks instead of through them.
//! 3. Crossing reduction: alternating barycenter sweeps (left→right, then
//!    right→left) reorder each layer; the order with the fewest crossings
//!    seen is kept.
//! 4. Coordinates: layers are columns, the order within a layer gives the
//!    row; each column is centred on the tallest one. Edges are polylines
//!    through their virtual points (straight segments).
//!
//! Pure computation, no DOM and no Leptos: it runs the same on the server
//! (the first render) and in the browser, and is benchmarked natively. It
//! expects an acyclic graph (the kernel refuses cycles at submit); should a
//! cycle reach it anyway, the back edges are ignored for layering rather
//! than looping forever.

/// Size of a task box and the gaps between them, in SVG user units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spacing {
    pub node_width: f64,
    pub node_height: f64,
    /// Horizontal gap between layers.
    pub layer_gap: f64,
    /// Vertical gap between rows.
    pub row_gap: f64,
    /// Margin around the drawing.
    pub margin: f64,
}

impl Default for Spacing {
    fn default() -> Self {
        Spacing {
            node_width: 160.0,
            node_height: 40.0,
            layer_gap: 70.0,
            row_gap: 18.0,
            margin: 20.0,
        }
    }
}

/// Where a task is drawn: its box's top-left corner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    pub layer: usize,
    pub x: f64,
    pub y: f64,
}

/// A dependency edge drawn from `from` (the dependency) to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub from: usize,
    pub to: usize,
    /// Polyline from the right edge of `from` to the left edge of `to`.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// One entry per input node, in input order.
    pub nodes: Vec<Placed>,
    pub edges: Vec<Route>,
    pub width: f64,
    pub height: f64,
    /// Number of layers (the graph's depth).
    pub layers: usize,
    /// Edge crossings left after crossing reduction.
    pub crossings: usize,
}

/// Lays out `node_count` nodes with `edges` given as `(dependency, dependent)`
/// index pairs. Out-of-range and self edges are ignored.
pub fn layout(node_count: usize, edges: &[(usize, usize)], spacing: Spacing) -> Layout {
    let edges: Vec<(usize, usize)> = edges
        .iter()
        .copied()
        .filter(|&(a, b)| a < node_count && b < node_count && a != b)
        .collect();
    let layer = assign_layers(node_count, &edges);
    let layers = layer.iter().copied().max().map_or(0, |m| m + 1);

    // Virtual points: every vertex of the layered graph is a real node or a
    // point of a long edge. `chains[e]` lists the vertices of edge e.
    let mut vertex_layer: Vec<usize> = layer.clone();
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(edges.len());
    for &(from, to) in &edges {
        let (lf, lt) = (layer[from], layer[to]);
        let mut chain = vec![from];
        if lt > lf {
            for l in lf + 1..lt {
                vertex_layer.push(l);
                chain.push(vertex_layer.len() - 1);
            }
        }
        chain.push(to);
        chains.push(chain);
    }
    let vertex_count = vertex_layer.len();

    // Adjacent-layer links, both directions.
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); vertex_count];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); vertex_count];
    for chain in &chains {
        for pair in chain.windows(2) {
            if vertex_layer[pair[1]] == vertex_layer[pair[0]] + 1 {
                down[pair[0]].push(pair[1]);
                up[pair[1]].push(pair[0]);
            }
        }
    }

    // Initial order: input order (a DAG's submission order is usually a
    // sensible reading order), real nodes before virtual points.
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for v in 0..vertex_count {
        order[vertex_layer[v]].push(v);
    }
    let order = reduce_crossings(order, &up, &down, vertex_count);
    let crossings = count_crossings(&order, &down, vertex_count);

    // Coordinates: column per layer, row per position, columns centred.
    let tallest = order.iter().map(Vec::len).max().unwrap_or(0);
    let row = spacing.node_height + spacing.row_gap;
    let mut pos = vec![(0.0, 0.0); vertex_count];
    for (l, vertices) in order.iter().enumerate() {
        let x = spacing.margin + l as f64 * (spacing.node_width + spacing.layer_gap);
        let offset = (tallest - vertices.len()) as f64 * row / 2.0;
        for (i, &v) in vertices.iter().enumerate() {
            pos[v] = (x, spacing.margin + offset + i as f64 * row);
        }
    }

    let nodes = (0..node_count)
        .map(|v| Placed {
            layer: layer[v],
            x: pos[v].0,
            y: pos[v].1,
        })
        .collect();
    let half = spacing.node_height / 2.0;
    let routes = edges
        .iter()
        .zip(&chains)
        .map(|(&(from, to), chain)| {
            let mut points = Vec::with_capacity(chain.len());
            points.push((pos[from].0 + spacing.node_width, pos[from].1 + half));
            for &v in &chain[1..chain.len() - 1] {
                // A virtual point is crossed horizontally at mid-height.
                points.push((pos[v].0, pos[v].1 + half));
                points.push((pos[v].0 + spacing.node_width, pos[v].1 + half));
            }
            points.push((pos[to].0, pos[to].1 + half));
            Route { from, to, points }
        })
        .collect();

    Layout {
        nodes,
        edges: routes,
        width: if layers == 0 {
            0.0
        } else {
            2.0 * spacing.margin
                + layers as f64 * spacing.node_width
                + (layers - 1) as f64 * spacing.layer_gap
        },
        height: if tallest == 0 {
            0.0
        } else {
            2.0 * spacing.margin + tallest as f64 * row - spacing.row_gap
        },
        layers,
        crossings,
    }
}

/// Longest-path layering by Kahn's algorithm. Nodes left over by a cycle
/// are placed after their layered dependencies.
fn assign_layers(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        out[a].push(b);
        indegree[b] += 1;
    }
    let mut layer = vec![0usize; n];
    let mut queue: Vec<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    let mut head = 0;
    while head < queue.len() {
        let v = queue[head];
        head += 1;
        for &w in &out[v] {
            layer[w] = layer[w].max(layer[v] + 1);
            indegree[w] -= 1;
            if indegree[w] == 0 {
                queue.push(w);
            }
        }
    }
    layer
}

/// Barycenter sweeps; keeps the best order seen.
fn reduce_crossings(
    mut order: Vec<Vec<usize>>,
    up: &[Vec<usize>],
    down: &[Vec<usize>],
    vertex_count: usize,
) -> Vec<Vec<usize>> {
    const SWEEPS: usize = 8;
    let mut position = vec![0usize; vertex_count];
    let index = |order: &Vec<Vec<usize>>, position: &mut Vec<usize>| {
        for layer in order {
            for (i, &v) in layer.iter().enumerate() {
                position[v] = i;
            }
        }
    };
    index(&order, &mut position);
    let mut best = order.clone();
    let mut best_crossings = count_crossings(&order, down, vertex_count);
    for sweep in 0..SWEEPS {
        if best_crossings == 0 {
            break;
        }
        let downward = sweep % 2 == 0;
        let layers: Vec<usize> = if downward {
            (1..order.len()).collect()
        } else {
            (0..order.len().saturating_sub(1)).rev().collect()
        };
        for l in layers {
            let neighbours = if downward { up } else { down };
            let mut keyed: Vec<(f64, usize, usize)> = order[l]
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let ns = &neighbours[v];
                    let key = if ns.is_empty() {
                        // No neighbour on that side: keep its place.
                        i as f64
                    } else {
                        ns.iter().map(|&u| position[u] as f64).sum::<f64>() / ns.len() as f64
                    };
                    (key, i, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            order[l] = keyed.into_iter().map(|(_, _, v)| v).collect();
            for (i, &v) in order[l].iter().enumerate() {
                position[v] = i;
            }
        }
        let crossings = count_crossings(&order, down, vertex_count);
        if crossings < best_crossings {
            best_crossings = crossings;
            best = order.clone();
        }
    }
    best
}

/// Crossings between each pair of adjacent layers: pairs of edges whose
/// ends are in opposite orders. Counted with a Fenwick tree per layer pair,
/// O(E log V).
fn count_crossings(order: &[Vec<usize>], down: &[Vec<usize>], vertex_count: usize) -> usize {
    let mut position = vec![0usize; vertex_count];
    for layer in order {
        for (i, &v) in layer.iter().enumerate() {
            position[v] = i;
        }
    }
    let mut total = 0;
    for pair in order.windows(2) {
        let (upper, lower) = (&pair[0], &pair[1]);
        // Edges sorted by upper position then lower position; count, for each
        // edge, earlier edges whose lower end is further down.
        let mut ends: Vec<(usize, usize)> = Vec::new();
        for &u in upper {
            for &w in &down[u] {
                ends.push((position[u], position[w]));
            }
        }
        ends.sort_unstable();
        let mut tree = vec![0usize; lower.len() + 1];
        for (seen, &(_, low)) in ends.iter().enumerate() {
            // earlier edges with lower end <= low
            let mut i = low + 1;
            let mut not_crossing = 0;
            while i > 0 {
                not_crossing += tree[i];
                i -= i & i.wrapping_neg();
            }
            total += seen - not_crossing;
            let mut i = low + 1;
            while i < tree.len() {
                tree[i] += 1;
                i += i & i.wrapping_neg();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crossing_free(layout: &Layout) -> bool {
        layout.crossings == 0
    }

    #[test]
    fn layers_follow_dependency_depth() {
        // fetch → build → {unit, integration} → package
        let edges = [(0, 1), (1, 2), (1, 3), (2, 4), (3, 4)];
        let l = layout(5, &edges, Spacing::default());
        let layers: Vec<usize> = l.nodes.iter().map(|n| n.layer).collect();
        assert_eq!(layers, [0, 1, 2, 2, 3]);
        assert_eq!(l.layers, 4);
        assert!(l.nodes[1].x > l.nodes[0].x && l.nodes[4].x > l.nodes[2].x);
        assert_eq!(l.nodes[2].x, l.nodes[3].x);
        assert_ne!(l.nodes[2].y, l.nodes[3].y, "siblings never overlap");
        assert!(crossing_free(&l));
    }

    #[test]
    fn a_task_sits_after_its_deepest_dependency_and_long_edges_bend_through_layers() {
        // a → b → c, and a → c directly: c is in layer 2, the a→c edge
        // passes through a virtual point in layer 1.
        let l = layout(3, &[(0, 1), (1, 2), (0, 2)], Spacing::default());
        assert_eq!(l.nodes[2].layer, 2);
        let long = l.edges.iter().find(|e| e.from == 0 && e.to == 2).unwrap();
        assert_eq!(long.points.len(), 4, "{:?}", long.points);
        let short = l.edges.iter().find(|e| e.from == 0 && e.to == 1).unwrap();
        assert_eq!(short.points.len(), 2);
    }

    #[test]
    fn barycenter_sweeps_remove_avoidable_crossings() {
        // Two chains given in an order that crosses: a1→b2, a2→b1.
        // Nodes: 0=a1, 1=a2, 2=b1, 3=b2.
        let l = layout(4, &[(0, 3), (1, 2)], Spacing::default());
        assert!(crossing_free(&l), "{l:?}");
        assert!((l.nodes[0].y < l.nodes[1].y) == (l.nodes[3].y < l.nodes[2].y));
    }

    #[test]
    fn the_crossing_count_is_exact_for_a_complete_bipartite_layer() {
        // Fully connected 3×3 layers: every pair of upper tasks crosses every
        // pair of lower tasks once, whatever the order: C(3,2)·C(3,2) = 9.
        let mut edges = Vec::new();
        for a in 0..3 {
            for b in 3..6 {
                edges.push((a, b));
            }
        }
        let l = layout(6, &edges, Spacing::default());
        assert_eq!(l.crossings, 9);
    }

    #[test]
    fn boxes_never_overlap_in_a_large_random_dag() {
        // A deterministic pseudo-random DAG of 1,000 tasks.
        let n = 1_000;
        let mut seed = 42u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let mut edges = Vec::new();
        for b in 1..n {
            for _ in 0..(next() % 3) {
                let a = next() % b;
                edges.push((a, b));
            }
        }
        let s = Spacing::default();
        let l = layout(n, &edges, s);
        let mut boxes: Vec<(i64, i64)> = l.nodes.iter().map(|p| (p.x as i64, p.y as i64)).collect();
        boxes.sort_unstable();
        boxes.dedup();
        assert_eq!(boxes.len(), n, "two tasks share a position");
        for &(a, b) in &edges {
            assert!(
                l.nodes[a].layer < l.nodes[b].layer,
                "dependency not left of dependent"
            );
        }
        for p in &l.nodes {
            assert!(p.x + s.node_width <= l.width && p.y + s.node_height <= l.height);
        }
    }

    #[test]
    fn cycles_and_bad_edges_do_not_hang() {
        let l = layout(3, &[(0, 1), (1, 0), (2, 2), (0, 9)], Spacing::default());
        assert_eq!(l.nodes.len(), 3);
        let empty = layout(0, &[], Spacing::default());
        assert_eq!((empty.width, empty.height, empty.layers), (0.0, 0.0, 0));
    }
}
