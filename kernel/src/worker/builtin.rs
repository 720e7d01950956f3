//! The built-in task kinds: `noop`, `sleep` and `exec`.
//!
//! Payloads:
//! - `noop`: anything; succeeds at once.
//! - `sleep`: `{"ms": N}` or `{"seconds": N}`; stops early when cancelled.
//! - `exec`: `{"cmd": "make", "args": ["-j2"], "env": {"K": "V"}, "cwd": "/src",
//!   "timeout_s": 600, "grace_s": 5}`; exit code 0 is success; stdout/stderr
//!   lines go to the attempt log; on timeout or cancellation the process
//!   and what it started get SIGTERM, then SIGKILL after `grace_s` (5 s).
//!   The command does not inherit Switchyard's own configuration
//!   (`SWITCHYARD_*`, `DATABASE_URL`, `PG*`).
//!   `timeout_s` falls back to the task's own `timeout_s`.
//!
//! These executors never retry by themselves: they report, the kernel decides.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{kill_process_group, set_dumpable_behavior, DumpableBehavior, Pid, Signal};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::model::LogStream;
use crate::MAX_LOG_LINE_BYTES;

use super::executor::{BoxFuture, Executor, LogSink, TaskOutcome, TaskRun};

pub struct Noop;

impl Executor for Noop {
    fn execute(&self, _run: TaskRun) -> BoxFuture<'static, TaskOutcome> {
        Box::pin(std::future::ready(TaskOutcome::Succeeded(None)))
    }
}

pub struct Sleep;

#[derive(Deserialize)]
struct SleepPayload {
    ms: Option<u64>,
    seconds: Option<f64>,
}

impl Executor for Sleep {
    fn execute(&self, run: TaskRun) -> BoxFuture<'static, TaskOutcome> {
        Box::pin(async move {
            let duration = match serde_json::from_value::<SleepPayload>(run.lease.payload.clone()) {
                Ok(SleepPayload { ms: Some(ms), .. }) => Duration::from_millis(ms),
                Ok(SleepPayload {
                    seconds: Some(s), ..
                }) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s.min(86_400.0)),
                _ => {
                    return TaskOutcome::failed(
                        "sleep needs a payload {\"ms\": N} or {\"seconds\": N}",
                        false,
                    )
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(duration) => TaskOutcome::Succeeded(Some(json!({ "slept_ms": duration.as_millis() as u64 }))),
                _ = run.cancel.cancelled() => TaskOutcome::Cancelled,
            }
        })
    }
}

pub struct Exec;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecPayload {
    cmd: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    timeout_s: Option<f64>,
    /// How long the command has to exit after SIGTERM (0–300 s).
    grace_s: Option<f64>,
}

/// How long a command has to exit after SIGTERM, unless its payload says.
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Sends what `reader` gives to the attempt's log, a line at a time, until
/// it ends: whatever the bytes, every line (`\n` or `\r\n`) is sent, with
/// U+FFFD for what is not UTF-8, and a line longer than the log keeps is cut
/// there and the rest of it skipped, so memory stays bounded. Reading must
/// not stop early: a command writing into a pipe nobody reads blocks or
/// dies of it.
async fn forward_lines(reader: impl AsyncRead + Unpin, stream: LogStream, log: LogSink) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    async fn send(log: &LogSink, stream: LogStream, line: &mut Vec<u8>) {
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        log.line(stream, String::from_utf8_lossy(text).into_owned())
            .await;
        line.clear();
    }
    loop {
        let chunk = match reader.fill_buf().await {
            Ok(chunk) if !chunk.is_empty() => chunk,
            _ => break,
        };
        let newline = chunk.iter().position(|b| *b == b'\n');
        let part = &chunk[..newline.unwrap_or(chunk.len())];
        let room = MAX_LOG_LINE_BYTES.saturating_sub(line.len());
        line.extend_from_slice(&part[..part.len().min(room)]);
        let used = newline.map_or(chunk.len(), |at| at + 1);
        reader.consume(used);
        if newline.is_some() {
            send(&log, stream, &mut line).await;
        }
    }
    if !line.is_empty() {
        send(&log, stream, &mut line).await;
    }
}

/// Whether a variable of the worker's own environment is Switchyard's
/// configuration, which a command must not inherit: the database's URL and
/// libpq's `PG…` variables (with their password), the enrollment secret,
/// the admin password; anyone who may submit a job could print them to its
/// log. A payload's `env` may still set any variable itself.
fn is_own_config(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("SWITCHYARD_") || name == "DATABASE_URL" || name.starts_with("PG")
}

