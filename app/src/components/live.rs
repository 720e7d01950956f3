//! Live updates in the browser (SPEC §5): the one piece every live page uses.
//!
//! [`use_live_feed`] follows an SSE stream of the event log from the seq the
//! page's server-rendered state reflects, and hands each event, once and in
//! order, to the page, which patches that state in place. It owns the
//! connection: it reconnects with exponential backoff and jitter, resuming
//! after the last event it delivered (the server replays from the log, so
//! nothing is lost or repeated); when the stream cannot be opened at all it
//! polls `/api/v1/events?after=` every 30 s instead (and keeps trying the
//! stream), and it says which of these it is doing through [`LiveFeed`] and
//! the shell's [`LiveBoard`].
//!
//! It never fetches page data itself and never runs on the server: the
//! server render and the first browser render both show the state the page
//! was given and the status [`LiveStatus::Idle`]; the connection opens in an
//! effect, after hydration.

use std::sync::Arc;

use kernel::model::Event;
use leptos::prelude::*;

/// Silence (no heartbeat, no successful poll) after which the shell warns.
pub const SILENCE_WARNING_MS: i64 = 90_000;
/// Interval of the polling fallback.
pub const POLL_EVERY_MS: u32 = 30_000;
/// Longest wait between two reconnection attempts.
pub const MAX_BACKOFF_MS: f64 = 30_000.0;
/// Failed attempts in a row, without the stream ever opening, before the
/// feed falls back to polling.
pub const FAILURES_BEFORE_POLLING: u32 = 3;
/// A stream that has said nothing for two of the server's heartbeats and
/// this much more is taken for dropped (a stopped server, a half-open
/// connection, a proxy holding it): closed and opened again.
pub const STALL_SLACK_MS: i64 = 5_000;
/// The server's heartbeat interval until its `connection.connected` says.
pub const HEARTBEAT_MS: i64 = 15_000;
/// How often the feed checks that its stream is still talking.
#[cfg(feature = "hydrate")]
const WATCH_EVERY_MS: u64 = 5_000;

/// What a feed is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveStatus {
    /// Not started: the server render, and the browser before hydration.
    Idle,
    /// Opening the stream.
    Connecting,
    /// The stream is open.
    Live,
    /// The stream dropped; the next attempt is scheduled (`retry_at`).
    Reconnecting,
    /// The stream is unavailable; polling every 30 s (and still retrying it).
    Polling,
    /// Polling, and the last poll failed too: the server is out of reach.
    Unreachable,
}

/// Signals of one feed.
#[derive(Debug, Clone, Copy)]
pub struct LiveFeed {
    pub status: ReadSignal<LiveStatus>,
    /// Browser clock (unix ms) of the last heartbeat or successful poll.
    pub last_heartbeat_at: ReadSignal<Option<i64>>,
    /// When the next reconnection attempt happens (browser clock, unix ms).
    pub retry_at: ReadSignal<Option<i64>>,
    /// The last seq delivered to the page.
    pub last_seq: ReadSignal<i64>,
}

/// The status of the page's live feed, shown by the shell header. Provided
/// by the shell; a feed mirrors itself into it while it exists.
#[derive(Debug, Clone, Copy)]
pub struct LiveBoard {
    pub status: RwSignal<LiveStatus>,
    pub last_heartbeat_at: RwSignal<Option<i64>>,
    pub retry_at: RwSignal<Option<i64>>,
    /// Browser clock, ticking every second once hydrated (`None` before).
    pub now: RwSignal<Option<i64>>,
}

impl LiveBoard {
    pub fn new() -> LiveBoard {
        LiveBoard {
            status: RwSignal::new(LiveStatus::Idle),
            last_heartbeat_at: RwSignal::new(None),
            retry_at: RwSignal::new(None),
            now: RwSignal::new(None),
        }
    }
}

impl Default for LiveBoard {
    fn default() -> Self {
        LiveBoard::new()
    }
}

/// What a page asks of its feed.
#[derive(Clone)]
pub struct LiveOptions {
    /// The stream, e.g. `/api/v1/events/stream` or `/api/v1/jobs/7/stream`
    /// (may carry filters; `after` is added).
    pub stream: String,
    /// The seq the page's state already reflects.
    pub after: i64,
    /// Which events of the unfiltered `/api/v1/events` belong to this feed
    /// (used only while polling).
    pub accept: Arc<dyn Fn(&Event) -> bool + Send + Sync>,
    /// Called with each new event, in seq order, exactly once.
    pub on_event: Arc<dyn Fn(Event) + Send + Sync>,
}

