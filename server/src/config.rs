//! Command line and environment configuration. Every flag can also be given
//! as an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The default embedded database: an SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/switchyard.db";

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Self-hosted execution control plane with a live operator console"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: console, API, kernel and (by default) an embedded worker pool.
    Serve(ServeArgs),
    /// Run a worker node that claims tasks from a server over HTTP.
    Worker(WorkerArgs),
    /// Manage console users (add, passwd, grant, list).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage API tokens (create, list, revoke).
    #[command(subcommand)]
    Tokens(TokensCommand),
}

/// The database the admin commands work on.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

/// A database URL without its password, for logs and error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => {
                    format!("{}://{user}:***@{}", &url[..scheme_end], &url[at + 1..])
                }
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Scopes and tenants of a user or token.
#[derive(Debug, Clone, Args)]
pub struct GrantArgs {
    /// A scope: runs.read, runs.manage, downloads.read, approvals.decide,
    /// admin (repeatable or comma-separated).
    #[arg(long = "scope", value_delimiter = ',', required = true, value_parser = parse_scope)]
    pub scopes: Vec<kernel::model::Scope>,
    /// A tenant the grant covers, or `*` for every tenant (repeatable or
    /// comma-separated).
    #[arg(long = "tenant", value_delimiter = ',', required = true)]
    pub tenants: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user. The password is read from SWITCHYARD_PASSWORD, or the
    /// first line of standard input.
    Add {
        username: String,
        #[command(flatten)]
        grant: GrantArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set a user's password (read like `add`) and end their sessions.
    Passwd {
        username: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replace a user's scopes and tenants.
    Grant {
        username: String,
        #[command(flatten)]
        grant: GrantArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List users.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an API token and print its secret (shown this once).
    Create {
        /// What the token is for, e.g. `ci-deploy`.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        grant: GrantArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token by id.
    Revoke {
        id: i64,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SWITCHYARD_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Database URL: `sqlite:PATH` (created and migrated on first start) or
    /// `postgres://USER@HOST:PORT/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Folder holding the built site (pkg/, favicon). Defaults to the `site`
    /// folder next to the executable or one level up.
    #[arg(long, env = "SWITCHYARD_SITE_ROOT")]
    pub site_root: Option<PathBuf>,

    /// Tasks the embedded worker pool runs at once; 0 turns the pool off.
    #[arg(long, env = "SWITCHYARD_EMBEDDED_WORKERS", default_value_t = 8)]
    pub embedded_workers: usize,

    /// Turn the embedded worker pool off (same as --embedded-workers 0).
    #[arg(long, env = "SWITCHYARD_NO_EMBEDDED_WORKERS")]
    pub no_embedded_workers: bool,

    /// How long a lease lasts without a heartbeat, in milliseconds.
    #[arg(long, env = "SWITCHYARD_LEASE_MS", default_value_t = 30_000)]
    pub lease_ms: i64,

    /// Submit a few demonstration jobs (some failing, retrying and
    /// dead-lettering) at start, so a newcomer sees the product work.
    #[arg(long, env = "SWITCHYARD_DEMO")]
    pub demo: bool,

    /// The shared secret remote worker nodes enroll with (each gets its own
    /// node token). Without it only the embedded pool and admin-enrolled
    /// nodes run tasks.
    #[arg(long, env = "SWITCHYARD_ENROLLMENT_SECRET", hide_env_values = true)]
    pub enrollment_secret: Option<String>,

    /// Mark the session cookie Secure: set when the console is served over
    /// TLS, directly or behind a proxy that terminates it.
    #[arg(long, env = "SWITCHYARD_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// Events older than this many days are deleted from the log (0 keeps
    /// them forever).
    #[arg(long, env = "SWITCHYARD_EVENT_RETENTION_DAYS", default_value_t = 7)]
    pub event_retention_days: i64,

    /// Jobs finished longer ago than this many days are deleted with their
    /// tasks, attempts and logs (0 keeps them forever). Jobs with an open
    /// dead-letter entry are kept.
    #[arg(long, env = "SWITCHYARD_JOB_RETENTION_DAYS", default_value_t = 30)]
    pub job_retention_days: i64,

    /// A console session ends after this many minutes without a request.
    #[arg(long, env = "SWITCHYARD_SESSION_IDLE_MINUTES", default_value_t = 30)]
    pub session_idle_minutes: i64,

    /// A console session ends this many hours after sign-in.
    #[arg(long, env = "SWITCHYARD_SESSION_MAX_HOURS", default_value_t = 12)]
    pub session_max_hours: i64,
}

/// `value` within `range`, or an error naming the flag, the value and the range.
fn within<T: PartialOrd + std::fmt::Display>(
    flag: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{flag} must be between {} and {}{unit}, got {value}",
            range.start(),
            range.end()
        ))
    }
}

impl ServeArgs {
    /// Checks every numeric flag against its range (large values once
    /// overflowed: a lease that ended before it began, a retention of
    /// hours for "years").
    pub fn check(&self) -> Result<(), String> {
        within(
            "--lease-ms",
            self.lease_ms,
            1_000..=86_400_000,
            " (1 s to a day)",
        )?;
        within("--embedded-workers", self.embedded_slots(), 0..=10_000, "")?;
        within(
            "--event-retention-days",
            self.event_retention_days,
            0..=36_500,
            " (0 keeps them)",
        )?;
        within(
            "--job-retention-days",
            self.job_retention_days,
            0..=36_500,
            " (0 keeps them)",
        )?;
        within(
            "--session-idle-minutes",
            self.session_idle_minutes,
            1..=525_600,
            "",
        )?;
        within("--session-max-hours", self.session_max_hours, 1..=8_760, "")
    }

    /// Slots of the embedded pool, 0 when it is off.
    pub fn embedded_slots(&self) -> usize {
        if self.no_embedded_workers {
            0
        } else {
            self.embedded_workers
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Base URL of the Switchyard server, e.g. http://127.0.0.1:3000
    #[arg(long, env = "SWITCHYARD_SERVER")]
    pub server: String,

    /// Node name (unique in the fleet); defaults to worker-<hostname>-<pid>.
    #[arg(long, env = "SWITCHYARD_NODE_NAME")]
    pub name: Option<String>,

    /// Tasks run at once.
    #[arg(long, env = "SWITCHYARD_WORKER_SLOTS", default_value_t = 8)]
    pub slots: usize,

    /// Task kinds to run (comma-separated); defaults to every built-in kind.
    #[arg(long, env = "SWITCHYARD_WORKER_KINDS", value_delimiter = ',')]
    pub kinds: Vec<String>,

    /// The server's enrollment secret (`serve --enrollment-secret`).
    #[arg(long, env = "SWITCHYARD_ENROLLMENT_SECRET", hide_env_values = true)]
    pub enrollment_secret: String,

    /// Labels `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// How long running tasks may take to finish on shutdown before their
    /// leases are released, in seconds.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace_s: u64,
}

impl WorkerArgs {
    /// Checks the numeric flags against their ranges, before anything is
    /// sent to the server.
    pub fn check(&self) -> Result<(), String> {
        within("--slots", self.slots, 1..=10_000, "")?;
        within(
            "--shutdown-grace-s",
            self.shutdown_grace_s,
            0..=86_400,
            " (a day)",
        )
    }
}

/// A scope by name; an unknown one is answered with the list of known ones.
fn parse_scope(raw: &str) -> Result<kernel::model::Scope, String> {
    raw.parse().map_err(|_| {
        let known: Vec<&str> = kernel::model::Scope::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        format!("unknown scope {raw:?}; the scopes are {}", known.join(", "))
    })
}

fn parse_label(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        Some(_) => Err(format!("label {raw:?} has no key (key=value)")),
        None => Err(format!("label {raw:?} is not key=value")),
    }
}
