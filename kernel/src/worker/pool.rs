//! A worker pool: N concurrent slots fed by batch claims, heartbeats for
//! every running lease, batched reports, graceful shutdown.
//!
//! The pool talks to a [`LeaseSource`]: the [`Kernel`] itself (in-process
//! workers) or anything speaking the lease protocol (the HTTP worker
//! implements it over `/api/v1/leases/*`). It never reads the database and
//! never decides retries; it runs tasks and reports what happened.
//!
//! Shape: one claim loop (waits for a free slot, claims up to the free slots
//! in one call, spawns a run per lease), one heartbeat loop (renews every
//! running lease in one call; fires the cancel signal of runs whose job was
//! cancelled or whose lease was lost), a log writer per run (appends its
//! output lines in order, from a bounded buffer, and is done before the run
//! is reported), one reporter (reports finished runs in batches).
//!
//! A report the server could not be reached for (a restart, a network
//! blip) is sent again until it is answered, while its lease is renewed
//! as for a running task: dropped, its task would run a second time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::error::KernelError;
use crate::model::{
    ClaimRequest, Completion, ErrorBody, HeartbeatOutcome, Lease, LeaseProof, NewLogLine,
    TaskFailure,
};
use crate::Kernel;

use super::executor::{
    BoxFuture, CancelHandle, CancelReason, CancelSignal, Executors, LogSink, TaskOutcome, TaskRun,
};

/// A failure of a lease-protocol call, by error code (`stale_lease`,
/// `task_cancelled`, `not_found`, …; `transport` for network trouble).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for SourceError {}

impl From<KernelError> for SourceError {
    fn from(e: KernelError) -> Self {
        SourceError {
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<ErrorBody> for SourceError {
    fn from(e: ErrorBody) -> Self {
        SourceError {
            code: e.code,
            message: e.message,
        }
    }
}

pub type SourceResult<T> = Result<T, SourceError>;

impl SourceError {
    /// Whether the call may succeed if made again: the server or the
    /// database could not be reached, or answered without a typed error.
    pub fn is_transient(&self) -> bool {
        matches!(self.code.as_str(), "transport" | "http" | "database")
    }

    /// Whether the source no longer accepts this node's credentials (its
    /// token was revoked, or another worker registered under its name).
    pub fn is_unauthenticated(&self) -> bool {
        self.code == "unauthenticated"
    }
}

/// How long a report is retried while the server cannot be reached. Past
/// the lease's end the kernel refuses it anyway (and the task runs again).
const RETRY_FOR: Duration = Duration::from_secs(600);

/// Makes `call` again while it fails transiently ([`SourceError::is_transient`]),
/// waiting a little longer each time, for up to [`RETRY_FOR`].
async fn retrying<T, F, Fut>(what: &str, mut call: F) -> SourceResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = SourceResult<T>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    let mut delay = Duration::from_millis(200);
    loop {
        match call().await {
            Err(e) if e.is_transient() && tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, "{what} not recorded yet; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// The lease protocol as the pool needs it (SPEC §9 worker protocol).
pub trait LeaseSource: Send + Sync + 'static {
    fn claim(&self, req: ClaimRequest) -> BoxFuture<'_, SourceResult<Vec<Lease>>>;
    fn heartbeat_many(
        &self,
        leases: Vec<(i64, LeaseProof)>,
    ) -> BoxFuture<'_, SourceResult<Vec<SourceResult<HeartbeatOutcome>>>>;
    fn complete_many(
        &self,
        items: Vec<Completion>,
    ) -> BoxFuture<'_, SourceResult<Vec<SourceResult<()>>>>;
    fn fail(
        &self,
        attempt_id: i64,
        proof: LeaseProof,
        failure: TaskFailure,
    ) -> BoxFuture<'_, SourceResult<()>>;
    fn release(&self, attempt_id: i64, proof: LeaseProof) -> BoxFuture<'_, SourceResult<()>>;
    /// Answers how many of `lines` the attempt's log kept (fewer once it
    /// is full).
    fn append_log(
        &self,
        attempt_id: i64,
        proof: LeaseProof,
        lines: Vec<NewLogLine>,
    ) -> BoxFuture<'_, SourceResult<usize>>;
    /// The node stops: it is offline from now on, until it claims again.
    fn sign_off(&self, node_id: i64) -> BoxFuture<'_, SourceResult<()>>;
}

impl LeaseSource for Kernel {
    fn claim(&self, req: ClaimRequest) -> BoxFuture<'_, SourceResult<Vec<Lease>>> {
        Box::pin(async move { Ok(Kernel::claim(self, &req).await?) })
    }

    fn heartbeat_many(
        &self,
        leases: Vec<(i64, LeaseProof)>,
    ) -> BoxFuture<'_, SourceResult<Vec<SourceResult<HeartbeatOutcome>>>> {
        Box::pin(async move {
            Ok(Kernel::heartbeat_many(self, &leases)
                .await?
                .into_iter()
                .map(|r| r.map_err(SourceError::from))
                .collect())
        })
    }

    fn complete_many(
        &self,
        items: Vec<Completion>,
    ) -> BoxFuture<'_, SourceResult<Vec<SourceResult<()>>>> {
        Box::pin(async move {
            Ok(Kernel::complete_many(self, items)
                .await?
                .into_iter()
                .map(|r| r.map_err(SourceError::from))
                .collect())
        })
    }

    fn fail(
        &self,
        attempt_id: i64,
        proof: LeaseProof,
        failure: TaskFailure,
    ) -> BoxFuture<'_, SourceResult<()>> {
        Box::pin(async move {
            Kernel::fail(self, attempt_id, &proof, &failure).await?;
            Ok(())
        })
    }