/// Where a feed reports (written only by the browser side).
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
struct Setters {
    status: WriteSignal<LiveStatus>,
    last_heartbeat_at: WriteSignal<Option<i64>>,
    retry_at: WriteSignal<Option<i64>>,
    last_seq: WriteSignal<i64>,
    board: Option<LiveBoard>,
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
impl Setters {
    fn status(&self, status: LiveStatus) {
        self.status.set(status);
        if let Some(b) = self.board {
            b.status.set(status);
        }
    }
    fn heartbeat(&self, at: i64) {
        self.last_heartbeat_at.set(Some(at));
        if let Some(b) = self.board {
            b.last_heartbeat_at.set(Some(at));
        }
    }
    fn retry_at(&self, at: Option<i64>) {
        self.retry_at.set(at);
        if let Some(b) = self.board {
            b.retry_at.set(at);
        }
    }
}

/// Opens (after hydration) a feed for the calling component; it closes when
/// the component is dropped.
pub fn use_live_feed(options: LiveOptions) -> LiveFeed {
    let (status, set_status) = signal(LiveStatus::Idle);
    let (last_heartbeat_at, set_heartbeat) = signal(None::<i64>);
    let (retry_at, set_retry_at) = signal(None::<i64>);
    let (last_seq, set_last_seq) = signal(options.after);
    let setters = Setters {
        status: set_status,
        last_heartbeat_at: set_heartbeat,
        retry_at: set_retry_at,
        last_seq: set_last_seq,
        board: use_context::<LiveBoard>(),
    };
    #[cfg(feature = "hydrate")]
    browser::start(options, setters);
    #[cfg(not(feature = "hydrate"))]
    let _ = (options, setters);
    LiveFeed {
        status,
        last_heartbeat_at,
        retry_at,
        last_seq,
    }
}

/// Every event name a stream may carry: `EventSource` delivers named events
/// only to listeners registered for that name.
#[cfg(feature = "hydrate")]
const EVENT_NAMES: &[&str] = &[
    "connection.connected",
    "connection.heartbeat",
    "connection.lagging",
    kernel::model::event_type::JOB_SUBMITTED,
    kernel::model::event_type::JOB_STATE_CHANGED,
    kernel::model::event_type::TASK_STATE_CHANGED,
    kernel::model::event_type::LEASE_GRANTED,
    kernel::model::event_type::LEASE_RENEWED,
    kernel::model::event_type::LEASE_EXPIRED,
    kernel::model::event_type::LEASE_RELEASED,
    kernel::model::event_type::LEASE_FENCED,
    kernel::model::event_type::NODE_ONLINE,
    kernel::model::event_type::NODE_DRAINING,
    kernel::model::event_type::NODE_OFFLINE,
    kernel::model::event_type::DLQ_ADDED,
    kernel::model::event_type::DLQ_REPLAYED,
    kernel::model::event_type::DLQ_RESOLVED,
    kernel::model::event_type::QUOTA_UPDATED,
    kernel::model::event_type::QUEUE_PAUSED,
    kernel::model::event_type::QUEUE_RESUMED,
];

#[cfg(feature = "hydrate")]
mod browser {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use kernel::model::{Event, EventPage};
    use leptos::prelude::*;
    use send_wrapper::SendWrapper;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;

    use super::*;

    struct Conn {
        options: LiveOptions,
        set: Setters,
        /// Last seq delivered to the page: where the next connection resumes.
        last: i64,
        attempts: u32,
        failures_without_open: u32,
        source: Option<web_sys::EventSource>,
        listeners: Vec<Closure<dyn FnMut(web_sys::MessageEvent)>>,
        on_error: Option<Closure<dyn FnMut(web_sys::Event)>>,
        retry: Option<TimeoutHandle>,
        poll: Option<IntervalHandle>,
        polling_in_flight: bool,
        stopped: bool,
        /// Browser clock of the stream's last word (or of its opening).
        last_heard: i64,
        /// The server's heartbeat interval, as its stream said.
        heartbeat_ms: i64,
        watchdog: Option<IntervalHandle>,
    }

    type Shared = Rc<RefCell<Conn>>;

    fn now() -> i64 {
        js_sys::Date::now() as i64
    }

