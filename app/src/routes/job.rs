//! `/ops/operations/jobengine/jobs/:jobId`: one job — its summary, its tasks
//! and every attempt with node, fencing epoch, lease expiry and outcome —
//! rendered from the kernel on the server and kept current by the job's own
//! event stream.
//!
//! A job id the kernel does not know gets an explicit not-found state, never
//! an empty job.

use std::sync::Arc;

use kernel::model::{
    event_type, Attempt, AttemptState, HoldReason, JobState, Scope, Task, TaskState,
};
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::jobs::{get_attempt_log, get_job_view, JobView, LogTail};
use crate::components::action::ActionButton;
use crate::components::live::{format_utc, use_live_feed, LiveBoard, LiveOptions};
use crate::components::page::PageFrame;
use crate::pages::page_by_id;
use crate::routes::ops::{LoadError, TimelineItem};

/// The page.
#[component]
pub fn JobPage() -> impl IntoView {
    let spec = page_by_id("job");
    let params_map = use_params_map();
    let job_id = Memo::new(move |_| params_map.read().get("jobId").unwrap_or_default());
    let params = Signal::derive(move || vec![("jobId", job_id.get())]);
    view! {
        <PageFrame spec params>
            // A new read for every job id the route shows.
            {move || view! { <JobBody id=job_id.get()/> }}
        </PageFrame>
    }
}

/// One read of one job, then its live view. (A `OnceResource` per id: a
/// tracking `Resource`'s task outlived the request on the server and
/// disposed reactive values of the next one.)
#[component]
fn JobBody(id: String) -> impl IntoView {
    let job = crate::api::once(get_job_view(id.clone(), true));
    view! {
        <Suspense fallback=|| view! { <p class="loading-state">"Reading the job…"</p> }>
            {move || {
                let id = id.clone();
                job.get()
                    .map(move |result| match result {
                        Ok(Some(initial)) => view! { <LiveJob initial/> }.into_any(),
                        Ok(None) => view! { <NoSuchJob id/> }.into_any(),
                        Err(e) => view! { <LoadError what="this job" error=e.to_string()/> }.into_any(),
                    })
            }}
        </Suspense>
    }
}

#[component]
pub(crate) fn NoSuchJob(id: String) -> impl IntoView {
    view! {
        <section class="not-found-state" aria-label="Not found">
            <h2>"No such job"</h2>
            <p>"There is no job with id " <code>{id}</code> " among the tenants in view (your grant, and the tenants picked above)."</p>
            <p><a href="/ops/operations/jobengine/jobs">"Go to the jobs list"</a></p>
        </section>
    }
}

