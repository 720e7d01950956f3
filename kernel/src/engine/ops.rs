//! Operator actions: cancel and retry jobs, replay and resolve dead-letter
//! entries, pause and resume queues, register and drain nodes, set quotas;
//! and the attempt log a worker appends to.
//!
//! Each action is one transaction of guarded transitions with their events.
//! A selection that matches nothing is an answer (`not_found`, `conflict`, or
//! an empty batch outcome), never a silent success.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde_json::json;

use crate::error::{KernelError, Result};
use crate::model::{
    event_type, BatchOutcome, DeadLetterEntry, DeadLetterFilter, DeadLetterSelection,
    DeadLetterStatus, JobDetail, JobState, LeaseProof, LogStream, NewLogLine, NewNode, Node,
    NodeStatus, Queue, Quota, QuotaLimits, QuotaScope, ReplayOptions, TaskState,
};
use crate::sql::{args, Arg};

use super::dag::{check_identifier, check_no_nul, without_nul};
use super::quotas::{QuotaRow, QUOTA_COLUMNS};
use super::{job_text, Kernel, Work};

/// Largest batch of dead-letter entries one call replays or resolves.
pub const MAX_DEAD_LETTER_BATCH: usize = 10_000;
/// The newest attempts a new starts-per-minute limit looks through for the
/// starts of the last minute (read backwards by id, so at no cost of the
/// attempts kept).
const RECENT_STARTS: i64 = 100_000;
/// Largest number of log lines one append takes.
pub const MAX_LOG_LINES: usize = 10_000;
/// Longest stored log line, in bytes.
pub const MAX_LOG_LINE_BYTES: usize = 16_384;

impl Kernel {
    /// Cancels a job: its unfinished tasks become cancelled, their active
    /// attempts too (the workers learn it on their next heartbeat). Rows
    /// are taken as the console's bulk cancel takes them (see `cancel_in`),
    /// so a cancel and a report at the same moment wait for each other
    /// instead of deadlocking.
    pub async fn cancel_job(&self, job_id: i64) -> Result<JobDetail> {
        super::again_on_deadlock("cancel", || self.cancel_job_once(job_id)).await
    }

    async fn cancel_job_once(&self, job_id: i64) -> Result<JobDetail> {
        let mut w = self.begin().await?;
        let already = |state: JobState| KernelError::Conflict {
            message: format!(
                "job {job_id} is already {state}; only unfinished jobs can be cancelled"
            ),
            details: Some(json!({ "state": state })),
        };
        let job =
            w.tx.fetch_optional(
                "SELECT state, tenant FROM jobs WHERE id = $1",
                args![job_id],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("job", job_id))?;
        let from: JobState = job.parse("state")?;
        if from.is_terminal() {
            return Err(already(from));
        }
        let target = [(job_id, from, job.text("tenant")?)];
        if self.cancel_in(&mut w, &target).await?.is_empty() {
            // It finished before its lock was taken (and so had nothing
            // left to cancel).
            let now =
                w.tx.fetch_one("SELECT state FROM jobs WHERE id = $1", args![job_id])
                    .await?;
            return Err(already(now.parse("state")?));
        }
        self.finish(w).await?;
        self.get_job(job_id).await
    }

    /// Retries a failed job: its failed tasks get a fresh attempt budget and
    /// are ready again, its skipped tasks wait for them again; their open
    /// dead-letter entries are marked replayed.
    pub async fn retry_job(&self, job_id: i64) -> Result<JobDetail> {
        let mut w = self.begin().await?;
        let job =
            w.tx.fetch_optional(
                "SELECT state, tenant FROM jobs WHERE id = $1 @lock",
                args![job_id],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("job", job_id))?;
        let state: JobState = job.parse("state")?;
        if state != JobState::Failed {
            return Err(KernelError::Conflict {
                message: format!("job {job_id} is {state}; only failed jobs can be retried"),
                details: Some(json!({ "state": state })),
            });
        }
        let tenant = job.text("tenant")?;
        self.retry_failed_tasks_of(&mut w, job_id, &tenant).await?;
        self.derive_jobs(&mut w, &[job_id]).await?;
        self.finish(w).await?;
        self.get_job(job_id).await
    }

