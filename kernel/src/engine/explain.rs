//! "Why isn't this running?": for every task of a job that is neither
//! running nor finished, what holds it, read from the kernel's own state.
//!
//! A pending task is held by its unmet dependencies. A ready task is held
//! by whatever a claim would refuse it for now: a paused queue, a quota
//! without room (tenant or queue), no online node declaring its kind (or
//! only draining ones), or its backoff. A ready task with no reason is
//! simply waiting for a node to claim it.

use std::collections::HashMap;

use crate::error::Result;
use crate::model::{
    DependencyState, HoldReason, NodeRef, NodeStatus, QuotaScope, TaskHold, TaskState,
};
use crate::sql::args;

use super::Kernel;

impl Kernel {
    /// What holds each waiting (`pending` or `ready`) task of a job, in task
    /// order. Tasks that are leased or finished are not listed.
    pub async fn explain_job(&self, job_id: i64) -> Result<Vec<TaskHold>> {
        let detail = self.get_job(job_id).await?;
        let now = self.now();
        let waiting: Vec<_> = detail
            .tasks
            .iter()
            .filter(|t| matches!(t.state, TaskState::Pending | TaskState::Ready))
            .collect();
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let state_of: HashMap<&str, TaskState> = detail
            .tasks
            .iter()
            .map(|t| (t.key.as_str(), t.state))
            .collect();
        let ready: Vec<_> = waiting
            .iter()
            .filter(|t| t.state == TaskState::Ready)
            .collect();

        // What a claim would look at, read once for the ready tasks.
        let mut paused: HashMap<String, Option<i64>> = HashMap::new();
        let mut quotas = Vec::new();
        let mut nodes = Vec::new();
        if !ready.is_empty() {
            let queues = super::distinct(ready.iter().map(|t| t.queue.as_str()));
            for r in self
                .db()
                .read_all(
                    "SELECT name, paused_at FROM queues WHERE paused AND name @in($1)",
                    args![queues],
                )
                .await?
            {
                paused.insert(r.text("name")?, r.opt_i64("paused_at")?);
            }
            quotas = self.list_quotas().await?;
            nodes = self.list_nodes().await?;
        }

        let mut out = Vec::with_capacity(waiting.len());
        for task in waiting {
            let mut reasons = Vec::new();
            if task.state == TaskState::Pending {
                let dependencies: Vec<DependencyState> = task
                    .depends_on
                    .iter()
                    .filter_map(|key| {
                        let state = *state_of.get(key.as_str())?;
                        (state != TaskState::Succeeded).then(|| DependencyState {
                            key: key.clone(),
                            state,
                        })
                    })
                    .collect();
                if !dependencies.is_empty() {
                    reasons.push(HoldReason::UnmetDependencies { dependencies });
                }
            } else {
                if let Some(paused_at) = paused.get(&task.queue) {
                    reasons.push(HoldReason::QueuePaused {
                        queue: task.queue.clone(),
                        paused_at: *paused_at,
                    });
                }
                for q in &quotas {
                    let applies = match q.scope {
                        QuotaScope::Tenant => q.name == detail.job.tenant,
                        QuotaScope::Queue => q.name == task.queue,
                    };
                    let full = q
                        .limits
                        .max_concurrent
                        .is_some_and(|m| q.usage.concurrent >= m)
                        || q.limits
                            .max_starts_per_minute
                            .is_some_and(|m| q.usage.starts_last_minute >= m);
                    if applies && full {
                        reasons.push(HoldReason::QuotaExhausted {
                            scope: q.scope,
                            name: q.name.clone(),
                            max_concurrent: q.limits.max_concurrent,
                            concurrent: q.usage.concurrent,
                            max_starts_per_minute: q.limits.max_starts_per_minute,
                            starts_last_minute: q.usage.starts_last_minute,
                        });
                    }
                }
                let declaring: Vec<_> = nodes
                    .iter()
                    .filter(|n| n.kinds.contains(&task.kind))
                    .collect();
                if !declaring.iter().any(|n| n.status == NodeStatus::Online) {
                    let node_ref = |n: &&crate::model::Node| NodeRef {
                        id: n.id,
                        name: n.name.clone(),
                        status: n.status,
                    };
                    let draining: Vec<NodeRef> = declaring
                        .iter()
                        .filter(|n| n.status == NodeStatus::Draining)
                        .map(node_ref)
                        .collect();
                    if draining.is_empty() {
                        reasons.push(HoldReason::NoOnlineNode {
                            kind: task.kind.clone(),
                            nodes: declaring.iter().map(node_ref).collect(),
                        });
                    } else {
                        reasons.push(HoldReason::OnlyDrainingNodes {
                            kind: task.kind.clone(),
                            nodes: draining,
                        });
                    }
                }
                if task.not_before > now {
                    reasons.push(HoldReason::Backoff {
                        until: task.not_before,
                    });
                }
            }
            out.push(TaskHold {
                task_id: task.id,
                key: task.key.clone(),
                kind: task.kind.clone(),
                queue: task.queue.clone(),
                state: task.state,
                reasons,
            });
        }
        Ok(out)
    }
}