    fn release(&self, attempt_id: i64, proof: LeaseProof) -> BoxFuture<'_, SourceResult<()>> {
        Box::pin(async move { Ok(Kernel::release(self, attempt_id, &proof).await?) })
    }

    fn append_log(
        &self,
        attempt_id: i64,
        proof: LeaseProof,
        lines: Vec<NewLogLine>,
    ) -> BoxFuture<'_, SourceResult<usize>> {
        Box::pin(
            async move { Ok(Kernel::append_attempt_log(self, attempt_id, &proof, &lines).await?) },
        )
    }

    fn sign_off(&self, node_id: i64) -> BoxFuture<'_, SourceResult<()>> {
        Box::pin(async move {
            Kernel::sign_off_node(self, node_id).await?;
            Ok(())
        })
    }
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The registered node the pool claims for.
    pub node_id: i64,
    /// Tasks run at once.
    pub slots: usize,
    /// Most leases per claim call.
    pub claim_batch: usize,
    /// Long-poll of each claim; also bounds how long shutdown waits for an
    /// in-flight claim.
    pub claim_wait_ms: i64,
    /// How often running leases are renewed (well under the lease length).
    pub heartbeat_every: Duration,
    /// Most reports per batch.
    pub report_batch: usize,
    /// Claim calls in flight at once (default 2). SQLite has one writer, so
    /// more only queue; on Postgres several let commits overlap (group
    /// commit): the bench uses 4.
    pub claimers: usize,
    /// Report batches in flight at once (same reasoning).
    pub reporters: usize,
}

impl PoolConfig {
    pub fn new(node_id: i64, slots: usize) -> PoolConfig {
        PoolConfig {
            node_id,
            slots: slots.max(1),
            claim_batch: slots.clamp(1, 500),
            claim_wait_ms: 1_000,
            heartbeat_every: Duration::from_secs(10),
            report_batch: 1_000,
            claimers: 2,
            reporters: 2,
        }
    }

    /// Renews leases of `lease_ms` (the kernel's `lease_ms`) three times
    /// per lease, at most every 10 s: a lease then survives a lost renewal
    /// or two. (Every 10 s whatever the lease, leases under 10 s expired
    /// while their tasks ran, and the tasks ran again beside themselves.)
    pub fn for_leases_of(mut self, lease_ms: i64) -> PoolConfig {
        let third = Duration::from_millis((lease_ms / 3).max(100) as u64);
        self.heartbeat_every = third.min(Duration::from_secs(10));
        self
    }
}

/// How to stop.
#[derive(Debug, Clone, Copy)]
pub enum Shutdown {
    /// Let running tasks finish, up to `timeout`; then release the rest.
    Finish { timeout: Duration },
    /// Stop running tasks now and give their leases back.
    Release,
}

/// Counters of a pool's life.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub claimed: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    pub released: AtomicU64,
    /// Reports the source refused (stale lease, cancelled task).
    pub refused: AtomicU64,
}

impl PoolStats {
    pub fn snapshot(&self) -> [u64; 6] {
        [
            self.claimed.load(Ordering::Relaxed),
            self.succeeded.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.cancelled.load(Ordering::Relaxed),
            self.released.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        ]
    }
}

struct Running {
    proof: LeaseProof,
    cancel: CancelHandle,
    /// When the run ended (its report is on its way).
    ended_at: Option<std::time::Instant>,
}

