//! Live updates (SPEC §5): the event log as Server-Sent Events.
//!
//! - `GET /api/v1/events/stream?family=&tenant=&job=&run=` — every event,
//!   optionally filtered.
//! - `GET /api/v1/jobs/{id}/stream` — the events of one job.
//!
//! Every frame of a log event is `id: <seq>`, `event: <type>`, `data: <the
//! event as JSON>`. A client resumes with `Last-Event-ID` (or `?after=SEQ`
//! when it reconnects by itself; the header wins): the stream replays every
//! matching event after that seq from the log, then continues live. Besides
//! log events a stream carries `connection.connected` when it opens,
//! `connection.heartbeat` every [`LiveConfig::heartbeat_every`] (15 s), and
//! `connection.lagging` when the subscriber fell so far behind that the
//! shared tail no longer holds what it has not read yet. None of these three
//! carries an `id:`, so they never move the client's resume point.
//!
//! How it stays exact and cheap:
//! - The log is the truth. One [`Tail`] task per server reads the log in seq
//!   order whenever the kernel says events became readable (its watch
//!   channel; on Postgres the sequencer and LISTEN/NOTIFY feed it) and on a
//!   short safety tick, and keeps the most recent frames, pre-rendered, in a
//!   bounded ring. It publishes the highest seq it holds.
//! - Each stream keeps its own cursor (the last seq it has considered). It
//!   takes frames after its cursor from the ring; when they were already
//!   evicted (a replay from long ago, or a subscriber too slow to keep up) it
//!   reads them from the log in pages instead, then rejoins the ring. Both
//!   sources hold the same ordered sequence, so a reconnect neither skips nor
//!   repeats an event, even while events are written during the replay.
//! - Streams are pulled: a stream only reads when its client's socket takes
//!   more, and holds at most one batch. A slow subscriber therefore never
//!   slows the kernel, the tail or other subscribers; it only falls behind.
//! - Every stream ends when the server's shutdown token is cancelled, so
//!   graceful shutdown can finish.
//!
//! This module never writes to the kernel and never decides what an event
//! means: it orders, filters and frames what the log holds.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use kernel::model::{is_audit_event, Event, Scope};
use kernel::Kernel;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{watch, OnceCell};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, ApiQuery};
use crate::auth::{Caller, Recheck};
use crate::AppState;

/// Event families a `family` filter may name (SPEC §5, plus `queue`, which
/// the kernel emits for paused and resumed queues).
pub const FAMILIES: &[&str] = &[
    "connection",
    "job",
    "task",
    "attempt",
    "lease",
    "node",
    "dlq",
    "quota",
    "queue",
    "schedule",
    "run",
    "approval",
    "audit",
];

/// Names of the frames a stream sends besides log events.
pub mod connection_event {
    /// First frame of every stream: where it resumes and the log's head.
    pub const CONNECTED: &str = "connection.connected";
    /// Sent every `heartbeat_every` while the stream is open.
    pub const HEARTBEAT: &str = "connection.heartbeat";
    /// The subscriber fell out of the shared tail; it now catches up from
    /// the log (no event is lost).
    pub const LAGGING: &str = "connection.lagging";
}

/// Tunables of the live streams.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Interval of `connection.heartbeat` frames (SPEC §5: 15 s).
    pub heartbeat_every: Duration,
    /// Frames the shared tail keeps in memory. Subscribers behind the oldest
    /// one read the log instead.
    pub tail_capacity: usize,
    /// The tail re-reads the log this often even without a wake-up from the
    /// kernel, so a missed wake-up costs latency, never an event.
    pub safety_poll: Duration,
    /// Most events one read of the log returns (replay page size).
    pub page: i64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            heartbeat_every: Duration::from_secs(15),
            tail_capacity: 8_192,
            safety_poll: Duration::from_millis(250),
            page: 500,
        }
    }
}

/// The live streams of one server: their configuration, the shutdown token
/// that ends them, and the shared tail (started by the first subscriber).
#[derive(Clone)]
pub struct LiveStreams {
    inner: Arc<LiveInner>,
}

struct LiveInner {
    config: LiveConfig,
    shutdown: CancellationToken,
    tail: OnceCell<Arc<Tail>>,
}

impl Default for LiveStreams {
    fn default() -> Self {
        LiveStreams::new(LiveConfig::default(), CancellationToken::new())
    }
}

impl std::fmt::Debug for LiveStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStreams")
            .field("config", &self.inner.config)
            .field("shut_down", &self.inner.shutdown.is_cancelled())
            .finish()
    }
}

