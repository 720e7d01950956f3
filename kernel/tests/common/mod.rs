//! Test harness: a fresh kernel per test on a real SQLite temp file or a
//! fresh Postgres database (created through `SWITCHYARD_TEST_POSTGRES_URL`).
//!
//! Without that variable the Postgres variants print a skip line and pass,
//! unless `SWITCHYARD_REQUIRE_POSTGRES=1` (CI) makes them fail.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kernel::model::{ClaimRequest, JobSearch, Lease, NewNode};
use kernel::{Kernel, KernelConfig, ManualClock};

pub struct Env {
    pub kernel: Kernel,
    pub clock: ManualClock,
    pub url: String,
    sqlite_file: Option<PathBuf>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(path) = self.sqlite_file.take() {
            drop(RemoveOnDrop(path));
        }
    }
}

/// Deletes a SQLite database file (and its WAL) when dropped.
pub struct RemoveOnDrop(PathBuf);

impl RemoveOnDrop {
    pub fn new(path: PathBuf) -> RemoveOnDrop {
        RemoveOnDrop(path)
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

impl Env {
    /// A second handle on the kernel, and the file cleanup moved out of
    /// `Env`, so the database outlives the test body for checks after it.
    pub fn keep(&mut self) -> (Kernel, Option<RemoveOnDrop>) {
        (
            self.kernel.clone(),
            self.sqlite_file.take().map(RemoveOnDrop),
        )
    }
}

/// After every conformance test: the job and task counts the database
/// keeps (migrations 0011, 0012; read by the operator snapshot and queue
/// health) agree with the rows, before and after the sweep folds the
/// Postgres deltas.
pub async fn assert_counts_agree(kernel: &Kernel, url: &str) {
    for round in ["before the sweep", "after the sweep"] {
        if round == "after the sweep" {
            kernel.sweep().await.expect("sweep");
        }
        let kept = kernel.overview(None).await.expect("overview").jobs_by_state;
        let mut rows = std::collections::BTreeMap::new();
        for state in [
            "queued",
            "running",
            "succeeded",
            "failed",
            "cancelled",
            "blocked",
        ] {
            let search = JobSearch {
                state: Some(state.parse().expect("job state")),
                ..JobSearch::default()
            };
            let n = kernel.count_jobs(&search).await.expect("count jobs");
            if n != 0 {
                rows.insert(state.to_string(), n);
            }
        }
        assert_eq!(kept, rows, "kept job counts against the rows, {round}");

        // Queue depth (migration 0012) against the task rows, read
        // straight from the database.
        let health = kernel.queue_health(None).await.expect("queue health");
        let mut kept = std::collections::BTreeMap::new();
        for q in &health.queues {
            for (state, n) in [
                ("leased", q.leased),
                ("pending", q.pending),
                ("ready", q.ready),
            ] {
                if n != 0 {
                    kept.insert((q.name.clone(), state.to_string()), n);
                }
            }
        }
        let rows: Vec<(String, String, i64)> = fetch_rows(
            url,
            "SELECT queue, state, COUNT(*) AS n FROM tasks \
             WHERE state IN ('pending', 'ready', 'leased') GROUP BY queue, state",
        )
        .await;
        let rows: std::collections::BTreeMap<_, _> =
            rows.into_iter().map(|(q, s, n)| ((q, s), n)).collect();
        assert_eq!(
            kept, rows,
            "kept queue depth against the task rows, {round}"
        );
    }
}

/// After every conformance test: no row of the kernel's tables outlives
/// the job (or task, or attempt) it belongs to. Tasks are written and
/// deleted only with their jobs, and no table relies on a foreign key for
/// it (Postgres dropped the last one, migration 0013), so this is where a
/// submit, a retention pass or any other path that left one behind would
/// show.
pub async fn assert_no_orphans(url: &str) {
    // SQLite's `job_text` is a full-text table keyed by its rowid.
    let text_job = if url.starts_with("sqlite:") {
        "x.rowid"
    } else {
        "x.job_id"
    };
    let orphans: Vec<(String, i64)> = fetch_rows(
        url,
        &format!(
            "SELECT 'tasks' AS tbl, COUNT(*) AS n FROM tasks t \
             WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = t.job_id) \
         UNION ALL SELECT 'attempts', COUNT(*) FROM attempts a \
             WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = a.task_id AND t.job_id = a.job_id) \
         UNION ALL SELECT 'task_deps', COUNT(*) FROM task_deps d \
             WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.task_id) \
                OR NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.depends_on) \
         UNION ALL SELECT 'job_kinds', COUNT(*) FROM job_kinds k \
             WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = k.job_id) \
         UNION ALL SELECT 'job_text', COUNT(*) FROM job_text x \
             WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = {text_job}) \
         UNION ALL SELECT 'dead_letters', COUNT(*) FROM dead_letters d \
             WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.task_id AND t.job_id = d.job_id) \
         UNION ALL SELECT 'attempt_logs', COUNT(*) FROM attempt_logs l \
             WHERE NOT EXISTS (SELECT 1 FROM attempts a WHERE a.id = l.attempt_id)"
        ),
    )
    .await;
    let orphans: Vec<_> = orphans.into_iter().filter(|(_, n)| *n != 0).collect();
    assert!(orphans.is_empty(), "rows whose owner is gone: {orphans:?}");
}

/// Runs one statement on a connection of its own to `url` (a test that
/// sets up a state no operation of the kernel leads to).
pub async fn execute(url: &str, sql: &str) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url)
            .await
            .expect("open sqlite");
        sqlx::query(sql).execute(&mut c).await.expect(sql);
    } else {
        let mut c = sqlx::PgConnection::connect(url)
            .await
            .expect("open postgres");
        sqlx::query(sql).execute(&mut c).await.expect(sql);
    }
}

