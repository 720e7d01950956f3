//! One job for its detail page: the job, its tasks and their attempts, and
//! how an event of the job's stream changes them.

use kernel::model::{
    event_type, Attempt, AttemptState, Event, Job, JobDetail, JobState, LogLine, TaskHold,
    TaskState,
};
use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;
use serde::{Deserialize, Serialize};

/// Most events the job's timeline keeps.
pub const JOB_TIMELINE_LEN: usize = 50;

/// What the job page renders first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Kernel clock when read (unix ms).
    pub read_at: i64,
    /// Last event seq reflected here; the job's stream resumes after it.
    pub seq: i64,
    pub job: JobDetail,
    /// The job's events, newest first.
    pub timeline: Vec<Event>,
    /// What holds each waiting task ("why isn't this running?"), as of
    /// `holds_at`.
    #[serde(default)]
    pub holds: Vec<TaskHold>,
    #[serde(default)]
    pub holds_at: i64,
}

/// Most log lines the page shows of one attempt (the newest ones).
pub const LOG_TAIL_LEN: usize = 500;

/// The tail of an attempt's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogTail {
    /// Oldest first.
    pub items: Vec<LogLine>,
    /// Ask for lines after this id to continue tailing.
    pub next_after: i64,
    /// Older lines exist that are not shown.
    #[serde(default)]
    pub truncated: bool,
}

impl LogTail {
    /// Appends lines read after `next_after`, keeping the newest
    /// [`LOG_TAIL_LEN`].
    pub fn append(&mut self, items: Vec<LogLine>, next_after: i64) {
        let items: Vec<_> = items
            .into_iter()
            .filter(|l| l.id > self.next_after)
            .collect();
        if items.is_empty() {
            return;
        }
        self.items.extend(items);
        self.next_after = self.next_after.max(next_after);
        if self.items.len() > LOG_TAIL_LEN {
            self.items.drain(..self.items.len() - LOG_TAIL_LEN);
            self.truncated = true;
        }
    }
}

pub(crate) fn text<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event.data.get(key).and_then(|v| v.as_str())
}

/// A `job.stateChanged` event applied to its job: the state, and the start
/// and finish times it implies.
pub(crate) fn apply_job_state(job: &mut Job, event: &Event) {
    let Some(to) = text(event, "to").and_then(|t| t.parse::<JobState>().ok()) else {
        return;
    };
    let ts = event.ts;
    job.state = to;
    job.updated_at = ts;
    if to == JobState::Running && job.started_at.is_none() {
        job.started_at = Some(ts);
    }
    job.finished_at = to.is_terminal().then_some(ts);
}