impl LiveStreams {
    /// Streams that end when `shutdown` is cancelled.
    pub fn new(config: LiveConfig, shutdown: CancellationToken) -> LiveStreams {
        LiveStreams {
            inner: Arc::new(LiveInner {
                config,
                shutdown,
                tail: OnceCell::new(),
            }),
        }
    }

    /// The token whose cancellation ends every stream (and the tail).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    pub fn config(&self) -> &LiveConfig {
        &self.inner.config
    }

    async fn tail(&self, kernel: &Kernel) -> Result<Arc<Tail>, kernel::KernelError> {
        self.inner
            .tail
            .get_or_try_init(|| async {
                Tail::start(kernel.clone(), &self.inner.config, &self.inner.shutdown).await
            })
            .await
            .cloned()
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events/stream", get(events_stream))
        .route("/jobs/{id}/stream", get(job_stream))
}

/// Query of the global stream. Every filter is optional; given several, an
/// event must match all of them.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// Resume after this seq (when no `Last-Event-ID` header is sent).
    after: Option<i64>,
    /// Comma-separated families, e.g. `job,task`.
    family: Option<String>,
    /// Events of this tenant only (events about shared things — nodes,
    /// queues — carry no tenant and are left out).
    tenant: Option<String>,
    /// Events whose subject is this job.
    job: Option<i64>,
    /// Events of this scheduler run: those whose `data.run_id` is this id.
    /// No event carries a run yet (the scheduler does not exist), so today
    /// such a stream carries only `connection.*` frames.
    run: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResumeQuery {
    /// Resume after this seq (when no `Last-Event-ID` header is sent).
    after: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/events/stream",
    tag = "events",
    summary = "The event log as Server-Sent Events: `id:` is the seq, `event:` the type; resumes after `Last-Event-ID` (or `after`) with no gap and no duplicate",
    params(StreamQuery, ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this seq")),
    responses((status = 200, description = "An endless `text/event-stream`; `connection.heartbeat` every 15 s", content_type = "text/event-stream", body = String), (status = "default", description = "Any failure: a typed error body", body = kernel::model::ErrorBody))
)]
pub(crate) async fn events_stream(
    State(kernel): State<Kernel>,
    State(live): State<LiveStreams>,
    caller: Caller,
    recheck: Option<Extension<Recheck>>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    caller.require(Scope::RunsRead)?;
    let families = match query.family.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => parse_families(list)?,
    };
    if families.iter().any(|f| f == "audit") {
        caller.require(Scope::DownloadsRead)?;
    }
    let filter = Filter {
        families,
        tenant: query.tenant.filter(|t| !t.is_empty()),
        job: query.job,
        run: query.run.filter(|r| !r.is_empty()),
        tenants: caller.tenant_restriction(),
        audit: caller.0.sees_audit(),
    };
    let after = resume_point(&headers, query.after)?;
    open(kernel, live, filter, after, recheck.map(|e| e.0)).await
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/stream",
    tag = "events",
    summary = "One job's events as Server-Sent Events (as the global stream, for this job only)",
    params(("id" = i64, Path, description = "Job id"), ResumeQuery, ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this seq")),
    responses((status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String), (status = "default", description = "Any failure: a typed error body", body = kernel::model::ErrorBody))
)]
pub(crate) async fn job_stream(
    State(kernel): State<Kernel>,
    State(live): State<LiveStreams>,
    caller: Caller,
    recheck: Option<Extension<Recheck>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<ResumeQuery>,
) -> ApiResult<Response> {
    caller.require(Scope::RunsRead)?;
    // A stream of a job that does not exist is a 404, not an idle stream.
    let job = kernel.get_job_summary(id).await?;
    caller.require_tenant(&job.tenant, "job", id)?;
    let filter = Filter {
        job: Some(id),
        tenants: caller.tenant_restriction(),
        audit: caller.0.sees_audit(),
        ..Filter::default()
    };
    let after = resume_point(&headers, query.after)?;
    open(kernel, live, filter, after, recheck.map(|e| e.0)).await
}

fn parse_families(list: &str) -> ApiResult<Vec<String>> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !FAMILIES.contains(&name) {
            return Err(ApiError::invalid_query(format!(
                "unknown event family {name:?}; known families: {}",
                FAMILIES.join(", ")
            ))
            .with_details(json!({ "family": name, "known": FAMILIES })));
        }
        out.push(name.to_string());
    }
    Ok(out)
}

