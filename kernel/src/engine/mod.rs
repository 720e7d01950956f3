//! The JobEngine: every operation on jobs, tasks, attempts, leases,
//! dead-letter entries, queues, nodes and quotas, on either backend.
//!
//! Each public operation is one database transaction (a [`Work`] unit): it
//! validates first, then applies guarded transitions (`UPDATE … WHERE state =
//! expected`; zero rows is an answer, never ignored) and appends the events
//! of every change it made, in the same transaction. After commit it wakes
//! whoever waits in this process (claimers, event
//! subscribers); on Postgres `NOTIFY` does the same for other replicas.
//!
//! The engine never speaks HTTP and never decides how a task is executed:
//! that is the worker's business (`crate::worker`).
//!
//! **State guards on rows named by id are written `state || ''`** (jobs in
//! the claim, the completions, `derive_jobs` and a cancel; tasks and
//! attempts in the claim, the completions, heartbeats and the release or
//! skipping of dependents): the ids must choose the rows, never an index
//! on the state. Written plainly, a Postgres planner
//! whose statistics were taken when no job was running estimates one
//! running job, walks every running job's entry in `jobs_state` for each
//! job the statement names, and a completion of 512 tasks took 10 to 48
//! seconds while holding its attempts (seen in the batched drain:
//! throughput fell from ~9,000 to ~500 tasks/s; docs/benchmarks.md). The
//! same for tasks: with statistics saying no task was ready, a claim of one
//! task found it by walking every ready task's entry in
//! `tasks_queue_active` (8,924 of them, 8 ms a claim; the one-at-a-time
//! drain fell from ~4,500 to ~1,200 tasks/s, session 12). The
//! concatenation leaves the meaning as it was and gives no index to match.

mod batch;
mod console;
mod counts;
mod dag;
mod events;
mod explain;
mod handoff;
mod identity;
mod job_text;
mod leases;
mod ops;
mod quotas;
mod read;
mod retention;
mod single_task;
mod submit;

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};

use crate::clock::{Clock, SystemClock};
use crate::db::{Backend, Db};
use crate::error::{KernelError, Result};
use crate::model::{event_type, JobState, TaskCounts, TaskState};
use crate::sql::{args, Conns, Tx};

pub use dag::validate_job;
pub use events::Background;
pub use identity::{
    generate_password, AttemptOwner, AuditRecord, SessionPolicy, SessionView, MIN_PASSWORD_LEN,
};
pub use ops::{MAX_LOG_LINES, MAX_LOG_LINE_BYTES};
pub use retention::RetentionReport;

const DAY_MS: i64 = 24 * 60 * 60 * 1_000;

/// Tunables of the engine. `Default` is what `switchyard serve` uses.
#[derive(Clone)]
pub struct KernelConfig {
    /// How long a lease lasts without a heartbeat.
    pub lease_ms: i64,
    /// First retry delay; doubles per failed attempt, up to `backoff_max_ms`,
    /// then a random jitter of up to half of it is added.
    pub backoff_base_ms: i64,
    pub backoff_max_ms: i64,
    /// `max_attempts` of a task that does not say.
    pub default_max_attempts: i64,
    /// Largest accepted task payload (serialised JSON bytes).
    pub max_payload_bytes: usize,
    pub max_tasks_per_job: usize,
    /// A node without a heartbeat (claim or lease heartbeat) for this long is
    /// marked offline by the sweep.
    pub node_offline_after_ms: i64,
    /// How often the background sweep runs.
    pub sweep_every: Duration,
    /// How often an idle long-poll re-checks for work that became claimable
    /// without a wake-up (a retry's backoff ending, a lost NOTIFY).
    pub claim_poll_every: Duration,
    /// Events older than this are deleted by the background sweep; 0 keeps
    /// them forever. A reader resuming after a deleted seq gets what remains.
    pub event_retention_ms: i64,
    /// Jobs that finished (succeeded, failed, cancelled) longer ago than this
    /// are deleted by the background sweep, with their tasks, edges,
    /// attempts, attempt logs and closed dead-letter entries; 0 keeps them
    /// forever. Unfinished jobs, and jobs with an open dead-letter entry, are
    /// never deleted.
    pub finished_job_retention_ms: i64,
    /// Lines an attempt's log keeps. The append that reaches it adds one
    /// line from the system saying so; later lines are dropped.
    pub max_log_lines_per_attempt: i64,
    pub clock: Arc<dyn Clock>,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            lease_ms: 30_000,
            backoff_base_ms: 1_000,
            backoff_max_ms: 300_000,
            default_max_attempts: 3,
            max_payload_bytes: 256 * 1024,
            max_tasks_per_job: 10_000,
            node_offline_after_ms: 60_000,
            sweep_every: Duration::from_secs(1),
            claim_poll_every: Duration::from_millis(250),
            event_retention_ms: 7 * DAY_MS,
            finished_job_retention_ms: 30 * DAY_MS,
            max_log_lines_per_attempt: 100_000,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for KernelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelConfig")
            .field("lease_ms", &self.lease_ms)
            .field("backoff_base_ms", &self.backoff_base_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .field("default_max_attempts", &self.default_max_attempts)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("event_retention_ms", &self.event_retention_ms)
            .field("finished_job_retention_ms", &self.finished_job_retention_ms)
            .field("max_log_lines_per_attempt", &self.max_log_lines_per_attempt)
            .finish_non_exhaustive()
    }
}

