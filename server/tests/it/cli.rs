//! The binary's flags: a refused start says which flag and why, and writes
//! nothing (it once created the database, the admin, the embedded node and
//! the demo jobs before it found its address taken or a flag out of range).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// `switchyard ARGS` with `input` on standard input, stopped after `limit`
/// (a start that should have been refused would serve on). The output, and
/// how long it ran.
fn run(args: &[&str], input: &str, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("SWITCHYARD_LOG", "warn")
        .env_remove("SWITCHYARD_ADMIN_PASSWORD")
        .env_remove("SWITCHYARD_PASSWORD")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run switchyard");
    // A command refused before it reads has closed its end: not a failure.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes());
    while child.try_wait().expect("wait").is_none() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    (out, started.elapsed())
}

/// A database with the user `admin`, made by `users add`; its URL.
fn database_with_admin(dir: &Path) -> String {
    let url = format!("sqlite:{}", dir.join("switchyard.db").display());
    add_admin(&url);
    url
}

/// Adds the user `admin` to the database at `url` with `users add`.
fn add_admin(url: &str) {
    let (out, _) = run(
        &[
            "users",
            "add",
            "admin",
            "--scope",
            "admin",
            "--tenant",
            "*",
            "--database-url",
            url,
        ],
        "the admin's password\n",
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// SQLite opens a file it may not write read-only without a word: the
/// server started and every write failed. Refused at start, naming the file.
#[test]
fn a_database_that_cannot_be_written_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_with_admin(dir.path());
    let file = dir.path().join("switchyard.db").display().to_string();
    let serve = |url: &str| {
        run(
            &[
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--embedded-workers",
                "0",
                "--database-url",
                url,
            ],
            "",
            Duration::from_secs(20),
        )
        .0
    };
    let create_token = |url: &str| {
        run(
            &[
                "tokens",
                "create",
                "--name",
                "ci",
                "--scope",
                "admin",
                "--tenant",
                "*",
                "--database-url",
                url,
            ],
            "",
            Duration::from_secs(20),
        )
        .0
    };
    // Opened read-only on purpose: what a read-only file does to anyone,
    // and to root too (who may write a file whatever its mode).
    let read_only = format!("{url}?mode=ro");
    let mut cases = vec![serve(&read_only), create_token(&read_only)];
    // A read-only file, and a read-only folder (no journal can be made in
    // it: the last connection to close took the one `users add` left),
    // where modes stop this process.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    });
    assert!(!Path::new(&format!("{file}-wal")).exists());
    let folder = dir.path().display().to_string();
    for (path, mode) in [(&file, 0o444), (&folder, 0o555)] {
        use std::os::unix::fs::PermissionsExt;
        let was = std::fs::metadata(path).unwrap().permissions();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        let probe = dir.path().join("probe");
        let stopped = if path == &file {
            std::fs::OpenOptions::new().write(true).open(&file).is_err()
        } else {
            std::fs::write(&probe, "").is_err()
        };
        if stopped {
            cases.push(serve(&url));
            cases.push(create_token(&url));
        } else {
            let _ = std::fs::remove_file(&probe);
            eprintln!("modes do not stop this process (root?): {path} checked with mode=ro only");
        }
        std::fs::set_permissions(path, was).unwrap();
    }
    // SQLite made no journal files (read-only, like the file) beside it.
    assert!(!Path::new(&format!("{file}-wal")).exists());

    for out in cases {
        let stderr = stderr_of(&out);
        assert!(!out.status.success(), "started: {stderr}");
        assert!(
            stderr.contains(&format!("the SQLite database {file} is not writable")),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "printed {:?}", out.stdout);
    }
    let (out, _) = run(
        &["tokens", "list", "--database-url", &url],
        "",
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "a token was created: {out:?}");
}

/// A pool retries a refused connection for its whole acquire timeout: an
/// unreachable Postgres took 60 s to say only "pool timed out".
#[test]
fn an_unreachable_postgres_fails_fast_with_its_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    // `tokens list` on `url`: it fails, well within the pool's 60 s; its
    // error output.
    let refused = |url: &str| {
        let (out, took) = run(
            &["tokens", "list", "--database-url", url],
            "",
            Duration::from_secs(30),
        );
        let stderr = stderr_of(&out);
        assert!(!out.status.success(), "{stderr}");
        assert!(took < Duration::from_secs(15), "took {took:?}: {stderr}");
        stderr
    };
    let stderr = refused(&format!(
        "postgres://switchyard:hunter2@127.0.0.1:{port}/switchyard"
    ));
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "postgres://switchyard:***@127.0.0.1:{port}/switchyard"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // A server that takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let stderr = refused(&format!(
        "postgres://switchyard@127.0.0.1:{port}/switchyard"
    ));
    assert!(
        stderr.contains("Postgres did not answer within 10 s"),
        "{stderr}"
    );
    drop(silent);
}

/// Migrations the binary does not know were applied: sqlx said only that
/// one was missing. On SQLite, and on Postgres when a test server is set.
#[test]
fn a_database_of_a_newer_switchyard_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut urls = vec![format!(
        "sqlite:{}",
        dir.path().join("switchyard.db").display()
    )];
    if let Some(server) = crate::sse::postgres_url() {
        urls.push(rt.block_on(crate::sse::fresh_postgres_database(&server)));
    }
    for url in urls {
        add_admin(&url);
        let known = *rt.block_on(migrations(&url, None)).last().unwrap();
        let future = if url.starts_with("sqlite:") {
            "x'00'"
        } else {
            "'\\x00'::bytea"
        };
        let before = rt.block_on(migrations(
            &url,
            Some(&format!(
                "INSERT INTO _sqlx_migrations \
                 (version, description, success, checksum, execution_time) \
                 VALUES (9999, 'from the future', TRUE, {future}, 1)"
            )),
        ));
        let (out, _) = run(
            &[
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--embedded-workers",
                "0",
                "--database-url",
                &url,
            ],
            "",
            Duration::from_secs(20),
        );
        let stderr = stderr_of(&out);
        assert!(!out.status.success(), "started on {url}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "written by a newer Switchyard: its schema is at version 9999, \
                 the newest this binary knows is {known}"
            )),
            "{stderr}"
        );
        assert_eq!(
            rt.block_on(migrations(&url, None)),
            before,
            "the migrations of {url} changed"
        );
    }
}

