//! Quotas beyond the claim's own arithmetic: how much room a quota has left,
//! and the `blocked` state of the jobs that wait on a full one (SPEC §2).
//!
//! A quota carries an `exhausted` mark: set when a claim leaves it without
//! room (or its limits are set to a value already used up), cleared when a
//! claim or a change of its limits finds room again. Only these transitions
//! touch jobs: setting the mark blocks the jobs whose ready tasks now wait on
//! the quota (none of their tasks leased); clearing it re-derives the jobs it
//! blocked. A saturated quota therefore costs a claim nothing beyond the
//! usage counts it takes anyway, and the claim path without quotas never
//! comes here. `derive_jobs` reads the mark too, so a job re-derived for
//! another reason stays blocked while its quota is full, and the sweep
//! catches jobs that came to wait on a marked quota without a transition of
//! their own (a running job whose last lease ended).
//!
//! The mark is a display of waiting, never a gate: claims decide from live
//! usage, and a task of a blocked job that gets leased moves its job to
//! `running` like any first lease.

use serde_json::json;

use crate::error::Result;
use crate::model::{event_type, QuotaScope};
use crate::sql::{args, Row};

use super::{Kernel, Work};

/// One quota row as the claim and the bookkeeping read it.
#[derive(Debug, Clone)]
pub(crate) struct QuotaRow {
    pub scope: QuotaScope,
    pub name: String,
    pub max_concurrent: Option<i64>,
    pub max_starts_per_minute: Option<i64>,
    pub exhausted: bool,
}

/// The columns [`QuotaRow::from_row`] reads.
pub(crate) const QUOTA_COLUMNS: &str =
    "scope, name, max_concurrent, max_starts_per_minute, exhausted";

impl QuotaRow {
    pub fn from_row(r: &Row) -> Result<QuotaRow> {
        Ok(QuotaRow {
            scope: r.parse("scope")?,
            name: r.text("name")?,
            max_concurrent: r.opt_i64("max_concurrent")?,
            max_starts_per_minute: r.opt_i64("max_starts_per_minute")?,
            exhausted: r.bool("exhausted")?,
        })
    }

    pub fn key(&self) -> (QuotaScope, String) {
        (self.scope, self.name.clone())
    }
}

/// Whether job `j` waits on something it cannot pass: it has a ready task,
/// and each of its ready tasks is in a paused queue or one whose quota is
/// full, or its tenant's is. Task by task, as a task's queue may differ
/// from its job's (replayed to another queue).
pub(crate) const JOB_HELD: &str = "(EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.state = 'ready') \
     AND NOT EXISTS (SELECT 1 FROM tasks t LEFT JOIN queues q ON q.name = t.queue \
         WHERE t.job_id = j.id AND t.state = 'ready' AND NOT COALESCE(q.paused, false) \
           AND NOT EXISTS (SELECT 1 FROM quotas x WHERE x.exhausted \
               AND ((x.scope = 'tenant' AND x.name = t.tenant) OR (x.scope = 'queue' AND x.name = t.queue)))))";

/// The column of jobs, tasks and attempts a quota of `scope` counts by.
///
/// In job lookups by state it is written `column || ''`, which keeps the
/// planners off the tenant and queue indexes (they hold every past job) and
/// on the state index (unfinished jobs only).
pub(crate) fn scope_column(scope: QuotaScope) -> &'static str {
    match scope {
        QuotaScope::Tenant => "tenant",
        QuotaScope::Queue => "queue",
    }
}

impl Kernel {
    /// The leases `q` still allows now: its limits minus live usage (active
    /// attempts; starts in the last minute), never below 0. `i64::MAX` when
    /// it limits nothing.
    pub(crate) async fn quota_room(&self, w: &mut Work, q: &QuotaRow) -> Result<i64> {
        let mut left = i64::MAX;
        if let Some(limit) = q.max_concurrent {
            let used =
                w.tx.fetch_one(
                    &format!(
                        "SELECT COUNT(*) AS n FROM attempts WHERE state = 'active' AND {} = $1",
                        scope_column(q.scope)
                    ),
                    args![q.name.as_str()],
                )
                .await?
                .i64("n")?;
            left = left.min(limit - used);
        }
        if let Some(limit) = q.max_starts_per_minute {
            let used = w
                .tx
                .fetch_one(
                    "SELECT COUNT(*) AS n FROM quota_starts WHERE scope = $1 AND name = $2 AND started_at > $3",
                    args![q.scope.as_str(), q.name.as_str(), w.now - 60_000],
                )
                .await?
                .i64("n")?;
            left = left.min(limit - used);
        }
        Ok(left.max(0))
    }

    /// Brings the `exhausted` mark of `q` (as read in this unit, row locked)
    /// to `exhausted`; on a change, blocks the jobs now held by it or
    /// re-derives the jobs it held.
    pub(crate) async fn set_quota_mark(
        &self,
        w: &mut Work,
        q: &QuotaRow,
        exhausted: bool,
    ) -> Result<()> {
        if q.exhausted == exhausted {
            return Ok(());
        }
        w.tx.execute(
            "UPDATE quotas SET exhausted = $1 WHERE scope = $2 AND name = $3",
            args![exhausted, q.scope.as_str(), q.name.as_str()],
        )
        .await?;
        if exhausted {
            self.block_held_jobs(w, q.scope, &q.name).await
        } else {
            self.rederive_blocked_jobs(w, q.scope, &q.name).await
        }
    }