/// How long after a run ends its lease is not renewed: its report is
/// normally in by then, and a renewal racing it is refused and recorded as
/// a stale report (`lease.fenced`). A report that takes longer (the server
/// out of reach) has its lease renewed again meanwhile.
const REPORT_GRACE: Duration = Duration::from_secs(1);

enum Report {
    Done {
        attempt_id: i64,
        proof: LeaseProof,
        outcome: TaskOutcome,
        reason: Option<CancelReason>,
    },
}

struct Shared {
    source: Arc<dyn LeaseSource>,
    executors: Executors,
    config: PoolConfig,
    running: Mutex<HashMap<i64, Running>>,
    stats: Arc<PoolStats>,
    reports: mpsc::UnboundedSender<Report>,
    slots: Arc<Semaphore>,
    /// Set when the source stopped accepting this node (see [`WorkerPool::lost`]).
    lost: watch::Sender<Option<String>>,
}

impl Shared {
    /// The source no longer accepts this node: no lease can be renewed or
    /// reported, so every run stops, and the owner is told.
    fn lose_credentials(&self, error: &SourceError) {
        self.lost.send_if_modified(|lost| {
            let first = lost.is_none();
            if first {
                tracing::error!(error = %error, "the server no longer accepts this node; stopping its tasks");
                *lost = Some(error.to_string());
            }
            first
        });
        for r in self.running.lock().expect("running").values() {
            r.cancel.cancel(CancelReason::LeaseLost);
        }
    }
}

/// A running pool. Stop it with [`WorkerPool::shutdown`].
pub struct WorkerPool {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    claim_loop: JoinHandle<()>,
    heartbeat_loop: JoinHandle<()>,
    reporter: JoinHandle<()>,
}

impl WorkerPool {
    /// Starts claiming for `config.node_id` the kinds `executors` offers.
    pub fn start(
        source: Arc<dyn LeaseSource>,
        executors: Executors,
        config: PoolConfig,
    ) -> WorkerPool {
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            source,
            executors,
            running: Mutex::new(HashMap::new()),
            stats: Arc::new(PoolStats::default()),
            reports: reports_tx,
            slots: Arc::new(Semaphore::new(config.slots)),
            lost: watch::channel(None).0,
            config,
        });
        let (stop, stop_rx) = watch::channel(false);
        let claimers: Vec<JoinHandle<()>> = (0..shared.config.claimers.max(1))
            .map(|_| tokio::spawn(claim_loop(shared.clone(), stop_rx.clone())))
            .collect();
        let claim_loop = tokio::spawn(async move {
            for c in claimers {
                let _ = c.await;
            }
        });
        let heartbeat_loop = tokio::spawn(heartbeat_loop(shared.clone(), stop_rx));
        let reporter = tokio::spawn(reporter(shared.clone(), reports_rx));
        WorkerPool {
            shared,
            stop,
            claim_loop,
            heartbeat_loop,
            reporter,
        }
    }

    pub fn stats(&self) -> Arc<PoolStats> {
        self.shared.stats.clone()
    }

    /// Becomes `Some(why)` when the source stops accepting this node's
    /// credentials (a revoked token; another worker registered under its
    /// name). Its runs are stopped then; the owner should shut the pool down.
    pub fn lost(&self) -> watch::Receiver<Option<String>> {
        self.shared.lost.subscribe()
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        self.shared.running.lock().expect("running").len()
    }

    /// Stops claiming, then finishes or releases the running tasks, reports
    /// everything, and returns the final counters.
    pub async fn shutdown(self, mode: Shutdown) -> Arc<PoolStats> {
        let WorkerPool {
            shared,
            stop,
            claim_loop,
            heartbeat_loop,
            reporter,
        } = self;
        let running = || shared.running.lock().expect("running").len();
        let _ = stop.send(true);
        let _ = claim_loop.await;
        if let Shutdown::Finish { timeout } = mode {
            let deadline = tokio::time::Instant::now() + timeout;
            while running() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        for r in shared.running.lock().expect("running").values() {
            r.cancel.cancel(CancelReason::Shutdown);
        }
        // Runs stop on the signal; their reports (releases) drain.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        heartbeat_loop.abort();
        let _ = heartbeat_loop.await;
        let stats = shared.stats.clone();
        let (source, node_id) = (shared.source.clone(), shared.config.node_id);
        let signed_off = shared.lost.borrow().is_some();
        // Dropping the last sender ends the reporter after it drains.
        drop(shared);
        drop(stop);
        if tokio::time::timeout(Duration::from_secs(30), reporter)
            .await
            .is_err()
        {
            tracing::warn!(
                "worker pool: reports still pending at shutdown; their leases will expire"
            );
        }
        // (A node the source no longer accepts cannot sign off.)
        if !signed_off {
            if let Err(e) = source.sign_off(node_id).await {
                tracing::warn!(error = %e, "the node could not sign off; it goes offline when its heartbeats stop");
            }
        }
        stats
    }
}

