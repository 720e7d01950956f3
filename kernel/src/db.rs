//! Opening the database: an SQLite file (the embedded default) or a Postgres
//! server, migrated on open.
//!
//! The two backends share one schema shape, kept in `migrations/sqlite` and
//! `migrations/postgres`; the SQL differs where the dialects differ. Nothing
//! above this module decides which backend it talks to except through
//! [`Backend`] and the small dialect layer in `sql`.
//!
//! SQLite gets two pools: one connection that does every write (so writers
//! queue in-process instead of spinning on `SQLITE_BUSY`, and commit order is
//! the order of the event log), and a few read-only connections that WAL lets
//! read while the writer writes.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Connection as _;

use crate::sql::Conns;

/// Which storage engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Pools {
    Sqlite {
        /// Exactly one connection: every write goes through it.
        write: SqlitePool,
        /// Read-only connections for lists and details.
        read: SqlitePool,
        /// One connection that only checkpoints the WAL (see
        /// [`Db::checkpoint`]), so the writer never pays for it.
        checkpoint: SqlitePool,
    },
    Postgres {
        pool: PgPool,
        /// The claims' connections (see `Db::open_with`).
        lease: PgPool,
        /// The submits' connections (see `Db::open_with`).
        submit: PgPool,
    },
}

impl Pools {
    /// The Postgres connections `conns` names.
    ///
    /// # Panics
    /// On SQLite, which has no such choice: callers match the backend first.
    pub(crate) fn postgres(&self, conns: Conns) -> &PgPool {
        match (self, conns) {
            (Pools::Postgres { pool, .. }, Conns::Main) => pool,
            (Pools::Postgres { lease, .. }, Conns::Lease) => lease,
            (Pools::Postgres { submit, .. }, Conns::Submit) => submit,
            (Pools::Sqlite { .. }, _) => unreachable!("SQLite has one writer"),
        }
    }
}

/// A migrated database on one of the two backends. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) pools: Pools,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}: expected sqlite:PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot create the folder {path} for the SQLite database: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the SQLite database {path} is not writable: {source}")]
    NotWritable {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot connect to Postgres: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("Postgres did not answer within {} s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimedOut,
    #[error(
        "the database was written by a newer Switchyard: its schema is at version {found}, \
         the newest this binary knows is {known}. Nothing was changed; run that newer \
         Switchyard (or restore a backup from before it)"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// How long opening waits for Postgres to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses a database migrations newer than this binary's were applied to:
/// `newest` is the newest applied (`None`: no migration table yet). The
/// migrator would only say that one of them is missing.
fn check_not_newer(newest: Option<i64>, migrator: &sqlx::migrate::Migrator) -> Result<(), DbError> {
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    match newest {
        Some(found) if found > known => Err(DbError::NewerSchema { found, known }),
        _ => Ok(()),
    }
}

/// SQLite: whether this process can write the database (not so for a
/// read-only file or folder, or `mode=ro`). SQLite opens such a file
/// read-only without a word, and every write would fail later. The probe
/// writes the header's `user_version` back as it is: nothing changes.
async fn probe_write(write: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut conn = write.acquire().await?;
    let (version,): (i64,) = sqlx::query_as("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(&format!("PRAGMA user_version = {version}"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// SQLite's answer to opening for writing what may not be written:
/// `SQLITE_READONLY` and its extended codes (a read-only folder, say), or
/// `SQLITE_CANTOPEN` (no file can be made in the folder).
fn is_not_writable(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 8 | 14))
}

/// Options for [`Db::open_with`].
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Postgres pool size (SQLite always has one writer).
    pub max_connections: u32,
    /// SQLite read-only connections.
    pub sqlite_readers: u32,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            max_connections: 16,
            sqlite_readers: 4,
        }
    }
}

/// A Postgres pool that checks a connection with a round trip only when it
/// sat idle for over a second. sqlx's default pings on every acquire: a
/// round trip before each submit, completion or read, which on an idle
/// system (its server process asleep) cost about as much as the statement
/// that follows. A connection the server closed meanwhile (a restart)
/// still fails at most one statement, after a second of quiet at least.
/// How long a Postgres session may sit in a transaction without a
/// statement before the server ends it (see `Db::open`).
const IDLE_IN_TRANSACTION: &str = "10s";