impl JobView {
    /// Patches the view with one event of the job's stream. Events at or
    /// before `seq` are already reflected and change nothing.
    pub fn apply(&mut self, event: &Event) {
        if event.seq <= self.seq || event.subject.job_id != Some(self.job.job.id) {
            return;
        }
        self.seq = event.seq;
        let ts = event.ts;
        match event.event_type.as_str() {
            event_type::JOB_STATE_CHANGED => apply_job_state(&mut self.job.job, event),
            event_type::TASK_STATE_CHANGED => {
                let to = text(event, "to").and_then(|t| t.parse::<TaskState>().ok());
                let from = text(event, "from").and_then(|t| t.parse::<TaskState>().ok());
                let attempt_state = text(event, "attempt_state")
                    .and_then(|t| t.parse::<AttemptState>().ok())
                    .or_else(|| {
                        // A failed report carries the error, not the attempt's
                        // new state: the attempt failed.
                        (from == Some(TaskState::Leased) && event.data.get("error").is_some())
                            .then_some(AttemptState::Failed)
                    });
                let error = text(event, "error").map(str::to_string);
                let used = event.data.get("attempts_used").and_then(|v| v.as_i64());
                let moved = match (self.task_mut(event), to) {
                    (Some(task), Some(to)) => {
                        let was = task.state;
                        task.state = to;
                        task.updated_at = ts;
                        task.finished_at = to.is_finished().then_some(ts);
                        if error.is_some() {
                            task.last_error = error.clone();
                        }
                        if let Some(used) = used {
                            task.attempts_used = used;
                        }
                        Some((was, to))
                    }
                    _ => None,
                };
                if let Some((was, to)) = moved {
                    self.job.job.task_counts.add(was, -1);
                    self.job.job.task_counts.add(to, 1);
                }
                if let (Some(state), Some(attempt)) = (attempt_state, self.attempt_mut(event)) {
                    // Only an active attempt ends here; an expired one stays expired.
                    if attempt.state == AttemptState::Active {
                        attempt.state = state;
                        attempt.finished_at = Some(ts);
                        if state == AttemptState::Failed {
                            attempt.error = error;
                        }
                    }
                }
            }
            event_type::LEASE_GRANTED => {
                let epoch = event
                    .data
                    .get("epoch")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
                let expires = event
                    .data
                    .get("lease_expires_at")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
                let (Some(attempt_id), Some(task_id)) =
                    (event.subject.attempt_id, event.subject.task_id)
                else {
                    return self.remember(event);
                };
                let job_id = self.job.job.id;
                let node_id = event.subject.node_id;
                let mut moved = None;
                if let Some(task) = self.task_mut(event) {
                    if !task.attempts.iter().any(|a| a.id == attempt_id) {
                        let number = task.attempts.iter().map(|a| a.number).max().unwrap_or(0) + 1;
                        task.attempts.push(Attempt {
                            id: attempt_id,
                            task_id,
                            job_id,
                            number,
                            state: AttemptState::Active,
                            node_id,
                            epoch,
                            lease_expires_at: expires,
                            started_at: ts,
                            heartbeat_at: None,
                            finished_at: None,
                            error: None,
                            // The event does not carry the token; a reload
                            // shows its prefix.
                            lease_token_prefix: None,
                        });
                    }
                    task.epoch = task.epoch.max(epoch);
                    // A lease spends one attempt of the budget.
                    task.attempts_used += 1;
                    if task.state != TaskState::Leased {
                        moved = Some(task.state);
                        task.state = TaskState::Leased;
                        task.updated_at = ts;
                    }
                }
                if let Some(from) = moved {
                    self.job.job.task_counts.add(from, -1);
                    self.job.job.task_counts.add(TaskState::Leased, 1);
                }
            }
            event_type::LEASE_RENEWED => {
                let expires = event.data.get("lease_expires_at").and_then(|v| v.as_i64());
                if let Some(attempt) = self.attempt_mut(event) {
                    attempt.heartbeat_at = Some(ts);
                    if let Some(expires) = expires {
                        attempt.lease_expires_at = expires;
                    }
                }
            }
            event_type::LEASE_EXPIRED => {
                if let Some(attempt) = self.attempt_mut(event) {
                    attempt.state = AttemptState::Expired;
                    attempt.finished_at = Some(ts);
                }
            }
            event_type::LEASE_RELEASED => {
                let state = text(event, "attempt_state")
                    .and_then(|t| t.parse::<AttemptState>().ok())
                    .unwrap_or(AttemptState::Cancelled);
                let returned = event
                    .data
                    .get("task_state")
                    .and_then(|t| t.get("to"))
                    .and_then(|v| v.as_str())
                    == Some("ready");
                if let Some(attempt) = self.attempt_mut(event) {
                    attempt.state = state;
                    attempt.finished_at = Some(ts);
                }
                if returned {
                    // A released lease gives its attempt back (the kernel
                    // does not count it) and the task is ready again.
                    let mut moved = None;
                    if let Some(task) = self.task_mut(event) {
                        task.attempts_used = (task.attempts_used - 1).max(0);
                        if task.state == TaskState::Leased {
                            task.state = TaskState::Ready;
                            moved = Some(TaskState::Leased);
                        }
                    }
                    if let Some(from) = moved {
                        self.job.job.task_counts.add(from, -1);
                        self.job.job.task_counts.add(TaskState::Ready, 1);
                    }
                }
            }
            _ => {}
        }
        self.remember(event);
    }

    fn remember(&mut self, event: &Event) {
        self.timeline.insert(0, event.clone());
        self.timeline.truncate(JOB_TIMELINE_LEN);
    }

    fn task_mut(&mut self, event: &Event) -> Option<&mut kernel::model::Task> {
        let id = event.subject.task_id?;
        self.job.tasks.iter_mut().find(|t| t.id == id)
    }

    fn attempt_mut(&mut self, event: &Event) -> Option<&mut Attempt> {
        let id = event.subject.attempt_id?;
        self.job
            .tasks
            .iter_mut()
            .flat_map(|t| t.attempts.iter_mut())
            .find(|a| a.id == id)
    }
}

