//! Retention: the background sweep deletes old events and old finished
//! jobs, in bounded batches, each batch its own short transaction (so on
//! SQLite the one writer is free between batches).
//!
//! - Events older than `event_retention_ms` go, oldest seq first. Readers
//!   never depend on a deleted row: `events_after(seq)` returns the events
//!   with a higher seq that remain. The highest seq deleted is kept
//!   (`instance_meta`), so that a client resuming from below it is told
//!   what it missed (`Kernel::check_resume`) instead of silently getting
//!   what is left. Seqs are never reused (SQLite AUTOINCREMENT; Postgres
//!   transaction ids).
//! - Jobs that finished longer ago than `finished_job_retention_ms` go with
//!   their tasks, edges, attempts, attempt logs and dead-letter entries.
//!   An unfinished job is never deleted, nor one with an open dead-letter
//!   entry (an operator may still replay it). Events of deleted jobs stay
//!   until their own retention ends.
//!
//! - Console sessions that ended (revoked, or past their absolute expiry)
//!   go at once: nothing reads them again.
//!
//! When nothing is old enough, a pass costs three reads on the read side
//! and no write transaction.

use crate::db::Backend;
use crate::error::Result;
use crate::sql::args;

use super::{job_text, Kernel};

/// The `instance_meta` key of the highest seq retention has deleted.
pub(super) const DELETED_THROUGH: &str = "events_deleted_through";

/// The highest seq retention has deleted (0: none).
pub(super) async fn deleted_through(tx: &mut crate::sql::Tx) -> Result<i64> {
    let row = tx
        .fetch_optional(
            "SELECT value FROM instance_meta WHERE key = $1",
            args![DELETED_THROUGH],
        )
        .await?;
    Ok(match row {
        Some(r) => r.text("value")?.parse().unwrap_or(0),
        None => 0,
    })
}

/// Tables whose ids SQLite numbers from the rows that are left: a new row
/// gets the highest id in its table plus one, so deleting the newest rows
/// would hand their ids out again (to a job whose page, events and
/// bookmarks were another's). Before retention deletes any of them, the
/// highest id of each is kept (`instance_meta`, `id_floor.<table>`), and
/// SQLite numbers new rows above it ([`sqlite_next_id`]). Postgres
/// sequences never go back.
const FLOORED: [&str; 4] = ["jobs", "tasks", "attempts", "dead_letters"];

/// SQLite: the first id a new row of `table` may take, with `offset`
/// added (an SQL expression: `1` for one row, a row number for several).
pub(super) fn sqlite_next_id(table: &str, offset: &str) -> String {
    debug_assert!(FLOORED.contains(&table));
    format!(
        "(MAX(COALESCE((SELECT MAX(id) FROM {table}), 0), \
              COALESCE((SELECT CAST(value AS INTEGER) FROM instance_meta WHERE key = 'id_floor.{table}'), 0)) \
          + {offset})"
    )
}

/// The id of a new row of `table`, as an SQL expression: the table's
/// sequence on Postgres; on SQLite [`sqlite_next_id`], `row` being the
/// row's 1-based number among those the statement inserts.
pub(super) fn new_id_sql(backend: Backend, table: &str, row: &str) -> String {
    match backend {
        Backend::Postgres => format!("nextval('{table}_id_seq')"),
        Backend::Sqlite => sqlite_next_id(table, row),
    }
}

/// SQLite: keeps the highest id of each [`FLOORED`] table, before
/// retention deletes rows of them.
async fn keep_id_floors(tx: &mut crate::sql::Tx, now: i64) -> Result<()> {
    let highest: Vec<String> = FLOORED
        .iter()
        .map(|t| format!("SELECT 'id_floor.{t}' AS key, (SELECT MAX(id) FROM {t}) AS id"))
        .collect();
    tx.execute(
        &format!(
            "INSERT INTO instance_meta (key, value, updated_at) \
             SELECT key, CAST(id AS TEXT), $1 FROM ({}) WHERE id IS NOT NULL \
             ON CONFLICT (key) DO UPDATE SET \
                 value = CAST(MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT), \
                 updated_at = excluded.updated_at",
            highest.join(" UNION ALL ")
        ),
        args![now],
    )
    .await?;
    Ok(())
}

/// Events deleted per transaction.
const EVENT_BATCH: i64 = 5_000;
/// Jobs deleted per transaction, at most; fewer when they have many tasks.
const JOB_BATCH: i64 = 200;
/// Tasks deleted per transaction, about (a job is never split).
const JOB_BATCH_TASKS: i64 = 5_000;
/// Batches of each kind one pass runs at most; the rest waits for the next
/// pass, so a large backlog (retention just enabled) never holds the writer
/// for long.
const MAX_BATCHES: usize = 20;

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub events: u64,
    pub jobs: u64,
    /// Console sessions that had ended (revoked, or past their absolute
    /// expiry).
    pub sessions: u64,
}

