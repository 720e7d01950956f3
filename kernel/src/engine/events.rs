//! The event log: appending, numbering (`seq`) and tailing; plus the
//! background duties (sweeps, retention, the Postgres notifier and
//! listener).
//!
//! The guarantee readers rely on (SPEC §5): a reader that has seen `seq` N
//! and asks for events after N never later misses an event with a seq ≤ N.
//!
//! - SQLite: one writer connection, so transactions commit in the order they
//!   insert; the INTEGER PRIMARY KEY is the seq (1, 2, 3, …).
//! - Postgres: transactions commit in any order, so a BIGSERIAL would let a
//!   late commit appear below what a reader has already passed. Instead the
//!   seq of an event is `xid << 20 | n`: the 64-bit id of the transaction
//!   that wrote it, then its position within that transaction. Readers only
//!   return events whose transaction id is below the oldest transaction
//!   still running (`pg_snapshot_xmin`): every transaction below that has
//!   ended, and every transaction that has not yet committed has a higher
//!   id, so nothing can later appear below what was returned. Seqs are
//!   increasing and unique but not contiguous. Writers never wait for each
//!   other and no row is written twice; the cost is that a long-running
//!   transaction holds back the visibility of newer events until it ends:
//!   any transaction with an id on the same Postgres server, in any of its
//!   databases (transaction ids are the server's), so give Switchyard a
//!   server of its own, or one without long writing transactions. The
//!   kernel's own sessions end after 10 s idle in a transaction (a
//!   replica stopped mid-transaction: see `db.rs`).
//!
//! This module never interprets events; it stores and orders them.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::{Backend, Pools};
use crate::error::{KernelError, Result};
use crate::model::{Event, EventPage, EventSubject, ResumeCheck};
use crate::sql::{args, Arg, Row, Tx};

use super::submit::{ids, opt_ids, opt_texts, texts, unnest_sql};
use super::{Kernel, NewEvent};

/// The most events one transaction may append: on Postgres a seq keeps 20
/// bits for an event's position within its transaction (see the module),
/// and more would run into the next transaction's seqs. The same on SQLite,
/// so that an action does not work on one backend and fail on the other.
pub(super) const MAX_EVENTS_PER_TRANSACTION: usize = (1 << 20) - 1;

/// Refuses a unit of work with more events than one transaction may append,
/// before anything of it is committed.
pub(super) fn check_count(events: usize) -> Result<()> {
    if events > MAX_EVENTS_PER_TRANSACTION {
        return Err(KernelError::Validation {
            message: format!(
                "this action would record {events} events at once, more than the \
                 {MAX_EVENTS_PER_TRANSACTION} one action may record; act on fewer jobs or tasks at a time"
            ),
            details: Some(serde_json::json!({
                "events": events, "limit": MAX_EVENTS_PER_TRANSACTION,
            })),
        });
    }
    Ok(())
}

pub(super) async fn insert(tx: &mut Tx, events: &[NewEvent]) -> Result<()> {
    check_count(events.len())?;
    match tx.backend() {
        // SQLite: multi-row VALUES in a few fixed chunk sizes
        // ([`SQLITE_CHUNKS`]; each size is one cached prepared statement).
        Backend::Sqlite => {
            let mut rest = events;
            while !rest.is_empty() {
                let chunk = SQLITE_CHUNKS
                    .into_iter()
                    .find(|n| *n <= rest.len())
                    .expect("1 always fits");
                let (now, later) = rest.split_at(chunk);
                let mut args = Vec::with_capacity(chunk * 10);
                for e in now {
                    args.push(Arg::I64(e.ts));
                    args.push(Arg::Text(e.event_type.to_string()));
                    args.push(Arg::OptText(e.tenant.clone()));
                    args.push(Arg::OptI64(e.job_id));
                    args.push(Arg::OptI64(e.task_id));
                    args.push(Arg::OptI64(e.attempt_id));
                    args.push(Arg::OptI64(e.node_id));
                    args.push(Arg::OptI64(e.dead_letter_id));
                    args.push(Arg::OptText(e.queue.clone()));
                    args.push(Arg::Text(e.data.clone()));
                }
                tx.execute(sqlite_insert_sql(chunk), args).await?;
                rest = later;
            }
        }
        Backend::Postgres => {
            tx.execute(&pg_insert_sql(1), columns(events)).await?;
        }
    }
    Ok(())
}