/// Where a stream resumes: `Last-Event-ID` if present (what a browser sends
/// when it reconnects by itself), else `?after=`, else the log's head.
fn resume_point(headers: &HeaderMap, after: Option<i64>) -> ApiResult<Option<i64>> {
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().unwrap_or("").trim();
        if text.is_empty() {
            return Ok(after.map(|a| a.max(0)));
        }
        return text
            .parse::<i64>()
            .map(|seq| Some(seq.max(0)))
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "Last-Event-ID must be an event seq (an integer), got {text:?}"
                ))
            });
    }
    Ok(after.map(|a| a.max(0)))
}

async fn open(
    kernel: Kernel,
    live: LiveStreams,
    filter: Filter,
    after: Option<i64>,
    recheck: Option<Recheck>,
) -> ApiResult<Response> {
    let stream = Subscription::open(kernel, &live, filter, after, recheck).await?;
    let body = Body::from_stream(futures_util::stream::unfold(stream, |mut s| async move {
        s.next_chunk()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), s))
    }));
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) must pass frames through as they come.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Which events a stream carries.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub families: Vec<String>,
    pub tenant: Option<String>,
    pub job: Option<i64>,
    pub run: Option<String>,
    /// The subscriber's tenant grant (`None`: every tenant). With a list,
    /// only events of those tenants pass; events of no tenant do not.
    pub tenants: Option<Vec<String>>,
    /// Whether the subscriber may read the audit trail (`audit.*`; see
    /// `Principal::sees_event`).
    pub audit: bool,
}

impl Filter {
    fn matches(&self, frame: &Frame) -> bool {
        (self.audit || !is_audit_event(&frame.event_type))
            && (self.families.is_empty() || self.families.iter().any(|f| f == frame.family()))
            && self.tenants.as_ref().is_none_or(|granted| {
                frame
                    .tenant
                    .as_ref()
                    .is_some_and(|t| granted.iter().any(|g| g == t))
            })
            && self
                .tenant
                .as_ref()
                .is_none_or(|t| frame.tenant.as_deref() == Some(t.as_str()))
            && self.job.is_none_or(|j| frame.job_id == Some(j))
            && self
                .run
                .as_ref()
                .is_none_or(|r| frame.run_id.as_deref() == Some(r.as_str()))
    }
}

/// One log event, framed for SSE once and shared by every subscriber, with
/// the fields filters look at.
#[derive(Debug)]
struct Frame {
    seq: i64,
    event_type: String,
    tenant: Option<String>,
    job_id: Option<i64>,
    run_id: Option<String>,
    sse: Bytes,
}

impl Frame {
    fn new(event: Event) -> Frame {
        let data = serde_json::to_string(&event).expect("an event serialises");
        let sse = Bytes::from(format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            event.seq,
            sse_field(&event.event_type),
            data
        ));
        let run_id = match event.data.get("run_id") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Frame {
            seq: event.seq,
            event_type: event.event_type,
            tenant: event.tenant,
            job_id: event.subject.job_id,
            run_id,
            sse,
        }
    }

    fn family(&self) -> &str {
        self.event_type
            .split_once('.')
            .map(|(family, _)| family)
            .unwrap_or(&self.event_type)
    }
}

