//! The lease protocol: claim, heartbeat, complete, fail, release, and the
//! sweep that recovers lapsed leases.
//!
//! A lease is the active attempt of a task: `(attempt id, token, epoch)` plus
//! an expiry. The epoch is the task's counter of leases; every re-lease gets
//! a higher one, so a worker holding an old pair can never act on the task
//! again (fencing). Every report is checked against the attempt row, locked
//! for the transaction, before anything is applied; a stale report is
//! recorded as a `lease.fenced` event and refused with `stale_lease`; when
//! it comes from the holder of a lease that expired and was superseded by a
//! newer one, its attempt becomes `fenced`.
//!
//! This is the hot path of the product: claims and completions work on
//! batches with a fixed number of set-based statements, whatever the batch
//! size. It must never execute tasks or know what a kind means.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::db::Backend;
use crate::error::{KernelError, Result};
use crate::model::{
    event_type, Attempt, AttemptState, ClaimRequest, Completion, FailOutcome, HeartbeatOutcome,
    JobState, Lease, LeaseProof, NodeStatus, QuotaScope, TaskFailure, TaskState,
};
use crate::sql::{args, Conns, Row};

use super::batch::Batcher;
use super::dag::{without_nul, JobGraph};
use super::quotas::{QuotaRow, QUOTA_COLUMNS};
use super::retention::new_id_sql;
use super::{by_node_and_kinds, error_fingerprint, ClaimTurn, Kernel, Work};

/// Most tasks one claim may lease.
pub const MAX_CLAIM: i64 = 1_000;

/// Merged claims: each asks for up to so many leases; `None` answers "look
/// alone" (the merged claim failed).
pub(super) type ClaimBatcher = Batcher<i64, Option<Vec<Lease>>>;

/// Merged completions, each call answered as [`Kernel::complete_many`] does.
pub(super) type CompletionBatcher = Batcher<Vec<Completion>, Result<Vec<Result<()>>>>;

/// Longest long-poll.
pub const MAX_WAIT_MS: i64 = 60_000;

/// The attempt columns a report is checked against.
const ATTEMPT_CHECK: &str =
    "SELECT id, task_id, job_id, tenant, state, lease_token, epoch, node_id \
                             FROM attempts WHERE id @in($1) @lock";

struct AttemptCheck {
    id: i64,
    task_id: i64,
    job_id: i64,
    tenant: String,
    state: AttemptState,
    token: String,
    epoch: i64,
    node_id: Option<i64>,
}

impl AttemptCheck {
    fn from_row(r: &Row) -> Result<AttemptCheck> {
        Ok(AttemptCheck {
            id: r.i64("id")?,
            task_id: r.i64("task_id")?,
            job_id: r.i64("job_id")?,
            tenant: r.text("tenant")?,
            state: r.parse("state")?,
            token: r.text("lease_token")?,
            epoch: r.i64("epoch")?,
            node_id: r.opt_i64("node_id")?,
        })
    }

    /// Whether `proof` may act on this attempt now. A wrong pair, or a right
    /// pair whose lease has already ended (expired, superseded), is stale.
    fn verify(&self, proof: &LeaseProof) -> Result<()> {
        if proof.lease_token != self.token || proof.epoch != self.epoch {
            return Err(KernelError::StaleLease {
                attempt_id: self.id,
                reason: "the lease token or epoch does not match".into(),
            });
        }
        match self.state {
            AttemptState::Active => Ok(()),
            AttemptState::Cancelled => Err(KernelError::TaskCancelled {
                attempt_id: self.id,
            }),
            other => Err(KernelError::StaleLease {
                attempt_id: self.id,
                reason: format!("the attempt is already {other}"),
            }),
        }
    }
}

/// A whole claim on Postgres in one statement (its own transaction: no
/// BEGIN or COMMIT round trip), for the common case: the node is online
/// and no quota exists. It picks, leases, opens the attempts, starts the
/// jobs, appends the events (numbered as `events::insert` numbers them,
/// with the data `lease_tasks` gives them in the transaction) and notes
/// the node's sign of life (at most once a second, skipped when a
/// concurrent claim holds the row). Otherwise it changes nothing, and the
/// first row's `status` and `quotas` send the claim to the transaction.
/// Always returns the node's row when the node exists, one per lease.
///
/// `$1` now, `$2` kinds, `$3` max, `$4` node, `$5` lease expiry, `$6` and
/// `$7` the two event types.
const PG_CLAIM: &str = "\
WITH node AS (SELECT status, (SELECT COUNT(*) FROM quotas) AS quotas FROM nodes WHERE id = $4), \
picked AS MATERIALIZED (SELECT id FROM tasks \
    WHERE state = 'ready' AND not_before <= $1 AND kind = ANY($2) \
      AND queue NOT IN (SELECT name FROM queues WHERE paused) \
      AND EXISTS (SELECT 1 FROM node WHERE status = 'online' AND quotas = 0) \
    ORDER BY priority DESC, id LIMIT $3 FOR UPDATE SKIP LOCKED), \
leased AS (UPDATE tasks t SET state = 'leased', epoch = t.epoch + 1, \
        attempts_used = t.attempts_used + 1, updated_at = $1 \
    FROM picked WHERE t.id = picked.id AND t.state || '' = 'ready' \
    RETURNING t.id, t.job_id, t.kind, t.payload, t.epoch, t.attempts_used, t.max_attempts, \
              t.timeout_s, t.tenant, t.queue, \
              nextval('attempts_id_seq') AS attempt_id, @token AS lease_token), \
granted AS (INSERT INTO attempts (id, task_id, job_id, tenant, queue, number, state, node_id, \
        lease_token, epoch, lease_expires_at, started_at) \
    SELECT attempt_id, id, job_id, tenant, queue, epoch, 'active', $4, lease_token, epoch, $5, $1 \
    FROM leased), \
started AS (UPDATE jobs j SET state = 'running', started_at = COALESCE(j.started_at, $1), updated_at = $1 \
    FROM (SELECT id, state AS old FROM jobs \
          WHERE id = ANY(ARRAY(SELECT job_id FROM leased)) AND state || '' IN ('queued', 'blocked') \
          FOR UPDATE) o \
    WHERE j.id = o.id AND j.state = o.old RETURNING j.id, j.tenant, o.old), \
new_events AS (\
    SELECT 0 AS part, id AS ord, $6::TEXT AS type, tenant, job_id, id AS task_id, attempt_id, \
           $4::BIGINT AS node_id, \
           json_build_object('epoch', epoch, 'kind', kind, 'lease_expires_at', $5::BIGINT, \
               'task_state', json_build_object('from', 'ready', 'to', 'leased'))::TEXT AS data \
    FROM leased \
    UNION ALL \
    SELECT 1, s.id, $7::TEXT, s.tenant, s.id, NULL, NULL, NULL, \
           json_build_object('from', s.old, 'to', 'running')::TEXT \
    FROM started s), \
logged AS (INSERT INTO events (seq, ts, type, tenant, job_id, task_id, attempt_id, node_id, data) \
    SELECT (pg_current_xact_id()::text::bigint << 20) + row_number() OVER (ORDER BY part, ord) - 1, \
           $1, type, tenant, job_id, task_id, attempt_id, node_id, data FROM new_events), \
beat AS (UPDATE nodes SET last_heartbeat_at = $1 WHERE id = \
    (SELECT id FROM nodes WHERE id = $4 AND status = 'online' AND last_heartbeat_at < $1 - 1000 \
     FOR UPDATE SKIP LOCKED)) \
SELECT n.status, n.quotas, l.id, l.job_id, l.kind, l.payload, l.epoch, l.attempts_used, \
       l.max_attempts, l.timeout_s, l.tenant, l.queue, l.attempt_id, l.lease_token \
FROM node n LEFT JOIN leased l ON true";

/// Candidate ready tasks, best first (priority, then age). The caller adds
/// the limit parameter and, on Postgres, the row locks.
const READY_CANDIDATES: &str = "SELECT id, tenant, queue, priority FROM tasks \
     WHERE state = 'ready' AND not_before <= $1 AND kind @in($2) \
       AND queue NOT IN (SELECT name FROM queues WHERE paused)";

