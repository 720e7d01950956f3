//! What executing a task means, independent of where the lease came from.
//!
//! An [`Executor`] gets a [`TaskRun`]: the lease (kind, payload, limits), a
//! [`LogSink`] for output lines and a [`CancelSignal`]; it returns a
//! [`TaskOutcome`]. It never touches the database or the network protocol,
//! so the same executors run in the in-process pool and in the HTTP worker
//! (`switchyard worker`), which only has to build a sink and a signal.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::model::{Lease, LogStream, NewLogLine, TaskFailure};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    Succeeded(Option<Value>),
    Failed(TaskFailure),
    /// Stopped because the [`CancelSignal`] fired; nothing to report.
    Cancelled,
}

impl TaskOutcome {
    pub fn failed(message: impl Into<String>, retryable: bool) -> TaskOutcome {
        TaskOutcome::Failed(TaskFailure {
            message: message.into(),
            retryable,
        })
    }
}

/// Runs tasks of one kind.
pub trait Executor: Send + Sync + 'static {
    fn execute(&self, run: TaskRun) -> BoxFuture<'static, TaskOutcome>;
}

/// Everything an executor gets.
pub struct TaskRun {
    pub lease: Lease,
    pub log: LogSink,
    pub cancel: CancelSignal,
}

/// Where an executor writes output lines (the attempt log): a bounded
/// buffer the pool empties into the attempt's log. Writing waits while it
/// is full, so a command printing faster than its lines are stored is held
/// back (its pipe fills and it blocks) instead of filling the worker's
/// memory.
#[derive(Clone)]
pub struct LogSink {
    lines: Option<mpsc::Sender<NewLogLine>>,
}

impl LogSink {
    pub fn new(lines: mpsc::Sender<NewLogLine>) -> LogSink {
        LogSink { lines: Some(lines) }
    }

    /// A sink that drops everything.
    pub fn discard() -> LogSink {
        LogSink { lines: None }
    }

    /// Writes one line, once there is room for it. After the pool stopped
    /// reading (the run ended, or the attempt's log is full), drops it.
    pub async fn line(&self, stream: LogStream, line: impl Into<String>) {
        if let Some(lines) = &self.lines {
            let _ = lines
                .send(NewLogLine {
                    stream,
                    line: line.into(),
                    ts: crate::clock::Clock::now_ms(&crate::clock::SystemClock),
                })
                .await;
        }
    }
}

/// Why a run was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The job was cancelled (the heartbeat said so).
    JobCancelled,
    /// The lease is no longer ours (stale or expired): stop, report nothing.
    LeaseLost,
    /// The worker is shutting down: stop, give the lease back.
    Shutdown,
}

/// Fires once; executors await [`CancelSignal::cancelled`] next to their work.
#[derive(Clone)]
pub struct CancelSignal {
    rx: watch::Receiver<Option<CancelReason>>,
}

/// The side that fires a [`CancelSignal`].
#[derive(Clone)]
pub struct CancelHandle {
    tx: Arc<watch::Sender<Option<CancelReason>>>,
}

impl CancelSignal {
    pub fn new() -> (CancelHandle, CancelSignal) {
        let (tx, rx) = watch::channel(None);
        (CancelHandle { tx: Arc::new(tx) }, CancelSignal { rx })
    }

    /// A signal that never fires.
    pub fn never() -> CancelSignal {
        CancelSignal::new().1
    }

    pub fn reason(&self) -> Option<CancelReason> {
        *self.rx.borrow()
    }

    /// Resolves when the signal fires (never, if its handle is gone unfired).
    pub async fn cancelled(&self) -> CancelReason {
        let mut rx = self.rx.clone();
        loop {
            if let Some(r) = *rx.borrow_and_update() {
                return r;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl CancelHandle {
    /// Fires the signal; the first reason wins.
    pub fn cancel(&self, reason: CancelReason) {
        self.tx.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub fn reason(&self) -> Option<CancelReason> {
        *self.tx.borrow()
    }
}

/// The executors a worker offers, by task kind.
#[derive(Clone, Default)]
pub struct Executors {
    by_kind: HashMap<String, Arc<dyn Executor>>,
}

impl Executors {
    pub fn empty() -> Executors {
        Executors::default()
    }

    /// `noop`, `sleep` and `exec`.
    pub fn builtin() -> Executors {
        Executors::empty()
            .with("noop", super::builtin::Noop)
            .with("sleep", super::builtin::Sleep)
            .with("exec", super::builtin::Exec)
    }

    pub fn with(mut self, kind: impl Into<String>, executor: impl Executor) -> Executors {
        self.by_kind.insert(kind.into(), Arc::new(executor));
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn Executor>> {
        self.by_kind.get(kind).cloned()
    }

    /// The kinds offered, sorted (what a node registers and claims).
    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.by_kind.keys().cloned().collect();
        k.sort();
        k
    }

    /// Runs `run` with the executor of its kind; a panic or an unknown kind
    /// becomes a failure instead of taking the worker down.
    pub async fn run(&self, run: TaskRun) -> TaskOutcome {
        let Some(executor) = self.get(&run.lease.kind) else {
            return TaskOutcome::failed(
                format!(
                    "this worker has no executor for task kind {:?}",
                    run.lease.kind
                ),
                false,
            );
        };
        // Catch a panic in place rather than in a task of its own: one
        // spawn less per run on the hot path.
        use futures_util::FutureExt;
        match std::panic::AssertUnwindSafe(executor.execute(run))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_string());
                TaskOutcome::failed(format!("the executor crashed: {what}"), true)
            }
        }
    }
}
