//! `/ops`, the operator snapshot: summary cards, the node inventory, stale
//! leases and the recent events timeline, rendered from the kernel on the
//! server and kept current by the global event stream.
//!
//! It shows only figures read from the kernel or derived from what was read
//! (and says which); approvals and file-access requests are not part of this
//! build, so their cards say so instead of showing a number.

use std::sync::Arc;

use kernel::model::{event_type, Event};
use leptos::prelude::*;

use crate::api::ops::{get_ops_snapshot, OpsSnapshot, STALE_SCAN_JOBS};
use crate::components::live::{format_age, format_utc, use_live_feed, LiveBoard, LiveOptions};
use crate::components::page::PageFrame;
use crate::pages::page_by_id;

/// The page.
#[component]
pub fn OpsSnapshotPage() -> impl IntoView {
    let spec = page_by_id("snapshot");
    // Read once per page view. (A tracking `Resource` is not needed here, and
    // on the server its source-tracking task outlived the request and
    // disposed reactive values of the next one.)
    let snapshot = crate::api::once(get_ops_snapshot());

    view! {
        <PageFrame spec params=Signal::derive(Vec::new)>
            <Suspense fallback=|| view! { <p class="loading-state">"Reading the kernel…"</p> }>
                {move || {
                    snapshot
                        .get()
                        .map(|result| match result {
                            Ok(initial) => view! { <LiveSnapshot initial/> }.into_any(),
                            Err(e) => {
                                view! { <LoadError what="the operator snapshot" error=e.to_string()/> }
                                    .into_any()
                            }
                        })
                }}
            </Suspense>
        </PageFrame>
    }
}

/// An explicit error state for a page whose data could not be read.
#[component]
pub fn LoadError(what: &'static str, error: String) -> impl IntoView {
    view! {
        <section class="error-state" role="alert">
            <h2>"Could not read " {what}</h2>
            <p>{error}</p>
            <p>"Reload the page to try again."</p>
        </section>
    }
}

#[component]
fn LiveSnapshot(initial: OpsSnapshot) -> impl IntoView {
    let read_at = initial.read_at;
    let after = initial.seq;
    let state = RwSignal::new(initial);
    use_live_feed(LiveOptions {
        stream: "/api/v1/events/stream".into(),
        after,
        accept: Arc::new(|_| true),
        on_event: Arc::new(move |event| state.update(|s| s.apply(&event))),
    });
    // Ages are measured against the server's clock until the browser's
    // one-second clock runs (so both renders agree).
    let board = use_context::<LiveBoard>();
    let now = move || board.and_then(|b| b.now.get()).unwrap_or(read_at);

    let healthy = move || state.with(|s| s.healthy_nodes());
    let nodes_total = move || state.with(|s| s.nodes.len());
    let running = move || state.with(|s| s.jobs_in("running"));
    let queued = move || state.with(|s| s.jobs_in("queued"));
    let blocked = move || state.with(|s| s.jobs_in("blocked"));

    view! {
        <p class="as-of" data-seq=move || state.with(|s| s.seq)>
            "As of event #" {move || state.with(|s| s.seq)} ", updated live from the event log."
        </p>
        <section class="cards" aria-label="Summary">
            <div class="card" data-card="healthy-nodes">
                <h2>"Healthy nodes"</h2>
                <p class="card-value">{healthy} " of " {nodes_total}</p>
                <p class="card-note">"Derived: nodes online in the inventory below."</p>
            </div>
            <div class="card" data-card="active-jobs">
                <h2>"Active jobs"</h2>
                <p class="card-value">{running}</p>
                <p class="card-note">"Jobs running now; " {queued} " more queued."</p>
            </div>
            <div class="card" data-card="blocked-jobs">
                <h2>"Blocked jobs"</h2>
                <p class="card-value">{blocked}</p>
                <p class="card-note">"Work remains but cannot start: its queue is paused or a quota is used up. Each job's page says which."</p>
            </div>
            <div class="card card-unavailable" data-card="pending-approvals">
                <h2>"Pending approvals"</h2>
                <p class="card-value">"Not available"</p>
                <p class="card-note">"Approvals are not part of this build, so there is no figure to show."</p>
            </div>
            <div class="card card-unavailable" data-card="pending-file-access">
                <h2>"Pending file access"</h2>
                <p class="card-value">"Not available"</p>
                <p class="card-note">"File-access requests are not part of this build, so there is no figure to show."</p>
            </div>
        </section>

        <section class="panel" aria-labelledby="nodes-heading">
            <h2 id="nodes-heading">"Node inventory"</h2>
            <Show
                when=move || state.with(|s| !s.nodes.is_empty())
                fallback=|| view! { <p class="empty-note">"No worker node has registered."</p> }
            >
                <table class="data-table nodes">
                    <thead>
                        <tr>
                            <th scope="col">"Node"</th>
                            <th scope="col">"Status"</th>
                            <th scope="col">"Last heartbeat"</th>
                            <th scope="col">"Capacity"</th>
                            <th scope="col">"Declared file scopes"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=move || state.with(|s| s.nodes.clone())
                            key=|n| (n.id, n.status, n.last_heartbeat_at)
                            let:node
                        >
                            <tr data-node=node.id>
                                <td>{node.name.clone()}</td>
                                <td><span class="state" data-state=node.status.as_str()>{node.status.as_str()}</span></td>
                                <td>{move || format!("{} ago", format_age(now() - node.last_heartbeat_at))}</td>
                                <td>{node.capacity}</td>
                                <td>
                                    {match node.file_scopes.clone() {
                                        None => view! { <span class="muted">"not known yet (reload to read them)"</span> }.into_any(),
                                        Some(scopes) if scopes.is_empty() => view! { <span class="muted">"none declared"</span> }.into_any(),
                                        Some(scopes) => view! { <code>{scopes.join(", ")}</code> }.into_any(),
                                    }}
                                </td>
                            </tr>
                        </For>
                    </tbody>
                </table>
            </Show>
        </section>

        <section class="panel" aria-labelledby="stale-heading">
            <h2 id="stale-heading">"Stale leases"</h2>
            <p class="card-note">
                "Active attempts whose lease expired before the sweep recovered them. The kernel counts "
                {move || state.with(|s| s.stale_leases_total)}
                "; listed below are those among the " {STALE_SCAN_JOBS} " most recent running jobs."
            </p>
            <Show
                when=move || state.with(|s| !s.stale_leases.is_empty())
                fallback=|| view! { <p class="empty-note">"No stale lease to review."</p> }
            >
                <ul class="stale-leases">
                    {move || state.with(|s| s.stale_leases.iter().map(|lease| view! {
                        <li>
                            <a href=format!("/ops/operations/jobengine/jobs/{}", lease.job_id)>
                                "Job " {lease.job_id} " · task " {lease.task_key.clone()}
                            </a>
                            " · attempt " {lease.attempt_id} " · epoch " {lease.epoch}
                            " · node " {lease.node_id.map(|n| n.to_string()).unwrap_or_else(|| "?".into())}
                            " · expired " {format_utc(lease.lease_expires_at)}
                        </li>
                    }).collect_view())}
                </ul>
            </Show>
        </section>

        <section class="panel" aria-labelledby="timeline-heading">
            <h2 id="timeline-heading">"Recent events"</h2>
            <Show
                when=move || state.with(|s| !s.timeline.is_empty())
                fallback=|| view! { <p class="empty-note">"No job, lease, node or dead-letter event yet."</p> }
            >
                <ol class="timeline" aria-label="Recent events">
                    {move || state.with(|s| s.timeline.iter().map(|event| view! {
                        <TimelineItem event=event.clone() now=Signal::derive(now)/>
                    }).collect_view())}
                </ol>
            </Show>
        </section>
    }
}