    pub(super) fn start(options: LiveOptions, set: Setters) {
        let conn: Shared = Rc::new(RefCell::new(Conn {
            last: options.after,
            options,
            set,
            attempts: 0,
            failures_without_open: 0,
            source: None,
            listeners: Vec::new(),
            on_error: None,
            retry: None,
            poll: None,
            polling_in_flight: false,
            stopped: false,
            last_heard: 0,
            heartbeat_ms: HEARTBEAT_MS,
            watchdog: None,
        }));
        let for_effect = SendWrapper::new(conn.clone());
        // Effects run only in the browser, after hydration.
        Effect::new(move |_| {
            connect(&for_effect);
            watch(&for_effect);
        });
        let for_cleanup = SendWrapper::new(conn);
        on_cleanup(move || stop(&for_cleanup));
    }

    fn stop(conn: &Shared) {
        let mut c = conn.borrow_mut();
        c.stopped = true;
        close_source(&mut c);
        if let Some(h) = c.retry.take() {
            h.clear();
        }
        if let Some(h) = c.poll.take() {
            h.clear();
        }
        if let Some(h) = c.watchdog.take() {
            h.clear();
        }
        if let Some(b) = c.set.board {
            b.status.set(LiveStatus::Idle);
            b.last_heartbeat_at.set(None);
            b.retry_at.set(None);
        }
    }

    /// Checks every few seconds that an open (or opening) stream still
    /// talks: the browser reports no error for a stream that merely goes
    /// quiet, and would show it as live for good.
    fn watch(conn: &Shared) {
        let weak = Rc::downgrade(conn);
        let handle = set_interval_with_handle(
            move || {
                let Some(conn) = weak.upgrade() else { return };
                let stalled = {
                    let c = conn.borrow();
                    !c.stopped
                        && c.source.is_some()
                        && now() - c.last_heard > 2 * c.heartbeat_ms + STALL_SLACK_MS
                };
                if stalled {
                    leptos::logging::warn!("live: the stream went quiet; reconnecting");
                    on_failure(&conn);
                }
            },
            Duration::from_millis(WATCH_EVERY_MS),
        )
        .ok();
        conn.borrow_mut().watchdog = handle;
    }

    /// Closes the stream. Its listeners stay until the next `connect`
    /// replaces them (this may run inside one of them).
    fn close_source(c: &mut Conn) {
        if let Some(source) = c.source.take() {
            source.close();
        }
    }

    fn stream_url(c: &Conn) -> String {
        let sep = if c.options.stream.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{}after={}", c.options.stream, sep, c.last)
    }

    fn connect(conn: &Shared) {
        let mut c = conn.borrow_mut();
        if c.stopped {
            return;
        }
        c.retry = None;
        close_source(&mut c);
        c.listeners.clear();
        c.on_error = None;
        c.last_heard = now();
        let source = match web_sys::EventSource::new(&stream_url(&c)) {
            Ok(source) => source,
            Err(_) => {
                // No EventSource at all: poll only.
                drop(c);
                start_polling(conn);
                return;
            }
        };
        if c.poll.is_none() {
            c.set.status(LiveStatus::Connecting);
        }
        for name in EVENT_NAMES {
            let weak = Rc::downgrade(conn);
            let listener = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
                move |message: web_sys::MessageEvent| {
                    if let Some(conn) = weak.upgrade() {
                        on_message(&conn, message);
                    }
                },
            );
            let _ =
                source.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
            c.listeners.push(listener);
        }
        let weak = Rc::downgrade(conn);
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
            if let Some(conn) = weak.upgrade() {
                on_failure(&conn);
            }
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        c.on_error = Some(on_error);
        c.source = Some(source);
    }

    /// What `connection.connected` says of the resume point (and of the
    /// heartbeats to expect).
    #[derive(serde::Deserialize)]
    struct Connected {
        #[serde(default)]
        heartbeat_ms: Option<i64>,
        /// Retention deleted events after it before they were read.
        #[serde(default)]
        deleted_through: Option<i64>,
        /// It lies beyond the log (another database, a restore).
        #[serde(default)]
        reset: bool,
    }

    impl Connected {
        fn missed(&self) -> bool {
            self.deleted_through.is_some() || self.reset
        }
    }

    /// Updates the page has not applied are lost, or the log is not the
    /// one the page came from: patching on would show a state that never
    /// was. The server-rendered page is the state to start from again.
    fn resync() {
        leptos::logging::warn!("live: updates were missed; reloading the page");
        let _ = window().location().reload();
    }