/// The rows of one query, on a connection of its own to `url`.
async fn fetch_rows<T>(url: &str, sql: &str) -> Vec<T>
where
    T: Send + Unpin,
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url)
            .await
            .expect("open sqlite");
        sqlx::query_as(sql).fetch_all(&mut c).await.expect(sql)
    } else {
        let mut c = sqlx::PgConnection::connect(url)
            .await
            .expect("open postgres");
        sqlx::query_as(sql).fetch_all(&mut c).await.expect(sql)
    }
}

pub fn test_config(clock: &ManualClock) -> KernelConfig {
    KernelConfig {
        lease_ms: 10_000,
        backoff_base_ms: 1_000,
        backoff_max_ms: 60_000,
        default_max_attempts: 3,
        claim_poll_every: Duration::from_millis(20),
        sweep_every: Duration::from_millis(20),
        clock: Arc::new(clock.clone()),
        ..KernelConfig::default()
    }
}

pub fn random_name() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("t_{n:016x}")
}

pub async fn sqlite_env() -> Env {
    let path = std::env::temp_dir().join(format!("switchyard-kernel-{}.db", random_name()));
    let url = format!("sqlite:{}", path.display());
    let clock = ManualClock::default();
    let kernel = Kernel::open(&url, test_config(&clock))
        .await
        .expect("open sqlite");
    Env {
        kernel,
        clock,
        url,
        sqlite_file: Some(path),
    }
}

/// A fresh database on the test Postgres server, or `None` (skip).
pub async fn postgres_url(test: &str) -> Option<String> {
    let admin = match std::env::var("SWITCHYARD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            if std::env::var("SWITCHYARD_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("SWITCHYARD_REQUIRE_POSTGRES=1 but SWITCHYARD_TEST_POSTGRES_URL is not set");
            }
            eprintln!("skipping postgres::{test}: SWITCHYARD_TEST_POSTGRES_URL is not set (run through scripts/with-postgres.sh)");
            return None;
        }
    };
    let name = random_name();
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("connect to admin database");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create test database");
    pool.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(format!("{base}/{name}"))
}

pub async fn postgres_env(test: &str) -> Option<Env> {
    let url = postgres_url(test).await?;
    let clock = ManualClock::default();
    let kernel = Kernel::open(&url, test_config(&clock))
        .await
        .expect("open postgres");
    Some(Env {
        kernel,
        clock,
        url,
        sqlite_file: None,
    })
}

impl Env {
    pub async fn node(&self, name: &str) -> i64 {
        self.kernel
            .register_node(&NewNode {
                name: name.to_string(),
                kinds: vec!["noop".into(), "sleep".into(), "exec".into()],
                capacity: 16,
                labels: Default::default(),
                file_scopes: vec!["/tmp".into()],
            })
            .await
            .expect("register node")
            .id
    }

    pub async fn claim(&self, node_id: i64, max: i64) -> Vec<Lease> {
        self.kernel
            .claim(&ClaimRequest {
                node_id,
                kinds: vec!["noop".into(), "sleep".into(), "exec".into()],
                max,
                wait_ms: 0,
            })
            .await
            .expect("claim")
    }

    /// Every event, once everything committed is readable.
    pub async fn all_events(&self) -> Vec<kernel::model::Event> {
        self.kernel.sync_events().await.expect("sync events");
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.kernel.events_after(after, 1000).await.expect("events");
            if page.items.is_empty() {
                return out;
            }
            after = page.next_after;
            out.extend(page.items);
        }
    }

    pub async fn event_types(&self) -> Vec<String> {
        self.all_events()
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }
}

/// Polls `check` until it returns `Some`, for at most 30 s (a generous bound
/// for a busy CI machine; never a timing assertion).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("gave up waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Declares each conformance test twice: `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let mut env = $crate::common::sqlite_env().await;
                    let (kernel, _file) = env.keep();
                    let url = env.url.clone();
                    super::$name(env).await;
                    $crate::common::assert_counts_agree(&kernel, &url).await;
                    $crate::common::assert_no_orphans(&url).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(mut env) = $crate::common::postgres_env(stringify!($name)).await {
                        let (kernel, _) = env.keep();
                        let url = env.url.clone();
                        super::$name(env).await;
                        $crate::common::assert_counts_agree(&kernel, &url).await;
                        $crate::common::assert_no_orphans(&url).await;
                    }
                }
            )+
        }
    };
}
