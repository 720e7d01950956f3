//! `/ops/operations/jobengine`: queue health — per queue its ready, leased
//! and pending tasks, the jobs that failed in the last hour, the age of the
//! oldest ready task, and whether it is paused (with pause and resume).
//!
//! Every figure links to the jobs list filtered to what it counts. The
//! figures are read once per page view (the page says when); pause and
//! resume arrive live from the event log.

use std::collections::BTreeSet;
use std::sync::Arc;

use kernel::model::{event_type, JobSort, JobState, QueueHealth, Scope, TaskState};
use leptos::prelude::*;

use crate::api::jobengine::{get_queue_health, JobsQuery, QueueHealthView};
use crate::components::action::ActionButton;
use crate::components::live::{format_age, format_utc, use_live_feed, LiveOptions};
use crate::components::page::PageFrame;
use crate::components::session::use_session;
use crate::pages::page_by_id;
use crate::routes::ops::LoadError;

/// The page.
#[component]
pub fn JobEnginePage() -> impl IntoView {
    let spec = page_by_id("jobengine");
    let health = crate::api::once(get_queue_health());
    view! {
        <PageFrame spec params=Signal::derive(Vec::new)>
            <nav class="actions" aria-label="JobEngine pages">
                <a href="/ops/operations/jobengine/jobs">"All jobs"</a>
                " · "
                <a href="/ops/operations/jobengine/quotas">"Quotas"</a>
            </nav>
            <Suspense fallback=|| view! { <p class="loading-state">"Reading the queues…"</p> }>
                {move || {
                    health
                        .get()
                        .map(|result| match result {
                            Ok(initial) => view! { <QueueTable initial/> }.into_any(),
                            Err(e) => view! { <LoadError what="queue health" error=e.to_string()/> }.into_any(),
                        })
                }}
            </Suspense>
        </PageFrame>
    }
}

/// A link to the jobs list showing what a figure counts.
fn jobs_link(queue: &str, f: impl FnOnce(&mut JobsQuery)) -> String {
    let mut q = JobsQuery {
        queue: Some(queue.to_string()),
        ..JobsQuery::default()
    };
    f(&mut q);
    q.href(None, &BTreeSet::new())
}

#[component]
fn QueueTable(initial: QueueHealthView) -> impl IntoView {
    let measured_at = initial.report.measured_at;
    let restricted = initial.report.tenants.clone();
    let after = initial.seq;
    let queues = RwSignal::new(initial.report.queues);
    // Pause and resume arrive live; the counts are as measured.
    use_live_feed(LiveOptions {
        stream: "/api/v1/events/stream?family=queue".into(),
        after,
        accept: Arc::new(|e| {
            e.event_type == event_type::QUEUE_PAUSED || e.event_type == event_type::QUEUE_RESUMED
        }),
        on_event: Arc::new(move |event| {
            let Some(name) = event.subject.queue.clone() else {
                return;
            };
            let paused = event.event_type == event_type::QUEUE_PAUSED;
            queues.update(|qs| {
                if let Some(q) = qs.iter_mut().find(|q| q.name == name) {
                    q.paused = paused;
                    q.paused_at = paused.then_some(event.ts);
                }
            });
        }),
    });
    let session = use_session();
    // Pausing affects every tenant's work in the queue.
    let can_pause = session.allows(Scope::RunsManage).and_then(|()| {
        match session.0.as_ref().map(|s| s.principal.tenants.is_all()) {
            Some(true) => Ok(()),
            _ => Err(
                "Pausing a queue affects every tenant: it needs a grant of all tenants, with All tenants picked above."
                    .to_string(),
            ),
        }
    });
    let can_pause = StoredValue::new(can_pause);
    let hour_ago = measured_at - 60 * 60 * 1_000;

    view! {
        <p class="as-of">
            "Measured at " {format_utc(measured_at)}
            {restricted.map(|t| format!(", counting only the tenants {}", t.join(", ")))}
            ". Figures are tasks (ready, leased, pending) and jobs (failed); paused flags update live. "
            <a href="/ops/operations/jobengine" rel="external">"Measure again"</a>
        </p>
        <Show
            when=move || queues.with(|q| !q.is_empty())
            fallback=|| view! {
                <section class="empty-state" aria-label="Empty state">
                    <h2>"No queue yet"</h2>
                    <p>"A queue appears when the first job is submitted to it."</p>
                </section>
            }
        >
            <table class="data-table queues">
                <thead>
                    <tr>
                        <th scope="col">"Queue"</th>
                        <th scope="col">"Ready tasks"</th>
                        <th scope="col">"Leased tasks"</th>
                        <th scope="col">"Pending tasks"</th>
                        <th scope="col">"Jobs failed, last hour"</th>
                        <th scope="col">"Oldest ready task"</th>
                        <th scope="col">"Paused"</th>
                        <th scope="col">"Actions"</th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || queues.get() key=|q| (q.name.clone(), q.paused) let:queue>
                        <QueueRow queue measured_at hour_ago can_pause=can_pause.get_value()/>
                    </For>
                </tbody>
            </table>
        </Show>
    }
}