    fn on_message(conn: &Shared, message: web_sys::MessageEvent) {
        let name = message.type_();
        let data = message.data().as_string().unwrap_or_default();
        conn.borrow_mut().last_heard = now();
        match name.as_str() {
            "connection.connected" => {
                let connected = crate::api::from_json::<Connected>(&data).ok();
                if connected.as_ref().is_some_and(Connected::missed) {
                    return resync();
                }
                let mut c = conn.borrow_mut();
                if let Some(ms) = connected.and_then(|c| c.heartbeat_ms).filter(|ms| *ms > 0) {
                    c.heartbeat_ms = ms;
                }
                c.attempts = 0;
                c.failures_without_open = 0;
                if let Some(h) = c.poll.take() {
                    h.clear();
                }
                c.set.status(LiveStatus::Live);
                c.set.retry_at(None);
                c.set.heartbeat(now());
            }
            "connection.heartbeat" => conn.borrow().set.heartbeat(now()),
            // The server catches the stream up from the log by itself.
            "connection.lagging" => {}
            _ => {
                let Ok(event) = crate::api::from_json::<Event>(&data) else {
                    leptos::logging::warn!("live: an event that does not parse: {name}");
                    return;
                };
                deliver(conn, vec![event]);
            }
        }
    }

    /// Hands new events (seq above the last delivered) to the page, in order.
    fn deliver(conn: &Shared, events: Vec<Event>) {
        let (on_event, set, fresh) = {
            let mut c = conn.borrow_mut();
            let mut fresh = Vec::new();
            for event in events {
                if event.seq > c.last {
                    c.last = event.seq;
                    fresh.push(event);
                }
            }
            (c.options.on_event.clone(), c.set, fresh)
        };
        if let Some(last) = fresh.last().map(|e| e.seq) {
            // The borrow is released: the page's handler may do anything.
            for event in fresh {
                on_event(event);
            }
            set.last_seq.set(last);
        }
    }

    fn on_failure(conn: &Shared) {
        let mut c = conn.borrow_mut();
        if c.stopped {
            return;
        }
        // The browser would reconnect by itself, without backoff and from
        // its own idea of the last id: close it and reconnect ourselves.
        close_source(&mut c);
        c.attempts += 1;
        c.failures_without_open += 1;
        let exp = 1_000.0 * 2f64.powi(c.attempts.saturating_sub(1).min(10) as i32);
        let capped = exp.min(MAX_BACKOFF_MS);
        // Full jitter on the upper half: clients that lost the same server
        // do not come back in step.
        let delay = capped / 2.0 + js_sys::Math::random() * capped / 2.0;
        let should_poll = c.failures_without_open >= FAILURES_BEFORE_POLLING && c.poll.is_none();
        c.set.retry_at(Some(now() + delay as i64));
        if c.poll.is_none() && !should_poll {
            c.set.status(LiveStatus::Reconnecting);
        }
        let weak = Rc::downgrade(conn);
        c.retry = set_timeout_with_handle(
            move || {
                if let Some(conn) = weak.upgrade() {
                    connect(&conn);
                }
            },
            Duration::from_millis(delay as u64),
        )
        .ok();
        drop(c);
        if should_poll {
            start_polling(conn);
        }
    }

    fn start_polling(conn: &Shared) {
        {
            let mut c = conn.borrow_mut();
            if c.stopped || c.poll.is_some() {
                return;
            }
            c.set.status(LiveStatus::Polling);
            let weak = Rc::downgrade(conn);
            c.poll = set_interval_with_handle(
                move || {
                    if let Some(conn) = weak.upgrade() {
                        poll_once(&conn);
                    }
                },
                Duration::from_millis(POLL_EVERY_MS as u64),
            )
            .ok();
        }
        poll_once(conn);
    }

    fn poll_once(conn: &Shared) {
        let after = {
            let mut c = conn.borrow_mut();
            if c.stopped || c.polling_in_flight {
                return;
            }
            c.polling_in_flight = true;
            c.last
        };
        let conn = SendWrapper::new(conn.clone());
        leptos::task::spawn_local(async move {
            let result = fetch_page(after).await;
            let conn = conn.take();
            conn.borrow_mut().polling_in_flight = false;
            match result {
                Ok(page) if page.deleted_through.is_some() => resync(),
                Err(e) if e == "HTTP 409" => resync(),
                Ok(page) => {
                    let (accept, set) = {
                        let c = conn.borrow();
                        (c.options.accept.clone(), c.set)
                    };
                    let next = page.next_after;
                    let mine: Vec<Event> = page.items.into_iter().filter(|e| accept(e)).collect();
                    deliver(&conn, mine);
                    // Events of other subjects were read too: skip past them.
                    {
                        let mut c = conn.borrow_mut();
                        c.last = c.last.max(next);
                    }
                    set.heartbeat(now());
                    if conn.borrow().poll.is_some() {
                        set.status(LiveStatus::Polling);
                    }
                    let more = next > after && conn.borrow().poll.is_some();
                    if more && next - after >= 1_000 {
                        poll_once(&conn);
                    }
                }
                Err(e) => {
                    leptos::logging::warn!("live: polling the event log failed: {e}");
                    let c = conn.borrow();
                    if c.poll.is_some() {
                        c.set.status(LiveStatus::Unreachable);
                    }
                }
            }
        });
    }