impl Kernel {
    /// Leases up to `req.max` ready tasks of `req.kinds` to node `req.node_id`,
    /// waiting up to `req.wait_ms` for work when none is ready. Returns an
    /// empty list when the wait ends without work, or at once when the node
    /// is draining (after the wait, so a draining worker does not spin).
    pub async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Lease>> {
        if req.kinds.is_empty() {
            return Err(KernelError::validation(
                "a claim must name at least one task kind",
            ));
        }
        let max = req.max.clamp(1, MAX_CLAIM);
        let wait = Duration::from_millis(req.wait_ms.clamp(0, MAX_WAIT_MS) as u64);
        let deadline = tokio::time::Instant::now() + wait;
        // Of the claims of one node for the same kinds, one waits for the
        // wake-up and the others queue for its turn: a new task wakes one
        // claim instead of all (each would run a claim transaction, and all
        // but one would find nothing). A claim that returns with work hands
        // the turn on, and the next looks at once, so a burst still reaches
        // every claim.
        let turn = self.claim_turn(req.node_id, &req.kinds);
        let mut my_turn = None;
        loop {
            // Register for the wake-up before looking, so work that arrives
            // between the look and the wait is not missed.
            let notified = self.inner.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let leases = self.claim_once(req.node_id, &req.kinds, max).await?;
            let now = tokio::time::Instant::now();
            if !leases.is_empty() || now >= deadline {
                return Ok(leases);
            }
            let nap = (deadline - now).min(self.config().claim_poll_every);
            if my_turn.is_none() {
                match turn.clone().try_lock_owned() {
                    Ok(t) => my_turn = Some(t),
                    Err(_) => {
                        tokio::select! {
                            t = turn.clone().lock_owned() => my_turn = Some(t),
                            _ = tokio::time::sleep(nap) => {}
                        }
                        // The claim that had the turn returned: look again.
                        continue;
                    }
                }
            }
            let woken = async {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(nap) => {}
                }
            };
            // A submit may lease its new work to this claim in its own
            // writes (see [`super::handoff`]).
            let handed = self
                .inner
                .waiters
                .wait(req.node_id, &req.kinds, max)
                .until(woken)
                .await;
            if !handed.is_empty() {
                return Ok(handed);
            }
        }
    }

    /// The turn to wait for work, shared by the claims of `node_id` for
    /// the same kinds.
    fn claim_turn(&self, node_id: i64, kinds: &[String]) -> ClaimTurn {
        by_node_and_kinds(&self.inner.claim_turns, node_id, kinds, Default::default)
    }

    /// One look for work, merged with the concurrent looks of the same
    /// node for the same kinds (see [`super::batch`]): one claim of their
    /// total, its leases dealt out in order.
    async fn claim_once(&self, node_id: i64, kinds: &[String], max: i64) -> Result<Vec<Lease>> {
        let batcher = self.claim_batcher(node_id, kinds);
        let (answer, start) = batcher.push(max);
        if start {
            let (kernel, kinds) = (self.clone(), kinds.to_vec());
            tokio::spawn(async move { kernel.run_claims(batcher, node_id, kinds).await });
        }
        match answer.await {
            Ok(Some(leases)) => Ok(leases),
            // The merged claim failed: this one looks alone, for its own answer.
            Ok(None) | Err(_) => self.claim_now(node_id, kinds, max).await,
        }
    }

    /// The merger of the claims of `node_id` for `kinds`.
    fn claim_batcher(&self, node_id: i64, kinds: &[String]) -> Arc<ClaimBatcher> {
        by_node_and_kinds(&self.inner.claim_batches, node_id, kinds, || {
            Batcher::new(super::batch::runners(self.backend()))
        })
    }

    /// Runs merged claims until none wait. Leases whose claim went away
    /// meanwhile are given back at once, not left to expire.
    async fn run_claims(self, batcher: Arc<ClaimBatcher>, node_id: i64, kinds: Vec<String>) {
        while let Some(batch) = batcher.next_batch(MAX_CLAIM as usize, |max| *max as usize) {
            let total: i64 = batch.iter().map(|(max, _)| *max).sum();
            match self.claim_now(node_id, &kinds, total).await {
                Ok(leases) => {
                    let mut leases = leases.into_iter();
                    let mut unclaimed = Vec::new();
                    for (max, answer) in batch {
                        let mine: Vec<Lease> = leases.by_ref().take(max as usize).collect();
                        if let Err(Some(mine)) = answer.send(Some(mine)) {
                            unclaimed.extend(mine);
                        }
                    }
                    self.give_back(unclaimed).await;
                }
                Err(_) => {
                    for (_, answer) in batch {
                        let _ = answer.send(None);
                    }
                }
            }
        }
    }

    /// Gives back at once, instead of leaving them to expire, leases whose
    /// claim went away before it got them.
    pub(super) async fn give_back(&self, leases: Vec<Lease>) {
        for lease in leases {
            if let Err(e) = self.release(lease.attempt_id, &lease.proof()).await {
                tracing::warn!(attempt_id = lease.attempt_id, error = %e,
                    "a lease whose claim went away was not given back; it will expire");
            }
        }
    }

    async fn claim_now(&self, node_id: i64, kinds: &[String], max: i64) -> Result<Vec<Lease>> {
        if self.backend() == Backend::Postgres {
            if let Some(leases) = self.claim_in_one_statement(node_id, kinds, max).await? {
                return Ok(leases);
            }
        }
        let mut w = self.begin_on(Conns::Lease).await?;
        let now = w.now;
        // Claiming is a sign of life: an offline node comes back online.
        // The heartbeat time is written at most once a second, and skipped
        // when a concurrent claim of the same node holds the row (it is
        // writing the time already): claims never queue on that row lock,
        // which is held until the other claim commits.
        let node =
            w.tx.fetch_optional(
                "SELECT status, last_heartbeat_at, (SELECT COUNT(*) FROM quotas) AS quotas \
                 FROM nodes WHERE id = $1",
                args![node_id],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("node", node_id))?;
        let status: NodeStatus = node.parse("status")?;
        if status == NodeStatus::Offline || node.i64("last_heartbeat_at")? < now - 1_000 {
            w.tx.execute(
                "UPDATE nodes SET last_heartbeat_at = $1 WHERE id = \
                 (SELECT id FROM nodes WHERE id = $2 AND last_heartbeat_at < $1 @skip_locked)",
                args![now, node_id],
            )
            .await?;
        }
        match status {
            NodeStatus::Draining => {
                self.finish(w).await?;
                return Ok(Vec::new());
            }
            NodeStatus::Offline => {
                let n =
                    w.tx.execute(
                        "UPDATE nodes SET status = 'online' WHERE id = $1 AND status = 'offline'",
                        args![node_id],
                    )
                    .await?;
                if n == 1 {
                    w.event(event_type::NODE_ONLINE, None)
                        .node(Some(node_id))
                        .data(json!({ "from": "offline" }));
                }
            }
            NodeStatus::Online => {}
        }

        // Quotas are rare; when there are none the claim is one statement.
        // On Postgres the rows are locked so claims that must count usage
        // take turns (two claimers cannot both see the last free slot).
        let quotas = if node.i64("quotas")? == 0 {
            Vec::new()
        } else {
            w.tx.fetch_all(
                &format!("SELECT {QUOTA_COLUMNS} FROM quotas ORDER BY scope, name @lock"),
                args![],
            )
            .await?
            .iter()
            .map(QuotaRow::from_row)
            .collect::<Result<Vec<_>>>()?
        };
        let kinds: Vec<String> = kinds.to_vec();
        let leased = if quotas.is_empty() {
            let pick =
                format!("{READY_CANDIDATES} ORDER BY priority DESC, id LIMIT $3 @skip_locked");
            self.lease_tasks(&mut w, node_id, &pick, args![now, kinds, max])
                .await?
        } else {
            let (chosen, marks) = self
                .pick_within_quotas(&mut w, &quotas, &kinds, max)
                .await?;
            let leased = if chosen.is_empty() {
                Vec::new()
            } else {
                self.lease_tasks(
                    &mut w,
                    node_id,
                    "SELECT id FROM tasks WHERE id @in($2)",
                    args![now, chosen],
                )
                .await?
            };
            // After the leases, so the jobs that just started are not
            // counted as waiting.
            for (q, exhausted) in marks {
                self.set_quota_mark(&mut w, &q, exhausted).await?;
            }
            leased
        };
        self.finish(w).await?;
        Ok(leased)
    }

    /// [`PG_CLAIM`]: the leases, or `None` when the claim needs the
    /// transaction (the node is not online, or a quota exists).
    async fn claim_in_one_statement(
        &self,
        node_id: i64,
        kinds: &[String],
        max: i64,
    ) -> Result<Option<Vec<Lease>>> {
        let now = self.now();
        let expires = now + self.config().lease_ms;
        let rows = self
            .db()
            .fetch_all_alone(
                Conns::Lease,
                PG_CLAIM,
                args![
                    now,
                    kinds.to_vec(),
                    max,
                    node_id,
                    expires,
                    event_type::LEASE_GRANTED,
                    event_type::JOB_STATE_CHANGED
                ],
            )
            .await?;
        let Some(node) = rows.first() else {
            return Ok(None);
        };
        if node.parse::<NodeStatus>("status")? != NodeStatus::Online || node.i64("quotas")? != 0 {
            return Ok(None);
        }
        let mut leases = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(attempt_id) = r.opt_i64("attempt_id")? {
                leases.push(lease_from_row(
                    r,
                    attempt_id,
                    r.text("lease_token")?,
                    expires,
                )?);
            }
        }
        if !leases.is_empty() {
            self.announce_events();
        }
        Ok(Some(leases))
    }

    /// Chooses up to `max` ready tasks whose tenant and queue quotas have
    /// room. Returns them with the quotas whose `exhausted` mark this claim
    /// changes (applied by the caller once the leases exist).
    ///
    /// Candidates come in pages of the best remaining tasks, skipping
    /// tenants and queues already full. A page can hold tasks of a quota
    /// that fills up on the way; the next page starts after it without that
    /// quota, so tasks it holds never starve claimable ones behind them. Each
    /// further page follows a quota filling up: at most one page more than
    /// there are quotas.
    async fn pick_within_quotas(
        &self,
        w: &mut Work,
        quotas: &[QuotaRow],
        kinds: &[String],
        max: i64,
    ) -> Result<(Vec<i64>, Vec<(QuotaRow, bool)>)> {
        let now = w.now;
        // Remaining room per (scope, name); absent = unlimited.
        let mut room: HashMap<(QuotaScope, String), i64> = HashMap::with_capacity(quotas.len());
        // Quotas whose starts are counted in `quota_starts`.
        let mut counted: Vec<(QuotaScope, String)> = Vec::new();
        for q in quotas {
            let left = self.quota_room(w, q).await?;
            room.insert(q.key(), left);
            if q.max_starts_per_minute.is_some() {
                counted.push(q.key());
            }
        }
        let full = |room: &HashMap<(QuotaScope, String), i64>, scope: QuotaScope| -> Vec<String> {
            room.iter()
                .filter(|((s, _), left)| *s == scope && **left == 0)
                .map(|((_, n), _)| n.clone())
                .collect()
        };
        let mut chosen: Vec<i64> = Vec::new();
        let mut starts: Vec<(QuotaScope, String)> = Vec::new();
        // The (priority, id) of the last candidate seen: the next page
        // starts after it, in the claim order (priority desc, id asc).
        let mut after: Option<(i64, i64)> = None;
        loop {
            let want = max - chosen.len() as i64;
            let page = want * 4;
            let (cond, mut page_args) = match after {
                None => (String::new(), args![]),
                Some((p, id)) => (
                    " AND (priority < $6 OR (priority = $6 AND id > $7))".to_string(),
                    args![p, id],
                ),
            };
            let sql = format!(
                "{READY_CANDIDATES}{cond} AND NOT (tenant @in($3)) AND NOT (queue @in($4)) \
                 ORDER BY priority DESC, id LIMIT $5 @skip_locked"
            );
            let mut all = args![
                now,
                kinds.to_vec(),
                full(&room, QuotaScope::Tenant),
                full(&room, QuotaScope::Queue),
                page
            ];
            all.append(&mut page_args);
            let candidates = w.tx.fetch_all(&sql, all).await?;
            for c in &candidates {
                if chosen.len() as i64 >= max {
                    break;
                }
                after = Some((c.i64("priority")?, c.i64("id")?));
                let tenant = (QuotaScope::Tenant, c.text("tenant")?);
                let queue = (QuotaScope::Queue, c.text("queue")?);
                let fits = |k: &(QuotaScope, String)| room.get(k).map(|l| *l > 0).unwrap_or(true);
                if fits(&tenant) && fits(&queue) {
                    for k in [&tenant, &queue] {
                        if let Some(l) = room.get_mut(k) {
                            *l -= 1;
                        }
                    }
                    chosen.push(c.i64("id")?);
                    for k in [tenant, queue] {
                        if counted.contains(&k) {
                            starts.push(k);
                        }
                    }
                }
            }
            if chosen.len() as i64 >= max || (candidates.len() as i64) < page {
                break;
            }
        }
        for (scope, name) in starts {
            w.tx.execute(
                "INSERT INTO quota_starts (scope, name, started_at) VALUES ($1, $2, $3)",
                args![scope.as_str(), name.as_str(), now],
            )
            .await?;
        }
        let marks = quotas
            .iter()
            .filter_map(|q| {
                let exhausted = room.get(&q.key()).copied().unwrap_or(i64::MAX) == 0;
                (exhausted != q.exhausted).then(|| (q.clone(), exhausted))
            })
            .collect();
        Ok((chosen, marks))
    }

    /// Leases the ready tasks that `pick` (a `SELECT id …` with `args`, whose
    /// `$1` is the unit's time) selects: tasks → leased with a new epoch, one active attempt each,
    /// jobs → running, events.
    async fn lease_tasks(
        &self,
        w: &mut Work,
        node_id: i64,
        pick: &str,
        args: Vec<crate::sql::Arg>,
    ) -> Result<Vec<Lease>> {
        let now = w.now;
        let expires = now + self.config().lease_ms;
        let backend = w.tx.backend();
        debug_assert!(matches!(args.first(), Some(crate::sql::Arg::I64(t)) if *t == now));
        let tasks = match backend {
            // Postgres: the CTE takes the row locks once, before the update.
            Backend::Postgres => {
                w.tx.fetch_all(
                    &format!(
                        "WITH picked AS MATERIALIZED ({pick}) \
                         UPDATE tasks t SET state = 'leased', epoch = t.epoch + 1, \
                             attempts_used = t.attempts_used + 1, updated_at = $1 \
                         FROM picked WHERE t.id = picked.id AND t.state || '' = 'ready' \
                         RETURNING t.id, t.job_id, t.kind, t.payload, t.epoch, t.attempts_used, t.max_attempts, \
                                   t.timeout_s, t.tenant, t.queue"
                    ),
                    args,
                )
                .await?
            }
            Backend::Sqlite => {
                w.tx.fetch_all(
                    &format!(
                        "UPDATE tasks SET state = 'leased', epoch = epoch + 1, \
                             attempts_used = attempts_used + 1, updated_at = $1 \
                         WHERE id IN (SELECT id FROM ({pick})) AND state = 'ready' \
                         RETURNING id, job_id, kind, payload, epoch, attempts_used, max_attempts, \
                                   timeout_s, tenant, queue"
                    ),
                    args,
                )
                .await?
            }
        };
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let task_ids: Vec<i64> = tasks
            .iter()
            .map(|r| r.i64("id"))
            .collect::<Result<_, _>>()?;
        // The epoch is the task's lease counter, so it is also the attempt's
        // number in the task's history.
        // SQLite numbers them above every attempt retention deleted.
        let id = new_id_sql(backend, "attempts", "ROW_NUMBER() OVER (ORDER BY id)");
        let attempts = w
            .tx
            .fetch_all(
                &format!(
                    "INSERT INTO attempts (id, task_id, job_id, tenant, queue, number, state, node_id, \
                                           lease_token, epoch, lease_expires_at, started_at) \
                     SELECT {id}, id, job_id, tenant, queue, epoch, 'active', $1, @token, epoch, $2, $3 \
                     FROM tasks WHERE id @in($4) \
                     RETURNING id, task_id, lease_token"
                ),
                args![node_id, expires, now, task_ids],
            )
            .await?;
        let mut by_task: HashMap<i64, (i64, String)> = HashMap::with_capacity(attempts.len());
        for a in &attempts {
            by_task.insert(a.i64("task_id")?, (a.i64("id")?, a.text("lease_token")?));
        }
        let mut leases = Vec::with_capacity(tasks.len());
        let mut job_ids = Vec::with_capacity(tasks.len());
        for t in &tasks {
            let task_id = t.i64("id")?;
            let (attempt_id, token) = by_task
                .remove(&task_id)
                .ok_or_else(|| KernelError::conflict("a leased task has no attempt"))?;
            let lease = lease_from_row(t, attempt_id, token, expires)?;
            w.event(event_type::LEASE_GRANTED, Some(&lease.tenant))
                .job(lease.job_id)
                .task(task_id)
                .attempt(attempt_id)
                .node(Some(node_id))
                .data(lease_granted_data(lease.epoch, expires, &lease.kind));
            job_ids.push(lease.job_id);
            leases.push(lease);
        }
        job_ids.sort_unstable();
        job_ids.dedup();
        // First lease of a job: queued (or blocked, after a replay moved a
        // task to an open queue) → running.
        let started = match backend {
            // One round trip, with the state each job came from.
            Backend::Postgres => {
                w.tx.fetch_all(
                    "UPDATE jobs j SET state = 'running', started_at = COALESCE(j.started_at, $1), updated_at = $1 \
                     FROM (SELECT id, state AS old FROM jobs WHERE id = ANY($2) AND state || '' IN ('queued', 'blocked') \
                           FOR UPDATE) o \
                     WHERE j.id = o.id AND j.state = o.old RETURNING j.id, j.tenant, o.old",
                    args![now, job_ids],
                )
                .await?
            }
            // SQLite's RETURNING cannot name the old state: one update per state.
            Backend::Sqlite => {
                let mut rows = Vec::new();
                for from in ["queued", "blocked"] {
                    rows.extend(
                        w.tx.fetch_all(
                            "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, $1), updated_at = $1 \
                             WHERE id @in($2) AND state = $3 RETURNING id, tenant, $3 AS old",
                            args![now, job_ids.clone(), from],
                        )
                        .await?,
                    );
                }
                rows
            }
        };
        for j in started {
            let tenant = j.text("tenant")?;
            w.event(event_type::JOB_STATE_CHANGED, Some(&tenant))
                .job(j.i64("id")?)
                .data(json!({ "from": j.text("old")?, "to": "running" }));
        }
        Ok(leases)
    }

    /// Extends a lease by `lease_ms` from now. `cancelled: true` means the
    /// job was cancelled: stop the task.
    pub async fn heartbeat(&self, attempt_id: i64, proof: &LeaseProof) -> Result<HeartbeatOutcome> {
        self.heartbeat_many(&[(attempt_id, proof.clone())])
            .await?
            .pop()
            .expect("one answer per heartbeat")
    }

    /// Heartbeats many leases in one transaction; one answer per lease.
    pub async fn heartbeat_many(
        &self,
        leases: &[(i64, LeaseProof)],
    ) -> Result<Vec<Result<HeartbeatOutcome>>> {
        let mut w = self.begin().await?;
        let now = w.now;
        let expires = now + self.config().lease_ms;
        let ids: Vec<i64> = leases.iter().map(|(id, _)| *id).collect();
        let checks = self.load_checks(&mut w, &ids).await?;
        let mut answers = Vec::with_capacity(leases.len());
        let mut renewed = Vec::new();
        let mut nodes = BTreeSet::new();
        for (id, proof) in leases {
            let answer = match checks.get(id) {
                None => Err(KernelError::not_found("attempt", id)),
                Some(a) => match a.verify(proof) {
                    Ok(()) => {
                        renewed.push(*id);
                        nodes.extend(a.node_id);
                        w.event(event_type::LEASE_RENEWED, Some(&a.tenant))
                            .job(a.job_id)
                            .task(a.task_id)
                            .attempt(a.id)
                            .node(a.node_id)
                            .data(json!({ "epoch": a.epoch, "lease_expires_at": expires }));
                        Ok(HeartbeatOutcome {
                            lease_expires_at: expires,
                            cancelled: false,
                        })
                    }
                    Err(KernelError::TaskCancelled { .. }) => Ok(HeartbeatOutcome {
                        lease_expires_at: now,
                        cancelled: true,
                    }),
                    // A renewal by the attempt's own holder that crossed
                    // its own report of the end (sent before, read after):
                    // refused, as nothing is left to renew, but no stale
                    // holder is at work, so nothing is recorded.
                    Err(e)
                        if proof.lease_token == a.token
                            && proof.epoch == a.epoch
                            && matches!(
                                a.state,
                                AttemptState::Succeeded | AttemptState::Failed
                            ) =>
                    {
                        Err(e)
                    }
                    Err(e) => {
                        self.record_fenced(&mut w, a, proof, "heartbeat").await?;
                        Err(e)
                    }
                },
            };
            answers.push(answer);
        }
        if !renewed.is_empty() {
            w.tx.execute(
                "UPDATE attempts SET lease_expires_at = $1, heartbeat_at = $2 WHERE id @in($3) AND state || '' = 'active'",
                args![expires, now, renewed],
            )
            .await?;
            w.tx.execute(
                "UPDATE nodes SET last_heartbeat_at = $1 WHERE id @in($2)",
                args![now, nodes.into_iter().collect::<Vec<_>>()],
            )
            .await?;
        }
        self.finish(w).await?;
        Ok(answers)
    }

    async fn load_checks(&self, w: &mut Work, ids: &[i64]) -> Result<HashMap<i64, AttemptCheck>> {
        let rows = w.tx.fetch_all(ATTEMPT_CHECK, args![ids.to_vec()]).await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in &rows {
            let a = AttemptCheck::from_row(r)?;
            out.insert(a.id, a);
        }
        Ok(out)
    }

    /// Records a task's success. Downstream tasks whose dependencies are now
    /// all done become ready; the job is re-derived.
    pub async fn complete(
        &self,
        attempt_id: i64,
        proof: &LeaseProof,
        output: Option<Value>,
    ) -> Result<()> {
        self.complete_many(vec![Completion {
            attempt_id,
            proof: proof.clone(),
            output,
        }])
        .await?
        .pop()
        .expect("one answer per completion")
    }

    /// Completes many leases; one answer per completion. Stale ones are
    /// refused (and recorded) without affecting the others. On Postgres the
    /// completions of single-task jobs are one statement of their own
    /// (`engine/single_task.rs`); the rest, and everything on SQLite, one
    /// transaction.
    ///
    /// The hot path: one guarded update checks every (id, token, epoch)
    /// triple and ends the matching attempts at once; only the reports it
    /// did not match are looked at one by one to say why.
    ///
    /// Calls that arrive while others are being written are merged into one
    /// transaction (see [`super::batch`]); each still gets its own answers.
    pub async fn complete_many(&self, items: Vec<Completion>) -> Result<Vec<Result<()>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (answer, start) = self.inner.completions.push(items);
        if start {
            let kernel = self.clone();
            tokio::spawn(async move { kernel.run_completions().await });
        }
        answer
            .await
            .map_err(|_| KernelError::Database(sqlx::Error::WorkerCrashed))?
    }

    /// Writes merged completions until none wait. When a merged write
    /// fails, each call is written alone, so one call's failure is not
    /// another's.
    async fn run_completions(self) {
        const MOST: usize = 4_096;
        while let Some(mut batch) = self.inner.completions.next_batch(MOST, Vec::len) {
            let merged: Vec<&Completion> = batch.iter().flat_map(|(items, _)| items).collect();
            match self.complete_now(&merged).await {
                Ok(answers) => {
                    let mut answers = answers.into_iter();
                    for (items, answer) in batch {
                        let _ = answer.send(Ok(answers.by_ref().take(items.len()).collect()));
                    }
                }
                // A lone call's failure is its own answer.
                Err(e) if batch.len() == 1 => {
                    let (_, answer) = batch.pop().expect("one call");
                    let _ = answer.send(Err(e));
                }
                Err(_) => {
                    for (items, answer) in batch {
                        let _ = answer.send(self.complete_now(&items).await);
                    }
                }
            }
        }
    }

    async fn complete_now<C: std::borrow::Borrow<Completion>>(
        &self,
        items: &[C],
    ) -> Result<Vec<Result<()>>> {
        let items: Vec<&Completion> = items.iter().map(|c| c.borrow()).collect();
        match self.backend() {
            Backend::Sqlite => self.complete_in_transaction(&items).await,
            Backend::Postgres => self.complete_single_tasks_first(&items).await,
        }
    }

    /// Completes `items` in one transaction (see [`Kernel::complete_many`]).
    pub(super) async fn complete_in_transaction(
        &self,
        items: &[&Completion],
    ) -> Result<Vec<Result<()>>> {
        super::again_on_deadlock("complete", || self.complete_in_transaction_once(items)).await
    }

    async fn complete_in_transaction_once(&self, items: &[&Completion]) -> Result<Vec<Result<()>>> {
        let mut w = self.begin().await?;
        let now = w.now;
        let ended = match w.tx.backend() {
            Backend::Sqlite => {
                let triples: Vec<(i64, &str, i64)> = items
                    .iter()
                    .map(|c| (c.attempt_id, c.proof.lease_token.as_str(), c.proof.epoch))
                    .collect();
                w.tx.fetch_all(
                    "UPDATE attempts SET state = 'succeeded', finished_at = $1 \
                     FROM (SELECT value ->> 0 AS id, value ->> 1 AS token, value ->> 2 AS epoch FROM json_each($2)) AS p \
                     WHERE attempts.id = p.id AND attempts.lease_token = p.token AND attempts.epoch = p.epoch \
                       AND attempts.state = 'active' \
                     RETURNING attempts.id, attempts.task_id, attempts.job_id, attempts.tenant, attempts.node_id, \
                       EXISTS (SELECT 1 FROM task_deps d WHERE d.depends_on = attempts.task_id) AS has_dependents",
                    args![now, serde_json::to_string(&triples).expect("triples")],
                )
                .await?
            }
            Backend::Postgres => {
                // Bound in attempt-id order, the order a cancel locks
                // attempts in (see `cancel_in`), so the two wait for each
                // other instead of deadlocking. The answers below are found
                // by id, whatever the order here.
                let mut by_id = items.to_vec();
                by_id.sort_by_key(|c| c.attempt_id);
                let ids: Vec<i64> = by_id.iter().map(|c| c.attempt_id).collect();
                let tokens: Vec<String> =
                    by_id.iter().map(|c| c.proof.lease_token.clone()).collect();
                let epochs: Vec<i64> = by_id.iter().map(|c| c.proof.epoch).collect();
                // The jobs are locked (in id order) before anything looks
                // at their tasks: a transaction completing another task of
                // the same job at the same moment waits for this one, and
                // its later statements see this one's successes (a failure locks
                // the job first too: `settle_lost_attempt`). Without
                // the lock, each would see the other's task still leased,
                // and neither would finish the job. (`locked` is read in the
                // final WHERE only so that it runs: a CTE nothing reads is
                // not run unless it writes.)
                w.tx.fetch_all(
                    "WITH ended AS (UPDATE attempts a SET state = 'succeeded', finished_at = $1 \
                         FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::BIGINT[]) AS p(id, token, epoch) \
                         WHERE a.id = p.id AND a.lease_token = p.token AND a.epoch = p.epoch AND a.state || '' = 'active' \
                         RETURNING a.id, a.task_id, a.job_id, a.tenant, a.node_id), \
                     locked AS (SELECT id FROM jobs WHERE id = ANY(ARRAY(SELECT job_id FROM ended)) ORDER BY id FOR UPDATE) \
                     SELECT e.*, EXISTS (SELECT 1 FROM task_deps d WHERE d.depends_on = e.task_id) AS has_dependents \
                     FROM ended e WHERE (SELECT COUNT(*) FROM locked) >= 0",
                    vec![
                        crate::sql::Arg::I64(now),
                        crate::sql::Arg::Ids(ids),
                        crate::sql::Arg::Texts(tokens),
                        crate::sql::Arg::Ids(epochs),
                    ],
                )
                .await?
            }
        };
        let mut done: HashMap<i64, (i64, i64)> = HashMap::with_capacity(ended.len());
        let mut done_tasks = Vec::with_capacity(ended.len());
        // Those that other tasks wait for.
        let mut upstream = Vec::new();
        let mut job_ids = Vec::with_capacity(ended.len());
        for r in &ended {
            let (id, task_id, job_id) = (r.i64("id")?, r.i64("task_id")?, r.i64("job_id")?);
            let tenant = r.text("tenant")?;
            w.event(event_type::TASK_STATE_CHANGED, Some(&tenant))
                .job(job_id)
                .task(task_id)
                .attempt(id)
                .node(r.opt_i64("node_id")?)
                .data(task_succeeded_data());
            done.insert(id, (task_id, job_id));
            done_tasks.push(task_id);
            if r.bool("has_dependents")? {
                upstream.push(task_id);
            }
            job_ids.push(job_id);
        }
        // Why the others were refused.
        let refused: Vec<i64> = items
            .iter()
            .map(|c| c.attempt_id)
            .filter(|id| !done.contains_key(id))
            .collect();
        let checks = if refused.is_empty() {
            HashMap::new()
        } else {
            self.load_checks(&mut w, &refused).await?
        };
        let mut answers = Vec::with_capacity(items.len());
        let mut answered = BTreeSet::new();
        let mut outputs = Vec::new();
        for c in items {
            let answer = if let Some((task_id, _)) = done.get(&c.attempt_id) {
                if answered.insert(c.attempt_id) {
                    if let Some(out) = &c.output {
                        outputs.push((*task_id, out.to_string()));
                    }
                    Ok(())
                } else {
                    Err(KernelError::StaleLease {
                        attempt_id: c.attempt_id,
                        reason: "completed twice in one batch".into(),
                    })
                }
            } else {
                match checks.get(&c.attempt_id) {
                    None => Err(KernelError::not_found("attempt", c.attempt_id)),
                    Some(a) => match a.verify(&c.proof) {
                        Err(e @ KernelError::TaskCancelled { .. }) => Err(e),
                        Err(e) => {
                            self.record_fenced(&mut w, a, &c.proof, "complete").await?;
                            Err(e)
                        }
                        // The pair matched and the attempt is active, yet the
                        // update did not take it: a duplicate in this batch.
                        Ok(()) => Err(KernelError::StaleLease {
                            attempt_id: a.id,
                            reason: "completed twice in one batch".into(),
                        }),
                    },
                }
            };
            answers.push(answer);
        }
        if !done_tasks.is_empty() {
            let n =
                w.tx.execute(
                    "UPDATE tasks SET state = 'succeeded', finished_at = $1, updated_at = $1 \
                     WHERE id @in($2) AND state || '' = 'leased'",
                    args![now, done_tasks.clone()],
                )
                .await?;
            if n as usize != done_tasks.len() {
                return Err(KernelError::conflict(
                    "a completed task was not leased; nothing was applied",
                ));
            }
            if !outputs.is_empty() {
                store_outputs(&mut w, outputs).await?;
            }
            if !upstream.is_empty() {
                self.release_downstream(&mut w, &upstream).await?;
            }
            // A success can only end a job, when it leaves no task of the
            // job unfinished; it cannot block or start one. The job then
            // ends as `derive_job_state` says: succeeded when every task
            // did, failed when one failed or was skipped (a task dead-
            // lettered while this one ran), cancelled otherwise. One
            // guarded update says which. (Unfinished is said as "not
            // ended": said as `IN` the unfinished states, the planner
            // reads the whole active-tasks index for it.)
            //
            // The job is normally `running`, but may be `blocked`: a
            // transaction ending another of its tasks (a failure, a
            // release) derives its state without seeing a claim of its
            // last ready task that has not committed yet, and finds it
            // held by an exhausted quota. That job ends here too, or it
            // would wait in `blocked` for good.
            job_ids.sort_unstable();
            job_ids.dedup();
            // Running jobs first; then, of those left (most often jobs
            // with tasks still to run; none when every job had one task),
            // the blocked ones.
            let end_jobs = |from: JobState, ids: Vec<i64>| {
                let sql = format!(
                    "UPDATE jobs SET finished_at = $1, updated_at = $1, state = CASE \
                         WHEN NOT EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = jobs.id AND t.state <> 'succeeded') \
                           THEN 'succeeded' \
                         WHEN EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = jobs.id AND t.state IN ('failed', 'skipped')) \
                           THEN 'failed' \
                         ELSE 'cancelled' END \
                     WHERE id @in($2) AND state || '' = '{from}' \
                       AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = jobs.id \
                                       AND t.state NOT IN ('succeeded', 'failed', 'skipped', 'cancelled')) \
                     RETURNING id, tenant, state"
                );
                (sql, args![now, ids])
            };
            let (sql, a) = end_jobs(JobState::Running, job_ids.clone());
            let mut ended: Vec<(JobState, Row)> =
                w.tx.fetch_all(&sql, a)
                    .await?
                    .into_iter()
                    .map(|r| (JobState::Running, r))
                    .collect();
            if ended.len() < job_ids.len() {
                let done: HashSet<i64> = ended
                    .iter()
                    .map(|(_, r)| r.i64("id"))
                    .collect::<Result<_, _>>()?;
                let rest: Vec<i64> = job_ids
                    .into_iter()
                    .filter(|id| !done.contains(id))
                    .collect();
                let (sql, a) = end_jobs(JobState::Blocked, rest);
                ended.extend(
                    w.tx.fetch_all(&sql, a)
                        .await?
                        .into_iter()
                        .map(|r| (JobState::Blocked, r)),
                );
            }
            for (from, j) in ended {
                let tenant = j.text("tenant")?;
                w.event(event_type::JOB_STATE_CHANGED, Some(&tenant))
                    .job(j.i64("id")?)
                    .data(json!({ "from": from, "to": j.text("state")? }));
            }
        }
        self.finish(w).await?;
        Ok(answers)
    }

    /// Counts the success of `succeeded` tasks toward their dependents;
    /// dependents with nothing left to wait for become ready.
    async fn release_downstream(&self, w: &mut Work, succeeded: &[i64]) -> Result<()> {
        let touched = w
            .tx
            .execute(
                "UPDATE tasks SET deps_remaining = deps_remaining - \
                     (SELECT COUNT(*) FROM task_deps d WHERE d.task_id = tasks.id AND d.depends_on @in($1)) \
                 WHERE id IN (SELECT task_id FROM task_deps WHERE depends_on @in($1)) AND state || '' = 'pending'",
                args![succeeded.to_vec()],
            )
            .await?;
        if touched == 0 {
            return Ok(());
        }
        let ready =
            w.tx.fetch_all(
                "UPDATE tasks SET state = 'ready', updated_at = $1 \
                 WHERE id IN (SELECT task_id FROM task_deps WHERE depends_on @in($2)) \
                   AND state || '' = 'pending' AND deps_remaining <= 0 \
                 RETURNING id, job_id, tenant",
                args![w.now, succeeded.to_vec()],
            )
            .await?;
        for r in &ready {
            let tenant = r.text("tenant")?;
            w.event(event_type::TASK_STATE_CHANGED, Some(&tenant))
                .job(r.i64("job_id")?)
                .task(r.i64("id")?)
                .data(json!({ "from": "pending", "to": "ready" }));
        }
        if !ready.is_empty() {
            w.wake_claimers = true;
        }
        Ok(())
    }

    /// Records a failed attempt. The task is retried after a backoff while
    /// its budget lasts and the error is retryable; otherwise it is
    /// dead-lettered and its downstream tasks are skipped.
    pub async fn fail(
        &self,
        attempt_id: i64,
        proof: &LeaseProof,
        failure: &TaskFailure,
    ) -> Result<FailOutcome> {
        super::again_on_deadlock("fail", || self.fail_once(attempt_id, proof, failure)).await
    }

    async fn fail_once(
        &self,
        attempt_id: i64,
        proof: &LeaseProof,
        failure: &TaskFailure,
    ) -> Result<FailOutcome> {
        let mut w = self.begin().await?;
        let checks = self.load_checks(&mut w, &[attempt_id]).await?;
        let a = checks
            .get(&attempt_id)
            .ok_or_else(|| KernelError::not_found("attempt", attempt_id))?;
        if let Err(e) = a.verify(proof) {
            if matches!(e, KernelError::StaleLease { .. }) {
                self.record_fenced(&mut w, a, proof, "fail").await?;
                self.finish(w).await?;
            }
            return Err(e);
        }
        let message = truncate(&without_nul(&failure.message), 8_000);
        w.tx.execute(
            "UPDATE attempts SET state = 'failed', finished_at = $1, error = $2 WHERE id = $3 AND state = 'active'",
            args![w.now, message.as_str(), attempt_id],
        )
        .await?;
        let outcome = self
            .settle_lost_attempt(
                &mut w,
                a.task_id,
                a.id,
                a.node_id,
                &message,
                failure.retryable,
            )
            .await?;
        self.finish(w).await?;
        Ok(outcome)
    }

    /// Gives a lease back without spending an attempt (a worker shutting
    /// down): the attempt is cancelled, the task is ready again at once.
    pub async fn release(&self, attempt_id: i64, proof: &LeaseProof) -> Result<()> {
        super::again_on_deadlock("release", || self.release_once(attempt_id, proof)).await
    }

    async fn release_once(&self, attempt_id: i64, proof: &LeaseProof) -> Result<()> {
        let mut w = self.begin().await?;
        let checks = self.load_checks(&mut w, &[attempt_id]).await?;
        let a = checks
            .get(&attempt_id)
            .ok_or_else(|| KernelError::not_found("attempt", attempt_id))?;
        match a.verify(proof) {
            Ok(()) => {}
            // Already cancelled with its job: nothing to give back.
            Err(KernelError::TaskCancelled { .. }) => return Ok(()),
            Err(e) => {
                self.record_fenced(&mut w, a, proof, "release").await?;
                self.finish(w).await?;
                return Err(e);
            }
        }
        w.tx.execute(
            "UPDATE attempts SET state = 'cancelled', finished_at = $1, error = $2 \
             WHERE id = $3 AND state = 'active'",
            args![w.now, RELEASED, attempt_id],
        )
        .await?;
        let n = w
            .tx
            .execute(
                "UPDATE tasks SET state = 'ready', attempts_used = attempts_used - 1, not_before = 0, updated_at = $1 \
                 WHERE id = $2 AND state = 'leased'",
                args![w.now, a.task_id],
            )
            .await?;
        if n != 1 {
            return Err(KernelError::conflict(
                "the task of this lease is not leased",
            ));
        }
        let tenant = a.tenant.clone();
        w.event(event_type::LEASE_RELEASED, Some(&tenant))
            .job(a.job_id)
            .task(a.task_id)
            .attempt(a.id)
            .node(a.node_id)
            .data(json!({ "epoch": a.epoch, "task_state": {"from": "leased", "to": "ready"} }));
        w.wake_claimers = true;
        let job_id = a.job_id;
        self.derive_jobs(&mut w, &[job_id]).await?;
        self.finish(w).await?;
        Ok(())
    }

    /// The task of an attempt that failed or expired: back to ready after a
    /// backoff, or dead-lettered (with its downstream skipped).
    async fn settle_lost_attempt(
        &self,
        w: &mut Work,
        task_id: i64,
        attempt_id: i64,
        node_id: Option<i64>,
        message: &str,
        retryable: bool,
    ) -> Result<FailOutcome> {
        let now = w.now;
        // The job is locked first, as a completion locks it: of two
        // transactions ending the last tasks of one job, the later sees
        // what the earlier did and ends the job (see `complete_now`).
        w.tx.fetch_optional(
            "SELECT id FROM jobs WHERE id = (SELECT job_id FROM tasks WHERE id = $1) @lock",
            args![task_id],
        )
        .await?;
        let t = w
            .tx
            .fetch_one(
                "SELECT t.job_id, t.tenant, t.queue, t.attempts_used, t.max_attempts, t.key, t.kind, t.payload, j.name \
                 FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE t.id = $1",
                args![task_id],
            )
            .await?;
        let job_id = t.i64("job_id")?;
        let tenant = t.text("tenant")?;
        let used = t.i64("attempts_used")?;
        let max = t.i64("max_attempts")?;
        if retryable && used < max {
            let retry_at = now + self.backoff_ms(used);
            let n = w
                .tx
                .execute(
                    "UPDATE tasks SET state = 'ready', not_before = $1, last_error = $2, updated_at = $3 \
                     WHERE id = $4 AND state = 'leased'",
                    args![retry_at, message, now, task_id],
                )
                .await?;
            if n != 1 {
                return Err(KernelError::conflict("the task is no longer leased"));
            }
            w.event(event_type::TASK_STATE_CHANGED, Some(&tenant))
                .job(job_id)
                .task(task_id)
                .attempt(attempt_id)
                .node(node_id)
                .data(json!({
                    "from": "leased", "to": "ready", "retry_at": retry_at,
                    "attempts_used": used, "max_attempts": max, "error": message,
                }));
            w.wake_claimers = true;
            self.derive_jobs(w, &[job_id]).await?;
            return Ok(FailOutcome {
                task_state: TaskState::Ready,
                retry_at: Some(retry_at),
                dead_letter_id: None,
            });
        }

        let n = w
            .tx
            .execute(
                "UPDATE tasks SET state = 'failed', last_error = $1, finished_at = $2, updated_at = $2 \
                 WHERE id = $3 AND state = 'leased'",
                args![message, now, task_id],
            )
            .await?;
        if n != 1 {
            return Err(KernelError::conflict("the task is no longer leased"));
        }
        w.event(event_type::TASK_STATE_CHANGED, Some(&tenant))
            .job(job_id)
            .task(task_id)
            .attempt(attempt_id)
            .node(node_id)
            .data(json!({
                "from": "leased", "to": "failed", "error": message,
                "attempts_used": used, "max_attempts": max, "retryable": retryable,
            }));
        let history = spent_budget(self.attempts_of(&mut w.tx, &[task_id]).await?, used);
        let queue = t.text("queue")?;
        let dl = w
            .tx
            .fetch_one(
                &format!(
                    "INSERT INTO dead_letters (id, job_id, task_id, job_name, task_key, kind, tenant, queue, \
                                               error, fingerprint, payload, attempts, status, created_at, updated_at) \
                     VALUES ({}, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'open', $12, $12) RETURNING id",
                    new_id_sql(w.tx.backend(), "dead_letters", "1")
                ),
                args![
                    job_id,
                    task_id,
                    t.text("name")?,
                    t.text("key")?,
                    t.text("kind")?,
                    tenant.as_str(),
                    queue.as_str(),
                    message,
                    error_fingerprint(message),
                    t.text("payload")?,
                    serde_json::to_string(&history).expect("attempts serialise"),
                    now
                ],
            )
            .await?
            .i64("id")?;
        w.event(event_type::DLQ_ADDED, Some(&tenant))
            .job(job_id)
            .task(task_id)
            .attempt(attempt_id)
            .dead_letter(dl)
            .queue(&queue)
            .data(json!({ "error": message, "fingerprint": error_fingerprint(message) }));
        self.skip_downstream(w, job_id, &[task_id]).await?;
        self.derive_jobs(w, &[job_id]).await?;
        Ok(FailOutcome {
            task_state: TaskState::Failed,
            retry_at: None,
            dead_letter_id: Some(dl),
        })
    }

    /// Marks every pending task downstream of `roots` skipped.
    pub(crate) async fn skip_downstream(
        &self,
        w: &mut Work,
        job_id: i64,
        roots: &[i64],
    ) -> Result<()> {
        let graph = self.load_graph(w, job_id).await?;
        let downstream: Vec<i64> = graph
            .downstream_of(roots)
            .into_iter()
            .filter(|t| graph.state.get(t) == Some(&TaskState::Pending))
            .collect();
        if downstream.is_empty() {
            return Ok(());
        }
        let skipped =
            w.tx.fetch_all(
                "UPDATE tasks SET state = 'skipped', finished_at = $1, updated_at = $1 \
                 WHERE id @in($2) AND state || '' = 'pending' RETURNING id, tenant",
                args![w.now, downstream],
            )
            .await?;
        for r in skipped {
            let tenant = r.text("tenant")?;
            w.event(event_type::TASK_STATE_CHANGED, Some(&tenant))
                .job(job_id)
                .task(r.i64("id")?)
                .data(json!({ "from": "pending", "to": "skipped", "because_of": roots }));
        }
        Ok(())
    }

    pub(crate) async fn load_graph(&self, w: &mut Work, job_id: i64) -> Result<JobGraph> {
        let mut g = JobGraph::default();
        for r in
            w.tx.fetch_all(
                "SELECT id, state FROM tasks WHERE job_id = $1",
                args![job_id],
            )
            .await?
        {
            g.state.insert(r.i64("id")?, r.parse("state")?);
        }
        for r in w
            .tx
            .fetch_all(
                "SELECT d.task_id, d.depends_on FROM task_deps d JOIN tasks t ON t.id = d.task_id WHERE t.job_id = $1",
                args![job_id],
            )
            .await?
        {
            g.add_edge(r.i64("task_id")?, r.i64("depends_on")?);
        }
        Ok(g)
    }

    /// Recovers lapsed leases, marks silent nodes offline and blocks the
    /// jobs that came to wait on an exhausted quota. Run by the background
    /// duty every `sweep_every`; safe on every replica at once (each
    /// recovery is a guarded update). Returns how many leases expired.
    ///
    /// One lapsed lease that cannot be recovered (its transaction fails)
    /// does not hold up the others, nor the other passes: the batch it was
    /// in is then recovered one lease at a time, the failure logged with its
    /// attempt, and the sweep answers the first failure after doing all it
    /// could.
    pub async fn sweep(&self) -> Result<usize> {
        let mut expired = 0;
        let mut first_failure = None;
        loop {
            match self.sweep_leases_once(200, None).await {
                Ok(n) => {
                    expired += n;
                    if n < 200 {
                        break;
                    }
                }
                Err(batch_failed) => {
                    let (n, failure) = self.sweep_leases_one_by_one(200).await;
                    expired += n;
                    first_failure = failure.or(Some(batch_failed));
                    break;
                }
            }
        }
        for pass in [
            self.sweep_nodes().await,
            self.sweep_quota_blocks().await,
            self.sweep_paused_blocks().await,
            self.fold_counts().await,
        ] {
            if let Err(e) = pass {
                first_failure.get_or_insert(e);
            }
        }
        match first_failure {
            Some(e) => Err(e),
            None => Ok(expired),
        }
    }

    /// Recovers up to `batch` lapsed leases, each in a transaction of its
    /// own; answers how many, and the first failure.
    async fn sweep_leases_one_by_one(&self, batch: i64) -> (usize, Option<KernelError>) {
        let lapsed: Result<Vec<i64>> = async {
            let rows = self
                .db()
                .read_all(
                    "SELECT id FROM attempts WHERE state = 'active' AND lease_expires_at < $1 \
                     ORDER BY lease_expires_at LIMIT $2",
                    args![self.now(), batch],
                )
                .await?;
            Ok(rows.iter().map(|r| r.i64("id")).collect::<Result<_, _>>()?)
        }
        .await;
        let lapsed = match lapsed {
            Ok(ids) => ids,
            Err(e) => return (0, Some(e)),
        };
        let (mut expired, mut first_failure) = (0, None);
        for id in lapsed {
            match self.sweep_leases_once(1, Some(id)).await {
                Ok(n) => expired += n,
                Err(e) => {
                    tracing::error!(attempt_id = id, error = %e, "a lapsed lease could not be recovered; the next sweep tries again");
                    first_failure.get_or_insert(e);
                }
            }
        }
        (expired, first_failure)
    }

    /// Recovers up to `batch` lapsed leases (only attempt `only`, if given)
    /// in one transaction.
    async fn sweep_leases_once(&self, batch: i64, only: Option<i64>) -> Result<usize> {
        let mut w = self.begin().await?;
        let now = w.now;
        if w.tx.backend() == Backend::Postgres {
            // Walk the expiry index in order, as the claim walks its own
            // (see `PG_CLAIM_NODE`): a bitmap scan would visit every
            // attempt that finished since the last vacuum, once a second.
            w.tx.execute("SET LOCAL enable_bitmapscan = off", args![])
                .await?;
        }
        let lapsed = w
            .tx
            .fetch_all(
                "SELECT id, task_id, job_id, tenant, node_id, epoch, lease_expires_at FROM attempts \
                 WHERE state = 'active' AND lease_expires_at < $1 AND ($3 IS NULL OR id = $3) \
                 ORDER BY lease_expires_at LIMIT $2 @skip_locked",
                args![now, batch, only],
            )
            .await?;
        let mut count = 0;
        for a in &lapsed {
            let id = a.i64("id")?;
            // Guarded: a heartbeat that got in first wins.
            let n = w
                .tx
                .execute(
                    "UPDATE attempts SET state = 'expired', finished_at = $1, error = 'lease expired' \
                     WHERE id = $2 AND state = 'active' AND lease_expires_at < $1",
                    args![now, id],
                )
                .await?;
            if n == 0 {
                continue;
            }
            count += 1;
            let task_id = a.i64("task_id")?;
            let node_id = a.opt_i64("node_id")?;
            let tenant = a.text("tenant")?;
            let expired_at = a.i64("lease_expires_at")?;
            w.event(event_type::LEASE_EXPIRED, Some(&tenant))
                .job(a.i64("job_id")?)
                .task(task_id)
                .attempt(id)
                .node(node_id)
                .data(json!({ "epoch": a.i64("epoch")?, "lease_expires_at": expired_at }));
            let message = format!(
                "lease expired: no heartbeat from node {} before {expired_at}",
                node_id.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
            );
            self.settle_lost_attempt(&mut w, task_id, id, node_id, &message, true)
                .await?;
        }
        self.finish(w).await?;
        Ok(count)
    }

    async fn sweep_nodes(&self) -> Result<()> {
        let mut w = self.begin().await?;
        let cutoff = w.now - self.config().node_offline_after_ms;
        w.tx.execute(
            "DELETE FROM quota_starts WHERE started_at < $1",
            args![w.now - 120_000],
        )
        .await?;
        let gone = w
            .tx
            .fetch_all(
                "UPDATE nodes SET status = 'offline' WHERE status = 'online' AND last_heartbeat_at < $1 \
                 RETURNING id, last_heartbeat_at",
                args![cutoff],
            )
            .await?;
        for n in gone {
            w.event(event_type::NODE_OFFLINE, None)
                .node(Some(n.i64("id")?))
                .data(json!({ "last_heartbeat_at": n.i64("last_heartbeat_at")? }));
        }
        self.finish(w).await
    }
}