    /// Retries one failed (dead-lettered) task of a job, found by its key:
    /// it gets a fresh attempt budget and is ready again, the tasks it
    /// skipped downstream wait for it again, and its open dead-letter entry
    /// is marked replayed. The job need not have failed (another branch may
    /// still run); a cancelled job's tasks are not retried.
    pub async fn retry_task(&self, job_id: i64, task_key: &str) -> Result<JobDetail> {
        let mut w = self.begin().await?;
        let job =
            w.tx.fetch_optional(
                "SELECT state, tenant FROM jobs WHERE id = $1 @lock",
                args![job_id],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("job", job_id))?;
        let state: JobState = job.parse("state")?;
        if state == JobState::Cancelled {
            return Err(KernelError::Conflict {
                message: format!("job {job_id} is cancelled; its tasks are not retried"),
                details: Some(json!({ "state": state })),
            });
        }
        let tenant = job.text("tenant")?;
        let task =
            w.tx.fetch_optional(
                "SELECT id, state FROM tasks WHERE job_id = $1 AND key = $2",
                args![job_id, task_key],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("task", task_key))?;
        let task_id = task.i64("id")?;
        let task_state: TaskState = task.parse("state")?;
        if task_state != TaskState::Failed {
            return Err(KernelError::Conflict {
                message: format!(
                    "task {task_key:?} is {task_state}; only failed tasks can be retried"
                ),
                details: Some(json!({ "state": task_state })),
            });
        }
        self.retry_tasks(&mut w, job_id, &tenant, &[task_id], "task retried")
            .await?;
        self.derive_jobs(&mut w, &[job_id]).await?;
        self.finish(w).await?;
        self.get_job(job_id).await
    }

    /// Retries every failed task of a job (`retry_tasks` with the reason
    /// "job retried"); `false` when it has none. The caller re-derives the
    /// job's state.
    pub(crate) async fn retry_failed_tasks_of(
        &self,
        w: &mut Work,
        job_id: i64,
        tenant: &str,
    ) -> Result<bool> {
        let graph = self.load_graph(w, job_id).await?;
        let failed: Vec<i64> = graph
            .state
            .iter()
            .filter(|(_, s)| **s == TaskState::Failed)
            .map(|(id, _)| *id)
            .collect();
        if failed.is_empty() {
            return Ok(false);
        }
        self.retry_tasks(w, job_id, tenant, &failed, "job retried")
            .await?;
        Ok(true)
    }

    /// Retries `failed` tasks of a job: their open dead-letter entries are
    /// marked replayed with `reason`, then they are revived
    /// ([`Kernel::revive_tasks`]). The caller re-derives the job's state.
    pub(crate) async fn retry_tasks(
        &self,
        w: &mut Work,
        job_id: i64,
        tenant: &str,
        failed: &[i64],
        reason: &str,
    ) -> Result<()> {
        let open =
            w.tx.fetch_all(
                "SELECT id FROM dead_letters WHERE task_id @in($1) AND status = 'open'",
                args![failed],
            )
            .await?;
        for r in &open {
            self.close_dead_letter(w, r.i64("id")?, DeadLetterStatus::Replayed, Some(reason))
                .await?;
        }
        self.revive_tasks(w, job_id, tenant, failed, None, None)
            .await
    }

    /// Puts failed tasks back to ready with a fresh budget (optionally in
    /// another queue, with another payload) and revives the skipped tasks
    /// downstream whose dependencies can all run again.
    pub(crate) async fn revive_tasks(
        &self,
        w: &mut Work,
        job_id: i64,
        tenant: &str,
        failed: &[i64],
        queue: Option<&str>,
        payload: Option<&str>,
    ) -> Result<()> {
        if failed.is_empty() {
            return Ok(());
        }
        let now = w.now;
        let graph = self.load_graph(w, job_id).await?;
        let n = w
            .tx
            .execute(
                "UPDATE tasks SET state = 'ready', attempts_used = 0, not_before = 0, finished_at = NULL, \
                     updated_at = $1, queue = COALESCE($2, queue), payload = COALESCE($3, payload) \
                 WHERE id @in($4) AND state = 'failed'",
                args![now, queue, payload, failed.to_vec()],
            )
            .await?;
        if n as usize != failed.len() {
            return Err(KernelError::conflict(
                "a task to replay is no longer failed; try again",
            ));
        }
        if payload.is_some() {
            job_text::refresh(&mut w.tx, job_id).await?;
        }
        for &t in failed {
            w.event(event_type::TASK_STATE_CHANGED, Some(tenant))
                .job(job_id)
                .task(t)
                .data(json!({ "from": "failed", "to": "ready", "queue": queue }));
        }
        let skipped: Vec<i64> = graph
            .downstream_of(failed)
            .into_iter()
            .filter(|t| graph.state.get(t) == Some(&TaskState::Skipped))
            .collect();
        for (task, remaining) in graph.revivable(failed, &skipped) {
            let n = w
                .tx
                .execute(
                    "UPDATE tasks SET state = 'pending', deps_remaining = $1, finished_at = NULL, updated_at = $2 \
                     WHERE id = $3 AND state = 'skipped'",
                    args![remaining, now, task],
                )
                .await?;
            if n == 1 {
                w.event(event_type::TASK_STATE_CHANGED, Some(tenant))
                    .job(job_id)
                    .task(task)
                    .data(json!({ "from": "skipped", "to": "pending" }));
            }
        }
        w.wake_claimers = true;
        Ok(())
    }

