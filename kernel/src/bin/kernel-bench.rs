//! kernel-bench: throughput and latency of the JobEngine with in-process
//! workers, on SQLite and on Postgres. Prints figures; asserts nothing.
//!
//! ```text
//! cargo run --release -p kernel --bin kernel-bench -- [--tasks N] [--pickups N] [--sqlite-only]
//! scripts/with-postgres.sh cargo run --release -p kernel --bin kernel-bench
//! ```
//!
//! For each backend (SQLite: a fresh temp file; Postgres: a fresh database
//! on `SWITCHYARD_TEST_POSTGRES_URL` or `--postgres URL`; both deleted at
//! the end):
//! - enqueue: N one-task `noop` jobs submitted in batches of 1,000;
//! - drain, batched: those N tasks run by an in-process pool (2,048 slots,
//!   claims of up to 512, batched completions, `--in-flight` claims and
//!   report batches at once, default 2 on SQLite and 4 on Postgres;
//!   `--slots` and `--claim-batch` change the first two);
//!   tasks/s from pool start to the last completion recorded;
//! - drain, one at a time: N/5 tasks with 24 slots, one lease per claim and
//!   one completion per call, 24 calls in flight (graphile-worker's
//!   unbatched shape: 24 workers fetching one job each);
//! - pickup: enqueue→executor start latency of `--pickups` sequential jobs
//!   on an idle system (pool long-polling), p50/p99.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kernel::model::{NewJob, NewNode};
use kernel::worker::{
    BoxFuture, Executor, Executors, PoolConfig, Shutdown, TaskOutcome, TaskRun, WorkerPool,
};
use kernel::{Kernel, KernelConfig};
use serde_json::json;
use tokio::sync::mpsc;

struct Args {
    tasks: usize,
    pickups: usize,
    postgres: Option<String>,
    sqlite: bool,
    /// Claims and report batches in flight in the batched drain (default:
    /// 2 on SQLite, 4 on Postgres).
    in_flight: Option<usize>,
    /// Most tasks one claim of the batched drain asks for (default 512).
    claim_batch: usize,
    /// Executor slots of the batched drain's pool (default 2,048).
    slots: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        tasks: 100_000,
        pickups: 300,
        postgres: std::env::var("SWITCHYARD_TEST_POSTGRES_URL").ok(),
        sqlite: true,
        in_flight: None,
        claim_batch: 512,
        slots: 2_048,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--tasks" => args.tasks = it.next().and_then(|v| v.parse().ok()).expect("--tasks N"),
            "--pickups" => {
                args.pickups = it.next().and_then(|v| v.parse().ok()).expect("--pickups N")
            }
            "--postgres" => args.postgres = it.next(),
            "--in-flight" => {
                args.in_flight = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--in-flight N"),
                )
            }
            "--claim-batch" => {
                args.claim_batch = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--claim-batch N")
            }
            "--slots" => args.slots = it.next().and_then(|v| v.parse().ok()).expect("--slots N"),
            "--sqlite-only" => args.postgres = None,
            "--postgres-only" => args.sqlite = false,
            other => {
                eprintln!(
                    "unknown argument {other:?}; see the header of kernel/src/bin/kernel-bench.rs"
                );
                std::process::exit(2);
            }
        }
    }
    args
}

/// Reports when it starts, then succeeds: measures pickup latency.
struct Probe(mpsc::UnboundedSender<Instant>);

impl Executor for Probe {
    fn execute(&self, _run: TaskRun) -> BoxFuture<'static, TaskOutcome> {
        let _ = self.0.send(Instant::now());
        Box::pin(std::future::ready(TaskOutcome::Succeeded(None)))
    }
}

/// Runs `sql` (one statement or several) on a connection of its own to `url`.
async fn run_sql(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    let pool = sqlx::PgPool::connect(url).await?;
    let ran = sqlx::raw_sql(sql).execute(&pool).await.map(|_| ());
    pool.close().await;
    ran
}