/// The columns of an event as [`pg_insert_sql`] reads them.
const PG_COLS: &[(&str, &str)] = &[
    ("ts", "BIGINT"),
    ("type", "TEXT"),
    ("tenant", "TEXT"),
    ("job_id", "BIGINT"),
    ("task_id", "BIGINT"),
    ("attempt_id", "BIGINT"),
    ("node_id", "BIGINT"),
    ("dead_letter_id", "BIGINT"),
    ("queue", "TEXT"),
    ("data", "TEXT"),
];

/// Postgres: `INSERT INTO events …` of the events whose [`columns`] are
/// parameters `first`, `first + 1`, …, numbered in order within the
/// transaction.
pub(super) fn pg_insert_sql(first: usize) -> String {
    let names: Vec<&str> = PG_COLS.iter().map(|(c, _)| *c).collect();
    format!(
        "INSERT INTO events (seq, {names}) \
         SELECT (pg_current_xact_id()::text::bigint << 20) + r.n - 1, {names} \
         FROM {} WITH ORDINALITY AS r({names}, n)",
        unnest_sql(PG_COLS, first),
        names = names.join(", ")
    )
}

/// The events as the arrays [`pg_insert_sql`] reads.
pub(super) fn columns(events: &[NewEvent]) -> Vec<Arg> {
    debug_assert!(events.len() <= MAX_EVENTS_PER_TRANSACTION);
    vec![
        ids(events, |e| e.ts),
        texts(events, |e| &e.event_type),
        opt_texts(events, |e| e.tenant.as_deref()),
        opt_ids(events, |e| e.job_id),
        opt_ids(events, |e| e.task_id),
        opt_ids(events, |e| e.attempt_id),
        opt_ids(events, |e| e.node_id),
        opt_ids(events, |e| e.dead_letter_id),
        opt_texts(events, |e| e.queue.as_deref()),
        texts(events, |e| &e.data),
    ]
}

/// Rows per SQLite event insert, largest first; a list of events is written
/// in as few statements as these sizes allow.
///
/// Every statement is a round trip to sqlx's SQLite thread and back, and
/// with both cores busy that hop, not SQLite's work, is what a statement of
/// a few rows costs: a batched claim or completion of 512 tasks writes
/// 512–1,024 events, which took 32–64 statements in chunks of 16, and takes
/// 2–4 now. Alternated three times
/// (kernel-bench, 50,000 tasks), the batched drain went from 15,373 /
/// 14,459 / 13,417 to 18,855 / 19,505 / 18,154 tasks/s and enqueue from
/// 39,375 / 37,528 / 37,594 to 45,057 / 47,121 / 41,413 jobs/s, with the
/// same instruction count under callgrind (2.43 billion for 3,000 tasks).
/// Chunks of up to 1,024 were no faster; one statement unpacking a JSON
/// array was slower (2.43 → 3.03 billion instructions).
const SQLITE_CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

/// `INSERT INTO events … VALUES (…), (…)` for `rows` rows, built once per size.
fn sqlite_insert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<HashMap<usize, String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        SQLITE_CHUNKS
            .into_iter()
            .map(|n| {
                // Anonymous `?`s, bound in order: sqlx asks SQLite the name of
                // every parameter it binds, and SQLite finds a name (`$17`)
                // by walking the statement's list of names, so 160 named
                // parameters cost 160²/2 steps a statement (3.5 % of all
                // instructions of a kernel-bench run, callgrind).
                let values: Vec<String> = (0..n)
                    .map(|_| format!("({})", ["?"; 10].join(", ")))
                    .collect();
                (
                    n,
                    format!(
                        "INSERT INTO events (ts, type, tenant, job_id, task_id, attempt_id, node_id, dead_letter_id, queue, data) VALUES {}",
                        values.join(", ")
                    ),
                )
            })
            .collect()
    });
    all[&rows].as_str()
}

