//! Wire types of the JobEngine: what the API sends and receives and what the
//! console renders.
//!
//! This module owns the *names* of the product (states, fields, event types)
//! as they appear in JSON (SPEC §2, §5, §9). It must never depend on anything
//! but `serde` and `serde_json`: the browser console compiles it to wasm.
//!
//! Conventions:
//! - Every timestamp is an `i64` of **unix milliseconds (UTC)**, on the wire
//!   and in both databases. Fields are named `*_at` (or `ts` for events).
//! - Every id is an `i64` (database-assigned, increasing), which is also what
//!   keyset cursors are made of.
//! - Payloads, outputs and event data are free JSON values.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Declares a state enum whose snake_case name is the same in JSON, in SQL
/// and in `Display`/`FromStr`, so one spelling exists per state.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in JSON and SQL.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { kind: stringify!($name), name: s.to_string() }),
                }
            }
        }
    };
}

/// A state or status name that is not one of the known values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub kind: &'static str,
    pub name: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.kind, self.name)
    }
}

impl std::error::Error for UnknownName {}

mod console;
mod explain;
mod identity;
pub use console::*;
pub use explain::*;
pub use identity::*;

named_enum!(
    /// State of a job (SPEC §2). Derived from its tasks after every change.
    JobState {
        /// Nothing has started yet.
        Queued => "queued",
        /// At least one attempt has started and work remains.
        Running => "running",
        /// Every task succeeded.
        Succeeded => "succeeded",
        /// A task failed (dead-lettered) and nothing else can run.
        Failed => "failed",
        /// Cancelled by an operator.
        Cancelled => "cancelled",
        /// Work remains but cannot start: its queue is paused, or a quota
        /// of its tenant or queue is exhausted (and none of its tasks runs).
        Blocked => "blocked",
    }
);

impl JobState {
    /// No further transition happens without an operator (retry, replay).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

named_enum!(
    /// State of a task (SPEC §2).
    TaskState {
        /// Waiting for its dependencies.
        Pending => "pending",
        /// Can be leased (possibly not before `not_before`, after a retry backoff).
        Ready => "ready",
        /// Held by a live attempt.
        Leased => "leased",
        Succeeded => "succeeded",
        /// Attempts exhausted (or a non-retryable error): dead-lettered.
        Failed => "failed",
        Cancelled => "cancelled",
        /// An upstream dependency failed or was cancelled.
        Skipped => "skipped",
    }
);

impl TaskState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::Skipped
        )
    }
}

named_enum!(
    /// State of one attempt at a task; an active attempt holds the task's lease.
    AttemptState {
        Active => "active",
        Succeeded => "succeeded",
        Failed => "failed",
        /// The lease lapsed without renewal; the sweep recovered the task.
        Expired => "expired",
        /// The job was cancelled, or the worker released the lease on shutdown.
        Cancelled => "cancelled",
        /// Superseded by a newer lease: the lease expired, the task was
        /// leased again with a higher epoch, and then the old holder
        /// reported (and was refused with `stale_lease`, recorded as a
        /// `lease.fenced` event). An expired attempt whose holder never
        /// reports stays `expired`.
        Fenced => "fenced",
    }
);

named_enum!(
    /// Health of a worker node as the kernel sees it.
    NodeStatus {
        Online => "online",
        /// Gets no new leases; its running leases finish.
        Draining => "draining",
        /// Missed its heartbeats for too long.
        Offline => "offline",
    }
);

named_enum!(
    DeadLetterStatus {
        Open => "open",
        Replayed => "replayed",
        Resolved => "resolved",
    }
);

named_enum!(
    /// What a quota limits: a whole tenant or one queue.
    QuotaScope {
        Tenant => "tenant",
        Queue => "queue",
    }
);

named_enum!(
    LogStream {
        Stdout => "stdout",
        Stderr => "stderr",
        /// Lines written by the worker itself (e.g. "killed after timeout").
        System => "system",
    }
);

fn default_tenant() -> String {
    "default".to_string()
}

fn default_queue() -> String {
    "default".to_string()
}

/// A job as submitted (`POST /api/v1/jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    pub name: String,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Higher runs first; ties go to the oldest task.
    #[serde(default)]
    pub priority: i64,
    /// A second submit with the same key (per tenant) returns the first job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub tasks: Vec<NewTask>,
}

impl NewJob {
    /// A job of one task with no dependencies, in the default tenant and queue.
    pub fn single(name: impl Into<String>, kind: impl Into<String>, payload: Value) -> NewJob {
        NewJob {
            name: name.into(),
            tenant: default_tenant(),
            queue: default_queue(),
            priority: 0,
            idempotency_key: None,
            tasks: vec![NewTask::new("main", kind, payload)],
        }
    }
}

