//! `/ops/operations/jobengine/jobs/:jobId`: one job — its summary, its tasks
//! and every attempt with node, fencing epoch, lease expiry and outcome —
//! rendered from the kernel on the server and kept current by the job's own
//! event stream.
//!
//! A job id the kernel does not know gets an explicit not-found state, never
//! an empty job.

use std::sync::Arc;

use kernel::model::{Attempt, JobState, Scope, Task};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::jobs::{get_job_view, JobView};
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
    let job = OnceResource::new(get_job_view(id.clone()));
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
fn NoSuchJob(id: String) -> impl IntoView {
    view! {
        <section class="not-found-state" aria-label="Not found">
            <h2>"No such job"</h2>
            <p>"The kernel has no job with id " <code>{id}</code> "."</p>
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
    use_live_feed(LiveOptions {
        stream: format!("/api/v1/jobs/{id}/stream"),
        after,
        accept: Arc::new(move |e| e.subject.job_id == Some(id)),
        on_event: Arc::new(move |event| state.update(|v| v.apply(&event))),
    });
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
                            <th scope="col">"Lease expires"</th>
                            <th scope="col">"Started"</th>
                            <th scope="col">"Finished"</th>
                            <th scope="col">"Error"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=attempts
                            key=|(_, a): &(String, Attempt)| (a.id, a.state, a.lease_expires_at, a.finished_at)
                            let:row
                        >
                            <tr data-attempt=row.1.id data-task=row.0.clone()>
                                <td>{row.0.clone()}</td>
                                <td>{row.1.number}</td>
                                <td><span class="state" data-state=row.1.state.as_str()>{row.1.state.as_str()}</span></td>
                                <td>{row.1.node_id.map(|n| n.to_string()).unwrap_or_else(|| "—".into())}</td>
                                <td>{row.1.epoch}</td>
                                <td>{format_utc(row.1.lease_expires_at)}</td>
                                <td>{format_utc(row.1.started_at)}</td>
                                <td>{when(row.1.finished_at)}</td>
                                <td>{row.1.error.clone().unwrap_or_else(|| "—".into())}</td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </Show>
        </section>

        <section class="panel" aria-labelledby="job-events-heading">
            <h2 id="job-events-heading">"Events of this job"</h2>
            <Show
                when=move || state.with(|v| !v.timeline.is_empty())
                fallback=|| view! { <p class="empty-note">"No event yet."</p> }
            >
                <ol class="timeline" aria-label="Events of this job">
                    <For each=move || state.with(|v| v.timeline.clone()) key=|e| e.seq let:event>
                        <TimelineItem event now/>
                    </For>
                </ol>
            </Show>
        </section>
    }
}
