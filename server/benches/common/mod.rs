//! What the server benches share.

use sqlx::Connection;

/// A fresh database `<prefix>_<pid>` on the server of `admin_url`; its URL.
pub async fn fresh_postgres(admin_url: &str, prefix: &str) -> String {
    let name = format!("{prefix}_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to Postgres");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    match admin_url.rfind('/') {
        Some(slash) => format!("{}/{name}", &admin_url[..slash]),
        None => panic!("cannot derive a database URL from {admin_url}"),
    }
}

/// Which backends a bench runs on: SQLite unless `--postgres-only`;
/// Postgres when `SWITCHYARD_TEST_POSTGRES_URL` is set, unless
/// `--sqlite-only`.
pub struct Backends {
    pub sqlite: bool,
    pub postgres: Option<String>,
}

/// Reads the command line: the backend switches, and `--NAME N` for each of
/// `numbers` (their defaults stay unless given). `bench` names the file
/// whose header documents the arguments.
pub fn parse_args(numbers: &mut [(&str, &mut usize)], bench: &str) -> Backends {
    let mut backends = Backends {
        sqlite: true,
        postgres: std::env::var("SWITCHYARD_TEST_POSTGRES_URL").ok(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sqlite-only" => backends.postgres = None,
            "--postgres-only" => backends.sqlite = false,
            "--bench" => {}
            other => match numbers.iter_mut().find(|(name, _)| *name == other) {
                Some((name, value)) => {
                    **value = it
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("{name} takes a number"));
                }
                None => {
                    eprintln!(
                        "unknown argument {other:?}; see the header of server/benches/{bench}"
                    );
                    std::process::exit(2);
                }
            },
        }
    }
    backends
}

impl Backends {
    /// Runs `run(label, database URL)` on each chosen backend: SQLite in a
    /// fresh temp file, Postgres in a fresh database `<prefix>_<pid>`.
    pub async fn each(&self, prefix: &str, run: impl AsyncFn(&str, &str)) {
        if self.sqlite {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite:{}", dir.path().join("bench.db").display());
            run("sqlite", &url).await;
        }
        if let Some(admin) = self.postgres.as_deref() {
            let url = fresh_postgres(admin, prefix).await;
            run("postgres", &url).await;
        }
    }
}
