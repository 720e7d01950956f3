//! `/ops/operations/jobengine/quotas`: every tenant and queue with its
//! limits (concurrent leases, starts per minute) beside live usage, a
//! validated and confirmed editor (the kernel enforces what is saved), and
//! the snapshot export as JSON or CSV. Usage is measured again while lease
//! and task events arrive (at most every 2 s) and every 15 s anyway.

use kernel::model::{QuotaBoard, QuotaLimits, QuotaScope, QuotaStatus, QuotaUsage, Scope};
use leptos::prelude::*;

use crate::api::jobengine::{encode, get_quota_board};
use crate::components::live::format_utc;
use crate::components::page::PageFrame;
use crate::components::session::use_session;
use crate::pages::page_by_id;
use crate::routes::ops::LoadError;

/// Largest limit the editor accepts.
pub const MAX_LIMIT: i64 = 1_000_000;

/// The page.
#[component]
pub fn QuotasPage() -> impl IntoView {
    let spec = page_by_id("quotas");
    let refresh = RwSignal::new(0_u32);
    // What the last save did, kept across the re-read that follows it.
    let toast = RwSignal::new(None::<String>);
    view! {
        <PageFrame spec params=Signal::derive(Vec::new)>
            <Exports/>
            {move || toast.get().map(|t| view! { <p class="toast" role="status" data-toast="quota">{t}</p> })}
            {move || {
                refresh.track();
                view! { <Board refresh toast/> }
            }}
        </PageFrame>
    }
}

#[component]
fn Exports() -> impl IntoView {
    let allowed = use_session().allows(Scope::DownloadsRead);
    view! {
        <p class="actions exports">
            "Export a snapshot of every limit and its usage: "
            {match allowed {
                Ok(()) => view! {
                    <a href="/api/v1/quotas/export?format=json" download="" rel="external" data-export="json">"JSON"</a>
                    " · "
                    <a href="/api/v1/quotas/export?format=csv" download="" rel="external" data-export="csv">"CSV"</a>
                }
                .into_any(),
                Err(reason) => view! {
                    <span class="muted" aria-disabled="true">"JSON · CSV"</span>
                    " "
                    <span class="disabled-reason">{reason}</span>
                }
                .into_any(),
            }}
        </p>
    }
}

#[component]
fn Board(refresh: RwSignal<u32>, toast: RwSignal<Option<String>>) -> impl IntoView {
    let board = crate::api::once(get_quota_board());
    view! {
        <Suspense fallback=|| view! { <p class="loading-state">"Reading quotas and usage…"</p> }>
            {move || {
                board
                    .get()
                    .map(|result| match result {
                        Ok(view) => view! { <BoardTables board=view.board seq=view.seq refresh toast/> }.into_any(),
                        Err(e) => view! { <LoadError what="the quotas" error=e.to_string()/> }.into_any(),
                    })
            }}
        </Suspense>
    }
}

/// Usage of each tenant and queue, by `scope/name`, as last measured.
type UsageMap = std::collections::HashMap<String, (QuotaUsage, bool)>;

/// A tenant's or queue's key in the usage map and its row's `data-quota`.
fn quota_key(q: &QuotaStatus) -> String {
    format!("{}/{}", q.scope, q.name)
}

fn usage_map(items: &[QuotaStatus]) -> UsageMap {
    items
        .iter()
        .map(|q| (quota_key(q), (q.usage.clone(), q.exhausted)))
        .collect()
}

/// How often usage is measured again while leases change (ms); and at
/// least this often anyway, as starts leave the last minute (ms).
#[cfg(feature = "hydrate")]
const USAGE_BUSY_MS: u64 = 2_000;
#[cfg(feature = "hydrate")]
const USAGE_IDLE_MS: f64 = 15_000.0;

