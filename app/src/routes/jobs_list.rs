//! `/ops/operations/jobengine/jobs`: every job the operator may see, with
//! working filters (state, queue, tenant, kind, task state, created and
//! finished times, free text over id, name and payload), newest or oldest
//! first, keyset-paginated, and bulk cancel and retry of the selected rows
//! or of everything matching the filter.
//!
//! The whole view lives in the URL ([`JobsQuery`] plus `sel`), so a
//! bookmark or a reload restores it. A bulk action first asks the API for a
//! dry-run count, then for confirmation, then reports each job's result.
//! The rows on screen follow their jobs live (state, task progress,
//! attempts) from the event stream; newly submitted jobs are counted with
//! an offer to read the list again.

use std::collections::BTreeSet;
use std::sync::Arc;

use kernel::model::{
    event_type, BulkItemStatus, BulkJobAction, BulkJobOutcome, JobRow, JobSort, JobState, Scope,
    SEARCHABLE_TASK_STATES,
};
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::NavigateOptions;

use crate::api::jobengine::{
    apply_to_row, format_utc_input, get_jobs_page, parse_selection, JobsPage, JobsQuery, JOBS_PAGE,
    JOBS_PATH,
};
use crate::components::live::{format_age, format_utc, use_live_feed, LiveBoard, LiveOptions};
use crate::components::page::PageFrame;
use crate::components::session::use_session;
use crate::pages::page_by_id;
use crate::routes::ops::LoadError;

/// Most per-job results listed after a bulk action.
const RESULTS_SHOWN: usize = 100;

/// Which jobs a bulk action covers.
#[derive(Debug, Clone, PartialEq)]
enum BulkScope {
    Selected(Vec<i64>),
    Filter(JobsQuery),
}

/// Where a bulk action stands. Kept above the list, so re-reading the list
/// after an action keeps its results on screen.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
enum BulkState {
    Idle,
    Counting(BulkJobAction),
    Confirm {
        scope: BulkScope,
        dry: BulkJobOutcome,
    },
    Running(BulkJobAction),
    Done(BulkJobOutcome),
    Failed(String),
}

/// The page.
#[component]
pub fn JobsListPage() -> impl IntoView {
    let spec = page_by_id("jobs");
    let query = use_query_map();
    // The selection is not part of what is read: selecting does not re-read.
    let view_q = Memo::new(move |_| JobsQuery::from_map(&query.read()));
    let selection = Memo::new(move |_| parse_selection(query.read().get("sel").as_deref()));
    let refresh = RwSignal::new(0_u32);
    let bulk = RwSignal::new(BulkState::Idle);
    view! {
        <PageFrame spec params=Signal::derive(Vec::new)>
            {move || {
                let q = view_q.get();
                refresh.track();
                view! { <JobsBody q selection bulk refresh/> }
            }}
        </PageFrame>
    }
}

#[component]
fn JobsBody(
    q: JobsQuery,
    selection: Memo<BTreeSet<i64>>,
    bulk: RwSignal<BulkState>,
    refresh: RwSignal<u32>,
) -> impl IntoView {
    let view_json = serde_json::to_string(&q).unwrap_or_default();
    let page = crate::api::once(get_jobs_page(view_json));
    let invalid = q.invalid.clone();
    let table_q = q.clone();
    view! {
        <FilterForm q=q.clone() bulk/>
        {(!invalid.is_empty()).then(|| view! {
            <section class="error-state" role="alert" data-invalid-filters="">
                <h2>"Some filters in the address could not be read and are not applied"</h2>
                <ul>
                    {invalid.into_iter().map(|(k, why)| view! { <li><code>{k}</code> ": " {why}</li> }).collect_view()}
                </ul>
            </section>
        })}
        <BulkPanel q=q.clone() selection bulk refresh/>
        <Suspense fallback=|| view! { <p class="loading-state">"Reading jobs…"</p> }>
            {move || {
                let q = table_q.clone();
                page.get()
                    .map(move |result| match result {
                        Ok(page) => view! { <JobsTable page q selection refresh/> }.into_any(),
                        Err(e) => view! { <LoadError what="the jobs list" error=e.to_string()/> }.into_any(),
                    })
            }}
        </Suspense>
    }
}