impl Kernel {
    /// Records the refusal of a stale report (SPEC §2: "rejected and
    /// recorded") as a `lease.fenced` event.
    ///
    /// When the report comes from the attempt's own holder (its pair
    /// matches) after the lease expired and the task was leased again with a
    /// higher epoch, the attempt was superseded: it becomes `fenced`, so its
    /// history shows that its holder was still alive and was fenced out. An
    /// expired attempt whose holder never reports, or whose task was not
    /// leased again (in backoff, dead-lettered), stays `expired`.
    async fn record_fenced(
        &self,
        w: &mut Work,
        a: &AttemptCheck,
        proof: &LeaseProof,
        action: &str,
    ) -> Result<()> {
        let own_pair = proof.lease_token == a.token && proof.epoch == a.epoch;
        let mut state = a.state;
        if own_pair && a.state == AttemptState::Expired {
            let n =
                w.tx.execute(
                    "UPDATE attempts SET state = 'fenced' WHERE id = $1 AND state = 'expired' \
                       AND epoch < (SELECT t.epoch FROM tasks t WHERE t.id = attempts.task_id)",
                    args![a.id],
                )
                .await?;
            if n == 1 {
                state = AttemptState::Fenced;
            }
        }
        w.event(event_type::LEASE_FENCED, Some(&a.tenant))
            .job(a.job_id)
            .task(a.task_id)
            .attempt(a.id)
            .node(a.node_id)
            .data(json!({
                "action": action,
                "presented_epoch": proof.epoch,
                "lease_epoch": a.epoch,
                "attempt_state": state,
                "superseded": state == AttemptState::Fenced,
            }));
        Ok(())
    }
}

