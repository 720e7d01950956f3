//! "Why isn't this running?": what holds each waiting task of a job, as
//! the kernel sees it when asked (SPEC §2, issue #6).

use serde::{Deserialize, Serialize};

use super::{NodeStatus, QuotaScope, TaskState};

/// One task of a job that is neither running nor finished, and what holds
/// it. No reason means nothing in the kernel holds it: it waits for a node
/// to claim it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskHold {
    pub task_id: i64,
    pub key: String,
    pub kind: String,
    pub queue: String,
    pub state: TaskState,
    pub reasons: Vec<HoldReason>,
}

/// A dependency and the state it is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DependencyState {
    pub key: String,
    pub state: TaskState,
}

/// A node that declares a kind but cannot take a lease now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeRef {
    pub id: i64,
    pub name: String,
    pub status: NodeStatus,
}

/// One thing that holds a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum HoldReason {
    /// Dependencies that have not succeeded yet.
    UnmetDependencies { dependencies: Vec<DependencyState> },
    /// The task's queue is paused.
    QueuePaused {
        queue: String,
        paused_at: Option<i64>,
    },
    /// A quota of the job's tenant or of the task's queue has no room:
    /// usage is at or over a limit.
    QuotaExhausted {
        scope: QuotaScope,
        name: String,
        max_concurrent: Option<i64>,
        concurrent: i64,
        max_starts_per_minute: Option<i64>,
        starts_last_minute: i64,
    },
    /// No online node declares the task's kind. `nodes`: the offline nodes
    /// that do (possibly none).
    NoOnlineNode { kind: String, nodes: Vec<NodeRef> },
    /// Every node that declares the task's kind and is not offline is
    /// draining (takes no new leases).
    OnlyDrainingNodes { kind: String, nodes: Vec<NodeRef> },
    /// A failed attempt's backoff: not leased again before `until` (unix ms).
    Backoff { until: i64 },
}