async fn claim_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let slots = shared.slots.clone();
    let kinds = shared.executors.kinds();
    loop {
        if *stop.borrow() {
            return;
        }
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore open"),
            _ = stop.changed() => return,
        };
        let mut permits = vec![first];
        while permits.len() < shared.config.claim_batch {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let req = ClaimRequest {
            node_id: shared.config.node_id,
            kinds: kinds.clone(),
            max: permits.len() as i64,
            wait_ms: shared.config.claim_wait_ms,
        };
        let leases = match shared.source.claim(req).await {
            Ok(l) => l,
            Err(e) => {
                if e.is_unauthenticated() {
                    shared.lose_credentials(&e);
                    return;
                }
                tracing::warn!(error = %e, "claim failed; retrying shortly");
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        shared
            .stats
            .claimed
            .fetch_add(leases.len() as u64, Ordering::Relaxed);
        for lease in leases {
            let permit = permits.pop().expect("no more leases than permits");
            let (cancel, signal) = CancelSignal::new();
            let attempt_id = lease.attempt_id;
            let proof = lease.proof();
            shared.running.lock().expect("running").insert(
                attempt_id,
                Running {
                    proof: proof.clone(),
                    cancel: cancel.clone(),
                    ended_at: None,
                },
            );
            let shared = shared.clone();
            tokio::spawn(async move {
                let (lines, buffered) = mpsc::channel(LOG_BUFFER);
                let (end, ended) = tokio::sync::oneshot::channel();
                let run = async {
                    let outcome = shared
                        .executors
                        .run(TaskRun {
                            lease,
                            log: LogSink::new(lines),
                            cancel: signal,
                        })
                        .await;
                    let _ = end.send(());
                    outcome
                };
                // The writer runs beside the run, in this task; the run's
                // lines are in its log before its end is reported.
                let writer = write_log(shared.source.as_ref(), attempt_id, &proof, buffered, ended);
                let (outcome, ()) = tokio::join!(run, writer);
                if let Some(r) = shared.running.lock().expect("running").get_mut(&attempt_id) {
                    r.ended_at = Some(std::time::Instant::now());
                }
                let _ = shared.reports.send(Report::Done {
                    attempt_id,
                    proof,
                    outcome,
                    reason: cancel.reason(),
                });
                drop(permit);
            });
        }
    }
}

async fn heartbeat_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.heartbeat_every) => {}
            // Keep heartbeating while shutdown lets tasks finish: only the
            // abort in `shutdown` (or a dropped pool) ends this loop.
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let leases: Vec<(i64, LeaseProof)> = shared
            .running
            .lock()
            .expect("running")
            .iter()
            .filter(|(_, r)| r.ended_at.is_none_or(|at| at.elapsed() >= REPORT_GRACE))
            .map(|(id, r)| (*id, r.proof.clone()))
            .collect();
        if leases.is_empty() {
            continue;
        }
        match shared.source.heartbeat_many(leases.clone()).await {
            Ok(answers) => {
                let running = shared.running.lock().expect("running");
                for ((id, _), answer) in leases.iter().zip(answers) {
                    let Some(r) = running.get(id) else { continue };
                    match answer {
                        Ok(HeartbeatOutcome {
                            cancelled: true, ..
                        }) => r.cancel.cancel(CancelReason::JobCancelled),
                        Ok(_) => {}
                        // Ended meanwhile: its report says what became of it.
                        Err(_) if r.ended_at.is_some() => {}
                        Err(e) => {
                            tracing::warn!(attempt_id = id, error = %e, "lease lost; stopping the task");
                            r.cancel.cancel(CancelReason::LeaseLost);
                        }
                    }
                }
            }
            Err(e) if e.is_unauthenticated() => shared.lose_credentials(&e),
            Err(e) => tracing::warn!(error = %e, "heartbeat failed; retrying next round"),
        }
    }
}

async fn reporter(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Report>) {
    // The pool keeps one sender in `shared`; the reporter must not count as
    // a holder, or the channel never closes.
    let source = shared.source.clone();
    let stats = shared.stats.clone();
    let batch_max = shared.config.report_batch;
    let in_flight = shared.config.reporters.max(1);
    let weak = Arc::downgrade(&shared);
    drop(shared);
    let mut calls = tokio::task::JoinSet::new();
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, batch_max).await > 0 {
        while calls.len() >= in_flight {
            let _ = calls.join_next().await;
        }
        calls.spawn(report_batch(
            source.clone(),
            stats.clone(),
            weak.clone(),
            std::mem::take(&mut batch),
        ));
    }
    while calls.join_next().await.is_some() {}
}