#[component]
fn LiveJob(initial: JobView) -> impl IntoView {
    let id = initial.job.job.id;
    let read_at = initial.read_at;
    let after = initial.seq;
    let state = RwSignal::new(initial);
    // Bumped when an event may change what holds a task: the explainer is
    // read again.
    let holds_gen = RwSignal::new(0u32);
    use_live_feed(LiveOptions {
        stream: format!("/api/v1/jobs/{id}/stream"),
        after,
        accept: Arc::new(move |e| e.subject.job_id == Some(id)),
        on_event: Arc::new(move |event| {
            state.update(|v| v.apply(&event));
            if event.event_type.starts_with("task.") || event.event_type.starts_with("lease.") {
                holds_gen.update(|g| *g += 1);
            }
        }),
    });
    refresh_holds(id, state, holds_gen);
    let query = use_query_map();
    let selected = Memo::new(move |_| {
        query
            .read()
            .get("attempt")
            .and_then(|a| a.parse::<i64>().ok())
    });
    // Stale completions the kernel rejected, per attempt (from the job's
    // `lease.fenced` events).
    let fenced = move |attempt: i64| {
        state.with(|v| {
            v.timeline
                .iter()
                .filter(|e| {
                    e.event_type == event_type::LEASE_FENCED
                        && e.subject.attempt_id == Some(attempt)
                })
                .map(|e| {
                    let action = e
                        .data
                        .get("action")
                        .and_then(|a| a.as_str())
                        .unwrap_or("report");
                    let epoch = e
                        .data
                        .get("presented_epoch")
                        .and_then(|a| a.as_i64())
                        .unwrap_or(0);
                    format!("{action} at epoch {epoch}, {}", format_utc(e.ts))
                })
                .collect::<Vec<_>>()
        })
    };
    let board = use_context::<LiveBoard>();
    let now = Signal::derive(move || board.and_then(|b| b.now.get()).unwrap_or(read_at));

    let job = move || state.with(|v| v.job.job.clone());
    let tasks = move || state.with(|v| v.job.tasks.clone());
    let attempts = move || {
        state.with(|v| {
            v.job
                .tasks
                .iter()
                .flat_map(|t| t.attempts.iter().map(|a| (t.key.clone(), a.clone())))
                .collect::<Vec<_>>()
        })
    };
    let when = |at: Option<i64>| at.map(format_utc).unwrap_or_else(|| "—".into());

    view! {
        <section class="panel job-summary" aria-labelledby="summary-heading">
            <h2 id="summary-heading">"Summary"</h2>
            <dl class="facts">
                <dt>"Name"</dt>
                <dd>{move || job().name}</dd>
                <dt>"State"</dt>
                <dd>
                    <span class="state job-state" data-state=move || job().state.as_str()>
                        {move || job().state.as_str()}
                    </span>
                </dd>
                <dt>"Tenant"</dt>
                <dd>{move || job().tenant}</dd>
                <dt>"Queue"</dt>
                <dd>{move || job().queue}</dd>
                <dt>"Created"</dt>
                <dd>{move || format_utc(job().created_at)}</dd>
                <dt>"Started"</dt>
                <dd>{move || when(job().started_at)}</dd>
                <dt>"Finished"</dt>
                <dd>{move || when(job().finished_at)}</dd>
                <dt>"Tasks"</dt>
                <dd class="task-counts">
                    {move || {
                        let c = job().task_counts;
                        format!(
                            "{} total: {} succeeded, {} failed, {} leased, {} ready, {} pending, {} skipped, {} cancelled",
                            c.total(), c.succeeded, c.failed, c.leased, c.ready, c.pending, c.skipped, c.cancelled
                        )
                    }}
                </dd>
            </dl>
            <p><a
                href=format!("/ops/operations/jobengine/jobs/{id}/dag")
                data-link="dag"
                on:pointerenter=move |_| crate::routes::dag::read_ahead(id)
                on:focus=move |_| crate::routes::dag::read_ahead(id)
            >"Open the task graph"</a></p>
            <p class="as-of" data-seq=move || state.with(|v| v.seq)>
                "As of event #" {move || state.with(|v| v.seq)} ", updated live from this job's event stream."
            </p>
            <div class="actions" aria-label="Job actions">
                {move || (!job().state.is_terminal()).then(|| view! {
                    <ActionButton
                        label="Cancel job"
                        path=format!("/api/v1/jobs/{id}/cancel")
                        scope=Scope::RunsManage
                        confirm="Cancel every unfinished task of this job? Running tasks are told to stop."
                        type_to_confirm=job().name
                        done="Cancelled; the job's state follows live."
                    />
                })}
                {move || (job().state == JobState::Failed).then(|| view! {
                    <ActionButton
                        label="Retry job"
                        path=format!("/api/v1/jobs/{id}/retry")
                        scope=Scope::RunsManage
                        done="Retrying: failed and skipped tasks have a fresh attempt budget."
                    />
                })}
            </div>
        </section>

        <section class="panel" aria-labelledby="tasks-heading">
            <h2 id="tasks-heading">"Tasks"</h2>
            <table class="data-table tasks">
                <thead>
                    <tr>
                        <th scope="col">"Task"</th>
                        <th scope="col">"Kind"</th>
                        <th scope="col">"State"</th>
                        <th scope="col">"Depends on"</th>
                        <th scope="col">"Attempts"</th>
                        <th scope="col">"Epoch"</th>
                        <th scope="col">"Last error"</th>
                        <th scope="col">"Actions"</th>
                    </tr>
                </thead>
                <tbody>
                    <For each=tasks key=|t: &Task| (t.id, t.state, t.attempts_used, t.epoch, t.last_error.clone()) let:task>
                        <tr data-task=task.key.clone()>
                            <td>{task.key.clone()}</td>
                            <td>{task.kind.clone()}</td>
                            <td><span class="state" data-state=task.state.as_str()>{task.state.as_str()}</span></td>
                            <td>{if task.depends_on.is_empty() { "—".to_string() } else { task.depends_on.join(", ") }}</td>
                            <td>{task.attempts_used} " of " {task.max_attempts}</td>
                            <td>{task.epoch}</td>
                            <td>{task.last_error.clone().unwrap_or_else(|| "—".into())}</td>
                            <td>
                                {(task.state == TaskState::Failed).then(|| view! {
                                    <ActionButton
                                        label="Retry task"
                                        path=format!("/api/v1/jobs/{id}/tasks/{}/retry", encode_segment(&task.key))
                                        scope=Scope::RunsManage
                                        done="Retrying: the task has a fresh attempt budget."
                                    />
                                })}
                            </td>
                        </tr>
                    </For>
                </tbody>
            </table>
        </section>

        <section class="panel" aria-labelledby="attempts-heading">
            <h2 id="attempts-heading">"Attempts"</h2>
            <Show
                when=move || !attempts().is_empty()
                fallback=|| view! { <p class="empty-note">"No attempt has started yet."</p> }
            >
                <table class="data-table attempts">
                    <thead>
                        <tr>
                            <th scope="col">"Task"</th>
                            <th scope="col">"#"</th>
                            <th scope="col">"Outcome"</th>
                            <th scope="col">"Node"</th>
                            <th scope="col">"Epoch"</th>
                            <th scope="col">"Lease token"</th>
                            <th scope="col">"Lease granted"</th>
                            <th scope="col">"Renewed"</th>
                            <th scope="col">"Lease expires"</th>
                            <th scope="col">"Finished"</th>
                            <th scope="col">"Error"</th>
                            <th scope="col">"Rejected stale reports"</th>
                            <th scope="col">"Log"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=attempts
                            key=|(_, a): &(String, Attempt)| (a.id, a.state, a.lease_expires_at, a.heartbeat_at, a.finished_at)
                            let:row
                        >
                            <tr data-attempt=row.1.id data-task=row.0.clone()>
                                <td>{row.0.clone()}</td>
                                <td>{row.1.number}</td>
                                <td><span class="state" data-state=row.1.state.as_str()>{row.1.state.as_str()}</span></td>
                                <td>{row.1.node_id.map(|n| n.to_string()).unwrap_or_else(|| "—".into())}</td>
                                <td>{row.1.epoch}</td>
                                <td><code class="lease-token">{row.1.lease_token_prefix.clone().unwrap_or_else(|| "—".into())}</code></td>
                                <td>{format_utc(row.1.started_at)}</td>
                                <td>{when(row.1.heartbeat_at)}</td>
                                <td>{format_utc(row.1.lease_expires_at)}</td>
                                <td>{when(row.1.finished_at)}</td>
                                <td>{row.1.error.clone().unwrap_or_else(|| "—".into())}</td>
                                <td class="fenced">
                                    {
                                        let a = row.1.id;
                                        move || {
                                            let f = fenced(a);
                                            if f.is_empty() { "none".to_string() } else { format!("{}: {}", f.len(), f.join("; ")) }
                                        }
                                    }
                                </td>
                                <td>
                                    <a href=format!("?attempt={}", row.1.id) aria-current=move || (selected.get() == Some(row.1.id)).then_some("true")>
                                        "Log"
                                    </a>
                                </td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </Show>
        </section>

        {move || selected.get().map(|attempt| {
            let active = Signal::derive(move || {
                state.with(|v| {
                    v.job.tasks.iter().flat_map(|t| t.attempts.iter()).any(|a| a.id == attempt && a.state == AttemptState::Active)
                })
            });
            view! { <AttemptLog attempt active/> }
        })}

        <section class="panel explainer" aria-labelledby="explainer-heading">
            <h2 id="explainer-heading">"Why isn't this running?"</h2>
            <p class="as-of">
                "Read from the kernel at " {move || format_utc(state.with(|v| v.holds_at))}
                "; read again when this job's tasks or leases change. Queue pauses, quota and node changes elsewhere show after "
                <button type="button" class="link-button" on:click=move |_| holds_gen.update(|g| *g += 1)>"Refresh"</button>
                "."
            </p>
            <Show
                when=move || state.with(|v| !v.holds.is_empty())
                fallback=|| view! { <p class="empty-note">"No task is waiting: every task is running or finished."</p> }
            >
                <ul class="holds">
                    {move || state.with(|v| v.holds.iter().map(|hold| view! {
                        <li data-task=hold.key.clone() data-state=hold.state.as_str()>
                            <strong>{hold.key.clone()}</strong> " (" {hold.state.as_str()} ", kind " {hold.kind.clone()} ", queue " {hold.queue.clone()} "): "
                            {if hold.reasons.is_empty() {
                                "nothing holds it; it waits for a node to claim it.".to_string()
                            } else {
                                hold.reasons.iter().map(describe_hold).collect::<Vec<_>>().join("; ")
                            }}
                        </li>
                    }).collect_view())}
                </ul>
            </Show>
        </section>

        <section class="panel" aria-labelledby="job-events-heading">
            <h2 id="job-events-heading">"Events of this job"</h2>
            <Show
                when=move || state.with(|v| !v.timeline.is_empty())
                fallback=|| view! { <p class="empty-note">"No event yet."</p> }
            >
                <ol class="timeline" aria-label="Events of this job">
                    {move || state.with(|v| v.timeline.iter().map(|event| view! {
                        <TimelineItem event=event.clone() now/>
                    }).collect_view())}
                </ol>
            </Show>
        </section>
    }
}