/// The filters, as a GET form: it works before hydration too (a plain
/// page load); after hydration it navigates inside the app. Each field's
/// value is also set as a property: a new address (Back, a link) rebuilds
/// the form in place, and a field the operator has typed in no longer
/// follows its `value` attribute.
#[component]
fn FilterForm(q: JobsQuery, bulk: RwSignal<BulkState>) -> impl IntoView {
    let navigate = use_navigate();
    let field = |v: Option<String>| RwSignal::new(v.unwrap_or_default());
    let text_q = field(q.q.clone());
    let state = field(q.state.map(|s| s.to_string()));
    let task_state = field(q.task_state.map(|s| s.to_string()));
    let queue = field(q.queue.clone());
    let tenant = field(q.tenant.clone());
    let kind = field(q.kind.clone());
    let from = field(q.from.map(format_utc_input));
    let to = field(q.to.map(format_utc_input));
    let finished_from = field(q.finished_from.map(format_utc_input));
    let sort = RwSignal::new(q.sort.as_str().to_string());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let fields = [
            ("state", state),
            ("queue", queue),
            ("tenant", tenant),
            ("kind", kind),
            ("task_state", task_state),
            ("from", from),
            ("to", to),
            ("finished_from", finished_from),
            ("q", text_q),
        ];
        let mut parts: Vec<String> = fields
            .iter()
            .filter_map(|(k, s)| {
                let v = s.get_untracked();
                let v = v.trim();
                (!v.is_empty()).then(|| format!("{k}={}", crate::api::jobengine::encode(v)))
            })
            .collect();
        if sort.get_untracked() != JobSort::Newest.as_str() {
            parts.push(format!("sort={}", sort.get_untracked()));
        }
        let href = if parts.is_empty() {
            JOBS_PATH.to_string()
        } else {
            format!("{JOBS_PATH}?{}", parts.join("&"))
        };
        bulk.set(BulkState::Idle);
        navigate(&href, NavigateOptions::default());
    };
    let text_input = |name: &'static str,
                      label: &'static str,
                      signal: RwSignal<String>,
                      placeholder: &'static str| {
        view! {
            <label>
                {label}
                <input
                    type="text"
                    name=name
                    placeholder=placeholder
                    value=signal.get_untracked()
                    prop:value=signal.get_untracked()
                    on:input=move |ev| signal.set(event_target_value(&ev))
                />
            </label>
        }
    };
    let time_input = |name: &'static str, label: &'static str, signal: RwSignal<String>| {
        view! {
            <label>
                {label}
                <input
                    type="datetime-local"
                    step="1"
                    name=name
                    value=signal.get_untracked()
                    prop:value=signal.get_untracked()
                    on:input=move |ev| signal.set(event_target_value(&ev))
                />
            </label>
        }
    };
    let state_now = state.get_untracked();
    let task_state_now = task_state.get_untracked();
    let sort_now = sort.get_untracked();
    view! {
        <form class="filters token-form" method="get" action=JOBS_PATH on:submit=submit aria-label="Filters">
            {text_input("q", "Search", text_q, "job id, name or payload text")}
            <label>
                "State"
                <select name="state" prop:value=state_now.clone() on:change=move |ev| state.set(event_target_value(&ev))>
                    <option value="" selected=state_now.is_empty()>"any"</option>
                    {JobState::ALL.iter().map(|s| {
                        let s = s.as_str();
                        view! { <option value=s selected=state_now == s>{s}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label>
                "Has a task that is"
                <select name="task_state" prop:value=task_state_now.clone() on:change=move |ev| task_state.set(event_target_value(&ev))>
                    <option value="" selected=task_state_now.is_empty()>"any"</option>
                    {SEARCHABLE_TASK_STATES.iter().map(|s| {
                        let s = s.as_str();
                        view! { <option value=s selected=task_state_now == s>{s}</option> }
                    }).collect_view()}
                </select>
            </label>
            {text_input("queue", "Queue", queue, "any")}
            {text_input("tenant", "Tenant", tenant, "any")}
            {text_input("kind", "Task kind", kind, "any")}
            {time_input("from", "Created from (UTC)", from)}
            {time_input("to", "Created before (UTC)", to)}
            {time_input("finished_from", "Finished from (UTC)", finished_from)}
            <label>
                "Order"
                <select name="sort" prop:value=sort_now.clone() on:change=move |ev| sort.set(event_target_value(&ev))>
                    <option value="newest" selected=sort_now == "newest">"newest first"</option>
                    <option value="oldest" selected=sort_now == "oldest">"oldest first"</option>
                </select>
            </label>
            <button type="submit">"Apply filters"</button>
            " "
            <a href=JOBS_PATH>"Clear filters"</a>
        </form>
    }
}

fn job_word(n: i64) -> &'static str {
    if n == 1 {
        "job"
    } else {
        "jobs"
    }
}

/// Bulk cancel and retry, of the selection or of everything matching the
/// filter: a dry-run count, a confirmation, then the per-job results.
#[component]
fn BulkPanel(
    q: JobsQuery,
    selection: Memo<BTreeSet<i64>>,
    bulk: RwSignal<BulkState>,
    refresh: RwSignal<u32>,
) -> impl IntoView {
    let allowed = use_session().allows(Scope::RunsManage);
    let reason = allowed.clone().err();
    let typed = RwSignal::new(String::new());
    let q = StoredValue::new(q);
    let navigate = use_navigate();

    let send = move |action: BulkJobAction, scope: BulkScope, dry_run: bool| {
        bulk.set(if dry_run {
            BulkState::Counting(action)
        } else {
            BulkState::Running(action)
        });
        let mut body = match &scope {
            BulkScope::Selected(ids) => serde_json::json!({ "ids": ids }),
            BulkScope::Filter(q) => serde_json::json!({ "filter": q.search() }),
        };
        body["dry_run"] = serde_json::Value::Bool(dry_run);
        let path = format!("/api/v1/jobs/{}", action.as_str());
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let answer = crate::components::session::send_json("POST", &path, Some(body))
                .await
                .and_then(|v| {
                    crate::api::from_json::<BulkJobOutcome>(&v)
                        .map_err(|e| format!("unexpected answer from the server: {e}"))
                });
            match answer {
                Ok(dry) if dry_run => {
                    typed.set(String::new());
                    bulk.set(BulkState::Confirm { scope, dry });
                }
                Ok(done) => {
                    bulk.set(BulkState::Done(done));
                    refresh.update(|n| *n += 1);
                }
                Err(message) => bulk.set(BulkState::Failed(message)),
            }
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = (scope, body, path, typed, refresh);
    };

    let busy = move || matches!(bulk.get(), BulkState::Counting(_) | BulkState::Running(_));
    let count = move || selection.with(|s| s.len());
    let filtered = q.with_value(JobsQuery::is_filtered);
    let clear_selection = {
        let navigate = navigate.clone();
        move |_| {
            let href = q.with_value(|q| q.href(q.cursor.as_deref(), &BTreeSet::new()));
            navigate(
                &href,
                NavigateOptions {
                    replace: true,
                    scroll: false,
                    ..Default::default()
                },
            );
        }
    };
    let button = move |action: BulkJobAction, on_filter: bool| {
        let label = match (action, on_filter) {
            (BulkJobAction::Cancel, false) => "Cancel selected",
            (BulkJobAction::Retry, false) => "Retry selected",
            (BulkJobAction::Cancel, true) => "Cancel all matching…",
            (BulkJobAction::Retry, true) => "Retry all matching…",
        };
        let blocked = allowed.is_err();
        view! {
            <button
                type="button"
                data-bulk=format!("{}-{}", action.as_str(), if on_filter { "filter" } else { "selected" })
                disabled=move || blocked || busy() || (!on_filter && count() == 0)
                on:click=move |_| {
                    let scope = if on_filter {
                        BulkScope::Filter(q.get_value())
                    } else {
                        BulkScope::Selected(selection.get_untracked().into_iter().collect())
                    };
                    send(action, scope, true);
                }
            >
                {label}
                {(!on_filter).then(|| view! { " (" {count} ")" })}
            </button>
        }
    };

    view! {
        <section class="panel bulk" aria-labelledby="bulk-heading">
            <h2 id="bulk-heading">"Bulk actions"</h2>
            <p class="card-note">
                {move || format!("{} selected on this view. ", count())}
                <Show when=move || { count() > 0 }>
                    <button type="button" class="link-button" on:click=clear_selection.clone()>"Clear selection"</button>
                </Show>
                {if filtered {
                    " “All matching” acts on every job the filters above select, on every page."
                } else {
                    " No filter is set: “all matching” means every job you can see."
                }}
            </p>
            <div class="actions">
                {button(BulkJobAction::Cancel, false)}
                {button(BulkJobAction::Retry, false)}
                {button(BulkJobAction::Cancel, true)}
                {button(BulkJobAction::Retry, true)}
            </div>
            {reason.map(|r| view! { <p class="disabled-reason">{r}</p> })}
            {move || match bulk.get() {
                BulkState::Idle => ().into_any(),
                BulkState::Counting(_) => view! { <p class="loading-state" role="status">"Counting what this would change (dry run)…"</p> }.into_any(),
                BulkState::Running(_) => view! { <p class="loading-state" role="status">"Applying…"</p> }.into_any(),
                BulkState::Failed(message) => view! { <p class="form-error" role="alert">{message}</p> }.into_any(),
                BulkState::Confirm { scope, dry } => {
                    view! { <ConfirmBulk scope dry typed bulk send=Callback::new(move |(a, s)| send(a, s, false))/> }.into_any()
                }
                BulkState::Done(outcome) => view! { <BulkResults outcome/> }.into_any(),
            }}
        </section>
    }
}

/// The dry-run count and the confirmation. Cancelling cannot be undone, so
/// it asks for the number of jobs to be typed.
#[component]
fn ConfirmBulk(
    scope: BulkScope,
    dry: BulkJobOutcome,
    typed: RwSignal<String>,
    bulk: RwSignal<BulkState>,
    send: Callback<(BulkJobAction, BulkScope)>,
) -> impl IntoView {
    let action = dry.action;
    let acting = dry.applicable.min(dry.limit);
    let (verb, what) = match action {
        BulkJobAction::Cancel => ("cancel", "unfinished (queued, running or blocked)"),
        BulkJobAction::Retry => ("retry", "failed"),
    };
    let covered = match &scope {
        BulkScope::Selected(ids) => format!(
            "{} of the {} selected {} {} for you",
            dry.matched,
            ids.len(),
            job_word(ids.len() as i64),
            if dry.matched == 1 { "exists" } else { "exist" }
        ),
        BulkScope::Filter(_) => format!(
            "{} {} the filter",
            dry.matched,
            if dry.matched == 1 {
                "job matches"
            } else {
                "jobs match"
            }
        ),
    };
    let needs_typing = action == BulkJobAction::Cancel;
    let expected = acting.to_string();
    let ready = {
        let expected = expected.clone();
        move || !needs_typing || typed.get().trim() == expected
    };
    let scope_for_send = StoredValue::new(scope);
    view! {
        <div class="confirm-question" role="alertdialog" aria-labelledby="bulk-confirm" data-dry-run-matched=dry.matched data-dry-run-applicable=dry.applicable>
            <p id="bulk-confirm">
                "Dry run: " {covered} "; " {dry.applicable} " of them " {if dry.applicable == 1 { "is" } else { "are" }} " " {what} "."
                {dry.truncated.then(|| format!(" One action covers at most {}: the newest {} would be acted on; run it again for the rest.", dry.limit, dry.limit))}
            </p>
            {if acting == 0 {
                view! {
                    <p>"Nothing to " {verb} "."</p>
                    <button type="button" on:click=move |_| bulk.set(BulkState::Idle)>"Close"</button>
                }.into_any()
            } else {
                view! {
                    <p>
                        {format!("{} {acting} {}? ", if action == BulkJobAction::Cancel { "Cancel" } else { "Retry" }, job_word(acting))}
                        {needs_typing.then_some("Cancelling cannot be undone: type the number of jobs to confirm. ")}
                    </p>
                    {needs_typing.then(|| view! {
                        <label>
                            "Number of jobs to cancel "
                            <input type="text" inputmode="numeric" name="confirm-count" autocomplete="off"
                                on:input=move |ev| typed.set(event_target_value(&ev))/>
                        </label>
                    })}
                    " "
                    <button
                        type="button"
                        data-bulk-confirm=verb
                        disabled=move || !ready()
                        on:click=move |_| send.run((action, scope_for_send.get_value()))
                    >
                        {format!("{} {acting} {}", if action == BulkJobAction::Cancel { "Cancel" } else { "Retry" }, job_word(acting))}
                    </button>
                    " "
                    <button type="button" class="link-button" on:click=move |_| bulk.set(BulkState::Idle)>"Back"</button>
                }.into_any()
            }}
        </div>
    }
}

#[component]
fn BulkResults(outcome: BulkJobOutcome) -> impl IntoView {
    let count = |s: BulkItemStatus| outcome.results.iter().filter(|r| r.status == s).count();
    let changed = count(BulkItemStatus::Changed);
    let skipped = count(BulkItemStatus::Skipped);
    let missing = count(BulkItemStatus::NotFound);
    let verb = match outcome.action {
        BulkJobAction::Cancel => "Cancelled",
        BulkJobAction::Retry => "Retried",
    };
    let total = outcome.results.len();
    let rows = outcome
        .results
        .iter()
        .take(RESULTS_SHOWN)
        .map(|r| {
            let status = match r.status {
                BulkItemStatus::Changed => "changed",
                BulkItemStatus::Skipped => "skipped",
                BulkItemStatus::NotFound => "not found",
            };
            view! {
                <tr data-result-job=r.job_id data-result=status>
                    <td><a href=format!("{JOBS_PATH}/{}", r.job_id)>{r.job_id}</a></td>
                    <td>{status}</td>
                    <td>{r.from.map(|s| s.to_string()).unwrap_or_default()}</td>
                    <td>{r.message.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="bulk-results" data-bulk-done=outcome.action.as_str()>
            <p class="toast" role="status">
                {format!("{verb} {changed} {}; {skipped} skipped; {missing} not found.", job_word(changed as i64))}
                {outcome.truncated.then(|| format!(" The filter selected more than {}: run it again for the rest.", outcome.limit))}
                " The list below was read again."
            </p>
            <table class="data-table">
                <thead>
                    <tr>
                        <th scope="col">"Job"</th>
                        <th scope="col">"Result"</th>
                        <th scope="col">"Was"</th>
                        <th scope="col">"Detail"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
            {(total > RESULTS_SHOWN).then(|| view! { <p class="muted">{format!("Showing {RESULTS_SHOWN} of {total} results.")}</p> })}
        </div>
    }
}

#[component]
fn JobsTable(
    page: JobsPage,
    q: JobsQuery,
    selection: Memo<BTreeSet<i64>>,
    refresh: RwSignal<u32>,
) -> impl IntoView {
    let navigate = use_navigate();
    let read_at = page.read_at;
    // The rows follow their jobs live; jobs submitted since the read are
    // counted (they may or may not match the filters: read again to see).
    let rows: Vec<RwSignal<JobRow>> = page.items.iter().cloned().map(RwSignal::new).collect();
    let submitted = RwSignal::new(0_i64);
    {
        let rows = rows.clone();
        use_live_feed(LiveOptions {
            stream: "/api/v1/events/stream?family=job,task,lease".into(),
            after: page.seq,
            accept: Arc::new(|e| {
                e.event_type.starts_with("job.")
                    || e.event_type.starts_with("task.")
                    || e.event_type == event_type::LEASE_GRANTED
            }),
            on_event: Arc::new(move |event| {
                if event.event_type == event_type::JOB_SUBMITTED {
                    submitted.update(|n| *n += 1);
                    return;
                }
                let Some(job) = event.subject.job_id else {
                    return;
                };
                if let Some(row) = rows.iter().find(|r| r.with_untracked(|r| r.job.id) == job) {
                    row.update(|r| apply_to_row(r, &event));
                }
            }),
        });
    }
    let ids: Vec<i64> = page.items.iter().map(|j| j.job.id).collect();
    let q = StoredValue::new(q);
    // Selecting rewrites the URL's `sel` (a bookmark keeps the selection).
    let select = move |sel: BTreeSet<i64>| {
        let href = q.with_value(|q| q.href(q.cursor.as_deref(), &sel));
        navigate(
            &href,
            NavigateOptions {
                replace: true,
                scroll: false,
                ..Default::default()
            },
        );
    };
    let on_page = ids.clone();
    let all_selected =
        move || !on_page.is_empty() && selection.with(|s| on_page.iter().all(|i| s.contains(i)));
    let all_now = all_selected();
    let sort = q.with_value(|q| q.sort);
    let first_href = q.with_value(|q| {
        q.cursor
            .is_some()
            .then(|| q.href(None, &selection.get_untracked()))
    });
    let next_href = page
        .next_cursor
        .clone()
        .map(|c| q.with_value(|q| q.href(Some(&c), &selection.get_untracked())));
    let filtered = q.with_value(JobsQuery::is_filtered);
    let paged = q.with_value(|q| q.cursor.is_some());
    let n = page.items.len();

    // Also on an empty page: a filter that matches nothing yet (`failed`,
    // a new queue) is watched for the jobs that will.
    let new_jobs = move || {
        (submitted.get() > 0).then(|| {
            let n = submitted.get();
            view! {
                <p class="toast" role="status" data-new-jobs=n>
                    {format!("{n} {} submitted since this page was read. ", job_word(n))}
                    <button type="button" class="link-button" on:click=move |_| refresh.update(|r| *r += 1)>"Read again"</button>
                </p>
            }
        })
    };

    if page.items.is_empty() {
        return view! {
            {new_jobs}
            <section class="empty-state" aria-label="Empty state" data-empty="jobs">
                <h2>"No jobs"</h2>
                <p>
                    {if paged {
                        "There are no more jobs after the previous page."
                    } else if filtered {
                        "No job you can see matches these filters."
                    } else {
                        "No job has been submitted yet (among the tenants you can see)."
                    }}
                </p>
                {(filtered || paged).then(|| view! { <p><a href=JOBS_PATH>"Show all jobs"</a></p> })}
            </section>
        }
        .into_any();
    }

    let select_all = select.clone();
    let page_ids = ids.clone();
    let rows = rows
        .into_iter()
        .map(|row| {
            let select = select.clone();
            view! { <JobLine row read_at selection select=Callback::new(move |(id, on): (i64, bool)| {
                let mut s = selection.get_untracked();
                if on { s.insert(id); } else { s.remove(&id); }
                select(s)
            })/> }
        })
        .collect_view();
    view! {
        <p class="as-of" data-rows=n>
            {format!(
                "{n} {} on this page, {}; read at {}; states and progress follow live.",
                job_word(n as i64),
                if sort == JobSort::Newest { "newest first" } else { "oldest first" },
                format_utc(read_at)
            )}
        </p>
        {new_jobs}
        <table class="data-table jobs">
            <thead>
                <tr>
                    <th scope="col">
                        <input
                            type="checkbox"
                            aria-label="Select every job on this page"
                            checked=all_now
                            prop:checked=all_selected.clone()
                            on:change=move |_| {
                                let on = !all_selected();
                                let mut s = selection.get_untracked();
                                for id in &page_ids {
                                    if on { s.insert(*id); } else { s.remove(id); }
                                }
                                select_all(s)
                            }
                        />
                    </th>
                    <th scope="col">"ID"</th>
                    <th scope="col">"Name"</th>
                    <th scope="col">"Tenant"</th>
                    <th scope="col">"Queue"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Tasks"</th>
                    <th scope="col">"Started"</th>
                    <th scope="col">"Duration"</th>
                    <th scope="col">"Attempts"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
        <nav class="pager actions" aria-label="Pages">
            {first_href.map(|h| view! { <a href=h data-page-link="first">"← First page"</a> })}
            " "
            {match next_href {
                Some(h) => view! { <a href=h data-page-link="next">{format!("Next {JOBS_PAGE} →")}</a> }.into_any(),
                None => view! { <span class="muted">"Last page."</span> }.into_any(),
            }}
        </nav>
    }
    .into_any()
}

#[component]
fn JobLine(
    row: RwSignal<JobRow>,
    read_at: i64,
    selection: Memo<BTreeSet<i64>>,
    select: Callback<(i64, bool)>,
) -> impl IntoView {
    let (id, name, tenant, queue) = row.with_untracked(|r| {
        (
            r.job.id,
            r.job.name.clone(),
            r.job.tenant.clone(),
            r.job.queue.clone(),
        )
    });
    let checked = move || selection.with(|s| s.contains(&id));
    let checked_now = checked();
    let state = move || row.with(|r| r.job.state.as_str());
    let progress = move || {
        row.with(|r| {
            let c = &r.job.task_counts;
            let mut s = format!("{}/{} succeeded", c.succeeded, c.total());
            if c.leased > 0 {
                s.push_str(&format!(", {} leased", c.leased));
            }
            if c.failed > 0 {
                s.push_str(&format!(", {} failed", c.failed));
            }
            s
        })
    };
    let counts_title = move || {
        row.with(|r| {
            let c = &r.job.task_counts;
            format!(
                "{} pending, {} ready, {} cancelled, {} skipped",
                c.pending, c.ready, c.cancelled, c.skipped
            )
        })
    };
    let started = move || row.with(|r| r.job.started_at.map(format_utc));
    // A running job's time so far counts on with the shell's clock (the
    // read time until the page has hydrated, so both renders agree).
    let clock = use_context::<LiveBoard>().map(|b| b.now);
    let duration = move || {
        let now = clock.and_then(|c| c.get()).unwrap_or(read_at);
        row.with(|r| match (r.job.started_at, r.job.finished_at) {
            (Some(s), Some(f)) => format_age(f - s),
            (Some(s), None) => format!("{} so far", format_age(now.max(s) - s)),
            (None, _) => String::new(),
        })
    };
    view! {
        <tr data-job=id data-state=state>
            <td>
                <input
                    type="checkbox"
                    aria-label=format!("Select job {id}")
                    checked=checked_now
                    prop:checked=checked
                    on:change=move |ev| select.run((id, event_target_checked(&ev)))
                />
            </td>
            <td><a href=format!("{JOBS_PATH}/{id}")>{id}</a></td>
            <td>{name}</td>
            <td>{tenant}</td>
            <td>{queue}</td>
            <td><span class="state" data-state=state>{state}</span></td>
            <td><span title=counts_title>{progress}</span></td>
            <td>{move || match started() {
                Some(s) => view! { <span>{s}</span> }.into_any(),
                None => view! { <span class="muted">"not started"</span> }.into_any(),
            }}</td>
            <td data-col="duration">{duration}</td>
            <td>{move || row.with(|r| r.attempts)}</td>
        </tr>
    }
}