/// One line of an events timeline.
#[component]
pub fn TimelineItem(event: Event, now: Signal<i64>) -> impl IntoView {
    let ts = event.ts;
    let job_link = event
        .subject
        .job_id
        .map(|id| view! { <a href=format!("/ops/operations/jobengine/jobs/{id}")>"job " {id}</a> });
    view! {
        <li data-seq=event.seq data-type=event.event_type.clone()>
            <span class="event-age">{move || format!("{} ago", format_age(now.get() - ts))}</span>
            " "
            <span class="event-type">{event.event_type.clone()}</span>
            " "
            <span class="event-text">{describe(&event)}</span>
            " "
            {job_link}
        </li>
    }
}

/// A sentence for an event, from its type and data only.
pub fn describe(event: &Event) -> String {
    let data = |k: &str| {
        event.data.get(k).map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
    };
    let node = event
        .subject
        .node_id
        .map(|n| format!("node {n}"))
        .unwrap_or_else(|| "a node".into());
    match event.event_type.as_str() {
        event_type::JOB_SUBMITTED => {
            format!("Submitted ({} tasks)", data("tasks").unwrap_or_default())
        }
        event_type::JOB_STATE_CHANGED => format!(
            "Job {} → {}",
            data("from").unwrap_or_default(),
            data("to").unwrap_or_default()
        ),
        event_type::TASK_STATE_CHANGED => {
            let mut s = format!(
                "Task {}: {} → {}",
                event.subject.task_id.unwrap_or_default(),
                data("from").unwrap_or_default(),
                data("to").unwrap_or_default()
            );
            if let Some(e) = data("error") {
                s.push_str(&format!(" ({e})"));
            }
            s
        }
        event_type::LEASE_GRANTED => format!(
            "Lease granted to {node}, epoch {}",
            data("epoch").unwrap_or_default()
        ),
        event_type::LEASE_RENEWED => format!("Lease renewed by {node}"),
        event_type::LEASE_EXPIRED => format!(
            "Lease of attempt {} on {node} expired",
            event.subject.attempt_id.unwrap_or_default()
        ),
        event_type::LEASE_RELEASED => format!("Lease released by {node}"),
        event_type::LEASE_FENCED => format!(
            "Stale report from {node} refused (epoch {} < {})",
            data("presented_epoch").unwrap_or_default(),
            data("lease_epoch").unwrap_or_default()
        ),
        event_type::NODE_ONLINE => format!("{node} online"),
        event_type::NODE_OFFLINE => format!("{node} offline"),
        event_type::NODE_DRAINING => format!("{node} draining"),
        event_type::DLQ_ADDED => format!(
            "Dead-letter entry {} added: {}",
            event.subject.dead_letter_id.unwrap_or_default(),
            data("error").unwrap_or_default()
        ),
        audit if audit.starts_with("audit.") => format!(
            "{} {} {} from {}: {}",
            data("actor").unwrap_or_default(),
            data("action").unwrap_or_default(),
            data("target").unwrap_or_default(),
            data("from")
                .filter(|f| f != "null")
                .unwrap_or_else(|| "an unknown address".into()),
            data("outcome").unwrap_or_default()
        ),
        other => other.to_string(),
    }
}
