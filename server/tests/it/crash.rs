//! Crash recovery of the real binary: `switchyard serve` is killed with
//! SIGKILL in the middle of a workload and started again on the same SQLite
//! file. Every job must still complete, every task exactly once: no task
//! lost, none completed twice. Leases held by the killed process expire and
//! the sweep hands their tasks out again, with no operator action.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{client_with, get, post, wait_ready};

const JOBS: usize = 24;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(db: &str, port: u16, workdir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            db,
            "--lease-ms",
            "2000",
            "--embedded-workers",
            "6",
        ])
        .current_dir(workdir)
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start switchyard")
}

/// An admin token of every tenant, created with `switchyard tokens create`
/// on the database before the server starts.
fn create_token(db: &str, workdir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "tokens",
            "create",
            "--name",
            "crash-test",
            "--scope",
            "admin",
            "--tenant",
            "*",
            "--database-url",
            db,
        ])
        .current_dir(workdir)
        .env("SWITCHYARD_LOG", "warn")
        .output()
        .expect("run switchyard tokens create");
    assert!(
        out.status.success(),
        "tokens create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn job_states(client: &reqwest::Client, base: &str, ids: &[i64]) -> Vec<String> {
    let mut states = Vec::new();
    for id in ids {
        let job = get(client, format!("{base}/api/v1/jobs/{id}")).await;
        states.push(job["state"].as_str().unwrap_or("?").to_string());
    }
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_workload_loses_nothing_and_completes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("crash.db").display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = client_with(&create_token(&db, dir.path()));

    let mut server = start(&db, port, dir.path());
    wait_ready(&client, &base).await;

    // Chains of short sleeps: at any moment several tasks are leased and
    // running inside the server's embedded pool.
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let job = json!({
            "name": format!("chain-{i}"),
            "tasks": [
                { "key": "a", "kind": "sleep", "payload": { "ms": 150 } },
                { "key": "b", "kind": "sleep", "payload": { "ms": 150 }, "depends_on": ["a"] },
                { "key": "c", "kind": "noop", "depends_on": ["b"] }
            ]
        });
        let created = post(&client, format!("{base}/api/v1/jobs"), &job).await;
        ids.push(created["id"].as_i64().expect("job id"));
    }

    // Kill once some work is done and some is still in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states = job_states(&client, &base, &ids).await;
        let done = states.iter().filter(|s| *s == "succeeded").count();
        if (2..JOBS).contains(&done) {
            break;
        }
        assert!(
            done < JOBS,
            "the workload finished before the kill; make it longer"
        );
        assert!(
            Instant::now() < deadline,
            "no progress before the kill: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().expect("SIGKILL");
    server.wait().unwrap();

    let mut server = start(&db, port, dir.path());
    wait_ready(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let states = job_states(&client, &base, &ids).await;
        if states.iter().all(|s| s == "succeeded") {
            break;
        }
        assert!(
            states
                .iter()
                .all(|s| s == "succeeded" || s == "running" || s == "queued"),
            "a job ended badly after the restart: {states:?}"
        );
        assert!(
            Instant::now() < deadline,
            "jobs did not finish after restart: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Exactly one succeeded attempt per task; interrupted attempts expired.
    let mut expired = 0;
    for id in &ids {
        let job = get(&client, format!("{base}/api/v1/jobs/{id}")).await;
        for task in job["tasks"].as_array().unwrap() {
            assert_eq!(task["state"], "succeeded", "{task}");
            let attempts = task["attempts"].as_array().unwrap();
            let succeeded = attempts
                .iter()
                .filter(|a| a["state"] == "succeeded")
                .count();
            assert_eq!(succeeded, 1, "task completed {succeeded} times: {task}");
            expired += attempts.iter().filter(|a| a["state"] == "expired").count();
        }
    }
    assert!(
        expired >= 1,
        "the kill interrupted no lease; the test proved nothing"
    );

    // The log agrees: one transition to succeeded per task.
    let mut to_succeeded: HashMap<i64, usize> = HashMap::new();
    let mut after = 0;
    loop {
        let page = get(
            &client,
            format!("{base}/api/v1/events?after={after}&limit=1000"),
        )
        .await;
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            break;
        }
        for event in items {
            if event["type"] == "task.stateChanged" && event["data"]["to"] == "succeeded" {
                *to_succeeded
                    .entry(event["subject"]["task_id"].as_i64().unwrap())
                    .or_default() += 1;
            }
        }
        after = page["next_after"].as_i64().unwrap();
    }
    assert_eq!(to_succeeded.len(), JOBS * 3);
    assert!(to_succeeded.values().all(|n| *n == 1), "{to_succeeded:?}");

    server.kill().unwrap();
    server.wait().unwrap();
}
