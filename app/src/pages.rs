//! The catalogue of console pages: canonical path, title, place in the
//! breadcrumb tree, navigation group, and what the page shows.
//!
//! Navigation, breadcrumbs, document titles and the empty states all read
//! this one table, so a page's name is spelled once. The router in `lib.rs`
//! still lists its routes explicitly: Leptos routes are typed at compile time.

/// A page of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSpec {
    /// Stable identifier, also rendered as `data-page` for tests.
    pub id: &'static str,
    /// Title; `{jobId}`, `{runId}` and `{entryId}` are replaced by the path
    /// parameter of the same name.
    pub title: &'static str,
    /// Canonical path pattern, `:name` for parameters.
    pub path: &'static str,
    /// The page above this one in the breadcrumbs.
    pub parent: Option<&'static str>,
    /// Where the page sits in the side navigation, if it is listed there.
    pub nav: Option<NavGroup>,
    /// What this page is for: shown under the title.
    pub summary: &'static str,
    /// What will be listed here once the page is connected to its data.
    pub will_show: &'static str,
}

/// The groups of the side navigation, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NavGroup {
    Ops,
    Operations,
    ScannerOps,
}

impl NavGroup {
    pub const ALL: [NavGroup; 3] = [NavGroup::Ops, NavGroup::Operations, NavGroup::ScannerOps];

    pub fn label(self) -> &'static str {
        match self {
            NavGroup::Ops => "Ops",
            NavGroup::Operations => "Operations",
            NavGroup::ScannerOps => "Scanner Ops",
        }
    }
}

const fn page(
    id: &'static str,
    title: &'static str,
    path: &'static str,
    parent: Option<&'static str>,
    nav: Option<NavGroup>,
    summary: &'static str,
    will_show: &'static str,
) -> PageSpec {
    PageSpec {
        id,
        title,
        path,
        parent,
        nav,
        summary,
        will_show,
    }
}

use NavGroup::{Operations, Ops, ScannerOps};

