//! Validation of submitted jobs and the graph walks the engine needs
//! (downstream closure for skipping, un-skipping on replay).
//!
//! Pure functions over keys and ids: nothing here touches the database, so
//! a refused job has written nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::error::{KernelError, Result};
use crate::model::{NewJob, TaskState};

use super::KernelConfig;

pub(crate) fn check_name(what: &str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(KernelError::validation(format!("{what} must not be empty")));
    }
    check_no_nul(what, value)?;
    if value.len() > max {
        return Err(KernelError::validation(format!(
            "{what} is longer than {max} characters"
        )));
    }
    Ok(())
}

/// Refuses text with a NUL character, which a Postgres `text` cannot hold
/// (the write would fail as a database error instead of naming the field).
pub(crate) fn check_no_nul(what: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(KernelError::validation(format!(
            "{what} must not contain a NUL character"
        )));
    }
    Ok(())
}

/// Text a worker reports (an error, a log line) as both backends can keep
/// it: every NUL character replaced by U+FFFD. Refusing it instead would
/// lose the failure or the line it came with.
pub(crate) fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}

/// A tenant or queue name: letters, digits, `.`, `_`, `-`, 1–64 characters.
pub(crate) fn check_identifier(what: &str, value: &str) -> Result<()> {
    check_name(what, value, 64)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(KernelError::Validation {
            message: format!("{what} {value:?} may only contain letters, digits, '.', '_' and '-'"),
            details: Some(serde_json::json!({ "field": what, "value": value })),
        });
    }
    Ok(())
}

