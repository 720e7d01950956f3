//! The binary's flags: a refused start says which flag and why, and writes
//! nothing (it once created the database, the admin, the embedded node and
//! the demo jobs before it found its address taken or a flag out of range).

use std::process::Command;

fn serve(db: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .args(["--database-url", &format!("sqlite:{}", db.display())])
        .args(extra)
        .env("SWITCHYARD_LOG", "warn")
        .env_remove("SWITCHYARD_ADMIN_PASSWORD")
        .output()
        .expect("run switchyard serve")
}

#[test]
fn a_refused_start_names_its_flag_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cases: [(&[&str], &str); 5] = [
        (&["--addr", &addr, "--demo"], "listening on"),
        (&["--session-idle-minutes", "0"], "--session-idle-minutes"),
        (&["--lease-ms", "9223372036854775807"], "--lease-ms"),
        (
            &["--job-retention-days", "213503982335"],
            "--job-retention-days",
        ),
        (&["--embedded-workers", "10001"], "--embedded-workers"),
    ];
    for (flags, named) in cases {
        let out = serve(&db, flags);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} started");
        assert!(stderr.contains(named), "{flags:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{flags:?} printed {:?}", out.stdout);
        assert!(!db.exists(), "{flags:?} created the database");
    }
}

/// `users` and `tokens` on the default database, run where there is none
/// (elsewhere than `serve`), once created one there and acted on it.
#[test]
fn an_admin_command_away_from_the_database_says_so_and_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["users", "list"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("SWITCHYARD_LOG", "warn")
        .output()
        .expect("run switchyard users list");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no database at data/switchyard.db"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "a database was created");
}