fn ping_when_idle(options: PgPoolOptions) -> PgPoolOptions {
    options
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > Duration::from_secs(1) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `url`.
    ///
    /// `sqlite:` URLs name a file; its parent folder is created when missing.
    /// `postgres://` / `postgresql://` URLs name an existing database.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        Db::open_with(url, DbOptions::default()).await
    }

    pub async fn open_with(url: &str, opts: DbOptions) -> Result<Db, DbError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL: a commit is durable against a process crash;
                // only an OS crash can lose the last transactions.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .pragma("temp_store", "memory")
                .pragma("cache_size", "-65536")
                // The background checkpointer keeps the WAL short (see
                // `Db::checkpoint`); the writer's own checkpoint, an fsync
                // inside some commit, is only a backstop at ~16 MiB.
                .pragma("wal_autocheckpoint", "4000");
            let not_writable =
                |source: Box<dyn std::error::Error + Send + Sync>| DbError::NotWritable {
                    path: options.get_filename().display().to_string(),
                    source,
                };
            // A read-only file is refused before SQLite opens it: SQLite
            // would open it read-only, and make its journal files beside it
            // read-only too, which would outlive this refusal.
            match std::fs::OpenOptions::new()
                .write(true)
                .open(options.get_filename())
            {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(not_writable(err.into()))
                }
                _ => {}
            }
            if let Some(parent) = Path::new(options.get_filename()).parent() {
                if !parent.as_os_str().is_empty() && !parent.exists() {
                    std::fs::create_dir_all(parent).map_err(|source| DbError::CreateDir {
                        path: parent.display().to_string(),
                        source,
                    })?;
                }
            }
            // SQLite connections are files in this process: none goes
            // away unseen, so none is pinged before use (sqlx's default, a
            // hop to the connection's thread and back each time).
            let write = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(60))
                .connect_with(options.clone())
                .await
                .map_err(|err| {
                    if is_not_writable(&err) {
                        not_writable(err.into())
                    } else {
                        err.into()
                    }
                })?;
            probe_write(&write)
                .await
                .map_err(|err| not_writable(err.into()))?;
            let (migrated,): (bool,) = sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master \
                 WHERE type = 'table' AND name = '_sqlx_migrations')",
            )
            .fetch_one(&write)
            .await?;
            if migrated {
                let (newest,): (Option<i64>,) =
                    sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations")
                        .fetch_one(&write)
                        .await?;
                check_not_newer(newest, &SQLITE_MIGRATIONS)?;
            }
            SQLITE_MIGRATIONS.run(&write).await?;
            let checkpoint = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(opts.sqlite_readers.max(1))
                .connect_with(options.read_only(true))
                .await?;
            Ok(Db {
                pools: Pools::Sqlite {
                    write,
                    read,
                    checkpoint,
                },
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // No JIT compilation on any connection: it pays only for long
            // analytic queries, and what Postgres estimates as dear here is
            // not. Retention's idle pass (estimated at 220,000, run in
            // 0.03 ms) was compiled every second for 10-20 ms of CPU, which
            // a submit or claim on a 2-core machine then waited for.
            //
            // A transaction left open (its process stopped, or cut off by
            // the network without a reset) holds its row locks, and the
            // claims of every replica wait on a quota row it locked; it
            // also holds back what every reader of the event log may see
            // (`events.rs`). Postgres ends such a session after
            // `IDLE_IN_TRANSACTION` without a statement: the kernel's
            // transactions never pause that long between two.
            let options = PgConnectOptions::from_str(url)?.options([
                ("jit", "off"),
                ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION),
            ]);
            // One connection first, alone: a pool retries a refused
            // connection until its acquire timeout, then says only that
            // it timed out.
            let mut first =
                match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
                    .await
                {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(err)) => return Err(DbError::Connect(err)),
                    Err(_) => return Err(DbError::ConnectTimedOut),
                };
            let (migrated,): (bool,) =
                sqlx::query_as("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                    .fetch_one(&mut first)
                    .await?;
            if migrated {
                let (newest,): (Option<i64>,) =
                    sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations")
                        .fetch_one(&mut first)
                        .await?;
                check_not_newer(newest, &POSTGRES_MIGRATIONS)?;
            }
            first.close().await?;
            let pool = ping_when_idle(PgPoolOptions::new())
                .max_connections(opts.max_connections.max(2))
                .acquire_timeout(Duration::from_secs(60))
                .connect_with(options.clone())
                .await?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            // Claims get connections of their own, set up for them once:
            // - `synchronous_commit = off`: a grant need not wait for its
            //   WAL flush. If the server crashes before the flush, the grant
            //   is lost as a whole: the task is ready again and the worker's
            //   report is refused (stale), so the task runs again:
            //   at-least-once, as for any lost worker. Any later durable
            //   commit (e.g. the completion) flushes the grant first, since
            //   WAL is written in order. Submits and completions stay
            //   synchronous. (A claim's quota bookkeeping, starts per minute
            //   and exhausted marks, commits the same way: a crash can
            //   forget the last moment's starts, never count one twice.)
            // - `enable_bitmapscan = off`: the pick must walk the claim
            //   index in order and stop at `LIMIT`. A bitmap scan reads
            //   every entry of the partial index, including the dead ones
            //   that leased and finished tasks leave until vacuum (tens of
            //   thousands after a burst), then sorts; a plain index scan
            //   marks those entries dead as it passes and later scans skip
            //   them. An empty claim on a table after a 24,000-task burst:
            //   1.7 ms with the bitmap, 0.09 ms with the ordered scan.
            // - `enable_seqscan = off`, for the same walk: the planner cannot
            //   know that those dead entries are skipped without a visit to
            //   the table, so after a burst, with statistics saying few tasks
            //   are ready, it priced the walk at a table read per entry and
            //   read the whole table instead: 9 ms for an empty claim over
            //   60,000 tasks, against ~0.1 ms. An idle node's claims then
            //   took longer than the gap between two submits, so new work
            //   found no claim waiting for it, and every pickup of a run
            //   took ~20 ms (1 run in 5-8 of the bench's; session 12).
            // Set at connection start, these cost no round trip, and they
            // hold when the claim's statement is planned. (Like every pool
            // here, it pings only connections idle for over a second.)
            let lease = ping_when_idle(PgPoolOptions::new())
                .max_connections(opts.max_connections.clamp(2, 8))
                .acquire_timeout(Duration::from_secs(60))
                .connect_with(options.clone().options([
                    ("synchronous_commit", "off"),
                    ("enable_bitmapscan", "off"),
                    ("enable_seqscan", "off"),
                ]))
                .await?;
            // Submits get connections of their own too, which always use
            // the generic plan of a prepared statement: a submit is one
            // statement whose plan does not depend on its arguments, and
            // planning it anew each time (Postgres plans the first five
            // runs for their arguments, then keeps doing so while that
            // looks no dearer) took about as long as running it. A submit
            // that hands its work to a waiting claim first looks for older
            // ready work through the claim index, as the claim does, and
            // for the same reasons without bitmap or sequential scans (see
            // above).
            let submit = ping_when_idle(PgPoolOptions::new())
                .max_connections(opts.max_connections.clamp(2, 8))
                .acquire_timeout(Duration::from_secs(60))
                .connect_with(options.options([
                    ("plan_cache_mode", "force_generic_plan"),
                    ("enable_bitmapscan", "off"),
                    ("enable_seqscan", "off"),
                ]))
                .await?;
            Ok(Db {
                pools: Pools::Postgres {
                    pool,
                    lease,
                    submit,
                },
            })
        } else {
            Err(DbError::UnsupportedUrl(url.to_string()))
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Round-trips a trivial query: the database is reachable and answering.
    pub async fn ping(&self) -> Result<(), DbError> {
        match &self.pools {
            Pools::Sqlite { read, .. } => {
                sqlx::query("SELECT 1").execute(read).await?;
            }
            Pools::Postgres { pool, .. } => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// SQLite: copies committed WAL frames back into the database file
    /// (a passive checkpoint: it waits for no reader and blocks no writer)
    /// and returns how many frames the WAL holds. Run in the background,
    /// it keeps checkpoint fsyncs out of the writer's commits, where they
    /// would add milliseconds to whichever claim or submit triggered them.
    /// Postgres: nothing to do, returns 0.
    pub async fn checkpoint(&self) -> Result<i64, DbError> {
        match &self.pools {
            Pools::Sqlite { checkpoint, .. } => {
                let (_busy, frames, _copied): (i64, i64, i64) =
                    sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                        .fetch_one(checkpoint)
                        .await?;
                Ok(frames.max(0))
            }
            Pools::Postgres { .. } => Ok(0),
        }
    }

    /// The names of the migrations applied so far, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<String>, DbError> {
        let sql = "SELECT description FROM _sqlx_migrations WHERE success ORDER BY version";
        let rows: Vec<(String,)> = match &self.pools {
            Pools::Sqlite { read, .. } => sqlx::query_as(sql).fetch_all(read).await?,
            Pools::Postgres { pool, .. } => sqlx::query_as(sql).fetch_all(pool).await?,
        };
        Ok(rows.into_iter().map(|(d,)| d).collect())
    }

    /// Closes every connection; pending queries finish first.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite {
                write,
                read,
                checkpoint,
            } => {
                checkpoint.close().await;
                read.close().await;
                write.close().await;
            }
            Pools::Postgres {
                pool,
                lease,
                submit,
            } => {
                submit.close().await;
                lease.close().await;
                pool.close().await;
            }
        }
    }
}