/// Checks a job before anything is written: names, limits, payload sizes,
/// and that its tasks form a DAG (unique keys, known dependencies, no cycle).
pub fn validate_job(job: &NewJob, config: &KernelConfig) -> Result<()> {
    check_name("job name", &job.name, 200)?;
    check_identifier("tenant", &job.tenant)?;
    check_identifier("queue", &job.queue)?;
    if !(-1_000_000..=1_000_000).contains(&job.priority) {
        return Err(KernelError::validation(
            "priority must be between -1000000 and 1000000",
        ));
    }
    if let Some(key) = &job.idempotency_key {
        check_name("idempotency key", key, 200)?;
    }
    if job.tasks.is_empty() {
        return Err(KernelError::validation("a job needs at least one task"));
    }
    if job.tasks.len() > config.max_tasks_per_job {
        return Err(KernelError::validation(format!(
            "a job may have at most {} tasks (this one has {})",
            config.max_tasks_per_job,
            job.tasks.len()
        )));
    }
    for task in &job.tasks {
        check_name("task key", &task.key, 128)?;
        check_name("task kind", &task.kind, 64)?;
        if let Some(n) = task.max_attempts {
            if !(1..=100).contains(&n) {
                return Err(KernelError::validation(format!(
                    "max_attempts of task {:?} must be between 1 and 100",
                    task.key
                )));
            }
        }
        if let Some(t) = task.timeout_s {
            if t < 1 {
                return Err(KernelError::validation(format!(
                    "timeout_s of task {:?} must be at least 1",
                    task.key
                )));
            }
        }
        let size = task.payload.to_string().len();
        if size > config.max_payload_bytes {
            return Err(KernelError::PayloadTooLarge {
                key: task.key.clone(),
                size,
                limit: config.max_payload_bytes,
            });
        }
    }

    let mut seen = HashSet::new();
    let duplicates: BTreeSet<String> = job
        .tasks
        .iter()
        .filter(|t| !seen.insert(t.key.as_str()))
        .map(|t| t.key.clone())
        .collect();
    if !duplicates.is_empty() {
        return Err(KernelError::DuplicateTaskKey {
            keys: duplicates.into_iter().collect(),
        });
    }

    let keys: HashSet<&str> = job.tasks.iter().map(|t| t.key.as_str()).collect();
    let missing: Vec<(String, String)> = job
        .tasks
        .iter()
        .flat_map(|t| {
            t.depends_on
                .iter()
                .filter(|d| !keys.contains(d.as_str()))
                .map(move |d| (t.key.clone(), d.clone()))
        })
        .collect();
    if !missing.is_empty() {
        return Err(KernelError::UnknownDependency { missing });
    }

    let deps: BTreeMap<&str, Vec<&str>> = job
        .tasks
        .iter()
        .map(|t| {
            (
                t.key.as_str(),
                t.depends_on.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    if let Some(cycle) = find_cycle(&deps) {
        return Err(KernelError::DagCycle { keys: cycle });
    }
    Ok(())
}

/// One cycle of the graph as a closed path of keys (`a → b → a`), if any.
fn find_cycle(deps: &BTreeMap<&str, Vec<&str>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnPath,
        Done,
    }
    let mut mark: HashMap<&str, Mark> = deps.keys().map(|k| (*k, Mark::Unvisited)).collect();
    // Iterative DFS so a 10,000-task chain cannot overflow the stack.
    for &start in deps.keys() {
        if mark[start] != Mark::Unvisited {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        mark.insert(start, Mark::OnPath);
        while let Some((node, next)) = path.last_mut() {
            let node = *node;
            let children = &deps[node];
            if *next < children.len() {
                let child = children[*next];
                *next += 1;
                match mark[child] {
                    Mark::Unvisited => {
                        mark.insert(child, Mark::OnPath);
                        path.push((child, 0));
                    }
                    Mark::OnPath => {
                        let from = path.iter().position(|(k, _)| *k == child).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            path[from..].iter().map(|(k, _)| k.to_string()).collect();
                        cycle.push(child.to_string());
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark.insert(node, Mark::Done);
                path.pop();
            }
        }
    }
    None
}

/// A job's tasks and edges as loaded from the database.
#[derive(Debug, Default)]
pub(crate) struct JobGraph {
    pub state: HashMap<i64, TaskState>,
    /// task → the tasks it depends on
    pub upstream: HashMap<i64, Vec<i64>>,
    /// task → the tasks that depend on it
    pub downstream: HashMap<i64, Vec<i64>>,
}

impl JobGraph {
    pub fn add_edge(&mut self, task: i64, depends_on: i64) {
        self.upstream.entry(task).or_default().push(depends_on);
        self.downstream.entry(depends_on).or_default().push(task);
    }

    /// Every task reachable downstream of `roots` (not including them).
    pub fn downstream_of(&self, roots: &[i64]) -> Vec<i64> {
        let mut seen: HashSet<i64> = roots.iter().copied().collect();
        let mut stack: Vec<i64> = roots.to_vec();
        let mut out = Vec::new();
        while let Some(t) = stack.pop() {
            for &d in self.downstream.get(&t).map(Vec::as_slice).unwrap_or(&[]) {
                if seen.insert(d) {
                    out.push(d);
                    stack.push(d);
                }
            }
        }
        out
    }

    /// Tasks of `candidates` (skipped ones) that can run again once `revived`
    /// tasks are back in play: every upstream task is succeeded or will run.
    /// Returns them in dependency order with their count of unfinished deps.
    pub fn revivable(&self, revived: &[i64], candidates: &[i64]) -> Vec<(i64, i64)> {
        let mut alive: HashSet<i64> = revived.iter().copied().collect();
        let candidate_set: HashSet<i64> = candidates.iter().copied().collect();
        let mut out = Vec::new();
        let mut changed = true;
        // Small graphs (≤ max_tasks_per_job): a fixed point is simple and enough.
        while changed {
            changed = false;
            for &c in candidates {
                if alive.contains(&c) {
                    continue;
                }
                let ups = self.upstream.get(&c).map(Vec::as_slice).unwrap_or(&[]);
                let runnable = ups.iter().all(|u| {
                    alive.contains(u)
                        || matches!(
                            self.state.get(u),
                            Some(
                                TaskState::Succeeded
                                    | TaskState::Pending
                                    | TaskState::Ready
                                    | TaskState::Leased
                            )
                        ) && !candidate_set.contains(u)
                });
                if runnable {
                    let remaining = ups
                        .iter()
                        .filter(|u| {
                            self.state.get(u) != Some(&TaskState::Succeeded) || alive.contains(u)
                        })
                        .count() as i64;
                    alive.insert(c);
                    out.push((c, remaining));
                    changed = true;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewTask;
    use serde_json::json;

    fn job(tasks: Vec<NewTask>) -> NewJob {
        NewJob {
            tasks,
            ..NewJob::single("j", "noop", json!({}))
        }
    }

    #[test]
    fn cycle_is_named() {
        let j = job(vec![
            NewTask::new("a", "noop", json!({})).after(&["c"]),
            NewTask::new("b", "noop", json!({})).after(&["a"]),
            NewTask::new("c", "noop", json!({})).after(&["b"]),
            NewTask::new("d", "noop", json!({})),
        ]);
        match validate_job(&j, &KernelConfig::default()) {
            Err(KernelError::DagCycle { keys }) => {
                assert_eq!(keys.first(), keys.last());
                assert_eq!(keys.len(), 4);
                for k in ["a", "b", "c"] {
                    assert!(keys.contains(&k.to_string()));
                }
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn priority_outside_its_range_is_refused_even_at_the_extremes() {
        let with = |priority| NewJob {
            priority,
            ..job(vec![NewTask::new("a", "noop", json!({}))])
        };
        let config = KernelConfig::default();
        for ok in [-1_000_000, 0, 1_000_000] {
            assert!(validate_job(&with(ok), &config).is_ok(), "{ok}");
        }
        // i64::MIN has no absolute value: it once wrapped past the check.
        for bad in [i64::MIN, -1_000_001, 1_000_001, i64::MAX] {
            match validate_job(&with(bad), &config) {
                Err(KernelError::Validation { message, .. }) => {
                    assert!(message.contains("priority"), "{message}")
                }
                other => panic!("priority {bad}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn revivable_waits_for_every_upstream() {
        // 1 → 2 → 3, and 4 (failed) → 3
        let mut g = JobGraph::default();
        g.state.insert(1, TaskState::Failed);
        g.state.insert(2, TaskState::Skipped);
        g.state.insert(3, TaskState::Skipped);
        g.state.insert(4, TaskState::Failed);
        g.add_edge(2, 1);
        g.add_edge(3, 2);
        g.add_edge(3, 4);
        assert_eq!(g.revivable(&[1], &[2, 3]), vec![(2, 1)]);
        assert_eq!(g.revivable(&[1, 4], &[2, 3]), vec![(2, 1), (3, 2)]);
    }
}