/// One task of a submitted job; `key` is unique within the job and is what
/// `depends_on` refers to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    pub key: String,
    pub kind: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Attempts before the task is dead-lettered (default from the kernel config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
    /// Execution time limit the worker enforces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<i64>,
}

impl NewTask {
    pub fn new(key: impl Into<String>, kind: impl Into<String>, payload: Value) -> NewTask {
        NewTask {
            key: key.into(),
            kind: kind.into(),
            payload,
            depends_on: Vec::new(),
            max_attempts: None,
            timeout_s: None,
        }
    }

    pub fn after(mut self, deps: &[&str]) -> NewTask {
        self.depends_on = deps.iter().map(|d| d.to_string()).collect();
        self
    }

    pub fn max_attempts(mut self, n: i64) -> NewTask {
        self.max_attempts = Some(n);
        self
    }
}

/// The answer to a submit: the job, and whether this call created it
/// (`false` when an earlier submit with the same idempotency key did).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Submitted {
    pub job: Job,
    pub created: bool,
}

/// How many of a job's tasks are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskCounts {
    pub pending: i64,
    pub ready: i64,
    pub leased: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub skipped: i64,
}

impl TaskCounts {
    pub fn total(&self) -> i64 {
        self.pending
            + self.ready
            + self.leased
            + self.succeeded
            + self.failed
            + self.cancelled
            + self.skipped
    }

    pub fn add(&mut self, state: TaskState, n: i64) {
        let slot = match state {
            TaskState::Pending => &mut self.pending,
            TaskState::Ready => &mut self.ready,
            TaskState::Leased => &mut self.leased,
            TaskState::Succeeded => &mut self.succeeded,
            TaskState::Failed => &mut self.failed,
            TaskState::Cancelled => &mut self.cancelled,
            TaskState::Skipped => &mut self.skipped,
        };
        *slot += n;
    }
}

/// A job without its tasks: what lists show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: i64,
    pub name: String,
    pub tenant: String,
    pub queue: String,
    pub priority: i64,
    pub state: JobState,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
    pub task_counts: TaskCounts,
}

/// A job with its tasks and their attempts (`GET /api/v1/jobs/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    pub tasks: Vec<Task>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Task {
    pub id: i64,
    pub job_id: i64,
    pub key: String,
    pub kind: String,
    pub state: TaskState,
    /// The queue the task is claimed from (a dead-letter replay may move it).
    pub queue: String,
    pub priority: i64,
    pub payload: Value,
    /// Keys of the tasks this one waits for.
    pub depends_on: Vec<String>,
    pub max_attempts: i64,
    /// Attempts started within the current attempt budget.
    pub attempts_used: i64,
    /// Fencing epoch of the latest lease; increases on every lease.
    pub epoch: i64,
    pub timeout_s: Option<i64>,
    /// After a failed attempt: not leased again before this time (backoff).
    pub not_before: i64,
    pub last_error: Option<String>,
    pub output: Option<Value>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub attempts: Vec<Attempt>,
}

/// One attempt at a task. While `active`, it holds the task's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    pub id: i64,
    pub task_id: i64,
    pub job_id: i64,
    /// 1-based number within the task's history.
    pub number: i64,
    pub state: AttemptState,
    pub node_id: Option<i64>,
    pub epoch: i64,
    pub lease_expires_at: i64,
    pub started_at: i64,
    pub heartbeat_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    /// The first 8 characters of the lease token, to tell leases apart
    /// (never the whole token: it is the worker's proof).
    #[serde(default)]
    pub lease_token_prefix: Option<String>,
}

/// What a worker needs to run a task and to report on it. The `lease_token`
/// and `epoch` must accompany every heartbeat, completion and failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lease {
    pub attempt_id: i64,
    pub task_id: i64,
    pub job_id: i64,
    pub kind: String,
    pub payload: Value,
    pub lease_token: String,
    pub epoch: i64,
    pub lease_expires_at: i64,
    pub attempt_number: i64,
    pub max_attempts: i64,
    pub timeout_s: Option<i64>,
    pub tenant: String,
    pub queue: String,
}

impl Lease {
    pub fn proof(&self) -> LeaseProof {
        LeaseProof {
            lease_token: self.lease_token.clone(),
            epoch: self.epoch,
        }
    }
}

/// The pair a worker presents to act on its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeaseProof {
    pub lease_token: String,
    pub epoch: i64,
}

/// `POST /api/v1/leases/claim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    pub node_id: i64,
    pub kinds: Vec<String>,
    #[serde(default = "one")]
    pub max: i64,
    /// Long-poll: wait up to this long for work when none is ready.
    #[serde(default)]
    pub wait_ms: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatOutcome {
    pub lease_expires_at: i64,
    /// The job was cancelled: the worker must stop the task and not report it.
    pub cancelled: bool,
}