/// The JobEngine on one database. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Kernel {
    inner: Arc<Inner>,
}

/// The turn to wait for work of the claims of one node for the same kinds.
pub(crate) type ClaimTurn = Arc<tokio::sync::Mutex<()>>;

/// Something per node and task kinds (sorted, distinct).
type ByNodeAndKinds<T> = std::sync::Mutex<HashMap<(i64, Vec<String>), Arc<T>>>;

/// The entry of `node_id` and `kinds` in `map`, made by `new` when missing.
/// Entries nothing else holds are forgotten as the map grows.
fn by_node_and_kinds<T>(
    map: &ByNodeAndKinds<T>,
    node_id: i64,
    kinds: &[String],
    new: impl FnOnce() -> T,
) -> Arc<T> {
    let mut kinds = kinds.to_vec();
    kinds.sort();
    kinds.dedup();
    let mut map = map.lock().expect("per node and kinds");
    if map.len() > 64 {
        map.retain(|_, t| Arc::strong_count(t) > 1);
    }
    map.entry((node_id, kinds))
        .or_insert_with(|| Arc::new(new()))
        .clone()
}

struct Inner {
    db: Db,
    config: KernelConfig,
    /// Claimers waiting for work.
    work: Notify,
    /// The Postgres notifier: work became ready here; tell other replicas.
    remote_work: Notify,
    /// The Postgres notifier: events were written here; tell other replicas.
    remote_events: Notify,
    /// Bumped whenever new events become readable; subscribers re-read.
    events_changed: watch::Sender<u64>,
    /// Names this kernel's NOTIFYs, so its listener can ignore its own:
    /// local claimers and subscribers were woken at commit already.
    instance: String,
    /// Job and task ids taken from the Postgres sequences ahead of need.
    reserved_ids: tokio::sync::Mutex<submit::ReservedIds>,
    /// One turn per node and kinds to wait for work: see [`Kernel::claim`].
    claim_turns: ByNodeAndKinds<tokio::sync::Mutex<()>>,
    /// Concurrent claims of one node for the same kinds, merged: see
    /// [`batch`].
    claim_batches: ByNodeAndKinds<leases::ClaimBatcher>,
    /// Claims waiting for work, to which a submit can hand its new work
    /// (Postgres): see [`handoff`].
    waiters: handoff::Waiters,
    /// Concurrent completions, merged into one transaction: see [`batch`].
    completions: leases::CompletionBatcher,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("backend", &self.inner.db.backend())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Kernel {
    /// Opens and migrates the database at `url` and builds a kernel on it.
    /// Call [`Kernel::start_background`] to run the sweeps (and, on Postgres,
    /// the notifier and listener that connect replicas).
    pub async fn open(url: &str, config: KernelConfig) -> Result<Kernel> {
        let db = Db::open(url).await?;
        Ok(Kernel::new(db, config))
    }

    pub fn new(db: Db, config: KernelConfig) -> Kernel {
        let (events_changed, _) = watch::channel(0);
        let runners = batch::runners(db.backend());
        Kernel {
            inner: Arc::new(Inner {
                db,
                config,
                work: Notify::new(),
                remote_work: Notify::new(),
                remote_events: Notify::new(),
                events_changed,
                instance: format!("{:016x}", RandomState::new().build_hasher().finish()),
                reserved_ids: Default::default(),
                claim_turns: Default::default(),
                claim_batches: Default::default(),
                waiters: Default::default(),
                completions: batch::Batcher::new(runners),
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn backend(&self) -> Backend {
        self.inner.db.backend()
    }

    pub fn config(&self) -> &KernelConfig {
        &self.inner.config
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.config.clock.now_ms()
    }

    /// A receiver that changes whenever new events may be readable with
    /// [`Kernel::events_after`] (its value is a generation counter, not a seq).
    pub fn subscribe_events(&self) -> watch::Receiver<u64> {
        self.inner.events_changed.subscribe()
    }

    pub(crate) async fn begin(&self) -> Result<Work> {
        self.begin_on(Conns::Main).await
    }

    /// A unit on the Postgres connections `conns` names (SQLite: the writer).
    pub(crate) async fn begin_on(&self, conns: Conns) -> Result<Work> {
        Ok(Work {
            tx: Tx::begin_on(&self.inner.db, conns).await?,
            events: Vec::new(),
            wake_claimers: false,
            now: self.now(),
        })
    }

    /// Appends the unit's events, commits, then wakes whoever waits: local
    /// claimers and event subscribers at once; on Postgres, other replicas
    /// through the notifier.
    ///
    /// NOTIFY is deliberately not sent inside the unit: Postgres holds a
    /// global lock from a notifying transaction's commit until its end, so
    /// notifying units could not share a WAL flush (group commit). The
    /// background notifier sends one coalesced NOTIFY instead.
    pub(crate) async fn finish(&self, mut work: Work) -> Result<()> {
        let wrote_events = !work.events.is_empty();
        if wrote_events {
            events::insert(&mut work.tx, &work.events).await?;
        }
        work.tx.commit().await?;
        if work.wake_claimers {
            self.wake_claimers();
        }
        if wrote_events {
            self.announce_events();
        }
        Ok(())
    }

    /// Tasks became ready here: wake local claimers at once and, on
    /// Postgres, other replicas through the notifier.
    pub(crate) fn wake_claimers(&self) {
        self.inner.work.notify_waiters();
        if self.backend() == Backend::Postgres {
            self.inner.remote_work.notify_one();
        }
    }

    /// New events were committed here: wake local subscribers at once and,
    /// on Postgres, other replicas through the notifier.
    pub(crate) fn announce_events(&self) {
        self.inner.events_changed.send_modify(|g| *g += 1);
        if self.backend() == Backend::Postgres {
            self.inner.remote_events.notify_one();
        }
    }

    /// Delay before retry number `failed_attempts + 1`.
    pub(crate) fn backoff_ms(&self, failed_attempts: i64) -> i64 {
        let c = &self.inner.config;
        let exp = failed_attempts.clamp(1, 30) - 1;
        let base = c
            .backoff_base_ms
            .saturating_mul(1_i64 << exp)
            .min(c.backoff_max_ms)
            .max(0);
        let jitter = if base > 1 {
            rand::Rng::gen_range(&mut rand::thread_rng(), 0..=base / 2)
        } else {
            0
        };
        base + jitter
    }
}

/// More runs of an operation that Postgres failed to break a deadlock.
const DEADLOCK_RERUNS: usize = 3;

/// Runs `op`, and runs it again (up to [`DEADLOCK_RERUNS`] times more)
/// when Postgres failed it to break a deadlock.
///
/// Writers take rows in one order, attempts, then tasks, then jobs, so
/// they wait for each other. One window is left: a cancel passes over the
/// attempts of its jobs twice (see `cancel_in`), and a report on an
/// attempt that a claim opened between the two passes holds that attempt
/// while it waits for its task, which the cancel holds. Postgres breaks
/// such a cycle after `deadlock_timeout` by failing one side, whose
/// transaction is then undone whole. The operations that can be on either
/// side (cancels, completions, failures, releases) run again here once the
/// other side has gone on, instead of answering a storage error.
pub(crate) async fn again_on_deadlock<T, Fut>(what: &str, mut op: impl FnMut() -> Fut) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut reruns = 0;
    loop {
        match op().await {
            Err(e) if e.lost_a_deadlock() && reruns < DEADLOCK_RERUNS => {
                reruns += 1;
                tracing::info!(what, reruns, "run again after losing a deadlock");
            }
            answer => return answer,
        }
    }
}

/// The distinct `names`, sorted.
pub(crate) fn distinct<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// One transaction plus what it must announce when it commits.
pub(crate) struct Work {
    pub tx: Tx,
    pub events: Vec<NewEvent>,
    /// Tasks became ready: wake claimers after commit.
    pub wake_claimers: bool,
    /// The time of this unit; every timestamp it writes is this one.
    pub now: i64,
}

impl Work {
    pub fn event(&mut self, event_type: &'static str, tenant: Option<&str>) -> &mut NewEvent {
        self.events
            .push(NewEvent::new(self.now, event_type, tenant));
        self.events.last_mut().expect("just pushed")
    }
}

/// An event about to be appended. Built with [`Work::event`] and the setters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NewEvent {
    pub ts: i64,
    #[serde(rename = "type")]
    pub event_type: Cow<'static, str>,
    pub tenant: Option<String>,
    pub job_id: Option<i64>,
    pub task_id: Option<i64>,
    pub attempt_id: Option<i64>,
    pub node_id: Option<i64>,
    pub dead_letter_id: Option<i64>,
    pub queue: Option<String>,
    /// Serialised JSON object.
    pub data: String,
}

impl NewEvent {
    pub fn new(
        ts: i64,
        event_type: impl Into<Cow<'static, str>>,
        tenant: Option<&str>,
    ) -> NewEvent {
        NewEvent {
            ts,
            event_type: event_type.into(),
            tenant: tenant.map(str::to_string),
            job_id: None,
            task_id: None,
            attempt_id: None,
            node_id: None,
            dead_letter_id: None,
            queue: None,
            data: String::new(),
        }
    }

    pub fn job(&mut self, id: i64) -> &mut Self {
        self.job_id = Some(id);
        self
    }
    pub fn task(&mut self, id: i64) -> &mut Self {
        self.task_id = Some(id);
        self
    }
    pub fn attempt(&mut self, id: i64) -> &mut Self {
        self.attempt_id = Some(id);
        self
    }
    pub fn node(&mut self, id: Option<i64>) -> &mut Self {
        self.node_id = id;
        self
    }
    pub fn dead_letter(&mut self, id: i64) -> &mut Self {
        self.dead_letter_id = Some(id);
        self
    }
    pub fn queue(&mut self, name: &str) -> &mut Self {
        self.queue = Some(name.to_string());
        self
    }
    pub fn data(&mut self, data: Value) -> &mut Self {
        self.data = data.to_string();
        self
    }
}

/// Hash of an error message with its variable parts (numbers, ids, hex,
/// paths' digits, whitespace) normalised away, so "timeout after 31s on
/// 10.0.0.7" and "timeout after 29s on 10.0.0.9" group together.
pub fn error_fingerprint(message: &str) -> String {
    let mut normal = String::with_capacity(message.len());
    let mut last_was_placeholder = false;
    let mut last_was_space = false;
    for word in message.split_whitespace() {
        if !normal.is_empty() && !last_was_space {
            normal.push(' ');
            last_was_space = true;
        }
        // A long hex-ish token (ids, hashes, uuids) is one placeholder.
        let hexish = word.len() >= 8
            && word
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '-' || c == ':');
        if hexish && word.chars().any(|c| c.is_ascii_digit()) {
            normal.push('#');
            last_was_space = false;
            continue;
        }
        for c in word.chars() {
            if c.is_ascii_digit() {
                if !last_was_placeholder {
                    normal.push('#');
                }
                last_was_placeholder = true;
            } else {
                normal.extend(c.to_lowercase());
                last_was_placeholder = false;
            }
            last_was_space = false;
        }
        last_was_placeholder = false;
    }
    let digest = Sha256::digest(normal.trim().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The state a job is in given its tasks (SPEC §2). A cancelled job stays
/// cancelled; otherwise the tasks decide. `held`: its queue is paused or a
/// quota of its tenant or queue is exhausted, so its ready tasks wait.
pub(crate) fn derive_job_state(
    current: JobState,
    counts: &TaskCounts,
    started: bool,
    held: bool,
) -> JobState {
    if current == JobState::Cancelled {
        return JobState::Cancelled;
    }
    let total = counts.total();
    if total > 0 && counts.succeeded == total {
        return JobState::Succeeded;
    }
    let unfinished = counts.pending + counts.ready + counts.leased;
    if unfinished == 0 {
        return if counts.failed > 0 || counts.skipped > 0 {
            JobState::Failed
        } else {
            JobState::Cancelled
        };
    }
    if counts.leased > 0 {
        JobState::Running
    } else if held {
        JobState::Blocked
    } else if started {
        JobState::Running
    } else {
        JobState::Queued
    }
}

impl Kernel {
    /// Re-derives the state of `job_ids` from their tasks and applies every
    /// change as a guarded update, with a `job.stateChanged` event each.
    pub(crate) async fn derive_jobs(&self, w: &mut Work, job_ids: &[i64]) -> Result<()> {
        if job_ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = job_ids
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let jobs =
            w.tx.fetch_all(
                &format!(
                    "SELECT j.id, j.state, j.tenant, j.started_at, {} AS held \
                     FROM jobs j WHERE j.id @in($1)",
                    quotas::JOB_HELD
                ),
                args![ids.clone()],
            )
            .await?;
        let count_rows = w
            .tx
            .fetch_all(
                "SELECT job_id, state, COUNT(*) AS n FROM tasks WHERE job_id @in($1) GROUP BY job_id, state",
                args![ids],
            )
            .await?;
        let mut counts: HashMap<i64, TaskCounts> = HashMap::new();
        for r in count_rows {
            let state: TaskState = r.parse("state")?;
            counts
                .entry(r.i64("job_id")?)
                .or_default()
                .add(state, r.i64("n")?);
        }
        // (from, to) → [(job id, tenant)]
        let mut changes: BTreeMap<(JobState, JobState), Vec<(i64, String)>> = BTreeMap::new();
        for r in jobs {
            let id = r.i64("id")?;
            let current: JobState = r.parse("state")?;
            let next = derive_job_state(
                current,
                counts.get(&id).unwrap_or(&TaskCounts::default()),
                r.opt_i64("started_at")?.is_some(),
                r.bool("held")?,
            );
            if next != current {
                changes
                    .entry((current, next))
                    .or_default()
                    .push((id, r.text("tenant")?));
            }
        }
        for ((from, to), jobs) in changes {
            let ids: Vec<i64> = jobs.iter().map(|(id, _)| *id).collect();
            let finished_at = to.is_terminal().then_some(w.now);
            let changed =
                w.tx.execute(
                    "UPDATE jobs SET state = $1, updated_at = $2, finished_at = $3 \
                     WHERE id @in($4) AND state || '' = $5",
                    args![to.as_str(), w.now, finished_at, ids, from.as_str()],
                )
                .await?;
            if changed as usize != jobs.len() {
                // Another transaction moved one of them first (Postgres);
                // roll back rather than record events for changes not made.
                return Err(KernelError::conflict(
                    "a job changed state concurrently; try again",
                ));
            }
            for (id, tenant) in jobs {
                w.event(event_type::JOB_STATE_CHANGED, Some(&tenant))
                    .job(id)
                    .data(json!({ "from": from, "to": to }));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_numbers_and_case() {
        assert_eq!(
            error_fingerprint("Timeout after 31s on 10.0.0.7"),
            error_fingerprint("timeout after 29s on 10.0.0.9")
        );
        assert_ne!(
            error_fingerprint("connection refused"),
            error_fingerprint("permission denied")
        );
        assert_eq!(
            error_fingerprint("missing object 3f2a9c1d7e"),
            error_fingerprint("missing object aa0b11ccdd99")
        );
    }

    #[test]
    fn job_state_follows_tasks() {
        let mut c = TaskCounts::default();
        c.add(TaskState::Succeeded, 2);
        assert_eq!(
            derive_job_state(JobState::Running, &c, true, false),
            JobState::Succeeded
        );
        c.add(TaskState::Failed, 1);
        assert_eq!(
            derive_job_state(JobState::Running, &c, true, false),
            JobState::Failed
        );
        c.add(TaskState::Ready, 1);
        assert_eq!(
            derive_job_state(JobState::Running, &c, true, false),
            JobState::Running
        );
        assert_eq!(
            derive_job_state(JobState::Queued, &c, false, true),
            JobState::Blocked
        );
        assert_eq!(
            derive_job_state(JobState::Cancelled, &c, true, false),
            JobState::Cancelled
        );
    }
}