/// Lines a run may have written and not yet stored before it waits.
const LOG_BUFFER: usize = 1_024;
/// Most lines per append call.
const LOG_BATCH: usize = 1_000;

/// Appends a run's output lines to its attempt's log, in the order they
/// were written, each call taking what came meanwhile; once the run ends
/// (`end`), what is still buffered, and then no more. After the log is
/// full (the kernel kept fewer lines than sent) or the lease refused,
/// later lines are dropped as they come, so the command never waits for
/// them.
async fn write_log(
    source: &dyn LeaseSource,
    attempt_id: i64,
    proof: &LeaseProof,
    mut lines: mpsc::Receiver<NewLogLine>,
    mut end: tokio::sync::oneshot::Receiver<()>,
) {
    let mut keep = true;
    let mut batch = Vec::with_capacity(LOG_BATCH);
    loop {
        let last = tokio::select! {
            n = lines.recv_many(&mut batch, LOG_BATCH) => n == 0,
            _ = &mut end => {
                lines.close();
                while let Ok(line) = lines.try_recv() {
                    batch.push(line);
                }
                true
            }
        };
        for chunk in batch.chunks(LOG_BATCH) {
            if !keep {
                break;
            }
            let sent = chunk.len();
            let appended = retrying("log lines", || {
                source.append_log(attempt_id, proof.clone(), chunk.to_vec())
            })
            .await;
            keep = match appended {
                Ok(n) => n == sent,
                Err(e) => {
                    tracing::warn!(attempt_id, error = %e, "log lines not recorded");
                    false
                }
            };
        }
        batch.clear();
        if last {
            return;
        }
    }
}

async fn report_batch(
    source: Arc<dyn LeaseSource>,
    stats: Arc<PoolStats>,
    shared: std::sync::Weak<Shared>,
    batch: Vec<Report>,
) {
    let mut completions = Vec::new();
    let mut finished = Vec::new();
    let mut others = Vec::new();
    for report in batch {
        match report {
            // A success is recorded unless the job was cancelled or the
            // lease lost meanwhile (a run that finished while shutdown was
            // cancelling it still counts).
            Report::Done {
                attempt_id,
                proof,
                outcome: TaskOutcome::Succeeded(output),
                reason: None | Some(CancelReason::Shutdown),
            } => {
                finished.push(attempt_id);
                completions.push(Completion {
                    attempt_id,
                    proof,
                    output,
                });
            }
            Report::Done {
                attempt_id,
                proof,
                outcome,
                reason,
            } => {
                finished.push(attempt_id);
                others.push((attempt_id, proof, outcome, reason));
            }
        }
    }
    if !completions.is_empty() {
        let n = completions.len() as u64;
        match retrying("completions", || source.complete_many(completions.clone())).await {
            Ok(answers) => {
                let refused = answers.iter().filter(|a| a.is_err()).count() as u64;
                stats.succeeded.fetch_add(n - refused, Ordering::Relaxed);
                stats.refused.fetch_add(refused, Ordering::Relaxed);
            }
            // Unanswered for `RETRY_FOR`: the leases expire and the tasks
            // run again (at least once).
            Err(e) => tracing::warn!(error = %e, "completions not recorded"),
        }
    }
    for (attempt_id, proof, outcome, reason) in others {
        let result = match (outcome, reason) {
            // Shutdown gives the lease back, however the run ended.
            (_, Some(CancelReason::Shutdown)) => {
                stats.released.fetch_add(1, Ordering::Relaxed);
                retrying("a release", || source.release(attempt_id, proof.clone())).await
            }
            (TaskOutcome::Failed(failure), _) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                retrying("a failure", || {
                    source.fail(attempt_id, proof.clone(), failure.clone())
                })
                .await
            }
            (TaskOutcome::Cancelled, _) => {
                stats.cancelled.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            // Finished after its job was cancelled or its lease lost: the
            // kernel would refuse the result.
            (TaskOutcome::Succeeded(_), _) => {
                stats.cancelled.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        };
        if let Err(e) = result {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(attempt_id, error = %e, "report refused");
        }
    }
    if let Some(shared) = shared.upgrade() {
        let mut running = shared.running.lock().expect("running");
        for id in finished {
            running.remove(&id);
        }
    }
}