#[component]
fn BoardTables(
    board: QuotaBoard,
    seq: i64,
    refresh: RwSignal<u32>,
    toast: RwSignal<Option<String>>,
) -> impl IntoView {
    let measured_at = RwSignal::new(board.measured_at);
    let usage = RwSignal::new(usage_map(&board.items));
    live_usage(seq, measured_at, usage);
    let (tenants, queues): (Vec<QuotaStatus>, Vec<QuotaStatus>) = board
        .items
        .into_iter()
        .partition(|q| q.scope == QuotaScope::Tenant);
    view! {
        <p class="as-of" data-measured-at=move || measured_at.get()>
            "Usage measured at " {move || format_utc(measured_at.get())}
            "; measured again every 2 s while leases change. "
            <button type="button" class="link-button" on:click=move |_| { toast.set(None); refresh.update(|n| *n += 1) }>
                "Measure again"
            </button>
        </p>
        <ScopeTable title="Tenants" scope=QuotaScope::Tenant items=tenants usage refresh toast/>
        <ScopeTable title="Queues" scope=QuotaScope::Queue items=queues usage refresh toast/>
    }
}

/// In the browser: lease and task events mark usage stale; it is measured
/// again at most every 2 s while they arrive, and every 15 s anyway.
fn live_usage(seq: i64, measured_at: RwSignal<i64>, usage: RwSignal<UsageMap>) {
    #[cfg(feature = "hydrate")]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        use crate::components::live::{use_live_feed, LiveOptions};

        let stale = Arc::new(AtomicBool::new(false));
        let mark = stale.clone();
        use_live_feed(LiveOptions {
            stream: "/api/v1/events/stream?family=lease,task".into(),
            after: seq,
            accept: Arc::new(|e| {
                e.event_type.starts_with("lease.") || e.event_type.starts_with("task.")
            }),
            on_event: Arc::new(move |_| mark.store(true, Ordering::Relaxed)),
        });
        let busy = Arc::new(AtomicBool::new(false));
        // When the browser last asked (its own clock, not the kernel's).
        let asked = std::rc::Rc::new(std::cell::Cell::new(js_sys::Date::now()));
        if let Ok(handle) = set_interval_with_handle(
            move || {
                let due = js_sys::Date::now() - asked.get() >= USAGE_IDLE_MS;
                if busy.load(Ordering::Relaxed) || !(stale.swap(false, Ordering::Relaxed) || due) {
                    return;
                }
                busy.store(true, Ordering::Relaxed);
                asked.set(js_sys::Date::now());
                let busy = busy.clone();
                leptos::task::spawn_local(async move {
                    if let Ok(view) = get_quota_board().await {
                        measured_at.try_set(view.board.measured_at);
                        usage.try_set(usage_map(&view.board.items));
                    }
                    busy.store(false, Ordering::Relaxed);
                });
            },
            std::time::Duration::from_millis(USAGE_BUSY_MS),
        ) {
            on_cleanup(move || handle.clear());
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (seq, measured_at, usage);
}

#[component]
fn ScopeTable(
    title: &'static str,
    scope: QuotaScope,
    items: Vec<QuotaStatus>,
    usage: RwSignal<UsageMap>,
    refresh: RwSignal<u32>,
    toast: RwSignal<Option<String>>,
) -> impl IntoView {
    let heading = format!("quotas-{scope}");
    let labelled_by = heading.clone();
    if items.is_empty() {
        return view! {
            <section class="panel" aria-labelledby=labelled_by>
                <h2 id=heading>{title}</h2>
                <p class="empty-note">
                    {match scope {
                        QuotaScope::Tenant => "No tenant you can see has submitted a job or has a quota.",
                        QuotaScope::Queue => "No queue exists yet: a queue appears with its first job.",
                    }}
                </p>
            </section>
        }
        .into_any();
    }
    let rows = items
        .into_iter()
        .map(|item| view! { <QuotaLine item usage refresh toast/> })
        .collect_view();
    view! {
        <section class="panel" aria-labelledby=labelled_by>
            <h2 id=heading>{title}</h2>
            <table class="data-table quotas" data-scope=scope.as_str()>
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Concurrent leases"</th>
                        <th scope="col">"Starts in the last minute"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Edit"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
    .into_any()
}

/// `used` of `limit` with a small bar; no bar for an unlimited figure.
#[component]
fn Usage(used: i64, limit: Option<i64>, tracked: bool) -> impl IntoView {
    if !tracked {
        return view! { <span class="muted">"not counted (no starts limit)"</span> }.into_any();
    }
    match limit {
        None => view! { <span>{used} <span class="muted">" of unlimited"</span></span> }.into_any(),
        Some(limit) => {
            let pct = if limit <= 0 {
                100
            } else {
                ((used * 100) / limit).clamp(0, 100)
            };
            let colour = if pct >= 100 {
                "#c0392b"
            } else if pct >= 80 {
                "#d68910"
            } else {
                "#2e86c1"
            };
            view! {
                <span class="usage" data-used=used data-limit=limit>
                    {used} " of " {limit}
                    <span
                        class="usage-bar"
                        role="meter"
                        aria-valuemin="0"
                        aria-valuemax=limit
                        aria-valuenow=used
                        style="display:inline-block;vertical-align:middle;margin-left:.5em;width:6em;height:.6em;background:#e5e8eb;border-radius:.3em;overflow:hidden"
                    >
                        <span style=format!("display:block;height:100%;width:{pct}%;background:{colour}")></span>
                    </span>
                </span>
            }
            .into_any()
        }
    }
}

fn limit_text(v: Option<i64>) -> String {
    v.map(|v| v.to_string())
        .unwrap_or_else(|| "unlimited".into())
}

/// A limit as typed: empty is unlimited; else a whole number 0..=MAX_LIMIT.
pub fn parse_limit(what: &str, text: &str) -> Result<Option<i64>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match t.parse::<i64>() {
        Ok(n) if (0..=MAX_LIMIT).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "{what} must be a whole number from 0 to {MAX_LIMIT}, or empty for unlimited (got {t:?})"
        )),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Edit {
    Closed,
    Editing(Option<String>),
    Confirming(QuotaLimits),
    Saving,
}

#[component]
fn QuotaLine(
    item: QuotaStatus,
    usage: RwSignal<UsageMap>,
    refresh: RwSignal<u32>,
    toast: RwSignal<Option<String>>,
) -> impl IntoView {
    let session = use_session();
    let allowed = session.allows(Scope::RunsManage).and_then(|()| {
        let all = session
            .0
            .as_ref()
            .is_some_and(|s| s.principal.tenants.is_all());
        if item.scope == QuotaScope::Queue && !all {
            Err(
                "A queue quota affects every tenant: it needs a grant of all tenants, with All tenants picked above."
                    .to_string(),
            )
        } else {
            Ok(())
        }
    });
    let reason = allowed.clone().err();
    let edit = RwSignal::new(Edit::Closed);
    let concurrent = RwSignal::new(
        item.limits
            .max_concurrent
            .map(|v| v.to_string())
            .unwrap_or_default(),
    );
    let starts = RwSignal::new(
        item.limits
            .max_starts_per_minute
            .map(|v| v.to_string())
            .unwrap_or_default(),
    );
    let current = item.limits.clone();
    let (max_concurrent, max_starts) = (
        item.limits.max_concurrent,
        item.limits.max_starts_per_minute,
    );
    let starts_tracked = item.starts_tracked;
    let scope = item.scope;
    let name = StoredValue::new(item.name.clone());

    let review = move || {
        let parsed = parse_limit("Concurrent leases", &concurrent.get_untracked()).and_then(|c| {
            parse_limit("Starts per minute", &starts.get_untracked()).map(|s| QuotaLimits {
                max_concurrent: c,
                max_starts_per_minute: s,
            })
        });
        match parsed {
            Ok(limits) => edit.set(Edit::Confirming(limits)),
            Err(e) => edit.set(Edit::Editing(Some(e))),
        }
    };
    let save = move |limits: QuotaLimits| {
        edit.set(Edit::Saving);
        let path = format!(
            "/api/v1/quotas/{}/{}",
            scope.as_str(),
            encode(&name.get_value())
        );
        let body = serde_json::to_value(&limits).unwrap_or_default();
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            match crate::components::session::send_json("PUT", &path, Some(body)).await {
                Ok(_) => {
                    toast.set(Some(format!(
                        "Saved the {} quota of {}: concurrent leases {}, starts per minute {}.",
                        scope,
                        name.get_value(),
                        limit_text(limits.max_concurrent),
                        limit_text(limits.max_starts_per_minute)
                    )));
                    refresh.update(|n| *n += 1);
                }
                Err(message) => edit.set(Edit::Editing(Some(message))),
            }
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = (path, body, limits, refresh, toast);
    };

    let key = quota_key(&item);
    let now = {
        let initial = (item.usage.clone(), item.exhausted);
        Memo::new(move |_| usage.with(|u| u.get(&key).cloned().unwrap_or_else(|| initial.clone())))
    };
    let configured = item.configured;
    let status = move || {
        if now.with(|(_, exhausted)| *exhausted) {
            view! { <span class="state" data-state="failed">"full: new leases wait"</span> }
                .into_any()
        } else if configured {
            view! { <span class="state" data-state="succeeded">"room left"</span> }.into_any()
        } else {
            view! { <span class="muted">"no quota"</span> }.into_any()
        }
    };
    let editor = move || {
        match edit.get() {
        Edit::Closed => {
            let blocked = reason.is_some();
            view! {
                <button type="button" data-edit-quota="" disabled=blocked title=reason.clone() on:click=move |_| edit.set(Edit::Editing(None))>
                    "Edit limits"
                </button>
                {reason.clone().map(|r| view! { <span class="disabled-reason">{r}</span> })}
            }
            .into_any()
        }
        Edit::Editing(error) => view! {
            <form class="quota-form token-form" on:submit=move |ev: leptos::ev::SubmitEvent| { ev.prevent_default(); review() }>
                <label>
                    "Concurrent leases"
                    <input type="text" inputmode="numeric" name="max_concurrent" placeholder="unlimited"
                        value=concurrent.get_untracked() on:input=move |ev| concurrent.set(event_target_value(&ev))/>
                </label>
                <label>
                    "Starts per minute"
                    <input type="text" inputmode="numeric" name="max_starts_per_minute" placeholder="unlimited"
                        value=starts.get_untracked() on:input=move |ev| starts.set(event_target_value(&ev))/>
                </label>
                <button type="submit">"Review"</button>
                " "
                <button type="button" class="link-button" on:click=move |_| edit.set(Edit::Closed)>"Cancel"</button>
                {error.map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
                <p class="muted">"Leave a field empty for no limit; both empty removes the quota."</p>
            </form>
        }
        .into_any(),
        Edit::Confirming(limits) => {
            let l = limits.clone();
            view! {
                <div class="confirm-question" role="alertdialog">
                    <p>
                        {format!(
                            "Set the {} quota of {}: concurrent leases {} → {}; starts per minute {} → {}?",
                            scope,
                            name.get_value(),
                            limit_text(current.max_concurrent),
                            limit_text(l.max_concurrent),
                            limit_text(current.max_starts_per_minute),
                            limit_text(l.max_starts_per_minute)
                        )}
                        " The kernel enforces it on the next claim."
                    </p>
                    <button type="button" data-confirm-quota="" on:click=move |_| save(limits.clone())>"Save quota"</button>
                    " "
                    <button type="button" class="link-button" on:click=move |_| edit.set(Edit::Editing(None))>"Back"</button>
                </div>
            }
            .into_any()
        }
        Edit::Saving => view! { <p class="loading-state" role="status">"Saving…"</p> }.into_any(),
    }
    };
    view! {
        <tr data-quota=quota_key(&item)>
            <th scope="row">{item.name.clone()}</th>
            <td data-usage="concurrent">
                {move || view! { <Usage used=now.with(|(u, _)| u.concurrent) limit=max_concurrent tracked=true/> }}
            </td>
            <td data-usage="starts">
                {move || view! { <Usage used=now.with(|(u, _)| u.starts_last_minute) limit=max_starts tracked=starts_tracked/> }}
            </td>
            <td>{status}</td>
            <td>{editor}</td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_validated() {
        assert_eq!(parse_limit("x", ""), Ok(None));
        assert_eq!(parse_limit("x", " 5 "), Ok(Some(5)));
        assert!(parse_limit("x", "-1").is_err());
        assert!(parse_limit("x", "2.5").is_err());
        assert!(parse_limit("x", "10000000").is_err());
    }
}
