//! The JobEngine pages' reads: queue health, the jobs list, the quota board;
//! and the jobs list's URL model ([`JobsQuery`]), so a bookmark restores
//! every filter, the sort, the cursor and the selection.
//!
//! Reads only, as GET server functions. Writes (bulk cancel/retry, pause,
//! quotas) go to the REST API from the browser with the CSRF token.

use std::collections::BTreeSet;

use kernel::model::{
    event_type, Event, JobRow, JobSearch, JobSort, JobState, QueueHealthReport, QuotaBoard,
    TaskState, SEARCHABLE_TASK_STATES,
};
use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;
use leptos_router::params::ParamsMap;
use serde::{Deserialize, Serialize};

/// Where the jobs list lives.
pub const JOBS_PATH: &str = "/ops/operations/jobengine/jobs";
/// Rows per page of the jobs list.
pub const JOBS_PAGE: i64 = 50;

/// The jobs list's view as the URL holds it (every field a query
/// parameter of the same name; times as UTC `YYYY-MM-DDTHH:MM[:SS]`).
/// The selection (`sel`) is kept apart: selecting rows does not re-read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobsQuery {
    pub state: Option<JobState>,
    pub queue: Option<String>,
    pub tenant: Option<String>,
    pub kind: Option<String>,
    pub task_state: Option<TaskState>,
    /// Created at or after (unix ms).
    pub from: Option<i64>,
    /// Created before (unix ms).
    pub to: Option<i64>,
    /// Finished at or after (unix ms).
    pub finished_from: Option<i64>,
    pub q: Option<String>,
    pub sort: JobSort,
    pub cursor: Option<String>,
    /// Parameters that could not be read, with why (shown, never ignored
    /// silently).
    pub invalid: Vec<(String, String)>,
}

fn text(map: &ParamsMap, key: &str) -> Option<String> {
    map.get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl JobsQuery {
    /// Reads the view from the URL's query parameters.
    pub fn from_map(map: &ParamsMap) -> JobsQuery {
        let mut q = JobsQuery::default();
        if let Some(s) = text(map, "state") {
            match s.parse::<JobState>() {
                Ok(s) => q.state = Some(s),
                Err(e) => q.invalid.push(("state".into(), e.to_string())),
            }
        }
        if let Some(s) = text(map, "task_state") {
            match s.parse::<TaskState>() {
                Ok(s) if SEARCHABLE_TASK_STATES.contains(&s) => q.task_state = Some(s),
                _ => q.invalid.push((
                    "task_state".into(),
                    format!("{s:?} is not pending, ready or leased"),
                )),
            }
        }
        q.queue = text(map, "queue");
        q.tenant = text(map, "tenant");
        q.kind = text(map, "kind");
        q.q = text(map, "q");
        for (key, slot) in [
            ("from", &mut q.from),
            ("to", &mut q.to),
            ("finished_from", &mut q.finished_from),
        ] {
            if let Some(v) = text(map, key) {
                match parse_utc(&v) {
                    Some(ms) => *slot = Some(ms),
                    None => q.invalid.push((
                        key.into(),
                        format!("{v:?} is not a UTC time like 2026-11-20T13:45"),
                    )),
                }
            }
        }
        if let Some(s) = text(map, "sort") {
            match JobSort::parse(&s) {
                Some(s) => q.sort = s,
                None => q
                    .invalid
                    .push(("sort".into(), format!("{s:?} is not newest or oldest"))),
            }
        }
        if let Some(c) = text(map, "cursor") {
            // Only what the list's own links carry.
            if kernel::model::cursor_id(&c).is_some() {
                q.cursor = Some(c);
            } else {
                q.invalid.push((
                    "cursor".into(),
                    format!("{c:?} is not a page of this list: the first page is shown"),
                ));
            }
        }
        q
    }

    /// The kernel's search for this view.
    pub fn search(&self) -> JobSearch {
        JobSearch {
            state: self.state,
            queue: self.queue.clone(),
            tenant: self.tenant.clone(),
            kind: self.kind.clone(),
            task_state: self.task_state,
            created_from: self.from,
            created_to: self.to,
            finished_from: self.finished_from,
            q: self.q.clone(),
            tenants: None,
        }
    }

    /// Whether any filter narrows the list.
    pub fn is_filtered(&self) -> bool {
        self.search() != JobSearch::default()
    }

    /// The URL of this view with `cursor` and selection `sel`.
    pub fn href(&self, cursor: Option<&str>, sel: &BTreeSet<i64>) -> String {
        let mut parts: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push((k.to_string(), v));
            }
        };
        put("state", self.state.map(|s| s.to_string()));
        put("queue", self.queue.clone());
        put("tenant", self.tenant.clone());
        put("kind", self.kind.clone());
        put("task_state", self.task_state.map(|s| s.to_string()));
        put("from", self.from.map(format_utc_input));
        put("to", self.to.map(format_utc_input));
        put("finished_from", self.finished_from.map(format_utc_input));
        put("q", self.q.clone());
        put(
            "sort",
            (self.sort != JobSort::Newest).then(|| self.sort.as_str().to_string()),
        );
        put("cursor", cursor.map(str::to_string));
        if !sel.is_empty() {
            put(
                "sel",
                Some(
                    sel.iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            );
        }
        if parts.is_empty() {
            JOBS_PATH.to_string()
        } else {
            let query = parts
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            format!("{JOBS_PATH}?{query}")
        }
    }
}