/// One path segment, percent-encoded (task keys in API paths).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What holds a task, in words.
fn describe_hold(reason: &HoldReason) -> String {
    let limit = |v: Option<i64>| {
        v.map(|v| v.to_string())
            .unwrap_or_else(|| "no limit".into())
    };
    let names = |nodes: &[kernel::model::NodeRef]| {
        nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match reason {
        HoldReason::UnmetDependencies { dependencies } => format!(
            "waits for {}",
            dependencies
                .iter()
                .map(|d| format!("{} ({})", d.key, d.state.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        HoldReason::QueuePaused { queue, paused_at } => match paused_at {
            Some(at) => format!("queue {queue} is paused (since {})", format_utc(*at)),
            None => format!("queue {queue} is paused"),
        },
        HoldReason::QuotaExhausted {
            scope,
            name,
            max_concurrent,
            concurrent,
            max_starts_per_minute,
            starts_last_minute,
        } => format!(
            "the {} quota of {name} is exhausted: {concurrent} concurrent leases of {}, {starts_last_minute} starts in the last minute of {}",
            scope.as_str(),
            limit(*max_concurrent),
            limit(*max_starts_per_minute)
        ),
        HoldReason::NoOnlineNode { kind, nodes } if nodes.is_empty() => {
            format!("no node declares kind {kind}")
        }
        HoldReason::NoOnlineNode { kind, nodes } => {
            format!("no online node for kind {kind} (offline: {})", names(nodes))
        }
        HoldReason::OnlyDrainingNodes { kind, nodes } => {
            format!("the only nodes for kind {kind} are draining: {}", names(nodes))
        }
        HoldReason::Backoff { until } => format!("backing off until {}", format_utc(*until)),
    }
}

/// Reads the explainer again whenever `generation` moves (in the browser).
fn refresh_holds(job_id: i64, state: RwSignal<JobView>, generation: RwSignal<u32>) {
    Effect::new(move |_| {
        let g = generation.get();
        #[cfg(feature = "hydrate")]
        if g > 0 {
            leptos::task::spawn_local(async move {
                if let Ok((at, holds)) = crate::api::jobs::get_job_holds(job_id).await {
                    state.update(|v| {
                        v.holds = holds;
                        v.holds_at = at;
                    });
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (g, job_id, state);
    });
}

/// Polling interval of an active attempt's log.
#[cfg(feature = "hydrate")]
const LOG_POLL_MS: u64 = 2_000;

/// The log of one attempt: its tail read on the server, then new lines
/// appended every 2 s while the attempt is active.
#[component]
pub(crate) fn AttemptLog(attempt: i64, active: Signal<bool>) -> impl IntoView {
    let read = crate::api::once(get_attempt_log(attempt));
    view! {
        <section class="panel attempt-log" aria-labelledby="log-heading" data-attempt=attempt>
            <h2 id="log-heading">"Log of attempt " {attempt}</h2>
            <Suspense fallback=|| view! { <p class="loading-state">"Reading the log…"</p> }>
                {move || read.get().map(|r| match r {
                    Ok(tail) => view! { <LogLines attempt tail active/> }.into_any(),
                    Err(e) => view! { <LoadError what="this attempt's log" error=e.to_string()/> }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn LogLines(attempt: i64, tail: LogTail, active: Signal<bool>) -> impl IntoView {
    let tail = RwSignal::new(tail);
    #[cfg(feature = "hydrate")]
    {
        use std::cell::Cell;
        use std::rc::Rc;
        // One request at a time; one last read after the attempt ends.
        let busy = Rc::new(Cell::new(false));
        let done = Rc::new(Cell::new(false));
        if let Ok(handle) = set_interval_with_handle(
            move || {
                if busy.get() || done.get() {
                    return;
                }
                if !active.get_untracked() {
                    done.set(true);
                }
                busy.set(true);
                let busy = busy.clone();
                let after = tail.with_untracked(|t| t.next_after);
                leptos::task::spawn_local(async move {
                    let url = format!("/api/v1/attempts/{attempt}/log?after={after}&limit=500");
                    if let Ok(response) = gloo_net::http::Request::get(&url).send().await {
                        if response.ok() {
                            if let Ok(text) = response.text().await {
                                if let Ok(page) = crate::api::from_json::<LogTail>(&text) {
                                    // The log may have left the page meanwhile
                                    // (the DAG inspector moves to a newer attempt).
                                    tail.try_update(|t| t.append(page.items, page.next_after));
                                }
                            }
                        }
                    }
                    busy.set(false);
                });
            },
            std::time::Duration::from_millis(LOG_POLL_MS),
        ) {
            on_cleanup(move || handle.clear());
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = attempt;
    view! {
        <p class="as-of">
            {move || if active.get() {
                "The attempt is active: new lines are appended every 2 s."
            } else {
                "The attempt has ended; this is its log."
            }}
            {move || tail.with(|t| t.truncated).then_some(" Older lines are not shown.")}
        </p>
        <Show
            when=move || tail.with(|t| !t.items.is_empty())
            fallback=|| view! { <p class="empty-note">"No log line yet."</p> }
        >
            <pre class="log" aria-label="Log lines">
                <For each=move || tail.with(|t| t.items.clone()) key=|l| l.id let:line>
                    <span class="log-line" data-stream=line.stream.as_str()>{line.line.clone()} "\n"</span>
                </For>
            </pre>
        </Show>
    }
}
