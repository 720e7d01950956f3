//! Wire types of the JobEngine console pages (SPEC §3): the jobs search
//! with its filters and sort, bulk cancel/retry by ids or by filter with a
//! dry-run count and per-item results, queue health, and the quota board.
//!
//! Like the rest of `model`, serde only: the browser compiles it to wasm.

use serde::{Deserialize, Serialize};

use super::{Job, JobState, QuotaLimits, QuotaScope, QuotaUsage, TaskState};

/// Which jobs the console's jobs list shows (and a bulk action selects by
/// filter). Every field narrows; `None` (or an empty string) does not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobSearch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// The job's queue; with `task_state`, the queue of the task in that state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Jobs with at least one task of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Jobs with at least one task in this state: `pending`, `ready` or
    /// `leased` (the states queue depth counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_state: Option<TaskState>,
    /// Created at or after (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_from: Option<i64>,
    /// Created before (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_to: Option<i64>,
    /// Finished at or after (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_from: Option<i64>,
    /// A job id, or a case-insensitive substring of the job name or of a
    /// task's payload (JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// The caller's tenant grant (`None`: every tenant). Set by the server,
    /// never by the caller.
    #[serde(skip)]
    pub tenants: Option<Vec<String>>,
}

/// Task states `JobSearch::task_state` accepts.
pub const SEARCHABLE_TASK_STATES: [TaskState; 3] =
    [TaskState::Pending, TaskState::Ready, TaskState::Leased];

/// Order of the jobs list. Both are keyset-paginated on the job id (ids
/// increase with submission time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobSort {
    #[default]
    Newest,
    Oldest,
}

impl JobSort {
    pub fn as_str(self) -> &'static str {
        match self {
            JobSort::Newest => "newest",
            JobSort::Oldest => "oldest",
        }
    }

    pub fn parse(s: &str) -> Option<JobSort> {
        match s {
            "newest" => Some(JobSort::Newest),
            "oldest" => Some(JobSort::Oldest),
            _ => None,
        }
    }
}

/// One row of the jobs list: the job with its task counts, and how many
/// attempts its tasks have made in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobRow {
    #[serde(flatten)]
    pub job: Job,
    /// Every attempt of every task of the job (retries included).
    pub attempts: i64,
}

/// The bulk operations on jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BulkJobAction {
    /// Unfinished jobs (queued, running, blocked) are cancelled.
    Cancel,
    /// Failed jobs get a fresh attempt budget for their failed tasks.
    Retry,
}

impl BulkJobAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkJobAction::Cancel => "cancel",
            BulkJobAction::Retry => "retry",
        }
    }

    /// Whether a job in `state` is one this action applies to.
    pub fn applies_to(self, state: JobState) -> bool {
        match self {
            BulkJobAction::Cancel => !state.is_terminal(),
            BulkJobAction::Retry => state == JobState::Failed,
        }
    }
}

/// The jobs a bulk action applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobSelection {
    Ids(Vec<i64>),
    Filter(JobSearch),
}

/// What became of one job in a bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BulkItemStatus {
    /// The action was applied.
    Changed,
    /// The job is not in a state the action applies to.
    Skipped,
    /// No such job (or not one of the caller's tenants).
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkItemResult {
    pub job_id: i64,
    pub status: BulkItemStatus,
    /// The job's state before the action, when it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<JobState>,
    /// Why it was skipped, or what it became.
    pub message: String,
}

/// The answer to a bulk action. With `dry_run` nothing changed: `matched`
/// and `applicable` say what a real run would cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkJobOutcome {
    pub action: BulkJobAction,
    pub dry_run: bool,
    /// Jobs the selection covers, whatever their state.
    pub matched: i64,
    /// Of those, the jobs in a state the action applies to.
    pub applicable: i64,
    /// How many one call acts on at most; a larger selection is acted on
    /// newest first up to this many, and `truncated` is set.
    pub limit: i64,
    pub truncated: bool,
    /// One result per job acted on or skipped (empty on a dry run).
    pub results: Vec<BulkItemResult>,
}

