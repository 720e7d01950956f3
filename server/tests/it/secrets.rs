//! What an `exec` command can read of the process that runs it. The real
//! binary runs as an unprivileged user (this test drops to `nobody` with
//! `setpriv` when it runs as root, since root reads every process), its
//! embedded pool runs a command that reads its parent's environment, and
//! the enrollment secret must not be in what it read.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{client_with, get, post, wait_ready};

const CANARY: &str = "enrollment-canary-7f3a9";

/// Whether this process runs as root (`Uid:` of `/proc/self/status`).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// The switchyard binary with `args`, as `nobody` when this test is root.
fn switchyard(args: &[&str]) -> Command {
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let mut cmd = if running_as_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args).env("SWITCHYARD_LOG", "warn");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_command_cannot_read_its_workers_secrets() {
    let dir = tempfile::tempdir().unwrap();
    // `nobody` writes the database here.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let out = switchyard(&[
        "tokens",
        "create",
        "--name",
        "t",
        "--scope",
        "admin",
        "--tenant",
        "*",
        "--database-url",
        &db,
    ])
    .current_dir(dir.path())
    .output()
    .expect("run switchyard tokens create (setpriv is part of util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = switchyard(&[
        "serve",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--database-url",
        &db,
        "--embedded-workers",
        "1",
    ])
    .env("SWITCHYARD_ENROLLMENT_SECRET", CANARY)
    .current_dir(dir.path())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = client_with(&token);
    wait_ready(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let script = r"echo reading; tr '\000' '\n' < /proc/$PPID/environ";
    let job = post(
        &client,
        format!("{base}/api/v1/jobs"),
        &json!({ "name": "peek", "tasks": [{ "key": "peek", "kind": "exec",
            "max_attempts": 1, "payload": { "cmd": "sh", "args": ["-c", script] } }] }),
    )
    .await;
    let id = job["id"].as_i64().expect("a job");
    let detail = loop {
        let detail = get(&client, format!("{base}/api/v1/jobs/{id}")).await;
        if ["succeeded", "failed"].contains(&detail["state"].as_str().unwrap()) {
            break detail;
        }
        assert!(Instant::now() < deadline, "the job did not end: {detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let attempt = detail["tasks"][0]["attempts"][0]["id"].as_i64().unwrap();
    let log = client
        .get(format!("{base}/api/v1/attempts/{attempt}/log?limit=500"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(log.contains("reading"), "the command ran: {log}");
    assert!(
        !log.contains(CANARY),
        "the command read the enrollment secret from its parent: {log}"
    );
}