    pub(crate) async fn close_dead_letter(
        &self,
        w: &mut Work,
        id: i64,
        to: DeadLetterStatus,
        reason: Option<&str>,
    ) -> Result<bool> {
        let row = w
            .tx
            .fetch_optional(
                "UPDATE dead_letters SET status = $1, reason = COALESCE($2, reason), updated_at = $3 \
                 WHERE id = $4 AND status = 'open' RETURNING job_id, task_id, tenant, queue",
                args![to.as_str(), reason, w.now, id],
            )
            .await?;
        let Some(row) = row else { return Ok(false) };
        let tenant = row.text("tenant")?;
        let queue = row.text("queue")?;
        let kind = match to {
            DeadLetterStatus::Resolved => event_type::DLQ_RESOLVED,
            _ => event_type::DLQ_REPLAYED,
        };
        w.event(kind, Some(&tenant))
            .job(row.i64("job_id")?)
            .task(row.i64("task_id")?)
            .dead_letter(id)
            .queue(&queue)
            .data(json!({ "reason": reason }));
        Ok(true)
    }

    /// Replays one open dead-letter entry: its task is ready again with a
    /// fresh attempt budget, optionally in another queue and with an edited
    /// payload; skipped downstream tasks wait for it again.
    pub async fn replay_dead_letter(
        &self,
        id: i64,
        opts: &ReplayOptions,
    ) -> Result<DeadLetterEntry> {
        let payload = self.check_replay_options(opts)?;
        let mut w = self.begin().await?;
        match self
            .replay_one(&mut w, id, opts, payload.as_deref())
            .await?
        {
            Replay::Done => {}
            Replay::NotOpen => return Err(self.not_open(id)),
            Replay::JobCancelled(job_id) => {
                return Err(KernelError::Conflict {
                    message: format!(
                        "dead-letter entry {id} belongs to job {job_id}, which is cancelled; \
                         its tasks are not run again (resolve the entry instead)"
                    ),
                    details: Some(json!({ "id": id, "job_id": job_id, "state": "cancelled" })),
                })
            }
        }
        self.finish(w).await?;
        self.get_dead_letter(id).await
    }

    fn check_replay_options(&self, opts: &ReplayOptions) -> Result<Option<String>> {
        if let Some(q) = &opts.queue {
            check_identifier("queue", q)?;
        }
        let payload = opts.payload.as_ref().map(|p| p.to_string());
        if let Some(p) = &payload {
            if p.len() > self.config().max_payload_bytes {
                return Err(KernelError::PayloadTooLarge {
                    key: "(replay payload)".into(),
                    size: p.len(),
                    limit: self.config().max_payload_bytes,
                });
            }
        }
        Ok(payload)
    }

    fn not_open(&self, id: i64) -> KernelError {
        KernelError::Conflict {
            message: format!(
                "dead-letter entry {id} is not open (already replayed or resolved, or unknown)"
            ),
            details: Some(json!({ "id": id })),
        }
    }