/// A worker's report of a failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskFailure {
    pub message: String,
    /// `false` dead-letters the task at once.
    #[serde(default = "yes")]
    pub retryable: bool,
}

fn yes() -> bool {
    true
}

/// What became of a task after a failed (or expired) attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailOutcome {
    pub task_state: TaskState,
    /// Set when the task will be retried: not before this time.
    pub retry_at: Option<i64>,
    /// Set when the task was dead-lettered.
    pub dead_letter_id: Option<i64>,
}

/// One completion in a batch (`Kernel::complete_many`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Completion {
    pub attempt_id: i64,
    pub proof: LeaseProof,
    #[serde(default)]
    pub output: Option<Value>,
}

/// `POST /api/v1/nodes/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    pub name: String,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default = "one")]
    pub capacity: i64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// File-system paths the node declares it may touch (shown to operators).
    #[serde(default)]
    pub file_scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    pub id: i64,
    pub name: String,
    pub kinds: Vec<String>,
    pub capacity: i64,
    pub labels: BTreeMap<String, String>,
    pub file_scopes: Vec<String>,
    pub status: NodeStatus,
    pub registered_at: i64,
    pub last_heartbeat_at: i64,
    /// Attempts currently active on this node.
    pub active_leases: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetterEntry {
    pub id: i64,
    pub job_id: i64,
    pub task_id: i64,
    pub job_name: String,
    pub task_key: String,
    pub kind: String,
    pub tenant: String,
    pub queue: String,
    /// The last error message.
    pub error: String,
    /// Hash of the normalised error message: entries with the same cause share it.
    pub fingerprint: String,
    /// The task's payload when it was dead-lettered.
    pub payload: Value,
    /// Every attempt of the exhausted budget, oldest first.
    pub attempts: Vec<Attempt>,
    pub status: DeadLetterStatus,
    /// Why it was resolved (or "job retried" / replay notes).
    pub reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Open dead-letter entries sharing one error fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetterGroup {
    pub fingerprint: String,
    /// One example error message of the group.
    pub error: String,
    pub count: i64,
    pub queues: Vec<String>,
    pub first_at: i64,
    pub last_at: i64,
}

/// Which dead-letter entries a filter selects (`GET /api/v1/dead-letter`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeadLetterFilter {
    #[serde(default)]
    pub status: Option<DeadLetterStatus>,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Substring of the error message, task key or job name.
    #[serde(default)]
    pub q: Option<String>,
    /// The caller's tenant grant (`None`: every tenant). Set by the
    /// server, never by the caller.
    #[serde(skip)]
    pub tenants: Option<Vec<String>>,
}

/// Entries a batch dead-letter action applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterSelection {
    Ids(Vec<i64>),
    Filter(DeadLetterFilter),
}

/// Options of a replay: move the task to another queue, replace its payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplayOptions {
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub payload: Option<Value>,
}

/// Result of a batch replay/resolve. With `dry_run`, nothing changed and
/// `matched` says how many open entries the selection covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchOutcome {
    pub dry_run: bool,
    /// Open entries the selection covers.
    pub matched: i64,
    /// Entries changed by this call.
    pub changed: Vec<i64>,
    /// Entries not changed: named by id but not open (already replayed or
    /// resolved, or unknown), or, for a replay, whose job was cancelled.
    pub skipped: Vec<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueDepth {
    pub pending: i64,
    pub ready: i64,
    pub leased: i64,
    /// Open dead-letter entries whose task is in this queue.
    pub dead_letter_open: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Queue {
    pub name: String,
    pub paused: bool,
    pub paused_at: Option<i64>,
    pub depth: QueueDepth,
    /// Creation time of the oldest ready task (how long work has waited).
    pub oldest_ready_at: Option<i64>,
}

/// Limits of one quota; `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaLimits {
    #[serde(default)]
    pub max_concurrent: Option<i64>,
    #[serde(default)]
    pub max_starts_per_minute: Option<i64>,
}

/// Live usage of a quota, measured when read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaUsage {
    /// Active leases now.
    pub concurrent: i64,
    /// Attempts started in the last 60 seconds. Counted only while the quota
    /// has a `max_starts_per_minute` (starts are not tracked otherwise).
    pub starts_last_minute: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quota {
    pub scope: QuotaScope,
    /// Tenant or queue name.
    pub name: String,
    #[serde(flatten)]
    pub limits: QuotaLimits,
    pub usage: QuotaUsage,
    pub updated_at: i64,
}

/// The objects an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventSubject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// One entry of the durable event log. `seq` increases by one per event, in
/// commit order; `type` is `family.name` (e.g. `job.stateChanged`).
/// `tenant` is `None` for events about shared things (queues, nodes,
/// queue quotas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub seq: i64,
    pub ts: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub tenant: Option<String>,
    pub subject: EventSubject,
    pub data: Value,
}