fn event_from_row(r: &Row) -> Result<Event> {
    Ok(Event {
        seq: r.i64("seq")?,
        ts: r.i64("ts")?,
        event_type: r.text("type")?,
        tenant: r.opt_text("tenant")?,
        subject: EventSubject {
            job_id: r.opt_i64("job_id")?,
            task_id: r.opt_i64("task_id")?,
            attempt_id: r.opt_i64("attempt_id")?,
            node_id: r.opt_i64("node_id")?,
            dead_letter_id: r.opt_i64("dead_letter_id")?,
            queue: r.opt_text("queue")?,
        },
        data: r.opt_json("data")?.unwrap_or(Value::Null),
    })
}

const EVENT_COLUMNS: &str =
    "seq, ts, type, tenant, job_id, task_id, attempt_id, node_id, dead_letter_id, queue, data";

/// The condition that keeps readers below the visibility horizon (see the
/// module doc); always true on SQLite.
fn horizon(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "1 = 1",
        Backend::Postgres => "seq < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)",
    }
}

impl Kernel {
    /// Events with `seq > after`, oldest first, at most `limit` (1–10,000).
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<EventPage> {
        let limit = limit.clamp(1, 10_000);
        let rows = self
            .db()
            .read_all(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 AND {} ORDER BY seq LIMIT $2",
                    horizon(self.backend())
                ),
                args![after, limit],
            )
            .await?;
        let items = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_after = items.last().map(|e| e.seq).unwrap_or(after);
        Ok(EventPage {
            items,
            next_after,
            deleted_through: None,
        })
    }

    /// The newest `limit` events with `seq <= through`, newest first: the
    /// recent past of the log, read backwards along its index, as a
    /// timeline opens (no horizon needed: `through` is a readable seq).
    pub async fn events_through(&self, through: i64, limit: i64) -> Result<Vec<Event>> {
        let rows = self
            .db()
            .read_all(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq <= $1 ORDER BY seq DESC LIMIT $2"
                ),
                args![through, limit.clamp(1, 10_000)],
            )
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The events of one job with `seq > after` (its timeline / stream).
    pub async fn job_events_after(&self, job_id: i64, after: i64, limit: i64) -> Result<EventPage> {
        let limit = limit.clamp(1, 10_000);
        let rows = self
            .db()
            .read_all(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE job_id = $1 AND seq > $2 AND {} ORDER BY seq LIMIT $3",
                    horizon(self.backend())
                ),
                args![job_id, after, limit],
            )
            .await?;
        let items = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_after = items.last().map(|e| e.seq).unwrap_or(after);
        Ok(EventPage {
            items,
            next_after,
            deleted_through: None,
        })
    }

    /// What a reader resuming after `after` must know besides the events:
    /// whether retention deleted events it has not read (it must then
    /// refetch the state they described), or whether `after` lies beyond
    /// every seq ever written (a seq from another database, or from before
    /// a restore: it would otherwise wait for events that never come).
    pub async fn check_resume(&self, after: i64) -> Result<ResumeCheck> {
        let row = self
            .db()
            .read_one(
                "SELECT (SELECT value FROM instance_meta WHERE key = $1) AS deleted, \
                        (SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM events) AS newest",
                args![super::retention::DELETED_THROUGH],
            )
            .await?;
        let deleted: i64 = row
            .opt_text("deleted")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let newest = row.i64("newest")?;
        Ok(ResumeCheck {
            deleted_through: (after < deleted).then_some(deleted),
            beyond_head: after > newest.max(deleted),
        })
    }

    /// The highest seq readable now (0 for an empty log).
    pub async fn last_event_seq(&self) -> Result<i64> {
        let row = self
            .db()
            .read_one(
                &format!(
                    "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS seq FROM events WHERE {}",
                    horizon(self.backend())
                ),
                args![],
            )
            .await?;
        Ok(row.i64("seq")?)
    }

    /// Waits (up to 10 s) until every event committed before the call is
    /// readable, and returns the last readable seq. Immediate on SQLite; on
    /// Postgres it waits for older transactions still running to end.
    pub async fn sync_events(&self) -> Result<i64> {
        if self.backend() == Backend::Postgres {
            let Pools::Postgres { pool, .. } = &self.db().pools else {
                unreachable!("backend is postgres")
            };
            // Everything committed so far has an xid below the next one.
            let (next,): (i64,) =
                sqlx::query_as("SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::bigint)")
                    .fetch_one(pool)
                    .await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let (xmin,): (i64,) = sqlx::query_as(
                    "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint)",
                )
                .fetch_one(pool)
                .await?;
                if xmin >= next || tokio::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        self.last_event_seq().await
    }

    /// Starts the background duties of this replica: the lease-expiry and
    /// node sweep, then retention (old events and finished jobs), every
    /// `config.sweep_every`; on SQLite also a WAL checkpoint every 100 ms
    /// (see [`crate::Db::checkpoint`]); on Postgres also a watcher of
    /// the event horizon (wakes subscribers when events become readable),
    /// the notifier (tells other replicas that work is ready or events were
    /// written) and a LISTEN connection (wakes local claimers and event
    /// subscribers when another replica writes). Safe on every replica.
    pub fn start_background(&self) -> Background {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let kernel = self.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let every = kernel.config().sweep_every;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => return,
                }
                if let Err(e) = kernel.sweep().await {
                    tracing::warn!(error = %e, "lease sweep failed; retrying next round");
                }
                match kernel.apply_retention().await {
                    Ok(r) if r.events > 0 || r.jobs > 0 || r.sessions > 0 => {
                        tracing::debug!(
                            events = r.events,
                            jobs = r.jobs,
                            sessions = r.sessions,
                            "retention deleted old records"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "retention failed; retrying next round"),
                }
            }
        }));

        if self.backend() == Backend::Sqlite {
            let kernel = self.clone();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.changed() => return,
                    }
                    if let Err(e) = kernel.db().checkpoint().await {
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                    }
                }
            }));
        }

        if self.backend() == Backend::Postgres {
            // New events become readable when older transactions end, which
            // no commit of ours announces: watch the readable maximum.
            let kernel = self.clone();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut last = -1;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = stop.changed() => return,
                    }
                    match kernel.last_event_seq().await {
                        Ok(seq) if seq != last => {
                            last = seq;
                            kernel.inner.events_changed.send_modify(|g| *g += 1);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot read the event horizon"),
                    }
                }
            }));

            // The notifier: one NOTIFY for any number of local commits that
            // made work ready (or wrote events), sent outside their
            // transactions.
            let kernel = self.clone();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let Pools::Postgres { pool, .. } = kernel.db().pools.clone() else {
                    return;
                };
                loop {
                    let channel = tokio::select! {
                        _ = kernel.inner.remote_work.notified() => "switchyard_work",
                        _ = kernel.inner.remote_events.notified() => "switchyard_events",
                        _ = stop.changed() => return,
                    };
                    if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(channel)
                        .bind(&kernel.inner.instance)
                        .execute(&pool)
                        .await
                    {
                        tracing::warn!(error = %e, "cannot notify other replicas");
                    }
                }
            }));

            let kernel = self.clone();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let listened = async {
                        let Pools::Postgres { pool, .. } = &kernel.db().pools else {
                            return Ok::<(), sqlx::Error>(());
                        };
                        let mut listener = PgListener::connect_with(pool).await?;
                        listener
                            .listen_all(["switchyard_work", "switchyard_events"])
                            .await?;
                        loop {
                            let n = listener.recv().await?;
                            if n.payload() == kernel.inner.instance {
                                continue;
                            }
                            match n.channel() {
                                "switchyard_work" => kernel.inner.work.notify_waiters(),
                                _ => kernel.inner.events_changed.send_modify(|g| *g += 1),
                            }
                        }
                    };
                    tokio::select! {
                        r = listened => {
                            if let Err(e) = r {
                                tracing::warn!(error = %e, "postgres LISTEN connection lost; reconnecting");
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        _ = stop.changed() => return,
                    }
                }
            }));
        }
        Background {
            stop: stop_tx,
            tasks,
        }
    }
}

/// Handle of the background duties started by [`Kernel::start_background`].
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// Stops the duties and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_appends_at_most_what_its_seqs_can_number() {
        assert!(check_count(0).is_ok());
        assert!(check_count((1 << 20) - 1).is_ok());
        // Position 2^20 would be the first seq of the next transaction id.
        match check_count(1 << 20) {
            Err(KernelError::Validation { message, details }) => {
                assert!(message.contains("1048576 events"), "{message}");
                assert_eq!(details.unwrap()["limit"], (1 << 20) - 1);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