/// A field value without line breaks (a line break would end the field).
fn sse_field(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// A frame with no `id:` (connection frames), named `event` with `data`.
fn control_frame(event: &str, data: serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// The shared, bounded, in-order copy of the newest part of the log.
///
/// Seqs only ever increase; they are contiguous on SQLite but not on
/// Postgres (`xid << 20 | n`), so nothing here does arithmetic on them.
struct Tail {
    ring: Mutex<Ring>,
    /// The highest seq the ring holds (or the log's head when the tail started).
    head: watch::Sender<i64>,
}

struct Ring {
    frames: VecDeque<Arc<Frame>>,
    capacity: usize,
    /// The ring holds every event with a seq above this one (up to the
    /// head). Seqs increase but need not be contiguous (on Postgres they
    /// are not), so coverage is tracked rather than inferred.
    covers_after: i64,
}

enum Take {
    /// Frames after the cursor, in order (possibly fewer than asked).
    Frames(Vec<Arc<Frame>>),
    /// What follows the cursor is no longer in the ring.
    Evicted,
}

impl Ring {
    /// Appends the next event of the log (the tail reads the log in order).
    fn push(&mut self, frame: Frame) {
        if self.frames.len() == self.capacity {
            if let Some(old) = self.frames.pop_front() {
                self.covers_after = old.seq;
            }
        }
        self.frames.push_back(Arc::new(frame));
    }

    fn take_after(&self, cursor: i64, max: usize) -> Take {
        if cursor < self.covers_after {
            return Take::Evicted;
        }
        let start = self.frames.partition_point(|f| f.seq <= cursor);
        Take::Frames(self.frames.iter().skip(start).take(max).cloned().collect())
    }
}

impl Tail {
    /// Reads the log's head, then follows the log in a task that ends with
    /// `shutdown` (or when nothing refers to the tail any more).
    async fn start(
        kernel: Kernel,
        config: &LiveConfig,
        shutdown: &CancellationToken,
    ) -> Result<Arc<Tail>, kernel::KernelError> {
        // Subscribe before reading the head: a change after the read wakes us.
        let mut changes = kernel.subscribe_events();
        changes.borrow_and_update();
        let head = kernel.last_event_seq().await?;
        let tail = Arc::new(Tail {
            ring: Mutex::new(Ring {
                frames: VecDeque::with_capacity(config.tail_capacity.min(1024)),
                capacity: config.tail_capacity.max(1),
                covers_after: head,
            }),
            head: watch::channel(head).0,
        });
        let weak = Arc::downgrade(&tail);
        let shutdown = shutdown.clone();
        let poll = config.safety_poll;
        tokio::spawn(async move {
            follow(kernel, weak, changes, head, poll, shutdown).await;
        });
        Ok(tail)
    }

    fn take_after(&self, cursor: i64, max: usize) -> Take {
        self.ring.lock().expect("tail lock").take_after(cursor, max)
    }
}

/// The tail's task: read every new page of the log into the ring and publish
/// the new head, on each wake-up from the kernel and on the safety tick.
async fn follow(
    kernel: Kernel,
    tail: Weak<Tail>,
    mut changes: watch::Receiver<u64>,
    mut last: i64,
    poll: Duration,
    shutdown: CancellationToken,
) {
    const READ: i64 = 1_000;
    loop {
        // Mark the wake-up seen before reading, so nothing written after the
        // read goes unnoticed.
        changes.borrow_and_update();
        loop {
            match kernel.events_after(last, READ).await {
                Ok(page) => {
                    let Some(tail) = tail.upgrade() else { return };
                    let n = page.items.len();
                    if n > 0 {
                        let frames: Vec<Frame> = page.items.into_iter().map(Frame::new).collect();
                        last = page.next_after;
                        let mut ring = tail.ring.lock().expect("tail lock");
                        for frame in frames {
                            ring.push(frame);
                        }
                        drop(ring);
                        tail.head.send_replace(last);
                    }
                    if (n as i64) < READ {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "live tail could not read the event log; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(poll) => {
                if tail.strong_count() == 0 { return }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Most frames one chunk of a stream carries.
const BATCH: usize = 128;

/// One client's stream: its filter, its cursor and its clocks.
struct Subscription {
    kernel: Kernel,
    tail: Arc<Tail>,
    head: watch::Receiver<i64>,
    filter: Filter,
    /// The last seq this stream has considered (sent, or skipped by filter).
    cursor: i64,
    /// The resume point asked for, reported in `connection.connected`.
    resumed_after: Option<i64>,
    /// What the log said of it: events deleted before they were read
    /// (`deleted_through`), or a point beyond the log (`reset`), both
    /// reported in `connection.connected`: the client must refetch.
    resume_check: Option<kernel::model::ResumeCheck>,
    connected_sent: bool,
    /// Reading from the shared tail (or waiting at its head): falling out
    /// of it means the subscriber is lagging and is told so.
    live: bool,
    heartbeat_every: Duration,
    next_heartbeat: Instant,
    page: i64,
    shutdown: CancellationToken,
    /// The subscriber's credential, checked again at every heartbeat: the
    /// stream ends once it would refuse a new request (revoked, signed
    /// out, expired, or granted something else).
    recheck: Option<Recheck>,
}

impl Subscription {
    async fn open(
        kernel: Kernel,
        live: &LiveStreams,
        filter: Filter,
        after: Option<i64>,
        recheck: Option<Recheck>,
    ) -> Result<Subscription, kernel::KernelError> {
        let tail = live.tail(&kernel).await?;
        let head = tail.head.subscribe();
        let check = match after {
            Some(seq) => Some(kernel.check_resume(seq).await?),
            None => None,
        };
        let cursor = match after {
            // A resume point beyond the log would wait for events that
            // never come: the stream starts at the head and says so.
            Some(_) if check.is_some_and(|c| c.beyond_head) => *head.borrow(),
            Some(seq) => seq,
            // Live only: start at the head the tail holds now.
            None => *head.borrow(),
        };
        let config = live.config();
        Ok(Subscription {
            kernel,
            tail,
            head,
            filter,
            cursor,
            resumed_after: after,
            resume_check: check,
            connected_sent: false,
            live: false,
            heartbeat_every: config.heartbeat_every,
            next_heartbeat: Instant::now() + config.heartbeat_every,
            page: config.page.clamp(1, 10_000),
            shutdown: live.shutdown_token(),
            recheck,
        })
    }

    /// The next bytes to send, or `None` when the stream ends (shutdown).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        if !self.connected_sent {
            self.connected_sent = true;
            let head = *self.head.borrow();
            let mut data = json!({
                "after": self.cursor,
                "resumed": self.resumed_after.is_some(),
                "head": head,
                "heartbeat_ms": self.heartbeat_every.as_millis() as u64,
            });
            if let Some(check) = self.resume_check {
                if let Some(through) = check.deleted_through {
                    data["deleted_through"] = json!(through);
                }
                if check.beyond_head {
                    data["reset"] = json!(true);
                }
            }
            return Some(control_frame(connection_event::CONNECTED, data));
        }
        loop {
            if Instant::now() >= self.next_heartbeat {
                if let Some(recheck) = &self.recheck {
                    if !recheck.still_holds(&self.kernel).await {
                        return None;
                    }
                }
                return Some(self.heartbeat());
            }
            let head = *self.head.borrow_and_update();
            if self.cursor < head {
                match self.tail.take_after(self.cursor, BATCH) {
                    Take::Frames(frames) if !frames.is_empty() => {
                        self.live = true;
                        if let Some(chunk) = self.frame_chunk(frames) {
                            return Some(chunk);
                        }
                        continue;
                    }
                    _ => {
                        if self.live {
                            self.live = false;
                            return Some(control_frame(
                                connection_event::LAGGING,
                                json!({ "after": self.cursor, "head": head }),
                            ));
                        }
                        // Boxed: the database read is the largest future
                        // a stream awaits, and an idle stream should not
                        // carry its space.
                        match Box::pin(self.read_log(head)).await {
                            Ok(Some(chunk)) => return Some(chunk),
                            Ok(None) => continue,
                            Err(e) => {
                                // The client reconnects and resumes from its
                                // last id: ending is safer than skipping.
                                tracing::warn!(error = %e, "live stream could not read the event log; ending it");
                                return None;
                            }
                        }
                    }
                }
            }
            self.live = true;
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return None,
                r = self.head.changed() => if r.is_err() { return None },
                _ = tokio::time::sleep_until(self.next_heartbeat) => {}
            }
        }
    }

    fn heartbeat(&mut self) -> Bytes {
        self.next_heartbeat = Instant::now() + self.heartbeat_every;
        control_frame(
            connection_event::HEARTBEAT,
            json!({ "ts": now_ms(), "head": *self.head.borrow(), "after": self.cursor }),
        )
    }

    /// The matching frames of `frames` as one chunk (advancing the cursor
    /// past all of them), or `None` when none matched.
    fn frame_chunk(&mut self, frames: Vec<Arc<Frame>>) -> Option<Bytes> {
        let mut out: Vec<u8> = Vec::new();
        for frame in &frames {
            if self.filter.matches(frame) {
                out.extend_from_slice(&frame.sse);
            }
        }
        if let Some(last) = frames.last() {
            self.cursor = last.seq;
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// Reads the next page after the cursor from the log itself (the frames
    /// are not in the shared tail). `head` is a seq known to be readable.
    async fn read_log(&mut self, head: i64) -> Result<Option<Bytes>, kernel::KernelError> {
        let page = match self.filter.job {
            Some(job) => {
                self.kernel
                    .job_events_after(job, self.cursor, self.page)
                    .await?
            }
            None => self.kernel.events_after(self.cursor, self.page).await?,
        };
        let full = page.items.len() as i64 == self.page;
        let frames: Vec<Arc<Frame>> = page
            .items
            .into_iter()
            .map(|e| Arc::new(Frame::new(e)))
            .collect();
        let chunk = self.frame_chunk(frames);
        if !full {
            // A short page read after `head` was published holds every
            // matching event up to `head`: nothing before it is left.
            self.cursor = self.cursor.max(head);
        }
        Ok(chunk)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::model::NewJob;
    use kernel::KernelConfig;

    fn frames_of(chunk: &Bytes) -> Vec<(Option<i64>, String)> {
        let text = std::str::from_utf8(chunk).unwrap();
        text.split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let mut id = None;
                let mut name = String::new();
                for line in f.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_string();
                    }
                }
                (id, name)
            })
            .collect()
    }

    /// A subscriber that stops reading while the tail moves on past it is
    /// told it is lagging, then gets every event it missed, in order, from
    /// the log.
    #[tokio::test]
    async fn a_subscriber_that_falls_out_of_the_tail_is_told_and_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        let kernel = Kernel::open(&url, KernelConfig::default()).await.unwrap();
        let live = LiveStreams::new(
            LiveConfig {
                tail_capacity: 4,
                page: 3,
                ..LiveConfig::default()
            },
            CancellationToken::new(),
        );
        let mut sub = Subscription::open(kernel.clone(), &live, Filter::default(), None, None)
            .await
            .unwrap();
        let connected = sub.next_chunk().await.unwrap();
        assert_eq!(frames_of(&connected)[0].1, connection_event::CONNECTED);

        // One event while the subscriber keeps up: it comes from the tail.
        kernel
            .submit(NewJob::single("first", "noop", json!({})))
            .await
            .unwrap();
        let mut seen: Vec<i64> = Vec::new();
        let target = kernel.last_event_seq().await.unwrap();
        while seen.last().copied().unwrap_or(0) < target {
            let chunk = sub.next_chunk().await.unwrap();
            seen.extend(frames_of(&chunk).into_iter().filter_map(|(id, _)| id));
        }
        // Now it stops reading while many events pass through the tail.
        for i in 0..10 {
            kernel
                .submit(NewJob::single(format!("j{i}"), "noop", json!({})))
                .await
                .unwrap();
        }
        let last = kernel.last_event_seq().await.unwrap();
        let tail = live.tail(&kernel).await.unwrap();
        let mut head = tail.head.subscribe();
        head.wait_for(|h| *h >= last).await.unwrap();

        let mut lagging = 0;
        while seen.last().copied().unwrap_or(0) < last {
            let chunk = sub.next_chunk().await.unwrap();
            for (id, name) in frames_of(&chunk) {
                match id {
                    Some(seq) => seen.push(seq),
                    None if name == connection_event::LAGGING => lagging += 1,
                    None => {}
                }
            }
        }
        assert_eq!(lagging, 1, "told once that it fell behind");
        let all: Vec<i64> = (1..=last).collect();
        assert_eq!(seen, all, "every event exactly once, in order");
    }

    #[test]
    fn filters_match_family_tenant_job_and_run() {
        let frame = Frame::new(Event {
            seq: 7,
            ts: 0,
            event_type: "task.stateChanged".into(),
            tenant: Some("acme".into()),
            subject: kernel::model::EventSubject {
                job_id: Some(3),
                ..Default::default()
            },
            data: json!({ "run_id": 12 }),
        });
        let f = |families: &[&str], tenant: Option<&str>, job: Option<i64>, run: Option<&str>| {
            Filter {
                families: families.iter().map(|s| s.to_string()).collect(),
                tenant: tenant.map(str::to_string),
                job,
                run: run.map(str::to_string),
                tenants: None,
                audit: false,
            }
            .matches(&frame)
        };
        assert!(f(&[], None, None, None));
        assert!(f(&["job", "task"], Some("acme"), Some(3), Some("12")));
        // A tenant grant lets its tenants' events through, and nothing else.
        let granted = |tenants: &[&str]| {
            Filter {
                tenants: Some(tenants.iter().map(|t| t.to_string()).collect()),
                ..Filter::default()
            }
            .matches(&frame)
        };
        assert!(granted(&["beta", "acme"]));
        assert!(!granted(&["beta"]));
        assert!(!f(&["job"], None, None, None));
        assert!(!f(&[], Some("other"), None, None));
        assert!(!f(&[], None, Some(4), None));
        assert!(!f(&[], None, None, Some("13")));
        assert!(std::str::from_utf8(&frame.sse)
            .unwrap()
            .starts_with("id: 7\nevent: task.stateChanged\ndata: {"));
    }
}
