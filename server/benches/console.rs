//! console bench: server-render time of the console's list pages with a
//! large database (SPEC §8: any list page ≤ 20 ms p99 with 1,000,000 jobs).
//! Prints figures; asserts nothing but that each page rendered.
//!
//! ```text
//! cargo bench -p server --bench console -- [--jobs N] [--requests R]
//! scripts/with-postgres.sh cargo bench -p server --bench console -- --postgres-only
//! ```
//!
//! Seeds N jobs (default 1,000,000) through `submit_many` — four tenants,
//! four queues, payloads with a customer id and a shard, one job in a
//! thousand with a second `sleep` task, one job with a unique marker — then
//! marks 90 % of them succeeded and 5 % failed with one SQL update per table
//! (running a million tasks through workers would only slow the seeding;
//! the pages read the same rows either way), and `ANALYZE`s (Postgres:
//! `VACUUM ANALYZE`, as autovacuum would by then). Then requests
//! each page R times through the real router (signed in as an admin, no
//! socket), after a warm-up, and reports p50, p99 and max of the time to the
//! last byte of the server-rendered HTML. `BENCH_PAGES=snapshot,health`
//! renders only the pages whose name contains one of those words.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use kernel::model::{NewJob, NewTask};
use kernel::{Kernel, KernelConfig};
use leptos::prelude::LeptosOptions;
use server::{app, AppState};
use sqlx::Connection;
use tower::ServiceExt;

mod common;

struct Args {
    jobs: usize,
    requests: usize,
    backends: common::Backends,
}

fn parse_args() -> Args {
    let (mut jobs, mut requests) = (1_000_000, 100);
    let backends = common::parse_args(
        &mut [("--jobs", &mut jobs), ("--requests", &mut requests)],
        "console.rs",
    );
    Args {
        jobs,
        requests,
        backends,
    }
}

const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];
const QUEUES: [&str; 4] = ["default", "reports", "billing", "ingest"];
/// The payload text of exactly one job.
const NEEDLE: &str = "needle-7f3a";
const ADMIN_PASSWORD: &str = "bench admin password";

fn job(i: usize, total: usize) -> NewJob {
    let mut payload = serde_json::json!({
        "cmd": "etl",
        "customer": format!("cust-{}", i % 50_000),
        "shard": i % 64,
    });
    if i == total / 2 {
        payload["marker"] = NEEDLE.into();
    }
    let mut tasks = vec![NewTask::new("extract", "noop", payload)];
    if i % 1_000 == 0 {
        tasks.push(
            NewTask::new("settle", "sleep", serde_json::json!({ "ms": 10 })).after(&["extract"]),
        );
    }
    NewJob {
        name: format!("etl-{}-{i}", TENANTS[i % 4]),
        tenant: TENANTS[i % 4].into(),
        queue: QUEUES[(i / 7) % 4].into(),
        priority: 0,
        idempotency_key: None,
        tasks,
    }
}

/// Finishes most jobs in place: 90 % succeeded, 5 % failed, 5 % left queued.
async fn finish_most(url: &str) {
    let statements = [
        "UPDATE jobs SET state = 'succeeded', started_at = created_at, finished_at = created_at + 1000 WHERE id % 20 >= 2",
        "UPDATE tasks SET state = 'succeeded', attempts_used = 1, finished_at = created_at + 1000 WHERE job_id % 20 >= 2",
        "UPDATE jobs SET state = 'failed', started_at = created_at, finished_at = created_at + 2000 WHERE id % 20 = 1",
        "UPDATE tasks SET state = 'failed', attempts_used = 3, finished_at = created_at + 2000, last_error = 'exit code 3' WHERE job_id % 20 = 1",
    ];
    if url.starts_with("sqlite:") {
        let mut db = sqlx::SqliteConnection::connect(url).await.unwrap();
        for s in statements.iter().chain(&["ANALYZE"]) {
            sqlx::query(s).execute(&mut db).await.unwrap();
        }
    } else {
        // What autovacuum would have done by the time an operator looks:
        // statistics, and the visibility map that index-only scans need.
        let mut db = sqlx::PgConnection::connect(url).await.unwrap();
        for s in statements.iter().chain(&["VACUUM ANALYZE"]) {
            sqlx::query(s).execute(&mut db).await.unwrap();
        }
    }
}