/// Every page, in navigation order within each group.
pub const PAGES: &[PageSpec] = &[
    page(
        "snapshot",
        "Operator snapshot",
        "/ops",
        None,
        Some(Ops),
        "Healthy nodes, active and blocked jobs, pending approvals and file access, at a glance.",
        "cards for healthy nodes, active jobs, blocked jobs, pending approvals and pending file access; the node inventory with heartbeat age and declared file scopes; stale leases to review; and the recent events timeline",
    ),
    page(
        "access",
        "Access",
        "/ops/access",
        Some("snapshot"),
        Some(Ops),
        "Console users and API tokens: who may do what, in which tenants.",
        "users with their scopes and tenants, and API and node tokens, to create and revoke",
    ),
    page(
        "approvals",
        "Approvals",
        "/ops/approvals",
        Some("snapshot"),
        Some(Ops),
        "Requests waiting for an operator's decision.",
        "approval requests with who asked, for what, and how long they have waited, to approve or reject",
    ),
    page(
        "jobs-queues",
        "Jobs & Queues",
        "/ops/operations/jobs-queues",
        Some("snapshot"),
        Some(Operations),
        "The execution overview: queues, depth, running work and failures, with links into the pages that own each operation.",
        "every queue with its ready depth, running tasks and recent failures, each linking to the JobEngine, Scheduler and Dead-letter pages that act on it",
    ),
    page(
        "jobengine",
        "JobEngine",
        "/ops/operations/jobengine",
        Some("jobs-queues"),
        Some(Operations),
        "Queue health of the JobEngine.",
        "per queue: ready depth, leased tasks, failures in the last hour, age of the oldest ready task and whether the queue is paused",
    ),
    page(
        "jobs",
        "Jobs",
        "/ops/operations/jobengine/jobs",
        Some("jobengine"),
        Some(Operations),
        "All jobs, filterable, with bulk actions on the filtered set.",
        "jobs with their id, name, tenant, queue, state, task progress, start time, duration and attempts",
    ),
    page(
        "job",
        "Job {jobId}",
        "/ops/operations/jobengine/jobs/:jobId",
        Some("jobs"),
        None,
        "One job: its tasks, their attempts and leases, logs, and why a task is not running.",
        "the tasks of this job, each attempt with its node, lease and fencing epoch, the attempt logs, and an explanation for every task that is not running",
    ),
    page(
        "job-dag",
        "DAG of job {jobId}",
        "/ops/operations/jobengine/jobs/:jobId/dag",
        Some("job"),
        None,
        "The job's task graph with live task states.",
        "the task graph laid out by dependency depth, each task coloured by its state, with an inspector for the selected task",
    ),
    page(
        "quotas",
        "Quotas",
        "/ops/operations/jobengine/quotas",
        Some("jobengine"),
        Some(Operations),
        "Concurrency and start-rate limits per tenant and queue, with live usage.",
        "each tenant's and queue's limits (concurrent leases, starts per minute) beside their live usage",
    ),
    page(
        "dead-letter",
        "Dead-letter",
        "/ops/operations/dead-letter",
        Some("jobs-queues"),
        Some(Operations),
        "Tasks whose attempts are spent, grouped by error fingerprint.",
        "dead-letter entries grouped by error fingerprint, with counts per queue",
    ),
    page(
        "dead-letter-queue",
        "Dead-letter queue",
        "/ops/operations/dead-letter/queue",
        Some("dead-letter"),
        Some(Operations),
        "Browse, replay, resolve and export dead-letter entries.",
        "every dead-letter entry with its task, queue, error and status, to replay or resolve one at a time or in batches",
    ),
    page(
        "dead-letter-entry",
        "Dead-letter entry {entryId}",
        "/ops/operations/dead-letter/entry/:entryId",
        Some("dead-letter-queue"),
        None,
        "One dead-letter entry: its error, payload and attempt history.",
        "the entry's error and fingerprint, the payload snapshot, the attempt history, and a link to its job",
    ),
    page(
        "scheduler",
        "Scheduler",
        "/ops/operations/scheduler",
        Some("jobs-queues"),
        Some(Operations),
        "Schedules, runs and the worker fleet.",
        "active and recent runs, the next scheduled runs and the state of the worker fleet",
    ),
    page(
        "runs",
        "Runs",
        "/ops/operations/scheduler/runs",
        Some("scheduler"),
        Some(Operations),
        "Scheduled and manual runs, with their progress and deltas.",
        "runs with their id, trigger, state, progress, duration and deltas, in Active, Completed, Scheduled and Failures tabs",
    ),
    page(
        "run-stream",
        "Run {runId}",
        "/ops/operations/scheduler/runs/:runId/stream",
        Some("runs"),
        None,
        "The live stream of one run.",
        "the run's state, segment progress, deltas and log tail, as they happen",
    ),
    page(
        "schedules",
        "Schedules",
        "/ops/operations/scheduler/schedules",
        Some("scheduler"),
        Some(Operations),
        "Cron schedules with their time zone, next runs and manual triggers.",
        "each schedule's cron expression, time zone, next run and whether it is enabled",
    ),
    page(
        "workers",
        "Workers",
        "/ops/operations/scheduler/workers",
        Some("scheduler"),
        Some(Operations),
        "The worker fleet: heartbeat, capacity and running leases.",
        "each worker node with its heartbeat age, capacity, running leases and status",
    ),
    page(
        "scanner-ops",
        "Scanner Ops",
        "/ops/scanner-ops",
        Some("snapshot"),
        Some(ScannerOps),
        "The scanner workload at a glance.",
        "recent scan runs, analyzer health and baseline status",
    ),
    page(
        "offline-kits",
        "Offline kits",
        "/ops/scanner-ops/offline-kits",
        Some("scanner-ops"),
        Some(ScannerOps),
        "Signed bundles of analyzer configuration and advisory data for air-gapped sites.",
        "imported offline kits with their digest, signature status and contents",
    ),
    page(
        "baselines",
        "Baselines",
        "/ops/scanner-ops/baselines",
        Some("scanner-ops"),
        Some(ScannerOps),
        "Promoted snapshots of findings per target.",
        "the baseline of each target, when it was promoted and from which run",
    ),
    page(
        "analyzers",
        "Analyzers",
        "/ops/scanner-ops/analyzers",
        Some("scanner-ops"),
        Some(ScannerOps),
        "Analyzers reported by the worker fleet.",
        "each analyzer with its version, the nodes that run it and whether it is enabled",
    ),
    page(
        "performance",
        "Performance",
        "/ops/scanner-ops/performance",
        Some("scanner-ops"),
        Some(ScannerOps),
        "Throughput and latency per analyzer, from real runs.",
        "per-analyzer throughput and latency measured from completed runs",
    ),
    page(
        "settings",
        "Scanner settings",
        "/ops/scanner-ops/settings",
        Some("scanner-ops"),
        Some(ScannerOps),
        "Settings of the scanner workload.",
        "the scanner's settings, validated and saved",
    ),
];