/// Stores the outputs of succeeded tasks, `(task id, output as JSON)`, in
/// one statement however many there are.
async fn store_outputs(w: &mut Work, outputs: Vec<(i64, String)>) -> Result<()> {
    match w.tx.backend() {
        Backend::Sqlite => {
            w.tx.execute(
                "UPDATE tasks SET output = o.output \
                 FROM (SELECT value ->> 0 AS id, value ->> 1 AS output FROM json_each($1)) AS o \
                 WHERE tasks.id = o.id",
                args![serde_json::to_string(&outputs).expect("outputs")],
            )
            .await?
        }
        Backend::Postgres => {
            let (ids, outputs): (Vec<i64>, Vec<String>) = outputs.into_iter().unzip();
            w.tx.execute(
                "UPDATE tasks t SET output = o.output \
                 FROM UNNEST($1::BIGINT[], $2::TEXT[]) AS o(id, output) WHERE t.id = o.id",
                vec![crate::sql::Arg::Ids(ids), crate::sql::Arg::Texts(outputs)],
            )
            .await?
        }
    };
    Ok(())
}

/// The data of the event of a task's success (`single_task` passes the same
/// to its statement).
/// The error of an attempt its worker gave back: it did not spend the
/// task's budget.
const RELEASED: &str = "released by the worker";