/// Health of one queue, as the JobEngine summary shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueHealth {
    pub name: String,
    pub paused: bool,
    pub paused_at: Option<i64>,
    /// Tasks ready to be leased (some may wait out a retry backoff).
    pub ready: i64,
    /// Tasks held by a live attempt.
    pub leased: i64,
    /// Tasks waiting on their dependencies.
    pub pending: i64,
    /// Jobs of this queue that finished `failed` in the last hour.
    pub failed_last_hour: i64,
    /// Creation time of the oldest ready task.
    pub oldest_ready_at: Option<i64>,
}

/// The queue health figures, measured at `measured_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueHealthReport {
    /// Kernel clock when measured (unix ms); "last hour" ends here.
    pub measured_at: i64,
    /// Counted only for these tenants (`None`: every tenant).
    pub tenants: Option<Vec<String>>,
    pub queues: Vec<QueueHealth>,
}

/// One tenant or queue on the quota board: its limits (if any) and live
/// usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaStatus {
    pub scope: QuotaScope,
    pub name: String,
    /// Whether a quota is stored for it (else both limits are unlimited).
    pub configured: bool,
    #[serde(flatten)]
    pub limits: QuotaLimits,
    pub usage: QuotaUsage,
    /// Starts are counted only while a starts-per-minute limit is set.
    pub starts_tracked: bool,
    /// The last claim, sweep or limit change found no room left.
    pub exhausted: bool,
    pub updated_at: Option<i64>,
}

/// Every tenant and queue with its quota and live usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaBoard {
    /// Kernel clock when measured (unix ms).
    pub measured_at: i64,
    pub items: Vec<QuotaStatus>,
}

impl QuotaBoard {
    /// The board as CSV: a header line, then one line per tenant or queue.
    /// Unlimited limits and untracked starts are empty cells.
    pub fn to_csv(&self) -> String {
        fn cell(s: &str) -> String {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        }
        fn opt(v: Option<i64>) -> String {
            v.map(|v| v.to_string()).unwrap_or_default()
        }
        let mut out = String::from(
            "scope,name,configured,max_concurrent,concurrent,max_starts_per_minute,starts_last_minute,exhausted,updated_at,measured_at\n",
        );
        for q in &self.items {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                q.scope,
                cell(&q.name),
                q.configured,
                opt(q.limits.max_concurrent),
                q.usage.concurrent,
                opt(q.limits.max_starts_per_minute),
                if q.starts_tracked {
                    q.usage.starts_last_minute.to_string()
                } else {
                    String::new()
                },
                q.exhausted,
                opt(q.updated_at),
                self.measured_at,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_and_search_wire_format() {
        let s: JobSelection =
            serde_json::from_value(serde_json::json!({"filter": {"state": "queued", "q": "x"}}))
                .unwrap();
        assert_eq!(
            s,
            JobSelection::Filter(JobSearch {
                state: Some(JobState::Queued),
                q: Some("x".into()),
                ..Default::default()
            })
        );
        // The tenant grant never comes from the wire: a caller that sends
        // one is told so (like any field a search does not know).
        let refused =
            serde_json::from_value::<JobSearch>(serde_json::json!({"tenants": ["a"]})).unwrap_err();
        assert!(refused.to_string().contains("tenants"), "{refused}");
    }

    #[test]
    fn csv_quotes_names_and_leaves_unlimited_empty() {
        let board = QuotaBoard {
            measured_at: 5,
            items: vec![QuotaStatus {
                scope: QuotaScope::Tenant,
                name: "a,b".into(),
                configured: false,
                limits: QuotaLimits::default(),
                usage: QuotaUsage {
                    concurrent: 2,
                    starts_last_minute: 0,
                },
                starts_tracked: false,
                exhausted: false,
                updated_at: None,
            }],
        };
        let csv = board.to_csv();
        assert_eq!(
            csv.lines().nth(1),
            Some("tenant,\"a,b\",false,,2,,,false,,5")
        );
    }
}