    /// Replays entry `id` if it is open and its job was not cancelled.
    async fn replay_one(
        &self,
        w: &mut Work,
        id: i64,
        opts: &ReplayOptions,
        payload: Option<&str>,
    ) -> Result<Replay> {
        let Some(entry) =
            w.tx.fetch_optional(
                "SELECT job_id FROM dead_letters WHERE id = $1 AND status = 'open'",
                args![id],
            )
            .await?
        else {
            return Ok(Replay::NotOpen);
        };
        // The job first, as everything that ends one of its tasks locks it
        // (`settle_lost_attempt`, the completions): the states of its tasks
        // read below, which decide what each revived task waits for, then
        // stay true until this commits. (Read unlocked, a sibling's success
        // committed meanwhile would never be counted, and a task downstream
        // of both would wait in `pending` for good.)
        let job_id = entry.i64("job_id")?;
        let state: JobState =
            w.tx.fetch_one("SELECT state FROM jobs WHERE id = $1 @lock", args![job_id])
                .await?
                .parse("state")?;
        if state == JobState::Cancelled {
            // Its tasks would run in a job that stays cancelled (as
            // `retry_task` refuses them).
            return Ok(Replay::JobCancelled(job_id));
        }
        let Some(entry) =
            w.tx.fetch_optional(
                "SELECT task_id, tenant FROM dead_letters WHERE id = $1 AND status = 'open' @lock",
                args![id],
            )
            .await?
        else {
            return Ok(Replay::NotOpen);
        };
        let task_id = entry.i64("task_id")?;
        let tenant = entry.text("tenant")?;
        if let Some(q) = &opts.queue {
            w.tx.execute(
                "INSERT INTO queues (name, paused, created_at) VALUES ($1, false, $2) ON CONFLICT (name) DO NOTHING",
                args![q.as_str(), w.now],
            )
            .await?;
        }
        let note = match (&opts.queue, payload.is_some()) {
            (Some(q), true) => format!("replayed to queue {q} with an edited payload"),
            (Some(q), false) => format!("replayed to queue {q}"),
            (None, true) => "replayed with an edited payload".to_string(),
            (None, false) => "replayed".to_string(),
        };
        if !self
            .close_dead_letter(w, id, DeadLetterStatus::Replayed, Some(&note))
            .await?
        {
            return Ok(Replay::NotOpen);
        }
        self.revive_tasks(
            w,
            job_id,
            &tenant,
            &[task_id],
            opts.queue.as_deref(),
            payload,
        )
        .await?;
        self.derive_jobs(w, &[job_id]).await?;
        Ok(Replay::Done)
    }

    /// Closes one open entry with a reason; its task stays failed.
    pub async fn resolve_dead_letter(&self, id: i64, reason: &str) -> Result<DeadLetterEntry> {
        let reason = check_reason(reason)?;
        let mut w = self.begin().await?;
        if !self
            .close_dead_letter(&mut w, id, DeadLetterStatus::Resolved, Some(reason))
            .await?
        {
            return Err(self.not_open(id));
        }
        self.finish(w).await?;
        self.get_dead_letter(id).await
    }

    /// Replays every open entry of the selection in one transaction. With
    /// `dry_run`, changes nothing and counts what would be replayed.
    pub async fn replay_dead_letters(
        &self,
        selection: &DeadLetterSelection,
        opts: &ReplayOptions,
        dry_run: bool,
    ) -> Result<BatchOutcome> {
        let payload = self.check_replay_options(opts)?;
        let action = BatchAction::Replay {
            opts,
            payload: payload.as_deref(),
        };
        self.batch_dead_letters(selection, action, dry_run).await
    }

    /// Resolves every open entry of the selection with `reason`.
    pub async fn resolve_dead_letters(
        &self,
        selection: &DeadLetterSelection,
        reason: &str,
        dry_run: bool,
    ) -> Result<BatchOutcome> {
        let reason = check_reason(reason)?;
        self.batch_dead_letters(selection, BatchAction::Resolve { reason }, dry_run)
            .await
    }

    /// Applies `action` to every open entry of the selection, in one
    /// transaction; an entry that is no longer open by then is skipped. A
    /// dry run only reads (on SQLite it does not take the writer).
    async fn batch_dead_letters(
        &self,
        selection: &DeadLetterSelection,
        action: BatchAction<'_>,
        dry_run: bool,
    ) -> Result<BatchOutcome> {
        let (sql, args) = selection_query(selection)?;
        if dry_run {
            let rows = self.db().read_all(&sql, args).await?;
            let (open, skipped) = split_selection(selection, &rows)?;
            return Ok(BatchOutcome {
                dry_run,
                matched: open.len() as i64,
                changed: Vec::new(),
                skipped,
            });
        }
        let mut w = self.begin().await?;
        let rows = w.tx.fetch_all(&sql, args).await?;
        let (open, skipped) = split_selection(selection, &rows)?;
        let mut outcome = BatchOutcome {
            dry_run,
            matched: open.len() as i64,
            changed: Vec::new(),
            skipped,
        };
        if let BatchAction::Replay { .. } = action {
            // Their jobs in id order before any entry (`replay_one` locks
            // each again), so two batches sharing jobs wait for each other
            // instead of deadlocking.
            let jobs: BTreeSet<i64> = rows
                .iter()
                .map(|r| r.i64("job_id"))
                .collect::<Result<_, _>>()?;
            if !jobs.is_empty() {
                w.tx.fetch_all(
                    "SELECT id FROM jobs WHERE id @in($1) ORDER BY id @lock",
                    args![jobs.into_iter().collect::<Vec<_>>()],
                )
                .await?;
            }
        }
        for id in open {
            let applied = match action {
                BatchAction::Replay { opts, payload } => {
                    self.replay_one(&mut w, id, opts, payload).await? == Replay::Done
                }
                BatchAction::Resolve { reason } => {
                    self.close_dead_letter(&mut w, id, DeadLetterStatus::Resolved, Some(reason))
                        .await?
                }
            };
            if applied {
                outcome.changed.push(id);
            } else {
                outcome.skipped.push(id);
            }
        }
        self.finish(w).await?;
        Ok(outcome)
    }