    /// Jobs of the tenant or queue `name` that wait on its full quota: some
    /// task ready, none leased. Queued and running ones become `blocked`.
    pub(crate) async fn block_held_jobs(
        &self,
        w: &mut Work,
        scope: QuotaScope,
        name: &str,
    ) -> Result<()> {
        let why = json!({ "reason": "quota", "scope": scope, "name": name });
        self.block_waiting_jobs(w, scope, name, why).await
    }

    /// Jobs that wait on the paused queue `name` become `blocked`.
    pub(crate) async fn block_paused_jobs(&self, w: &mut Work, name: &str) -> Result<()> {
        let why = json!({ "reason": "queue paused", "queue": name });
        self.block_waiting_jobs(w, QuotaScope::Queue, name, why)
            .await
    }

    /// Jobs of the tenant `name`, or with a ready task in the queue `name`
    /// (`scope`), that wait: none of their tasks leased, and every ready
    /// one held ([`JOB_HELD`]). Queued and running ones become `blocked`;
    /// `why` goes into each event.
    pub(crate) async fn block_waiting_jobs(
        &self,
        w: &mut Work,
        scope: QuotaScope,
        name: &str,
        why: serde_json::Value,
    ) -> Result<()> {
        let held =
            w.tx.fetch_all(
                &format!(
                    "SELECT j.id, j.state, j.tenant FROM jobs j \
                 WHERE j.state IN ('queued', 'running') AND {of_it} \
                   AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.state = 'leased') \
                   AND {JOB_HELD} \
                 ORDER BY j.id",
                    // A task's queue may differ from its job's (a replay
                    // to another queue); a tenant is the job's.
                    of_it = match scope {
                        QuotaScope::Queue => "EXISTS (SELECT 1 FROM tasks t \
                            WHERE t.job_id = j.id AND t.state = 'ready' AND t.queue = $1)",
                        QuotaScope::Tenant => "j.tenant || '' = $1",
                    }
                ),
                args![name],
            )
            .await?;
        for from in ["queued", "running"] {
            let ids: Vec<i64> = held
                .iter()
                .filter(|r| r.text("state").is_ok_and(|s| s == from))
                .map(|r| r.i64("id"))
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                continue;
            }
            let blocked =
                w.tx.fetch_all(
                    "UPDATE jobs SET state = 'blocked', updated_at = $1 \
                     WHERE id @in($2) AND state = $3 RETURNING id, tenant",
                    args![w.now, ids, from],
                )
                .await?;
            for j in blocked {
                let tenant = j.text("tenant")?;
                let mut data = json!({ "from": from, "to": "blocked" });
                if let (Some(data), Some(why)) = (data.as_object_mut(), why.as_object()) {
                    data.extend(why.clone());
                }
                w.event(event_type::JOB_STATE_CHANGED, Some(&tenant))
                    .job(j.i64("id")?)
                    .data(data);
            }
        }
        Ok(())
    }

    /// Re-derives the blocked jobs of the tenant or queue `name` (its quota
    /// has room again, or is gone); those held by nothing else move on.
    pub(crate) async fn rederive_blocked_jobs(
        &self,
        w: &mut Work,
        scope: QuotaScope,
        name: &str,
    ) -> Result<()> {
        let ids: Vec<i64> =
            w.tx.fetch_all(
                &format!(
                    "SELECT id FROM jobs WHERE state = 'blocked' AND {} || '' = $1 ORDER BY id",
                    scope_column(scope)
                ),
                args![name],
            )
            .await?
            .iter()
            .map(|r| r.i64("id"))
            .collect::<Result<_, _>>()?;
        self.derive_jobs(w, &ids).await
    }

    /// Jobs of paused queues that came to wait on the pause after it began
    /// (a task made ready by its upstream's success, which does not look
    /// at the job's state) become `blocked`, as those waiting when it began
    /// did.
    pub(crate) async fn sweep_paused_blocks(&self) -> Result<()> {
        let paused = self
            .db()
            .read_all(
                "SELECT name FROM queues WHERE paused ORDER BY name",
                args![],
            )
            .await?;
        if paused.is_empty() {
            return Ok(());
        }
        let mut w = self.begin().await?;
        for r in &paused {
            let name = r.text("name")?;
            // Re-checked in this transaction: a resume meanwhile wins.
            let still =
                w.tx.fetch_optional(
                    "SELECT name FROM queues WHERE name = $1 AND paused @lock",
                    args![name.as_str()],
                )
                .await?;
            if still.is_some() {
                self.block_paused_jobs(&mut w, &name).await?;
            }
        }
        self.finish(w).await
    }

    /// The sweep's part: blocks the jobs that came to wait on a marked quota
    /// since it was marked. Reads only the (small) quota table when no quota
    /// is marked.
    pub(crate) async fn sweep_quota_blocks(&self) -> Result<()> {
        let marked = self
            .db()
            .read_all("SELECT scope FROM quotas WHERE exhausted LIMIT 1", args![])
            .await?;
        if marked.is_empty() {
            return Ok(());
        }
        let mut w = self.begin().await?;
        // Locked (and re-checked under the lock on Postgres), so a claim that
        // clears a mark meanwhile is not undone here.
        let rows =
            w.tx.fetch_all(
                &format!(
                    "SELECT {QUOTA_COLUMNS} FROM quotas WHERE exhausted ORDER BY scope, name @lock"
                ),
                args![],
            )
            .await?;
        for r in &rows {
            let q = QuotaRow::from_row(r)?;
            self.block_held_jobs(&mut w, q.scope, &q.name).await?;
        }
        self.finish(w).await
    }
}
