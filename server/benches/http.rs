//! http bench: drain rate of `noop` tasks through the HTTP worker protocol
//! (batch claims, batch heartbeats and completions) on loopback. Prints
//! figures; asserts nothing.
//!
//! ```text
//! cargo bench -p server --bench http -- [--tasks N] [--workers W] [--slots S]
//! scripts/with-postgres.sh cargo bench -p server --bench http -- --postgres-only
//! ```
//!
//! The real router is served on 127.0.0.1 in this process; W worker nodes,
//! each a `switchyard worker` pool over `HttpLeaseSource`, drain N
//! pre-submitted one-task jobs. SQLite uses a fresh temp file; Postgres a
//! fresh database on `SWITCHYARD_TEST_POSTGRES_URL`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kernel::model::{NewJob, NewNode, NewTask};
use kernel::worker::{PoolConfig, Shutdown, WorkerPool};
use kernel::{Kernel, KernelConfig};
use leptos::prelude::LeptosOptions;
use server::worker::{executors_for, HttpLeaseSource};
use server::{app, AppState};

mod common;

struct Args {
    tasks: usize,
    workers: usize,
    slots: usize,
    backends: common::Backends,
}

fn parse_args() -> Args {
    let (mut tasks, mut workers, mut slots) = (50_000, 2, 256);
    let backends = common::parse_args(
        &mut [
            ("--tasks", &mut tasks),
            ("--workers", &mut workers),
            ("--slots", &mut slots),
        ],
        "http.rs",
    );
    Args {
        tasks,
        workers,
        slots,
        backends,
    }
}

/// The secret the bench's remote workers enroll with.
const ENROLLMENT_SECRET: &str = "bench-enrollment";

async fn run(label: &str, url: &str, args: &Args) {
    let kernel = Kernel::open(url, KernelConfig::default())
        .await
        .expect("open");
    let background = kernel.start_background();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = app(AppState::new(
        LeptosOptions::builder().output_name("switchyard").build(),
        kernel.clone(),
        Default::default(),
        server::auth::AuthSettings {
            enrollment_secret: Some(ENROLLMENT_SECRET.into()),
            ..Default::default()
        },
    ));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let jobs: Vec<NewJob> = (0..args.tasks)
        .map(|i| NewJob {
            name: format!("bench-{i}"),
            tenant: "default".into(),
            queue: "default".into(),
            priority: 0,
            idempotency_key: None,
            tasks: vec![NewTask {
                key: "t".into(),
                kind: "noop".into(),
                payload: serde_json::json!({}),
                depends_on: vec![],
                max_attempts: None,
                timeout_s: None,
            }],
        })
        .collect();
    let started = Instant::now();
    for chunk in jobs.chunks(1_000) {
        kernel.submit_many(chunk.to_vec()).await.expect("submit");
    }
    let enqueue = started.elapsed();

    let mut pools = Vec::new();
    let drain_start = Instant::now();
    for w in 0..args.workers {
        let source = HttpLeaseSource::new(&base);
        let executors = executors_for(&["noop".to_string()]).unwrap();
        let node_id = source
            .enroll(
                &NewNode {
                    name: format!("bench-http-{w}"),
                    kinds: executors.kinds(),
                    capacity: args.slots as i64,
                    labels: Default::default(),
                    file_scopes: vec![],
                },
                ENROLLMENT_SECRET,
            )
            .await
            .expect("enroll");
        pools.push(WorkerPool::start(
            Arc::new(source),
            executors,
            PoolConfig::new(node_id, args.slots),
        ));
    }
    loop {
        let done: u64 = pools
            .iter()
            .map(|p| {
                p.stats()
                    .succeeded
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum();
        if done as usize >= args.tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Completions are counted when the server acknowledged them.
    let drain = drain_start.elapsed();
    for pool in pools {
        pool.shutdown(Shutdown::Release).await;
    }
    let overview = kernel.overview(None).await.expect("overview");
    let succeeded = overview
        .jobs_by_state
        .get("succeeded")
        .copied()
        .unwrap_or(0);
    println!(
        "{{\"bench\":\"http\",\"backend\":\"{label}\",\"tasks\":{},\"workers\":{},\"slots\":{},\"enqueue_tasks_per_s\":{:.0},\"drain_tasks_per_s\":{:.0},\"jobs_succeeded\":{succeeded}}}",
        args.tasks,
        args.workers,
        args.slots,
        args.tasks as f64 / enqueue.as_secs_f64(),
        args.tasks as f64 / drain.as_secs_f64(),
    );
    server.abort();
    background.shutdown().await;
    kernel.db().close().await;
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    args.backends
        .each("http_bench", async |label, url| {
            run(label, url, &args).await
        })
        .await;
}