    async fn fetch_page(after: i64) -> Result<EventPage, String> {
        let response =
            gloo_net::http::Request::get(&format!("/api/v1/events?after={after}&limit=1000"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
        if !response.ok() {
            return Err(format!("HTTP {}", response.status()));
        }
        let text = response.text().await.map_err(|e| e.to_string())?;
        crate::api::from_json::<EventPage>(&text).map_err(|e| e.to_string())
    }
}

/// A duration in milliseconds as operators read it: `4 s`, `3 min`, `2 h`.
pub fn format_age(ms: i64) -> String {
    let s = (ms.max(0) + 500) / 1_000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3_599 => format!("{} min", s / 60),
        3_600..=86_399 => format!("{} h", s / 3_600),
        _ => format!("{} d", s / 86_400),
    }
}

/// Starts the board's one-second clock (in the browser, after hydration).
pub fn start_clock(board: LiveBoard) {
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        {
            board.now.set(Some(js_sys::Date::now() as i64));
            if let Ok(handle) = set_interval_with_handle(
                move || board.now.set(Some(js_sys::Date::now() as i64)),
                std::time::Duration::from_secs(1),
            ) {
                on_cleanup(move || handle.clear());
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = board;
    });
}

/// The header's live indicator and, after 90 s of silence, the banner.
#[component]
pub fn LiveIndicator() -> impl IntoView {
    let board = expect_context::<LiveBoard>();
    let age = move || {
        let now = board.now.get()?;
        let at = board.last_heartbeat_at.get()?;
        Some(now - at)
    };
    let label = move || match board.status.get() {
        LiveStatus::Idle => "Live updates off on this page".to_string(),
        LiveStatus::Connecting => "Connecting to live updates…".to_string(),
        LiveStatus::Live => match age() {
            Some(ms) => format!("Live · heartbeat {} ago", format_age(ms)),
            None => "Live".to_string(),
        },
        LiveStatus::Reconnecting => match (board.now.get(), board.retry_at.get()) {
            (Some(now), Some(at)) => format!("Disconnected · retrying in {}", format_age(at - now)),
            _ => "Disconnected · retrying".to_string(),
        },
        LiveStatus::Polling => "Live stream unavailable · polling every 30 s".to_string(),
        LiveStatus::Unreachable => "Server unreachable · trying again every 30 s".to_string(),
    };
    let status = move || match board.status.get() {
        LiveStatus::Idle => "idle",
        LiveStatus::Connecting => "connecting",
        LiveStatus::Live => "live",
        LiveStatus::Reconnecting => "reconnecting",
        LiveStatus::Polling => "polling",
        LiveStatus::Unreachable => "unreachable",
    };
    view! {
        <span class="live-indicator" data-status=status role="status" aria-live="polite">
            <span class="live-dot" aria-hidden="true"></span>
            <span class="live-label">{label}</span>
        </span>
    }
}

/// Warns when a live page has heard nothing from the server for 90 s.
#[component]
pub fn SilenceBanner() -> impl IntoView {
    let board = expect_context::<LiveBoard>();
    let silent_for = move || {
        if board.status.get() == LiveStatus::Idle {
            return None;
        }
        let now = board.now.get()?;
        let at = board.last_heartbeat_at.get()?;
        (now - at >= SILENCE_WARNING_MS).then_some(now - at)
    };
    view! {
        <Show when=move || silent_for().is_some()>
            <div class="live-banner" role="alert">
                "Nothing heard from the server for "
                {move || silent_for().map(format_age).unwrap_or_default()}
                ": what this page shows may be out of date. It keeps trying to reconnect."
            </div>
        </Show>
    }
}

/// A unix-ms timestamp as `2026-11-21 00:45:12 UTC` (the same text on the
/// server and in the browser, whatever their time zones).
pub fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_ages_and_times() {
        assert_eq!(format_age(0), "0 s");
        assert_eq!(format_age(4_400), "4 s");
        assert_eq!(format_age(95_000), "1 min");
        assert_eq!(format_age(7_300_000), "2 h");
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_763_685_912_000), "2025-11-21 00:45:12 UTC");
    }
}