/// The versions in `_sqlx_migrations`, after running `sql` (if any) on a
/// connection of its own.
async fn migrations(url: &str, sql: Option<&str>) -> Vec<i64> {
    use sqlx::Connection;
    let select = "SELECT version FROM _sqlx_migrations ORDER BY version";
    let rows: Vec<(i64,)> = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        if let Some(sql) = sql {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        sqlx::query_as(select).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        if let Some(sql) = sql {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        sqlx::query_as(select).fetch_all(&mut c).await.unwrap()
    };
    rows.into_iter().map(|(v,)| v).collect()
}

/// An unknown scope was refused without saying which ones there are.
#[test]
fn an_unknown_scope_is_named_with_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("never.db").display());
    let grant = ["--scope", "runs.read,bogus", "--tenant", "acme"];
    let commands: [&[&str]; 3] = [
        &["tokens", "create", "--name", "ci"],
        &["users", "add", "alice"],
        &["users", "grant", "alice"],
    ];
    for command in commands {
        let args: Vec<&str> = [command, &grant, &["--database-url", &url]].concat();
        let (out, _) = run(&args, "a long enough password\n", Duration::from_secs(20));
        let stderr = stderr_of(&out);
        assert!(!out.status.success(), "{command:?}: {stderr}");
        assert!(stderr.contains("unknown scope \"bogus\""), "{stderr}");
        for scope in kernel::model::Scope::ALL {
            assert!(stderr.contains(scope.as_str()), "{scope} in {stderr}");
        }
    }
    assert!(
        !dir.path().join("never.db").exists(),
        "a database was created"
    );
}

/// What the kernel refuses is refused from the command line, with nothing
/// written: a name with a control character, `*` with named tenants, a
/// user named like another but for letter case.
#[test]
fn bad_names_and_grants_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = database_with_admin(dir.path());
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "tokens",
                "create",
                "--name",
                "ci\ndeploy",
                "--scope",
                "admin",
                "--tenant",
                "*",
            ],
            "control characters",
        ),
        (
            &[
                "tokens", "create", "--name", "ci", "--scope", "admin", "--tenant", "*,acme",
            ],
            "not both",
        ),
        (
            &[
                "users",
                "add",
                "alice",
                "--scope",
                "runs.read",
                "--tenant",
                "acme,*",
            ],
            "not both",
        ),
        (
            &["users", "add", "Admin", "--scope", "admin", "--tenant", "*"],
            "a user named \"admin\" already exists",
        ),
    ];
    for (command, says) in cases {
        let args: Vec<&str> = [command, &["--database-url", &url]].concat();
        let (out, _) = run(&args, "a long enough password\n", Duration::from_secs(20));
        let stderr = stderr_of(&out);
        assert!(!out.status.success(), "{command:?}: {stderr}");
        assert!(stderr.contains(says), "{command:?}: {stderr}");
    }
    for (list, only) in [("users", "admin\t"), ("tokens", "")] {
        let (out, _) = run(
            &[list, "list", "--database-url", &url],
            "",
            Duration::from_secs(20),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.lines().count() == usize::from(!only.is_empty()) && stdout.starts_with(only),
            "{list}: {stdout}"
        );
    }
}

/// On a terminal, `users add` echoed the password as it was typed, with no
/// prompt. Driven through a pseudo-terminal (`script`), answering the
/// prompt only once it is shown.
#[test]
fn a_password_typed_at_a_terminal_is_asked_for_and_not_echoed() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipping: no `script` (util-linux) for a pseudo-terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("switchyard.db").display());
    let command = format!(
        "{} users add alice --scope runs.read --tenant acme --database-url {url}",
        env!("CARGO_BIN_EXE_switchyard")
    );
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("SWITCHYARD_LOG", "warn")
        .env_remove("SWITCHYARD_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let mut terminal = child.stdout.take().unwrap();
    let (seen, shown) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = terminal.read(&mut buf) {
            if seen.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&screen).contains("Password: ") {
        match shown.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(bytes) => screen.extend(bytes),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "no prompt; the terminal shows {:?}",
                    String::from_utf8_lossy(&screen)
                );
            }
        }
    }
    let mut input = child.stdin.take().unwrap();
    input.write_all(b"typed at a terminal\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let status = child.wait().expect("wait for script");
    drop(input);
    while let Ok(bytes) = shown.recv_timeout(Duration::from_secs(1)) {
        screen.extend(bytes);
    }
    let screen = String::from_utf8_lossy(&screen);
    assert!(status.success(), "{screen}");
    assert!(screen.contains("added user alice"), "{screen}");
    assert!(!screen.contains("typed at a terminal"), "echoed: {screen}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kernel = kernel::Kernel::open(&url, kernel::KernelConfig::default())
            .await
            .unwrap();
        assert!(kernel
            .verify_login("alice", "typed at a terminal")
            .await
            .unwrap()
            .is_some());
    });
}