    /// Pauses a queue: its tasks are not leased (running ones finish); its
    /// jobs that have not started are `blocked`. Resuming re-derives its
    /// blocked jobs (one may still wait on an exhausted quota).
    pub async fn pause_queue(&self, name: &str) -> Result<Queue> {
        self.set_paused(name, true).await
    }

    pub async fn resume_queue(&self, name: &str) -> Result<Queue> {
        self.set_paused(name, false).await
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<Queue> {
        check_identifier("queue", name)?;
        let mut w = self.begin().await?;
        let now = w.now;
        if paused {
            // A queue may be paused before any job uses it.
            w.tx.execute(
                "INSERT INTO queues (name, paused, created_at) VALUES ($1, false, $2) ON CONFLICT (name) DO NOTHING",
                args![name, now],
            )
            .await?;
        } else if w
            .tx
            .fetch_optional("SELECT name FROM queues WHERE name = $1", args![name])
            .await?
            .is_none()
        {
            // Resuming one that does not exist (a typo) would create it.
            return Err(KernelError::not_found("queue", name));
        }
        let changed =
            w.tx.execute(
                "UPDATE queues SET paused = $1, paused_at = $2 WHERE name = $3 AND paused = $4",
                args![paused, paused.then_some(now), name, !paused],
            )
            .await?;
        if changed == 1 {
            w.event(
                if paused {
                    event_type::QUEUE_PAUSED
                } else {
                    event_type::QUEUE_RESUMED
                },
                None,
            )
            .queue(name)
            .data(json!({ "paused": paused }));
            if paused {
                // Jobs that wait on it now: queued ones, and running ones
                // with no task leased (between two tasks, or a retry).
                self.block_paused_jobs(&mut w, name).await?;
            } else {
                // A job may still be held by an exhausted quota: derive.
                self.rederive_blocked_jobs(&mut w, QuotaScope::Queue, name)
                    .await?;
            }
            w.wake_claimers = !paused;
        }
        self.finish(w).await?;
        self.get_queue(name, None).await
    }

    /// Registers a worker node (or re-registers one by name: its kinds,
    /// capacity, labels and scopes are replaced and it is online again).
    pub async fn register_node(&self, node: &NewNode) -> Result<Node> {
        check_identifier("node name", &node.name)?;
        if !(1..=10_000).contains(&node.capacity) {
            return Err(KernelError::validation(
                "capacity must be between 1 and 10000",
            ));
        }
        let mut w = self.begin().await?;
        let now = w.now;
        let id = w
            .tx
            .fetch_one(
                "INSERT INTO nodes (name, kinds, capacity, labels, file_scopes, status, registered_at, last_heartbeat_at) \
                 VALUES ($1, $2, $3, $4, $5, 'online', $6, $6) \
                 ON CONFLICT (name) DO UPDATE SET kinds = excluded.kinds, capacity = excluded.capacity, \
                     labels = excluded.labels, file_scopes = excluded.file_scopes, \
                     status = CASE WHEN nodes.status = 'draining' THEN 'draining' ELSE 'online' END, \
                     last_heartbeat_at = excluded.last_heartbeat_at \
                 RETURNING id, status",
                args![
                    node.name.as_str(),
                    serde_json::to_string(&node.kinds).expect("kinds"),
                    node.capacity,
                    serde_json::to_string(&node.labels).expect("labels"),
                    serde_json::to_string(&node.file_scopes).expect("scopes"),
                    now
                ],
            )
            .await?;
        // A drained node stays drained when its worker comes back: only
        // `undrain_node` ends a drain.
        let status: NodeStatus = id.parse("status")?;
        let id = id.i64("id")?;
        let kind = if status == NodeStatus::Draining {
            event_type::NODE_DRAINING
        } else {
            event_type::NODE_ONLINE
        };
        w.event(kind, None).node(Some(id)).data(json!({
            "name": node.name, "kinds": node.kinds, "capacity": node.capacity, "status": status,
        }));
        self.finish(w).await?;
        self.get_node(id).await
    }

    /// Drains a node: no new leases; its running leases finish. The drain
    /// lasts until `undrain_node`, through a restart of the node's worker
    /// (it registers again) and through a spell without heartbeats.
    pub async fn drain_node(&self, node_id: i64) -> Result<Node> {
        self.set_node_status(
            node_id,
            NodeStatus::Draining,
            &[NodeStatus::Online, NodeStatus::Offline],
        )
        .await
    }

    /// A node's worker signs off as it stops: an online node is offline at
    /// once, instead of after a minute without heartbeats (a draining one
    /// stays draining). Its next claim or registration brings it back.
    pub async fn sign_off_node(&self, node_id: i64) -> Result<Node> {
        let mut w = self.begin().await?;
        let changed =
            w.tx.execute(
                "UPDATE nodes SET status = 'offline' WHERE id = $1 AND status = 'online'",
                args![node_id],
            )
            .await?;
        if changed == 1 {
            w.event(event_type::NODE_OFFLINE, None)
                .node(Some(node_id))
                .data(json!({ "reason": "signed off" }));
        }
        self.finish(w).await?;
        self.get_node(node_id).await
    }

    /// Ends a drain: the node gets leases again.
    pub async fn undrain_node(&self, node_id: i64) -> Result<Node> {
        self.set_node_status(node_id, NodeStatus::Online, &[NodeStatus::Draining])
            .await
    }

    async fn set_node_status(
        &self,
        node_id: i64,
        to: NodeStatus,
        from: &[NodeStatus],
    ) -> Result<Node> {
        let mut w = self.begin().await?;
        let current: NodeStatus =
            w.tx.fetch_optional(
                "SELECT status FROM nodes WHERE id = $1 @lock",
                args![node_id],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("node", node_id))?
            .parse("status")?;
        if current != to {
            if !from.contains(&current) {
                return Err(KernelError::conflict(format!(
                    "node {node_id} is {current}; cannot make it {to}"
                )));
            }
            w.tx.execute(
                "UPDATE nodes SET status = $1 WHERE id = $2 AND status = $3",
                args![to.as_str(), node_id, current.as_str()],
            )
            .await?;
            let kind = match to {
                NodeStatus::Draining => event_type::NODE_DRAINING,
                NodeStatus::Online => event_type::NODE_ONLINE,
                NodeStatus::Offline => event_type::NODE_OFFLINE,
            };
            w.event(kind, None)
                .node(Some(node_id))
                .data(json!({ "from": current, "to": to }));
        }
        self.finish(w).await?;
        self.get_node(node_id).await
    }

    /// Sets (or, with both limits `None`, removes) the quota of a tenant or
    /// a queue.
    pub async fn set_quota(
        &self,
        scope: QuotaScope,
        name: &str,
        limits: &QuotaLimits,
    ) -> Result<Option<Quota>> {
        check_identifier(scope.as_str(), name)?;
        for v in [limits.max_concurrent, limits.max_starts_per_minute]
            .into_iter()
            .flatten()
        {
            if v < 0 {
                return Err(KernelError::validation("quota limits must be 0 or more"));
            }
        }
        let mut w = self.begin().await?;
        let now = w.now;
        if limits.max_concurrent.is_none() && limits.max_starts_per_minute.is_none() {
            let removed =
                w.tx.fetch_optional(
                    "DELETE FROM quotas WHERE scope = $1 AND name = $2 RETURNING exhausted",
                    args![scope.as_str(), name],
                )
                .await?;
            if let Some(r) = removed {
                if r.bool("exhausted")? {
                    // Nothing limits its jobs any more.
                    self.rederive_blocked_jobs(&mut w, scope, name).await?;
                }
            }
        } else {
            let counted_before =
                w.tx.fetch_optional(
                    "SELECT max_starts_per_minute FROM quotas WHERE scope = $1 AND name = $2",
                    args![scope.as_str(), name],
                )
                .await?
                .map(|r| r.opt_i64("max_starts_per_minute"))
                .transpose()?
                .flatten()
                .is_some();
            if limits.max_starts_per_minute.is_some() && !counted_before {
                // Starts are counted only while a rate is limited: count
                // those of the last minute now, or a new limit of 3 a
                // minute would allow 3 more after 6 just made.
                w.tx.execute(
                    &format!(
                        "INSERT INTO quota_starts (scope, name, started_at) \
                         SELECT $1, $2, started_at FROM \
                           (SELECT started_at, {column} AS owner FROM attempts ORDER BY id DESC LIMIT $3) recent \
                         WHERE owner = $2 AND started_at >= $4",
                        column = super::quotas::scope_column(scope)
                    ),
                    args![scope.as_str(), name, RECENT_STARTS, now - 60_000],
                )
                .await?;
            }
            w.tx.execute(
                "INSERT INTO quotas (scope, name, max_concurrent, max_starts_per_minute, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (scope, name) DO UPDATE SET max_concurrent = excluded.max_concurrent, \
                     max_starts_per_minute = excluded.max_starts_per_minute, updated_at = excluded.updated_at",
                args![scope.as_str(), name, limits.max_concurrent, limits.max_starts_per_minute, now],
            )
            .await?;
            // The new limits may leave no room (their jobs now wait) or room
            // again (its blocked jobs move on).
            let row =
                w.tx.fetch_one(
                    &format!(
                        "SELECT {QUOTA_COLUMNS} FROM quotas WHERE scope = $1 AND name = $2 @lock"
                    ),
                    args![scope.as_str(), name],
                )
                .await?;
            let q = QuotaRow::from_row(&row)?;
            let room = self.quota_room(&mut w, &q).await?;
            self.set_quota_mark(&mut w, &q, room == 0).await?;
        }
        let tenant = (scope == QuotaScope::Tenant).then_some(name);
        let ev = w.event(event_type::QUOTA_UPDATED, tenant);
        if scope == QuotaScope::Queue {
            ev.queue(name);
        }
        ev.data(json!({ "scope": scope, "name": name, "limits": limits }));
        // A raised limit may let waiting work start.
        w.wake_claimers = true;
        self.finish(w).await?;
        Ok(self
            .list_quotas()
            .await?
            .into_iter()
            .find(|q| q.scope == scope && q.name == name))
    }

    /// Appends lines to an attempt's log. The lease pair authorises the
    /// writer; lines are accepted until the attempt ends and a little after
    /// (a worker flushes its last lines right before completing).
    pub async fn append_attempt_log(
        &self,
        attempt_id: i64,
        proof: &LeaseProof,
        lines: &[NewLogLine],
    ) -> Result<usize> {
        if lines.len() > MAX_LOG_LINES {
            return Err(KernelError::validation(format!(
                "at most {MAX_LOG_LINES} log lines per append"
            )));
        }
        if lines.is_empty() {
            return Ok(0);
        }
        let mut w = self.begin().await?;
        // Locked: two appends to one attempt count its lines one after the
        // other.
        let a =
            w.tx.fetch_optional(
                "SELECT lease_token, epoch, log_lines FROM attempts WHERE id = $1 @lock",
                args![attempt_id],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("attempt", attempt_id))?;
        if a.text("lease_token")? != proof.lease_token || a.i64("epoch")? != proof.epoch {
            return Err(KernelError::StaleLease {
                attempt_id,
                reason: "the lease token or epoch does not match".into(),
            });
        }
        // Past the cap, one line says so and the rest are dropped (the
        // call still succeeds: the run goes on; `appended` says how many
        // were kept).
        let cap = self.config().max_log_lines_per_attempt;
        let held = a.i64("log_lines")?;
        let keep = lines.len().min((cap - held).max(0) as usize);
        let cut = (keep < lines.len() && held <= cap).then(|| NewLogLine {
            stream: LogStream::System,
            line: format!(
                "the log stops here: an attempt keeps at most {cap} lines, and later ones are dropped"
            ),
            ts: w.now,
        });
        let lines: Vec<&NewLogLine> = lines[..keep].iter().chain(cut.as_ref()).collect();
        if lines.is_empty() {
            self.finish(w).await?;
            return Ok(0);
        }
        #[derive(serde::Serialize)]
        struct LogRow<'a> {
            attempt_id: i64,
            stream: &'static str,
            line: Cow<'a, str>,
            ts: i64,
        }
        let rows: Vec<LogRow> = lines
            .iter()
            .map(|l| LogRow {
                attempt_id,
                stream: l.stream.as_str(),
                // One line is at most 16 KiB; a longer one is cut (at a
                // character boundary) rather than refusing the whole batch.
                line: without_nul(prefix_within(&l.line, MAX_LOG_LINE_BYTES)),
                ts: l.ts,
            })
            .collect();
        let sql = super::submit::recordset_insert_sql(
            w.tx.backend(),
            "attempt_logs",
            &[
                ("attempt_id", "BIGINT"),
                ("stream", "TEXT"),
                ("line", "TEXT"),
                ("ts", "BIGINT"),
            ],
            1,
        );
        w.tx.execute(
            &sql,
            vec![Arg::Text(serde_json::to_string(&rows).expect("rows"))],
        )
        .await?;
        w.tx.execute(
            "UPDATE attempts SET log_lines = $1 WHERE id = $2",
            args![held + lines.len() as i64, attempt_id],
        )
        .await?;
        self.finish(w).await?;
        Ok(keep)
    }
}