/// `GET /api/v1/events?after=SEQ&limit=N`: `next_after` is the seq to ask
/// after next time (the last item's, or `after` when there was none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPage {
    pub items: Vec<Event>,
    pub next_after: i64,
    /// Set when events after `after` were deleted by retention before they
    /// were read, up to this seq: what they said is lost, so refetch the
    /// state they described.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_through: Option<i64>,
}

/// See `Kernel::check_resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeCheck {
    /// Retention deleted events after the resume point, up to this seq.
    pub deleted_through: Option<i64>,
    /// The resume point lies beyond every seq written (and deleted).
    pub beyond_head: bool,
}

/// Event type names, so producers and consumers spell them once.
pub mod event_type {
    pub const JOB_SUBMITTED: &str = "job.submitted";
    pub const JOB_STATE_CHANGED: &str = "job.stateChanged";
    pub const TASK_STATE_CHANGED: &str = "task.stateChanged";
    pub const LEASE_GRANTED: &str = "lease.granted";
    pub const LEASE_RENEWED: &str = "lease.renewed";
    pub const LEASE_EXPIRED: &str = "lease.expired";
    pub const LEASE_RELEASED: &str = "lease.released";
    /// A stale (token, epoch) pair was presented and rejected.
    pub const LEASE_FENCED: &str = "lease.fenced";
    pub const NODE_ONLINE: &str = "node.online";
    pub const NODE_DRAINING: &str = "node.draining";
    pub const NODE_OFFLINE: &str = "node.offline";
    pub const DLQ_ADDED: &str = "dlq.added";
    pub const DLQ_REPLAYED: &str = "dlq.replayed";
    pub const DLQ_RESOLVED: &str = "dlq.resolved";
    pub const QUOTA_UPDATED: &str = "quota.updated";
    pub const QUEUE_PAUSED: &str = "queue.paused";
    pub const QUEUE_RESUMED: &str = "queue.resumed";
}

/// One line of an attempt's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// Increasing id: ask for lines after it to tail a log.
    pub id: i64,
    pub attempt_id: i64,
    pub stream: LogStream,
    pub line: String,
    pub ts: i64,
}

/// A line a worker sends (the kernel assigns id and keeps ts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewLogLine {
    pub stream: LogStream,
    pub line: String,
    pub ts: i64,
}

/// Filters of `GET /api/v1/jobs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobFilter {
    #[serde(default)]
    pub state: Option<JobState>,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    /// A substring of the job name (case-insensitive); digits also match
    /// the job with that id.
    #[serde(default)]
    pub q: Option<String>,
    /// The caller's tenant grant: only these tenants' jobs are listed
    /// (`None`: every tenant). Set by the server, never by the caller.
    #[serde(skip)]
    pub tenants: Option<Vec<String>>,
}

/// A page of a keyset-paginated list. `next_cursor` is opaque; pass it back
/// as `cursor` for the next page; `None` means this was the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The id a `next_cursor` stands for (the last of its page), if `cursor`
/// is one: digits only, no sign, within range.
pub fn cursor_id(cursor: &str) -> Option<i64> {
    if cursor.is_empty() || !cursor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    cursor.parse().ok()
}

/// Figures for the operator snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Overview {
    pub jobs_by_state: BTreeMap<String, i64>,
    pub nodes_by_status: BTreeMap<String, i64>,
    pub active_leases: i64,
    /// Active leases whose expiry has passed (the sweep has not recovered them yet).
    pub stale_leases: i64,
    pub dead_letter_open: i64,
    pub last_event_seq: i64,
}

/// The error body of every non-2xx API answer (SPEC §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    /// Always present: `{}` when there is nothing more to say.
    #[serde(default, serialize_with = "details_or_empty")]
    pub details: Option<Value>,
}

fn details_or_empty<S: serde::Serializer>(
    details: &Option<Value>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match details {
        Some(d) => d.serialize(s),
        None => serde_json::Map::new().serialize(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_display_serde_and_from_str() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), *s);
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for s in TaskState::ALL {
            assert_eq!(s.to_string().parse::<TaskState>().unwrap(), *s);
        }
        assert!("bogus".parse::<AttemptState>().is_err());
    }

    #[test]
    fn new_job_fills_defaults() {
        let job: NewJob = serde_json::from_value(serde_json::json!({
            "name": "n", "tasks": [{"key": "a", "kind": "noop"}]
        }))
        .unwrap();
        assert_eq!(job.tenant, "default");
        assert_eq!(job.queue, "default");
        assert_eq!(job.tasks[0].payload, Value::Null);
    }
}
