//! `switchyard serve --demo`: a few realistic jobs so a newcomer sees the
//! kernel work: DAGs that run through, one whose task keeps failing, retries
//! with backoff and is dead-lettered (its downstream task is skipped).
//!
//! Each job has an idempotency key, so restarting with `--demo` does not
//! submit them again.

use kernel::model::{NewJob, NewTask};
use kernel::Kernel;
use serde_json::{json, Value};

fn task(key: &str, kind: &str, payload: Value, depends_on: &[&str]) -> NewTask {
    NewTask {
        key: key.to_string(),
        kind: kind.to_string(),
        payload,
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        max_attempts: None,
        timeout_s: None,
    }
}

fn shell(script: &str) -> Value {
    json!({ "cmd": "sh", "args": ["-c", script], "timeout_s": 60 })
}

fn job(name: &str, queue: &str, tasks: Vec<NewTask>) -> NewJob {
    NewJob {
        name: name.to_string(),
        tenant: "default".to_string(),
        queue: queue.to_string(),
        priority: 0,
        idempotency_key: Some(format!("demo:{name}:v1")),
        tasks,
    }
}

/// The demonstration jobs.
pub fn jobs() -> Vec<NewJob> {
    let mut flaky = task(
        "fetch-rates",
        "exec",
        shell("echo 'GET https://rates.example/latest'; echo 'connection refused' >&2; exit 7"),
        &[],
    );
    flaky.max_attempts = Some(3);
    vec![
        job(
            "nightly-build",
            "builds",
            vec![
                task(
                    "checkout",
                    "exec",
                    shell("echo 'checking out main@4f2c9e1'; sleep 1; echo done"),
                    &[],
                ),
                task(
                    "compile",
                    "exec",
                    shell("for m in kernel server app; do echo \"compiling $m\"; sleep 1; done"),
                    &["checkout"],
                ),
                task(
                    "unit-tests",
                    "exec",
                    shell("echo 'running 412 unit tests'; sleep 2; echo '412 passed'"),
                    &["compile"],
                ),
                task(
                    "integration-tests",
                    "exec",
                    shell("echo 'starting fixtures'; sleep 3; echo '58 passed'"),
                    &["compile"],
                ),
                task(
                    "package",
                    "exec",
                    shell("echo 'packing switchyard.tar.gz'; sleep 1"),
                    &["unit-tests", "integration-tests"],
                ),
                task("publish", "sleep", json!({ "ms": 500 }), &["package"]),
            ],
        ),
        job(
            "orders-etl",
            "etl",
            vec![
                task("extract", "sleep", json!({ "ms": 1500 }), &[]),
                task(
                    "transform",
                    "exec",
                    shell("echo 'transformed 18204 rows'; sleep 1"),
                    &["extract"],
                ),
                task("load", "sleep", json!({ "ms": 1000 }), &["transform"]),
                task("notify", "noop", json!({}), &["load"]),
            ],
        ),
        job(
            "currency-refresh",
            "etl",
            vec![
                flaky,
                task(
                    "recompute-prices",
                    "exec",
                    shell("echo 'recomputing prices'"),
                    &["fetch-rates"],
                ),
            ],
        ),
        job(
            "cache-warmup",
            "default",
            (0..6)
                .map(|i| {
                    task(
                        &format!("shard-{i}"),
                        "sleep",
                        json!({ "ms": 300 + 200 * i }),
                        &[],
                    )
                })
                .collect(),
        ),
    ]
}

/// Submits the demonstration jobs; already-submitted ones are left alone.
pub async fn submit(kernel: &Kernel) -> kernel::Result<()> {
    for job in jobs() {
        let name = job.name.clone();
        let submitted = kernel.submit(job).await?;
        if submitted.created {
            tracing::info!(job_id = submitted.job.id, %name, "demo job submitted");
        }
    }
    Ok(())
}