impl Kernel {
    /// Deletes the events and finished jobs that retention lets go now, in
    /// at most a bounded number of batches of each. Run by the background
    /// duty after every sweep; safe on every replica at once.
    pub async fn apply_retention(&self) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        let now = self.now();
        let config = self.config();
        if config.event_retention_ms > 0 {
            let cutoff = now - config.event_retention_ms;
            for _ in 0..MAX_BATCHES {
                let n = self.delete_old_events(cutoff).await?;
                report.events += n;
                if (n as i64) < EVENT_BATCH {
                    break;
                }
            }
        }
        if config.finished_job_retention_ms > 0 {
            let cutoff = now - config.finished_job_retention_ms;
            for _ in 0..MAX_BATCHES {
                let (deleted, more) = self.delete_old_jobs(cutoff).await?;
                report.jobs += deleted;
                if !more {
                    break;
                }
            }
        }
        report.sessions = self.delete_ended_sessions(now).await?;
        Ok(report)
    }

    /// Sessions that can never be used again: revoked ones, and those past
    /// their absolute expiry (an idle one reaches that within the absolute
    /// limit). Read first, so an idle pass writes nothing.
    async fn delete_ended_sessions(&self, now: i64) -> Result<u64> {
        const ENDED: &str = "expires_at < $1 OR revoked_at IS NOT NULL";
        let any = self
            .db()
            .read_optional(
                &format!("SELECT id FROM sessions WHERE {ENDED} LIMIT 1"),
                args![now],
            )
            .await?;
        if any.is_none() {
            return Ok(0);
        }
        let mut w = self.begin().await?;
        let n =
            w.tx.execute(&format!("DELETE FROM sessions WHERE {ENDED}"), args![now])
                .await?;
        self.finish(w).await?;
        Ok(n)
    }

    /// One batch: the oldest events (by seq) with `ts < cutoff`.
    async fn delete_old_events(&self, cutoff: i64) -> Result<u64> {
        let oldest = self
            .db()
            .read_optional("SELECT ts FROM events ORDER BY seq LIMIT 1", args![])
            .await?;
        match oldest {
            Some(r) if r.i64("ts")? < cutoff => {}
            _ => return Ok(0),
        }
        // From the head of the log only: the seq index bounds the work even
        // when few events of the head are old.
        let mut w = self.begin().await?;
        let deleted =
            w.tx.fetch_all(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM \
                     (SELECT seq, ts FROM events ORDER BY seq LIMIT $1) head WHERE head.ts < $2) \
                 RETURNING seq",
                args![EVENT_BATCH, cutoff],
            )
            .await?;
        let mut through = deleted_through(&mut w.tx).await?;
        for r in &deleted {
            through = through.max(r.i64("seq")?);
        }
        // What a reader resuming below it has missed (see `check_resume`).
        w.tx.execute(
            "INSERT INTO instance_meta (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            args![DELETED_THROUGH, through.to_string(), w.now],
        )
        .await?;
        self.finish(w).await?;
        Ok(deleted.len() as u64)
    }

    /// One batch of finished jobs with `finished_at < cutoff`. Returns how
    /// many were deleted and whether more may be waiting.
    async fn delete_old_jobs(&self, cutoff: i64) -> Result<(u64, bool)> {
        // Chosen on the read side: an idle pass writes nothing.
        let candidates = self
            .db()
            .read_all(
                // Only finished jobs have a `finished_at` (the state is
                // checked again below, by id): the range is the index's.
                "SELECT j.id, (SELECT COUNT(*) FROM tasks t WHERE t.job_id = j.id) AS tasks FROM jobs j \
                 WHERE j.finished_at < $1 \
                   AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.job_id = j.id AND d.status = 'open') \
                 ORDER BY j.finished_at, j.id LIMIT $2",
                args![cutoff, JOB_BATCH],
            )
            .await?;
        if candidates.is_empty() {
            return Ok((0, false));
        }
        let mut ids = Vec::new();
        let mut tasks = 0;
        for r in &candidates {
            let n = r.i64("tasks")?;
            if !ids.is_empty() && tasks + n > JOB_BATCH_TASKS {
                break;
            }
            tasks += n;
            ids.push(r.i64("id")?);
        }
        let more = ids.len() < candidates.len() || candidates.len() as i64 == JOB_BATCH;

        let mut w = self.begin().await?;
        // Checked again under the row locks: a job retried since it was
        // chosen is unfinished (or finished later) and stays. A finished job
        // cannot gain an open dead-letter entry without being retried first.
        let ids: Vec<i64> =
            w.tx.fetch_all(
                "SELECT id FROM jobs WHERE id @in($1) AND finished_at < $2 \
                   AND state IN ('succeeded', 'failed', 'cancelled') @skip_locked",
                args![ids, cutoff],
            )
            .await?
            .iter()
            .map(|r| r.i64("id"))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            // Retried meanwhile, or another replica has them: next pass.
            self.finish(w).await?;
            return Ok((0, false));
        }
        if w.tx.backend() == Backend::Sqlite {
            keep_id_floors(&mut w.tx, w.now).await?;
        }
        const OF_JOBS: &str = "SELECT id FROM tasks WHERE job_id @in($1)";
        for sql in [
            format!(
                "DELETE FROM attempt_logs WHERE attempt_id IN (SELECT id FROM attempts WHERE task_id IN ({OF_JOBS}))"
            ),
            format!("DELETE FROM attempts WHERE task_id IN ({OF_JOBS})"),
            format!("DELETE FROM task_deps WHERE task_id IN ({OF_JOBS})"),
            format!("DELETE FROM dead_letters WHERE task_id IN ({OF_JOBS}) AND status <> 'open'"),
            "DELETE FROM job_kinds WHERE job_id @in($1)".to_string(),
            "DELETE FROM tasks WHERE job_id @in($1)".to_string(),
        ] {
            w.tx.execute(&sql, args![ids.clone()]).await?;
        }
        job_text::delete(&mut w.tx, ids.clone()).await?;
        let deleted =
            w.tx.execute("DELETE FROM jobs WHERE id @in($1)", args![ids])
                .await?;
        self.finish(w).await?;
        Ok((deleted, more))
    }
}