/// What `replay_one` did.
#[derive(Debug, PartialEq, Eq)]
enum Replay {
    Done,
    /// Already replayed or resolved, or unknown.
    NotOpen,
    /// Its job (this one) was cancelled: nothing of it runs again.
    JobCancelled(i64),
}

/// What a batch does to each open dead-letter entry it selects.
#[derive(Clone, Copy)]
enum BatchAction<'a> {
    Replay {
        opts: &'a ReplayOptions,
        payload: Option<&'a str>,
    },
    Resolve {
        reason: &'a str,
    },
}

/// The statement listing the open entries of a batch selection.
fn selection_query(selection: &DeadLetterSelection) -> Result<(String, Vec<Arg>)> {
    match selection {
        DeadLetterSelection::Ids(ids) => {
            if ids.len() > MAX_DEAD_LETTER_BATCH {
                return Err(KernelError::validation(format!(
                    "at most {MAX_DEAD_LETTER_BATCH} entries per batch"
                )));
            }
            Ok((
                "SELECT id, job_id FROM dead_letters WHERE id @in($1) AND status = 'open' ORDER BY id"
                    .to_string(),
                args![ids.clone()],
            ))
        }
        DeadLetterSelection::Filter(filter) => {
            if filter.status.is_some_and(|s| s != DeadLetterStatus::Open) {
                return Err(KernelError::validation(
                    "batch actions apply to open entries; drop the status filter",
                ));
            }
            let open = DeadLetterFilter {
                status: Some(DeadLetterStatus::Open),
                ..filter.clone()
            };
            let (cond, args) = dead_letter_conditions(&open);
            Ok((
                format!(
                    "SELECT id, job_id FROM dead_letters WHERE {cond} ORDER BY id LIMIT {}",
                    MAX_DEAD_LETTER_BATCH + 1
                ),
                args,
            ))
        }
    }
}