async fn fresh_postgres(admin: &str) -> String {
    let name = format!("bench_{}", std::process::id());
    let _ = run_sql(admin, &format!("DROP DATABASE IF EXISTS {name}")).await;
    run_sql(admin, &format!("CREATE DATABASE {name}"))
        .await
        .expect("create bench database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}

/// Drops the database `fresh_postgres` made for this run: runs in a row on
/// one server would otherwise each leave 100,000 jobs behind for its
/// autovacuum and checkpoints to work through while the next run is measured.
async fn drop_postgres(admin: &str, url: &str) {
    let name = url.rsplit('/').next().unwrap_or_default();
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    if let Err(e) = run_sql(admin, &drop).await {
        eprintln!("kernel-bench: could not drop the bench database {name}: {e}");
    }
}

async fn node(kernel: &Kernel, name: &str, kinds: Vec<String>) -> i64 {
    kernel
        .register_node(&NewNode {
            name: name.into(),
            kinds,
            capacity: 1024,
            labels: Default::default(),
            file_scopes: vec![],
        })
        .await
        .expect("register node")
        .id
}

async fn enqueue(kernel: &Kernel, n: usize, tag: &str) -> f64 {
    let started = Instant::now();
    let mut left = n;
    let mut i = 0;
    while left > 0 {
        let batch = left.min(1_000);
        let jobs = (0..batch)
            .map(|_| {
                i += 1;
                NewJob::single(format!("{tag}-{i}"), "noop", json!({}))
            })
            .collect();
        kernel.submit_many(jobs).await.expect("submit");
        left -= batch;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn drain(
    kernel: &Kernel,
    n: usize,
    node_id: i64,
    slots: usize,
    batch: usize,
    in_flight: usize,
) -> f64 {
    let mut config = PoolConfig::new(node_id, slots);
    config.claim_batch = batch;
    config.report_batch = if batch == 1 { 1 } else { 2_048 };
    config.claimers = in_flight;
    config.reporters = in_flight;
    config.claim_wait_ms = 1_000;
    let started = Instant::now();
    let pool = WorkerPool::start(Arc::new(kernel.clone()), Executors::builtin(), config);
    let stats = pool.stats();
    while (stats.succeeded.load(Ordering::Relaxed) as usize) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
        if started.elapsed() > Duration::from_secs(900) {
            panic!("drain did not finish in 15 minutes");
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    pool.shutdown(Shutdown::Release).await;
    rate
}

/// The engine alone: claim a batch, complete it, repeat (no pool).
async fn raw_drain(kernel: &Kernel, n: usize, node_id: i64, batch: i64) -> f64 {
    let started = Instant::now();
    let mut done = 0;
    let (mut t_claim, mut t_complete) = (Duration::ZERO, Duration::ZERO);
    while done < n {
        let t = Instant::now();
        let leases = kernel
            .claim(&kernel::model::ClaimRequest {
                node_id,
                kinds: vec!["noop".into()],
                max: batch,
                wait_ms: 0,
            })
            .await
            .expect("claim");
        t_claim += t.elapsed();
        let t = Instant::now();
        done += leases.len();
        kernel
            .complete_many(
                leases
                    .into_iter()
                    .map(|l| kernel::model::Completion {
                        attempt_id: l.attempt_id,
                        proof: l.proof(),
                        output: None,
                    })
                    .collect(),
            )
            .await
            .expect("complete");
        t_complete += t.elapsed();
    }
    eprintln!("engine alone: {t_claim:?} in claims, {t_complete:?} in completions");
    n as f64 / started.elapsed().as_secs_f64()
}

async fn pickup(kernel: &Kernel, n: usize) -> (f64, f64) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let executors = Executors::empty().with("probe", Probe(tx));
    let node_id = node(kernel, "bench-probe", executors.kinds()).await;
    let mut config = PoolConfig::new(node_id, 8);
    config.claim_wait_ms = 5_000;
    let pool = WorkerPool::start(Arc::new(kernel.clone()), executors, config);
    // Let the pool settle into its long-poll.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut samples = Vec::with_capacity(n);
    let mut submits = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        kernel
            .submit(NewJob::single(format!("probe-{i}"), "probe", json!({})))
            .await
            .expect("submit probe");
        submits.push(t0.elapsed().as_secs_f64() * 1_000.0);
        let started = rx.recv().await.expect("probe ran");
        samples.push(started.duration_since(t0).as_secs_f64() * 1_000.0);
        // Idle between samples, like a quiet system.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pool.shutdown(Shutdown::Release).await;
    let quantile = |samples: &mut Vec<f64>, q: f64| {
        samples.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        samples[((samples.len() as f64 - 1.0) * q).round() as usize]
    };
    eprintln!(
        "pickup: the submit itself took p50 {:.2} ms, p99 {:.2} ms",
        quantile(&mut submits, 0.5),
        quantile(&mut submits, 0.99)
    );
    (quantile(&mut samples, 0.5), quantile(&mut samples, 0.99))
}

async fn run(label: &str, url: &str, args: &Args) {
    let kernel = Kernel::open(url, KernelConfig::default())
        .await
        .expect("open database");
    // An experiment's schema change (an index dropped, a fillfactor set),
    // applied to the fresh database before anything is written.
    if let (Ok(file), kernel::Backend::Postgres) = (std::env::var("BENCH_SQL"), kernel.backend()) {
        let sql = std::fs::read_to_string(&file).expect("read the BENCH_SQL file");
        run_sql(url, &sql).await.expect("apply BENCH_SQL");
        eprintln!("{label}: applied {file}");
    }
    let background = kernel.start_background();
    let noop_node = node(&kernel, "bench", vec!["noop".into()]).await;

    if std::env::var("BENCH_RAW").is_ok() {
        enqueue(&kernel, args.tasks, "raw").await;
        let raw = raw_drain(&kernel, args.tasks, noop_node, 512).await;
        eprintln!("{label}: engine alone (claim 512, complete, repeat): {raw:.0} tasks/s");
    }
    let enqueue_rate = enqueue(&kernel, args.tasks, "batched").await;
    let in_flight = args.in_flight.unwrap_or(match kernel.backend() {
        kernel::Backend::Sqlite => 2,
        kernel::Backend::Postgres => 4,
    });
    eprintln!("{label}: batched drain of {} tasks", args.tasks);
    let batched = drain(
        &kernel,
        args.tasks,
        noop_node,
        args.slots,
        args.claim_batch,
        in_flight,
    )
    .await;
    eprintln!("{label}: batched drain done");
    // A pause between the phases, so that a tool watching the marker above
    // (scripts/bench-wal.sh) reads where the drain's writes end before the
    // next phase's enqueue starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let small = (args.tasks / 5).max(1);
    enqueue(&kernel, small, "single").await;
    eprintln!("{label}: one-at-a-time drain of {small} tasks");
    let single = drain(&kernel, small, noop_node, 24, 1, 24).await;
    eprintln!("{label}: pickup of {} jobs", args.pickups);
    let (p50, p99) = pickup(&kernel, args.pickups).await;
    background.shutdown().await;

    println!(
        "{}",
        json!({
            "backend": label,
            "tasks": args.tasks,
            "enqueue_jobs_per_s": enqueue_rate.round(),
            "drain_batched_tasks_per_s": batched.round(),
            "drain_one_at_a_time_tasks_per_s": single.round(),
            "one_at_a_time_tasks": small,
            "pickup_p50_ms": (p50 * 100.0).round() / 100.0,
            "pickup_p99_ms": (p99 * 100.0).round() / 100.0,
            "pickups": args.pickups,
            "in_flight": in_flight,
            "claim_batch": args.claim_batch,
            "slots": args.slots,
        })
    );
    kernel.db().close().await;
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    if args.sqlite {
        let path = std::env::temp_dir().join(format!("switchyard-bench-{}.db", std::process::id()));
        run("sqlite", &format!("sqlite:{}", path.display()), &args).await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    match &args.postgres {
        Some(admin) => {
            let url = fresh_postgres(admin).await;
            run("postgres", &url, &args).await;
            drop_postgres(admin, &url).await;
        }
        None => eprintln!(
            "kernel-bench: no Postgres (set SWITCHYARD_TEST_POSTGRES_URL, or run through scripts/with-postgres.sh)"
        ),
    }
}