/// The page with this id. Panics on an unknown id: ids are compile-time
/// constants of this crate, so an unknown one is a programming error.
pub fn page_by_id(id: &str) -> &'static PageSpec {
    PAGES
        .iter()
        .find(|p| p.id == id)
        .unwrap_or_else(|| panic!("no page with id {id:?}"))
}

/// The page whose path pattern matches a concrete path (`:name` segments
/// match any one segment; a literal segment beats a parameter).
pub fn page_by_path(path: &str) -> Option<&'static PageSpec> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let segments: Vec<&str> = path.split('/').collect();
    PAGES
        .iter()
        .filter_map(|page| {
            let pattern: Vec<&str> = page.path.split('/').collect();
            if pattern.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            for (p, s) in pattern.iter().zip(&segments) {
                if p.starts_with(':') {
                    if s.is_empty() {
                        return None;
                    }
                } else if p == s {
                    literal += 1;
                } else {
                    return None;
                }
            }
            Some((literal, page))
        })
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, page)| page)
}

/// Replaces `:name` in a path pattern and `{name}` in a title with the
/// value of the parameter `name`.
pub fn fill(template: &str, params: &[(&str, String)]) -> String {
    params
        .iter()
        .fold(template.to_string(), |acc, (name, value)| {
            acc.replace(&format!(":{name}"), value)
                .replace(&format!("{{{name}}}"), value)
        })
}

/// A breadcrumb: the page's title and its concrete path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crumb {
    pub title: String,
    pub href: String,
}

/// The breadcrumb trail from the top of the console down to `id`, with
/// parameters filled in.
pub fn breadcrumbs(id: &str, params: &[(&str, String)]) -> Vec<Crumb> {
    let mut trail = Vec::new();
    let mut current = Some(page_by_id(id));
    while let Some(spec) = current {
        trail.push(Crumb {
            title: fill(spec.title, params),
            href: fill(spec.path, params),
        });
        current = spec.parent.map(page_by_id);
    }
    trail.reverse();
    trail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_paths_are_unique_and_parents_exist() {
        for (i, a) in PAGES.iter().enumerate() {
            for b in &PAGES[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.path, b.path);
            }
            if let Some(parent) = a.parent {
                page_by_id(parent);
            }
        }
    }

    #[test]
    fn every_page_under_a_legacy_prefix_is_canonical() {
        for spec in PAGES {
            assert_eq!(
                crate::legacy::canonical_path(spec.path),
                None,
                "{}",
                spec.path
            );
        }
    }

    #[test]
    fn every_page_is_found_by_its_own_path() {
        let params = [
            ("jobId", "42".to_string()),
            ("runId", "7".to_string()),
            ("entryId", "9".to_string()),
        ];
        for page in PAGES {
            let path = fill(page.path, &params);
            assert_eq!(page_by_path(&path).map(|p| p.id), Some(page.id), "{path}");
            assert_eq!(
                page_by_path(&format!("{path}/")).map(|p| p.id),
                Some(page.id)
            );
        }
        assert!(page_by_path("/ops/nowhere").is_none());
    }

    #[test]
    fn breadcrumbs_fill_parameters() {
        let params = [("jobId", "42".to_string())];
        let trail = breadcrumbs("job-dag", &params);
        let titles: Vec<_> = trail.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "Operator snapshot",
                "Jobs & Queues",
                "JobEngine",
                "Jobs",
                "Job 42",
                "DAG of job 42"
            ]
        );
        assert_eq!(trail[4].href, "/ops/operations/jobengine/jobs/42");
        assert_eq!(trail[5].href, "/ops/operations/jobengine/jobs/42/dag");
    }
}
