//! dag_layout bench: time to lay out job DAGs of 100, 1,000 and 5,000 tasks
//! (SPEC §8: a 1,000-task DAG lays out and renders within 200 ms). Prints
//! figures; asserts nothing.
//!
//! ```text
//! cargo bench -p app --bench dag_layout
//! ```
//!
//! The graphs are deterministic pseudo-random DAGs shaped like real jobs:
//! each task depends on 0–3 earlier tasks, mostly recent ones, so the depth
//! grows with the size as pipelines do.

use std::time::Instant;

use app::dag::layout::{layout, Spacing};

fn job_dag(n: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut edges = Vec::new();
    for task in 1..n {
        for _ in 0..next() % 4 {
            // Mostly a recent task, sometimes any earlier one.
            let window = if next() % 4 == 0 { task } else { task.min(40) };
            edges.push((task - 1 - next() % window, task));
        }
    }
    edges
}

fn main() {
    for &n in &[100usize, 1_000, 5_000] {
        let edges = job_dag(n, 7);
        let runs = if n <= 1_000 { 30 } else { 8 };
        let mut times = Vec::with_capacity(runs);
        let mut last = None;
        for _ in 0..runs {
            let start = Instant::now();
            let result = layout(n, &edges, Spacing::default());
            times.push(start.elapsed().as_secs_f64() * 1e3);
            last = Some(result);
        }
        times.sort_by(f64::total_cmp);
        let result = last.expect("ran");
        println!(
            "{{\"bench\":\"dag_layout\",\"tasks\":{n},\"edges\":{},\"layers\":{},\"crossings\":{},\"ms_median\":{:.2},\"ms_max\":{:.2}}}",
            edges.len(),
            result.layers,
            result.crossings,
            times[times.len() / 2],
            times[times.len() - 1],
        );
    }
}
