//! The task graph of a job as the console draws it.

pub mod layout;

use kernel::model::{JobDetail, TaskState};
use serde::{Deserialize, Serialize};

use layout::Spacing;

/// A job's task graph drawn: its size and its SVG markup, the edges and
/// the nodes (one `g.dag-node` per task, in task order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drawing {
    pub width: f64,
    pub height: f64,
    pub edges: String,
    pub nodes: String,
}

impl Drawing {
    /// Lays out the job's tasks by dependency depth and draws them, each
    /// in its state, `selected` marked.
    pub fn of(job: &JobDetail, selected: Option<&str>) -> Drawing {
        let keys: Vec<String> = job.tasks.iter().map(|t| t.key.clone()).collect();
        let index: std::collections::HashMap<&str, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let edges: Vec<(usize, usize)> = job
            .tasks
            .iter()
            .enumerate()
            .flat_map(|(to, t)| {
                let index = &index;
                t.depends_on
                    .iter()
                    .filter_map(move |d| index.get(d.as_str()).map(|&from| (from, to)))
            })
            .collect();
        let spacing = Spacing::default();
        let drawn = layout::layout(keys.len(), &edges, spacing);
        let states: Vec<TaskState> = job.tasks.iter().map(|t| t.state).collect();
        Drawing {
            width: drawn.width,
            height: drawn.height,
            edges: edges_markup(&drawn),
            nodes: nodes_markup(&drawn, &keys, &states, selected, spacing),
        }
    }
}

/// The edges as SVG markup.
fn edges_markup(drawn: &layout::Layout) -> String {
    let mut out = String::with_capacity(drawn.edges.len() * 96);
    for route in &drawn.edges {
        out.push_str(r#"<polyline class="dag-edge" marker-end="url(#dag-arrow)" points=""#);
        for (i, (x, y)) in route.points.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&format!("{x},{y}"));
        }
        out.push_str(r#""></polyline>"#);
    }
    out
}

/// The nodes as SVG markup, in task order (the children of `#dag-nodes`).
fn nodes_markup(
    drawn: &layout::Layout,
    keys: &[String],
    states: &[TaskState],
    selected: Option<&str>,
    spacing: Spacing,
) -> String {
    let mut out = String::with_capacity(keys.len() * 256);
    for (i, (placed, key)) in drawn.nodes.iter().zip(keys).enumerate() {
        let sel = selected == Some(key.as_str());
        // Task keys are identifiers (letters, digits, '.', '_', '-'); escaped
        // all the same.
        let key = escape_markup(key);
        out.push_str(&format!(
            r#"<g class="dag-node" data-task="{key}" data-state="{state}" aria-selected="{sel}" role="button" tabindex="0" transform="translate({x},{y})"><rect width="{w}" height="{h}" rx="6"></rect><text x="10" y="{ty}">{key}</text></g>"#,
            state = states.get(i).map_or("pending", |s| s.as_str()),
            x = placed.x,
            y = placed.y,
            w = spacing.node_width,
            h = spacing.node_height,
            ty = spacing.node_height / 2.0 + 5.0,
        ));
    }
    out
}

fn escape_markup(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}


#[cfg(test)]
mod tests {
    use super::*;
    use layout::{layout, Spacing};

    #[test]
    fn the_markup_draws_each_node_once_with_its_state_and_escapes_keys() {
        let spacing = Spacing::default();
        let drawn = layout(2, &[(0, 1)], spacing);
        let keys = vec!["a<b".to_string(), "c".to_string()];
        let states = [TaskState::Succeeded, TaskState::Ready];
        let nodes = nodes_markup(&drawn, &keys, &states, Some("c"), spacing);
        assert_eq!(nodes.matches(r#"<g class="dag-node""#).count(), 2);
        assert!(
            nodes.contains(r#"data-task="a&lt;b" data-state="succeeded" aria-selected="false""#)
        );
        assert!(nodes.contains(r#"data-task="c" data-state="ready" aria-selected="true""#));
        assert!(!nodes.contains("a<b"));
        assert_eq!(edges_markup(&drawn).matches("<polyline").count(), 1);
    }
}