/// Hides this process's environment and memory (`/proc/<pid>/environ`,
/// `/proc/<pid>/mem`) from the commands it runs as its own user: Linux then
/// lets only root read them. A command inherits none of Switchyard's
/// configuration (see `is_own_config`), but could otherwise read it, secrets
/// included, from its parent's environment. Also turns core dumps off.
/// (A worker run as root runs its commands as root: nothing is hidden from
/// them. Run workers as a user of their own.)
pub fn hide_from_commands() -> std::io::Result<()> {
    set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Stops a command and every process it started that stayed in its group
/// (it leads one of its own: `process_group(0)`): SIGTERM to all of them,
/// so they may clean up; SIGKILL to what is left once the command has
/// exited or `grace` has passed; then reaps it. Answers whether the
/// command exited within the grace. (Stopping the command alone left a
/// shell's children running after a timeout or a cancellation, still doing
/// the work and holding its output open.)
async fn stop_group(child: &mut Child, grace: Duration) -> bool {
    let Some(leader) = child.id().and_then(|id| Pid::from_raw(id as i32)) else {
        return true; // already reaped
    };
    let _ = kill_process_group(leader, Signal::TERM);
    let exited = tokio::time::timeout(grace, child.wait()).await.is_ok();
    // The group outlives its leader while any member runs, and its id is
    // not reused meanwhile.
    let _ = kill_process_group(leader, Signal::KILL);
    let _ = child.kill().await;
    exited
}

/// How a command was stopped, for its log.
fn stopped(exited_on_term: bool, grace: Duration) -> String {
    if exited_on_term {
        "stopped (SIGTERM)".to_string()
    } else {
        format!("killed (SIGKILL, {}s after SIGTERM)", grace.as_secs_f64())
    }
}

impl Executor for Exec {
    fn execute(&self, run: TaskRun) -> BoxFuture<'static, TaskOutcome> {
        Box::pin(async move {
            let p: ExecPayload = match serde_json::from_value(run.lease.payload.clone()) {
                Ok(p) => p,
                Err(e) => {
                    return TaskOutcome::failed(
                        format!("exec needs a payload {{\"cmd\", \"args\", \"env\", \"cwd\", \"timeout_s\", \"grace_s\"}}: {e}"),
                        false,
                    )
                }
            };
            let timeout = p
                .timeout_s
                .or(run.lease.timeout_s.map(|t| t as f64))
                .filter(|t| t.is_finite() && *t > 0.0)
                .map(Duration::from_secs_f64);
            let grace = match p.grace_s {
                None => DEFAULT_GRACE,
                Some(g) if g.is_finite() && (0.0..=300.0).contains(&g) => {
                    Duration::from_secs_f64(g)
                }
                Some(g) => {
                    return TaskOutcome::failed(
                        format!("exec grace_s must be between 0 and 300 seconds, got {g}"),
                        false,
                    )
                }
            };
            let mut cmd = Command::new(&p.cmd);
            for (name, _) in std::env::vars_os() {
                if is_own_config(&name) {
                    cmd.env_remove(name);
                }
            }
            cmd.args(&p.args)
                .envs(&p.env)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // A group of its own, so that stopping the task stops what it
                // started too (a shell's commands), not the shell alone.
                .process_group(0)
                .kill_on_drop(true);
            if let Some(dir) = &p.cwd {
                cmd.current_dir(dir);
            }
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    // The OS says "not found" alike for a missing program and
                    // a missing working directory; say which.
                    let message = match &p.cwd {
                        Some(dir) if !std::path::Path::new(dir).is_dir() => {
                            format!(
                                "cannot start {:?}: no directory {dir:?} to run it in",
                                p.cmd
                            )
                        }
                        _ => format!("cannot start {:?}: {e}", p.cmd),
                    };
                    run.log.line(LogStream::System, &message).await;
                    // A missing program will be missing next time too, and
                    // a file that may not be run, or is no program, stays so.
                    const ENOEXEC: i32 = 8;
                    let retryable = !matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                    ) && e.raw_os_error() != Some(ENOEXEC);
                    return TaskOutcome::failed(message, retryable);
                }
            };
            let out = child
                .stdout
                .take()
                .map(|o| tokio::spawn(forward_lines(o, LogStream::Stdout, run.log.clone())));
            let err = child
                .stderr
                .take()
                .map(|e| tokio::spawn(forward_lines(e, LogStream::Stderr, run.log.clone())));
            let deadline = async {
                match timeout {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                status = child.wait() => match status {
                    Ok(s) if s.success() => TaskOutcome::Succeeded(Some(json!({ "exit_code": 0 }))),
                    Ok(s) => match s.code() {
                        Some(code) => TaskOutcome::failed(format!("{} exited with code {code}", p.cmd), true),
                        None => TaskOutcome::failed(
                            format!("{} was killed by signal {}", p.cmd, s.signal().unwrap_or_default()),
                            true,
                        ),
                    },
                    Err(e) => TaskOutcome::failed(format!("waiting for {} failed: {e}", p.cmd), true),
                },
                _ = deadline => {
                    let t = timeout.map(|t| t.as_secs_f64()).unwrap_or_default();
                    let how = stopped(stop_group(&mut child, grace).await, grace);
                    run.log.line(LogStream::System, format!("{how} after the timeout of {t}s")).await;
                    TaskOutcome::failed(format!("{} timed out after {t}s", p.cmd), true)
                }
                reason = run.cancel.cancelled() => {
                    let how = stopped(stop_group(&mut child, grace).await, grace);
                    run.log.line(LogStream::System, format!("{how}: {reason:?}")).await;
                    TaskOutcome::Cancelled
                }
            };
            // Let the readers drain what the process wrote before it ended
            // (bounded, both within one limit: a process it left behind
            // may hold the pipes open).
            let mut readers: Vec<_> = [out, err].into_iter().flatten().collect();
            let drained = async {
                for h in readers.iter_mut() {
                    let _ = h.await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
            // What such a process writes later is not this attempt's.
            for h in readers {
                h.abort();
            }
            outcome
        })
    }
}