#[component]
fn QueueRow(
    queue: QueueHealth,
    measured_at: i64,
    hour_ago: i64,
    can_pause: Result<(), String>,
) -> impl IntoView {
    let name = queue.name.clone();
    let by_task = |state: TaskState| jobs_link(&name, |q| q.task_state = Some(state));
    let ready_href = by_task(TaskState::Ready);
    let leased_href = by_task(TaskState::Leased);
    let pending_href = by_task(TaskState::Pending);
    let failed_href = jobs_link(&name, |q| {
        q.state = Some(JobState::Failed);
        // The link lists from the same instant the count starts (to the second).
        q.finished_from = Some(hour_ago - hour_ago.rem_euclid(1_000));
    });
    let oldest_href = jobs_link(&name, |q| {
        q.task_state = Some(TaskState::Ready);
        q.sort = JobSort::Oldest;
    });
    let oldest = match queue.oldest_ready_at {
        Some(at) => view! {
            <a href=oldest_href title=format_utc(at)>{format!("{} ago", format_age(measured_at - at))}</a>
        }
        .into_any(),
        None => view! { <span class="muted">"none ready"</span> }.into_any(),
    };
    let encoded = crate::api::jobengine::encode(&name);
    let action = match (&can_pause, queue.paused) {
        (Err(reason), _) => view! {
            <span class="action">
                <button type="button" disabled=true title=reason.clone()>
                    {if queue.paused { "Resume" } else { "Pause" }}
                </button>
                <span class="disabled-reason">{reason.clone()}</span>
            </span>
        }
        .into_any(),
        (Ok(()), true) => view! {
            <ActionButton
                label="Resume"
                path=format!("/api/v1/queues/{encoded}/resume")
                scope=Scope::RunsManage
                done="Resumed."
            />
        }
        .into_any(),
        (Ok(()), false) => view! {
            <ActionButton
                label="Pause"
                path=format!("/api/v1/queues/{encoded}/pause")
                scope=Scope::RunsManage
                confirm="Pause this queue? None of its tasks will be leased until it is resumed; running ones finish."
                done="Paused."
            />
        }
        .into_any(),
    };
    view! {
        <tr data-queue=name.clone() data-paused=queue.paused.to_string()>
            <th scope="row">{name.clone()}</th>
            <td data-figure="ready"><a href=ready_href>{queue.ready}</a></td>
            <td data-figure="leased"><a href=leased_href>{queue.leased}</a></td>
            <td data-figure="pending"><a href=pending_href>{queue.pending}</a></td>
            <td data-figure="failed"><a href=failed_href>{queue.failed_last_hour}</a></td>
            <td data-figure="oldest-ready">{oldest}</td>
            <td data-figure="paused">
                {match queue.paused_at {
                    Some(at) if queue.paused => view! { <span class="state" data-state="blocked">"paused"</span> " since " {format_utc(at)} }.into_any(),
                    _ => view! { <span class="muted">"no"</span> }.into_any(),
                }}
            </td>
            <td>{action}</td>
        </tr>
    }
}