/// Reads one job. `Ok(None)` when no job has this id (or the id is not a
/// job id at all). With `context`, also its latest events and what holds
/// each waiting task (the job page); without, the job alone (the DAG page,
/// where a large job's events and explainer would be most of the read).
#[server(input = GetUrl)]
pub async fn get_job_view(job_id: String, context: bool) -> Result<Option<JobView>, ServerFnError> {
    use super::{kernel, kernel_error, require};

    let caller = require(kernel::model::Scope::RunsRead)?;
    let Ok(id) = job_id.trim().parse::<i64>() else {
        return Ok(None);
    };
    let kernel = kernel()?;
    let seq = kernel.last_event_seq().await.map_err(kernel_error)?;
    let read_at = super::ops::now_ms();
    let job = match kernel.get_job(id).await {
        Ok(job) => job,
        Err(e) if e.code() == "not_found" => return Ok(None),
        Err(e) => return Err(kernel_error(e)),
    };
    // Another tenant's job does not exist for this caller.
    if !caller.sees_tenant(&job.job.tenant) {
        return Ok(None);
    }
    if !context {
        return Ok(Some(JobView {
            read_at,
            seq,
            job,
            timeline: Vec::new(),
            holds: Vec::new(),
            holds_at: read_at,
        }));
    }
    // The job's events up to `seq`, newest last, keeping the latest ones.
    let mut timeline = Vec::new();
    let mut after = 0;
    loop {
        let page = kernel
            .job_events_after(id, after, 1_000)
            .await
            .map_err(kernel_error)?;
        let n = page.items.len();
        after = page.next_after;
        timeline.extend(page.items.into_iter().filter(|e| e.seq <= seq));
        if timeline.len() > JOB_TIMELINE_LEN {
            timeline.drain(..timeline.len() - JOB_TIMELINE_LEN);
        }
        if n < 1_000 || after > seq {
            break;
        }
    }
    timeline.reverse();
    let holds = kernel.explain_job(id).await.map_err(kernel_error)?;
    Ok(Some(JobView {
        read_at,
        seq,
        job,
        timeline,
        holds,
        holds_at: read_at,
    }))
}

/// What holds each waiting task of a job, re-read when live events move
/// its tasks. Another tenant's job is not found.
#[server(input = GetUrl)]
pub async fn get_job_holds(job_id: i64) -> Result<(i64, Vec<TaskHold>), ServerFnError> {
    use super::{kernel, kernel_error, require};

    let caller = require(kernel::model::Scope::RunsRead)?;
    let kernel = kernel()?;
    let read_at = super::ops::now_ms();
    let job = kernel.get_job_summary(job_id).await.map_err(kernel_error)?;
    if !caller.sees_tenant(&job.tenant) {
        return Err(ServerFnError::new(format!("job {job_id} not found")));
    }
    let holds = kernel.explain_job(job_id).await.map_err(kernel_error)?;
    Ok((read_at, holds))
}

/// The tail of an attempt's log (its newest [`LOG_TAIL_LEN`] lines); the
/// browser then appends from `GET /api/v1/attempts/{id}/log?after=N`.
#[server(input = GetUrl)]
pub async fn get_attempt_log(attempt_id: i64) -> Result<LogTail, ServerFnError> {
    use super::{kernel, kernel_error, require};

    let caller = require(kernel::model::Scope::RunsRead)?;
    let kernel = kernel()?;
    let owners = kernel
        .attempt_owners(&[attempt_id])
        .await
        .map_err(kernel_error)?;
    match owners.first() {
        Some(owner) if caller.sees_tenant(&owner.tenant) => {}
        _ => {
            return Err(ServerFnError::new(format!(
                "attempt {attempt_id} not found"
            )))
        }
    }
    let mut tail = LogTail {
        items: Vec::new(),
        next_after: 0,
        truncated: false,
    };
    loop {
        let page = kernel
            .attempt_log(attempt_id, tail.next_after, 1_000)
            .await
            .map_err(kernel_error)?;
        let n = page.len();
        let next = page.last().map(|l| l.id).unwrap_or(tail.next_after);
        tail.append(page, next);
        if n < 1_000 {
            return Ok(tail);
        }
    }
}