/// The attempts of a task's spent budget, oldest first, from its whole
/// history (oldest first): the last `used` that spent the budget, with the
/// released ones among them. A release gives its attempt back, and a retry
/// or replay starts a new budget, so neither numbers nor counts alone
/// say where the budget began.
fn spent_budget(mut history: Vec<Attempt>, used: i64) -> Vec<Attempt> {
    let spent =
        |a: &Attempt| !(a.state == AttemptState::Cancelled && a.error.as_deref() == Some(RELEASED));
    let mut left = used;
    let mut first = history.len();
    while first > 0 && left > 0 {
        first -= 1;
        if spent(&history[first]) {
            left -= 1;
        }
    }
    history.split_off(first)
}

pub(super) fn task_succeeded_data() -> Value {
    json!({ "from": "leased", "to": "succeeded", "attempt_state": "succeeded" })
}

/// The data of a `lease.granted` event (`PG_CLAIM` builds the same in SQL).
pub(super) fn lease_granted_data(epoch: i64, expires: i64, kind: &str) -> Value {
    json!({
        "epoch": epoch,
        "lease_expires_at": expires,
        "kind": kind,
        "task_state": {"from": "ready", "to": "leased"},
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A lease from a leased task's row (`id`, `job_id`, `kind`, `payload`,
/// `epoch`, `attempts_used`, `max_attempts`, `timeout_s`, `tenant`, `queue`)
/// and its new attempt.
fn lease_from_row(t: &Row, attempt_id: i64, token: String, expires: i64) -> Result<Lease> {
    Ok(Lease {
        attempt_id,
        task_id: t.i64("id")?,
        job_id: t.i64("job_id")?,
        kind: t.text("kind")?,
        payload: t.json("payload")?,
        lease_token: token,
        epoch: t.i64("epoch")?,
        lease_expires_at: expires,
        attempt_number: t.i64("attempts_used")?,
        max_attempts: t.i64("max_attempts")?,
        timeout_s: t.opt_i64("timeout_s")?,
        tenant: t.text("tenant")?,
        queue: t.text("queue")?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::db::TestPostgres;
    use crate::model::{NewJob, NewNode};
    use crate::KernelConfig;

    /// The claim as Postgres would run it now, for `kinds` on `node_id`.
    async fn claim_plan(kernel: &Kernel, node_id: i64, kinds: &[&str]) -> String {
        let now = kernel.now();
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        let rows = kernel
            .db()
            .fetch_all_alone(
                Conns::Lease,
                &format!("EXPLAIN {PG_CLAIM}"),
                args![
                    now,
                    kinds,
                    512_i64,
                    node_id,
                    now + 1_000,
                    event_type::LEASE_GRANTED,
                    event_type::JOB_STATE_CHANGED
                ],
            )
            .await
            .expect("explain the claim");
        rows.iter()
            .map(|r| r.text("QUERY PLAN").expect("a plan line"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// After a burst, with statistics taken when no task was ready, the
    /// claim still walks the claim index (not the table) and leases what it
    /// picked by id (not through an index on the state): the plans Postgres
    /// chose otherwise took 8-9 ms an empty claim over 60,000 finished tasks
    /// (see `Db::open_with` and the engine's module notes).
    #[tokio::test]
    async fn the_claim_keeps_to_its_indexes_whatever_the_statistics() {
        let Some(pg) = TestPostgres::create("claim_plan").await else {
            return;
        };
        let kernel = Kernel::open(&pg.url, KernelConfig::default())
            .await
            .expect("open");
        let node_id = kernel
            .register_node(&NewNode {
                name: "n".into(),
                kinds: vec!["noop".into(), "probe".into()],
                capacity: 8,
                labels: Default::default(),
                file_scopes: vec![],
            })
            .await
            .expect("register")
            .id;
        let burst = (0..20_000)
            .map(|i| NewJob::single(format!("old-{i}"), "noop", json!({})))
            .collect();
        kernel.submit_many(burst).await.expect("submit");
        let sql = |sql: &'static str| {
            let kernel = kernel.clone();
            async move {
                kernel
                    .db()
                    .fetch_all_alone(Conns::Main, sql, args![])
                    .await
                    .expect(sql);
            }
        };
        // Statistics taken while the burst was ready, then the burst done.
        sql("ANALYZE tasks").await;
        sql("UPDATE tasks SET state = 'succeeded'").await;
        kernel
            .submit(NewJob::single("new", "probe", json!({})))
            .await
            .expect("submit");
        // A kind the statistics have not seen, as for a node that runs
        // only probes after a burst of other work.
        let during = claim_plan(&kernel, node_id, &["probe"]).await;
        // And statistics taken once it was done: no task ready.
        sql("ANALYZE tasks").await;
        let after = claim_plan(&kernel, node_id, &["probe"]).await;
        for plan in [during, after] {
            assert!(
                !plan.contains("Seq Scan on tasks"),
                "the claim reads the table:\n{plan}"
            );
            assert!(
                plan.contains("Index Scan using tasks_claim on tasks"),
                "the claim does not walk its index:\n{plan}"
            );
            assert!(
                plan.contains("Index Scan using tasks_pkey on tasks t")
                    && plan.contains("Index Cond: (id = picked.id)"),
                "the claim does not lease by id:\n{plan}"
            );
        }
        pg.drop(kernel.db()).await;
    }
}