/// The selected job ids of a `sel` parameter (`1,2,3`); unreadable items
/// are dropped.
pub fn parse_selection(sel: Option<&str>) -> BTreeSet<i64> {
    sel.unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse::<i64>().ok())
        .collect()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM[:SS]` (or with a space), read as UTC, in unix ms.
pub fn parse_utc(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z').trim_end_matches(" UTC");
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&day) {
        return None;
    }
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi) = (t.next()??, t.next()??);
    let sec = match t.next() {
        None => 0,
        Some(v) => v?,
    };
    if t.next().is_some()
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0..60).contains(&sec)
    {
        return None;
    }
    Some((days_from_civil(y, mo, day) * 86_400 + h * 3_600 + mi * 60 + sec) * 1_000)
}

/// Unix ms as `YYYY-MM-DDTHH:MM:SS` (UTC), the form [`parse_utc`] reads
/// and a `datetime-local` input shows.
pub fn format_utc_input(ms: i64) -> String {
    let text = crate::components::live::format_utc(ms);
    text.trim_end_matches(" UTC").replacen(' ', "T", 1)
}

/// A page of the jobs list as the server read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsPage {
    /// Server clock when read (unix ms): durations of running jobs end here.
    pub read_at: i64,
    /// The last event seq before the read: the page follows from there.
    pub seq: i64,
    pub items: Vec<JobRow>,
    pub next_cursor: Option<String>,
}

/// How an event of the job and task families changes a row of the jobs
/// list: the job's state and times, its task counts and its attempts. A
/// lease is granted only to a ready task.
pub fn apply_to_row(row: &mut JobRow, event: &Event) {
    use super::jobs::{apply_job_state, text};
    if event.subject.job_id != Some(row.job.id) {
        return;
    }
    let counts = &mut row.job.task_counts;
    match event.event_type.as_str() {
        event_type::JOB_STATE_CHANGED => apply_job_state(&mut row.job, event),
        event_type::TASK_STATE_CHANGED => {
            let state = |key| text(event, key).and_then(|t| t.parse::<TaskState>().ok());
            if let (Some(from), Some(to)) = (state("from"), state("to")) {
                counts.add(from, -1);
                counts.add(to, 1);
            }
        }
        event_type::LEASE_GRANTED => {
            counts.add(TaskState::Ready, -1);
            counts.add(TaskState::Leased, 1);
            row.attempts += 1;
        }
        _ => {}
    }
}

/// The queue health figures and the event seq they reflect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueHealthView {
    pub seq: i64,
    pub report: QueueHealthReport,
}

/// Reads queue health, counting the caller's tenants.
#[server(input = GetUrl)]
pub async fn get_queue_health() -> Result<QueueHealthView, ServerFnError> {
    use super::{kernel, kernel_error, require};

    let caller = require(kernel::model::Scope::RunsRead)?;
    let tenants = caller.tenants.restriction();
    let kernel = kernel()?;
    let seq = kernel.last_event_seq().await.map_err(kernel_error)?;
    let report = kernel
        .queue_health(tenants.as_deref())
        .await
        .map_err(kernel_error)?;
    Ok(QueueHealthView { seq, report })
}

/// Reads one page of the jobs list, among the caller's tenants. `view` is
/// a [`JobsQuery`] as JSON (one query parameter, whatever it holds).
#[server(input = GetUrl)]
pub async fn get_jobs_page(view: String) -> Result<JobsPage, ServerFnError> {
    use super::{kernel, kernel_error, require};

    let caller = require(kernel::model::Scope::RunsRead)?;
    let query: JobsQuery = serde_json::from_str(&view)
        .map_err(|e| ServerFnError::new(format!("unreadable jobs view: {e}")))?;
    let kernel = kernel()?;
    let search = JobSearch {
        tenants: caller.tenants.restriction(),
        ..query.search()
    };
    let read_at = super::ops::now_ms();
    let seq = kernel.last_event_seq().await.map_err(kernel_error)?;
    let page = kernel
        .search_jobs(&search, query.sort, JOBS_PAGE, query.cursor.as_deref())
        .await
        .map_err(kernel_error)?;
    Ok(JobsPage {
        read_at,
        seq,
        items: page.items,
        next_cursor: page.next_cursor,
    })
}

/// The quota board and the event seq it follows from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaBoardView {
    pub seq: i64,
    pub board: QuotaBoard,
}

/// Reads every tenant (of the caller's grant) and queue with its quota and
/// live usage.
#[server(input = GetUrl)]
pub async fn get_quota_board() -> Result<QuotaBoardView, ServerFnError> {
    use super::{kernel, kernel_error, require};

    let caller = require(kernel::model::Scope::RunsRead)?;
    let tenants = caller.tenants.restriction();
    let kernel = kernel()?;
    let seq = kernel.last_event_seq().await.map_err(kernel_error)?;
    let board = kernel
        .quota_board(tenants.as_deref())
        .await
        .map_err(kernel_error)?;
    Ok(QuotaBoardView { seq, board })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::model::{EventSubject, Job, TaskCounts};
    use serde_json::json;

    #[test]
    fn a_row_follows_its_job_through_lease_task_and_job_events() {
        let mut row = JobRow {
            job: Job {
                id: 7,
                name: "etl".into(),
                tenant: "default".into(),
                queue: "default".into(),
                priority: 0,
                state: JobState::Queued,
                idempotency_key: None,
                created_at: 100,
                started_at: None,
                finished_at: None,
                updated_at: 100,
                task_counts: TaskCounts {
                    ready: 1,
                    pending: 1,
                    ..Default::default()
                },
            },
            attempts: 0,
        };
        let event = |seq: i64, ty: &str, job: i64, data: serde_json::Value| Event {
            seq,
            ts: 1_000 + seq,
            event_type: ty.into(),
            tenant: Some("default".into()),
            subject: EventSubject {
                job_id: Some(job),
                ..Default::default()
            },
            data,
        };
        apply_to_row(
            &mut row,
            &event(1, event_type::LEASE_GRANTED, 7, json!({"epoch": 1})),
        );
        apply_to_row(
            &mut row,
            &event(
                2,
                event_type::JOB_STATE_CHANGED,
                7,
                json!({"from": "queued", "to": "running"}),
            ),
        );
        assert_eq!(
            (row.job.task_counts.ready, row.job.task_counts.leased),
            (0, 1)
        );
        assert_eq!(row.attempts, 1);
        assert_eq!(row.job.state, JobState::Running);
        assert_eq!(row.job.started_at, Some(1_002));
        apply_to_row(
            &mut row,
            &event(
                3,
                event_type::TASK_STATE_CHANGED,
                7,
                json!({"from": "leased", "to": "succeeded"}),
            ),
        );
        apply_to_row(
            &mut row,
            &event(
                4,
                event_type::TASK_STATE_CHANGED,
                7,
                json!({"from": "pending", "to": "ready"}),
            ),
        );
        // Another job's event changes nothing.
        apply_to_row(
            &mut row,
            &event(
                5,
                event_type::JOB_STATE_CHANGED,
                8,
                json!({"from": "running", "to": "failed"}),
            ),
        );
        assert_eq!(row.job.state, JobState::Running);
        let c = row.job.task_counts.clone();
        assert_eq!((c.pending, c.ready, c.leased, c.succeeded), (0, 1, 0, 1));
        apply_to_row(
            &mut row,
            &event(
                6,
                event_type::JOB_STATE_CHANGED,
                7,
                json!({"from": "running", "to": "succeeded"}),
            ),
        );
        assert_eq!(row.job.finished_at, Some(1_006));
    }

    #[test]
    fn utc_times_round_trip() {
        let ms = parse_utc("2025-11-21T00:45:12").unwrap();
        assert_eq!(ms, 1_763_685_912_000);
        assert_eq!(format_utc_input(ms), "2025-11-21T00:45:12");
        assert_eq!(parse_utc("2025-11-21T00:45"), Some(1_763_685_900_000));
        assert_eq!(parse_utc("1970-01-01"), Some(0));
        assert_eq!(parse_utc("2025-13-01T00:00"), None);
        assert_eq!(parse_utc("yesterday"), None);
    }

    #[test]
    fn the_url_restores_the_view() {
        let map = ParamsMap::from_iter([
            ("state".to_string(), "failed".to_string()),
            ("q".to_string(), "nightly build".to_string()),
            ("from".to_string(), "2025-11-21T00:45".to_string()),
            ("sort".to_string(), "oldest".to_string()),
            ("bogus".to_string(), "x".to_string()),
        ]);
        let q = JobsQuery::from_map(&map);
        assert_eq!(q.state, Some(JobState::Failed));
        assert_eq!(q.sort, JobSort::Oldest);
        assert!(q.invalid.is_empty());
        let sel = BTreeSet::from([3, 1]);
        let href = q.href(Some("42"), &sel);
        assert_eq!(
            href,
            "/ops/operations/jobengine/jobs?state=failed&from=2025-11-21T00%3A45%3A00&q=nightly%20build&sort=oldest&cursor=42&sel=1%2C3"
        );
        let bad = JobsQuery::from_map(&ParamsMap::from_iter([(
            "state".to_string(),
            "nope".to_string(),
        )]));
        assert_eq!(bad.invalid.len(), 1);
        // A cursor the list never gave is said to be so, not ignored.
        for cursor in ["zzz", "-5", "99999999999999999999"] {
            let q = JobsQuery::from_map(&ParamsMap::from_iter([(
                "cursor".to_string(),
                cursor.to_string(),
            )]));
            assert_eq!(q.cursor, None, "{cursor}");
            assert_eq!(q.invalid.len(), 1, "{cursor}");
            assert_eq!(q.invalid[0].0, "cursor");
        }
        let q = JobsQuery::from_map(&ParamsMap::from_iter([(
            "cursor".to_string(),
            "42".to_string(),
        )]));
        assert_eq!((q.cursor.as_deref(), q.invalid.len()), (Some("42"), 0));
    }
}