/// The open entries `rows` (from [`selection_query`]) name, and the ids of
/// the selection that are not open (unknown, replayed or resolved).
fn split_selection(
    selection: &DeadLetterSelection,
    rows: &[crate::sql::Row],
) -> Result<(Vec<i64>, Vec<i64>)> {
    let open: BTreeSet<i64> = rows.iter().map(|r| r.i64("id")).collect::<Result<_, _>>()?;
    match selection {
        DeadLetterSelection::Ids(ids) => {
            let skipped = ids.iter().copied().filter(|i| !open.contains(i)).collect();
            Ok((open.into_iter().collect(), skipped))
        }
        DeadLetterSelection::Filter(_) => {
            if open.len() > MAX_DEAD_LETTER_BATCH {
                return Err(KernelError::validation(format!(
                    "the filter matches more than {MAX_DEAD_LETTER_BATCH} open entries; narrow it"
                )));
            }
            Ok((open.into_iter().collect(), Vec::new()))
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn prefix_within(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn check_reason(reason: &str) -> Result<&str> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(KernelError::validation(
            "a reason is required to resolve an entry",
        ));
    }
    if reason.len() > 2_000 {
        return Err(KernelError::validation(
            "the reason is longer than 2000 characters",
        ));
    }
    check_no_nul("the reason", reason)?;
    Ok(reason)
}

/// SQL conditions and arguments of a dead-letter filter (shared with lists).
pub(crate) fn dead_letter_conditions(f: &DeadLetterFilter) -> (String, Vec<Arg>) {
    let mut cond = vec!["1 = 1".to_string()];
    let mut args: Vec<Arg> = Vec::new();
    let mut push = |sql: &str, arg: Arg, args: &mut Vec<Arg>| {
        args.push(arg);
        cond.push(sql.replace("$?", &format!("${}", args.len())));
    };
    if let Some(s) = f.status {
        push("status = $?", s.as_str().into(), &mut args);
    }
    if let Some(q) = &f.queue {
        push("queue = $?", q.into(), &mut args);
    }
    if let Some(t) = &f.tenant {
        push("tenant = $?", t.into(), &mut args);
    }
    if let Some(tenants) = &f.tenants {
        push("tenant @in($?)", tenants.clone().into(), &mut args);
    }
    if let Some(fp) = &f.fingerprint {
        push("fingerprint = $?", fp.into(), &mut args);
    }
    if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let pattern = format!("%{}%", escape_like(&q.to_lowercase()));
        push(
            "(LOWER(error) LIKE $? ESCAPE '\\' OR LOWER(task_key) LIKE $? ESCAPE '\\' OR LOWER(job_name) LIKE $? ESCAPE '\\')",
            pattern.into(),
            &mut args,
        );
    }
    (cond.join(" AND "), args)
}

pub(crate) fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
