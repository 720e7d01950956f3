//! Counts the database keeps with triggers (migrations 0011, 0012): jobs
//! per (tenant, state) and active tasks per (queue, tenant, state), read by
//! the operator snapshot and queue health instead of counting rows.
//!
//! SQLite's triggers update one counter row per key (one writer: nothing
//! contends). Postgres's append each statement's net change to a delta
//! table, which the sweep folds into the counters; a reader sums both in
//! one snapshot, exact at every moment.

use crate::db::Backend;
use crate::error::Result;
use crate::sql::{args, Tx};

use super::Kernel;

/// One kept count: its table, the deltas of its Postgres triggers, the key
/// columns.
pub(crate) struct Kept {
    table: &'static str,
    deltas: &'static str,
    keys: &'static str,
}

pub(crate) const JOB_COUNTS: Kept = Kept {
    table: "job_counts",
    deltas: "job_count_deltas",
    keys: "tenant, state",
};

pub(crate) const TASK_COUNTS: Kept = Kept {
    table: "task_counts",
    deltas: "task_count_deltas",
    keys: "queue, tenant, state",
};

impl Kept {
    /// A `FROM` item with the key columns and `n`: on Postgres the counts
    /// and the deltas not yet folded (sum `n` per key to read).
    pub(crate) fn source(&self, backend: Backend) -> String {
        let Kept {
            table,
            deltas,
            keys,
        } = self;
        match backend {
            Backend::Sqlite => table.to_string(),
            Backend::Postgres => format!(
                "(SELECT {keys}, n FROM {table} UNION ALL SELECT {keys}, delta FROM {deltas}) c"
            ),
        }
    }

    /// Postgres: moves the deltas into the counts.
    async fn fold(&self, tx: &mut Tx) -> Result<()> {
        let Kept {
            table,
            deltas,
            keys,
        } = self;
        tx.execute(
            &format!(
                "WITH d AS (DELETE FROM {deltas} RETURNING {keys}, delta) \
                 INSERT INTO {table} ({keys}, n) SELECT {keys}, SUM(delta) FROM d GROUP BY {keys} \
                 ON CONFLICT ({keys}) DO UPDATE SET n = {table}.n + EXCLUDED.n"
            ),
            args![],
        )
        .await?;
        Ok(())
    }
}

impl Kernel {
    /// Postgres: folds the deltas of every kept count, so readers sum a few
    /// rows. One replica folds at a time; the others skip the round. A fold
    /// changes no answer. SQLite: nothing to do.
    pub(crate) async fn fold_counts(&self) -> Result<()> {
        if self.backend() != Backend::Postgres {
            return Ok(());
        }
        let mut tx = Tx::begin(self.db()).await?;
        let ours = tx
            .fetch_one(
                "SELECT pg_try_advisory_xact_lock(hashtext('switchyard.job_counts')) AS ours",
                args![],
            )
            .await?
            .bool("ours")?;
        if ours {
            for kept in [JOB_COUNTS, TASK_COUNTS] {
                kept.fold(&mut tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