/// A fresh database on the test Postgres server, for the crate's own tests.
#[cfg(test)]
pub(crate) struct TestPostgres {
    server: PgPool,
    name: String,
    pub(crate) url: String,
}

#[cfg(test)]
impl TestPostgres {
    /// `None` (the test skips) when no test server is configured, unless
    /// `SWITCHYARD_REQUIRE_POSTGRES=1` demands one.
    pub(crate) async fn create(test: &str) -> Option<TestPostgres> {
        let admin = match std::env::var("SWITCHYARD_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert_ne!(
                    std::env::var("SWITCHYARD_REQUIRE_POSTGRES").as_deref(),
                    Ok("1"),
                    "SWITCHYARD_REQUIRE_POSTGRES=1 but SWITCHYARD_TEST_POSTGRES_URL is not set"
                );
                eprintln!("skipping {test}: SWITCHYARD_TEST_POSTGRES_URL is not set");
                return None;
            }
        };
        let salt = std::collections::hash_map::RandomState::new();
        let name = format!(
            "{test}_{}_{:08x}",
            std::process::id(),
            std::hash::BuildHasher::hash_one(&salt, test) as u32
        );
        let server = PgPool::connect(&admin)
            .await
            .expect("connect to the server");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&server)
            .await
            .expect("create a database");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let url = format!("{base}/{name}");
        Some(TestPostgres { server, name, url })
    }

    /// Drops the database (`db`, opened on it, closed first).
    pub(crate) async fn drop(self, db: &Db) {
        db.close().await;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&self.server)
        .await
        .expect("drop the database");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Postgres pool (everything else's, the claims', the submits')
    /// runs with JIT compilation off, whatever the server's default.
    #[tokio::test]
    async fn postgres_connections_never_jit_compile() {
        let Some(pg) = TestPostgres::create("jit").await else {
            return;
        };
        let db = Db::open(&pg.url).await.expect("open");
        let Pools::Postgres {
            pool,
            lease,
            submit,
        } = &db.pools
        else {
            unreachable!("a postgres:// URL opens Postgres pools")
        };
        for (which, pool) in [("main", pool), ("lease", lease), ("submit", submit)] {
            let (jit,): (String,) = sqlx::query_as("SHOW jit")
                .fetch_one(pool)
                .await
                .expect("show jit");
            assert_eq!(jit, "off", "the {which} pool");
            // Nor does any keep a transaction open for long: a stopped
            // replica's locks once stalled every other replica's claims.
            let (idle,): (String,) = sqlx::query_as("SHOW idle_in_transaction_session_timeout")
                .fetch_one(pool)
                .await
                .expect("show idle_in_transaction_session_timeout");
            assert_eq!(idle, IDLE_IN_TRANSACTION, "the {which} pool");
        }
        pg.drop(&db).await;
    }
}