async fn sign_in(router: &axum::Router) -> String {
    let response = router
        .clone()
        .oneshot(
            Request::post("/api/v1/auth/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    serde_json::json!({ "username": "admin", "password": ADMIN_PASSWORD })
                        .to_string(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "sign in");
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

/// One server render: the time to the last byte, and the body.
async fn render(router: &axum::Router, cookie: &str, path: &str) -> (Duration, String) {
    let started = Instant::now();
    let response = router
        .clone()
        .oneshot(
            Request::get(path)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let took = started.elapsed();
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    (took, body)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1_000.0
}

async fn run(label: &str, url: &str, args: &Args) {
    let kernel = Kernel::open(url, KernelConfig::default())
        .await
        .expect("open");
    kernel.ensure_admin(Some(ADMIN_PASSWORD)).await.unwrap();
    let seeding = Instant::now();
    let mut batch = Vec::with_capacity(5_000);
    for i in 0..args.jobs {
        batch.push(job(i, args.jobs));
        if batch.len() == 5_000 {
            kernel
                .submit_many(std::mem::take(&mut batch))
                .await
                .expect("submit");
        }
    }
    if !batch.is_empty() {
        kernel.submit_many(batch).await.expect("submit");
    }
    let submitted = seeding.elapsed();
    finish_most(url).await;
    eprintln!(
        "{label}: seeded {} jobs in {:.1} s (submit {:.1} s)",
        args.jobs,
        seeding.elapsed().as_secs_f64(),
        submitted.as_secs_f64()
    );

    let router = app(AppState::new(
        LeptosOptions::builder().output_name("switchyard").build(),
        kernel.clone(),
        Default::default(),
        Default::default(),
    ));
    let cookie = sign_in(&router).await;
    // A cursor half way down the list.
    let middle = (args.jobs / 2).to_string();
    let jobs = "/ops/operations/jobengine/jobs";
    let cases: Vec<(&str, String, &str)> = vec![
        ("jobs, newest", jobs.into(), "<title>Jobs"),
        ("jobs, oldest", format!("{jobs}?sort=oldest"), "<title>Jobs"),
        (
            "jobs, page at the middle",
            format!("{jobs}?cursor={middle}"),
            "<title>Jobs",
        ),
        (
            "jobs, state failed",
            format!("{jobs}?state=failed"),
            "<title>Jobs",
        ),
        (
            "jobs, state queued",
            format!("{jobs}?state=queued"),
            "<title>Jobs",
        ),
        (
            "jobs, tenant + queue",
            format!("{jobs}?tenant=globex&queue=billing"),
            "<title>Jobs",
        ),
        (
            "jobs, kind sleep",
            format!("{jobs}?kind=sleep"),
            "<title>Jobs",
        ),
        (
            "jobs, text common (etl)",
            format!("{jobs}?q=etl"),
            "<title>Jobs",
        ),
        (
            "jobs, text 20 matches",
            format!("{jobs}?q=cust-4242%22"),
            "<title>Jobs",
        ),
        (
            "jobs, text 1 match",
            format!("{jobs}?q={NEEDLE}"),
            "<title>Jobs",
        ),
        (
            "jobs, text no match",
            format!("{jobs}?q=nothing-like-this"),
            "<title>Jobs",
        ),
        (
            "jobs, failed + text",
            format!("{jobs}?state=failed&q=cust-4242"),
            "<title>Jobs",
        ),
        (
            "queue health",
            "/ops/operations/jobengine".into(),
            "<title>JobEngine",
        ),
        (
            "dead-letter queue",
            "/ops/operations/dead-letter/queue".into(),
            "<title>Dead-letter queue",
        ),
        (
            "quotas",
            "/ops/operations/jobengine/quotas".into(),
            "<title>Quotas",
        ),
        (
            "operator snapshot",
            "/ops".into(),
            "<title>Operator snapshot",
        ),
    ];
    println!(
        "\n{label}: {} jobs, {} renders per page (ms)",
        args.jobs, args.requests
    );
    println!("| page | p50 | p99 | max | rows |");
    println!("|---|---|---|---|---|");
    let only: Option<Vec<String>> = std::env::var("BENCH_PAGES")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    for (name, path, marker) in &cases {
        if let Some(only) = &only {
            if !only.iter().any(|w| name.contains(w.as_str())) {
                continue;
            }
        }
        for _ in 0..5 {
            render(&router, &cookie, path).await;
        }
        let mut times = Vec::with_capacity(args.requests);
        let mut rows = 0;
        for _ in 0..args.requests {
            let (took, body) = render(&router, &cookie, path).await;
            assert!(body.contains(marker), "{path}: no {marker:?}");
            rows = body.matches("<tr data-job=").count();
            times.push(took);
        }
        times.sort();
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {rows} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().unwrap().as_secs_f64() * 1_000.0,
        );
        println!(
            "{{\"bench\":\"console\",\"backend\":\"{label}\",\"jobs\":{},\"page\":\"{name}\",\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
            args.jobs,
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    kernel.db().close().await;
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    args.backends
        .each("console_bench", async |label, url| {
            run(label, url, &args).await
        })
        .await;
}
