//! `/ops/operations/jobengine/jobs/:jobId/dag`: a job's task graph, laid
//! out by dependency depth ([`crate::dag::layout`]), each task coloured by
//! its state and kept current by the job's event stream. Clicking a task
//! selects it (`?task=KEY`); the inspector shows its attempts, the log of
//! the latest (or `&attempt=ID`) with live append, and its actions.
//!
//! Plain SVG markup, pan and zoom by changing the `viewBox`.

use std::sync::Arc;

use kernel::model::{AttemptState, Scope, TaskState};
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

use crate::api::jobs::{get_job_view, JobView};
use crate::components::action::ActionButton;
use crate::components::live::{use_live_feed, LiveOptions};
use crate::components::page::PageFrame;
use crate::dag::layout::{layout, Spacing};
use crate::pages::page_by_id;
use crate::routes::job::{encode_segment, AttemptLog, NoSuchJob};
use crate::routes::ops::LoadError;

/// Task states in the legend, in lifecycle order.
const STATES: [&str; 7] = [
    "pending",
    "ready",
    "leased",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
];

/// Length and half width of an edge's arrowhead, in graph units.
const ARROW: (f64, f64) = (9.0, 4.5);

/// The edges as SVG markup: one path holding every edge and one holding
/// every arrowhead. Edges carry no state of their own, and two elements
/// cost the browser far less to style, lay out and paint than one per
/// edge with a marker each (1,500 of them in a 1,000-task graph).
fn edges_markup(drawn: &crate::dag::layout::Layout) -> String {
    use std::fmt::Write;
    let mut lines = String::with_capacity(drawn.edges.len() * 48);
    let mut heads = String::with_capacity(drawn.edges.len() * 48);
    for route in &drawn.edges {
        for (i, (x, y)) in route.points.iter().enumerate() {
            let _ = write!(lines, "{}{x},{y}", if i == 0 { 'M' } else { 'L' });
        }
        // The head points along the route's last segment, its tip on the end.
        if let [.., (x0, y0), (x1, y1)] = route.points[..] {
            let (dx, dy) = (x1 - x0, y1 - y0);
            let len = dx.hypot(dy);
            if len > 0.0 {
                let (ux, uy) = (dx / len, dy / len);
                let (bx, by) = (x1 - ux * ARROW.0, y1 - uy * ARROW.0);
                let (nx, ny) = (-uy * ARROW.1, ux * ARROW.1);
                let _ = write!(
                    heads,
                    "M{x1},{y1}L{:.1},{:.1}L{:.1},{:.1}z",
                    bx + nx,
                    by + ny,
                    bx - nx,
                    by - ny
                );
            }
        }
    }
    format!(
        r#"<path class="dag-edge" d="{lines}"></path><path class="dag-arrows" d="{heads}"></path>"#
    )
}

/// The nodes as SVG markup, in task order (the children of `#dag-nodes`).
fn nodes_markup(
    drawn: &crate::dag::layout::Layout,
    keys: &[String],
    states: &[TaskState],
    selected: Option<&str>,
    spacing: Spacing,
) -> String {
    let mut out = String::with_capacity(keys.len() * 256);
    for (i, (placed, key)) in drawn.nodes.iter().zip(keys).enumerate() {
        let sel = selected == Some(key.as_str());
        // Task keys are identifiers (letters, digits, '.', '_', '-'); escaped
        // all the same.
        let key = escape_markup(key);
        out.push_str(&format!(
            r#"<g class="dag-node" data-task="{key}" data-state="{state}" aria-selected="{sel}" role="button" tabindex="0" transform="translate({x},{y})"><rect width="{w}" height="{h}" rx="6"></rect><text x="10" y="{ty}">{key}</text></g>"#,
            state = states.get(i).map_or("pending", |s| s.as_str()),
            x = placed.x,
            y = placed.y,
            w = spacing.node_width,
            h = spacing.node_height,
            ty = spacing.node_height / 2.0 + 5.0,
        ));
    }
    out
}

/// Whether node labels drawn at `scale` screen pixels per drawing unit can
/// be read: their 13 px type comes out at 8 px or more.
fn labels_legible(scale: f64) -> bool {
    const LABEL_PX: f64 = 13.0;
    const LEGIBLE_PX: f64 = 8.0;
    scale * LABEL_PX >= LEGIBLE_PX
}

fn escape_markup(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Keeps the drawn nodes' `data-state` and `aria-selected` current (in the
/// browser): the nodes are the children of `#dag-nodes`, in task order.
fn follow_nodes(state: RwSignal<JobView>, selected: Memo<Option<String>>, drawn: Vec<TaskState>) {
    #[cfg(feature = "hydrate")]
    {
        let drawn = StoredValue::new(drawn);
        let nodes = || {
            document()
                .get_element_by_id("dag-nodes")
                .map(|g| g.children())
        };
        Effect::new(move |_| {
            let now: Vec<TaskState> = state.with(|v| v.job.tasks.iter().map(|t| t.state).collect());
            let Some(children) = nodes() else {
                return;
            };
            drawn.update_value(|drawn| {
                for (i, s) in now.iter().enumerate() {
                    if drawn.get(i) != Some(s) {
                        if let Some(node) = children.item(i as u32) {
                            let _ = node.set_attribute("data-state", s.as_str());
                        }
                    }
                }
                *drawn = now;
            });
        });
        Effect::new(move |_| {
            let key = selected.get();
            let Some(children) = nodes() else {
                return;
            };
            for i in 0..children.length() {
                if let Some(node) = children.item(i) {
                    let on = key.is_some() && node.get_attribute("data-task") == key;
                    let _ = node.set_attribute("aria-selected", if on { "true" } else { "false" });
                }
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (state, selected, drawn);
}

/// The selected task: its state, its attempts (each one's log a click away,
/// in the same page), the log of the chosen or latest attempt with live
/// append, and the actions its state allows.
#[component]
fn TaskInspector(job_id: i64, key: String, state: RwSignal<JobView>) -> impl IntoView {
    let index = state.with_untracked(|v| v.job.tasks.iter().position(|t| t.key == key));
    let Some(index) = index else {
        return view! {
            <h2>"Inspector"</h2>
            <p class="empty-note">"This job has no task " <code>{key}</code> "."</p>
        }
        .into_any();
    };
    let task = Memo::new(move |_| state.with(|v| v.job.tasks[index].clone()));
    let query = use_query_map();
    // The attempt whose log is shown: `?attempt=` when it is this task's,
    // else the latest.
    let shown = Memo::new(move |_| {
        let asked = query
            .read()
            .get("attempt")
            .and_then(|a| a.parse::<i64>().ok());
        task.with(|t| {
            asked
                .filter(|a| t.attempts.iter().any(|x| x.id == *a))
                .or_else(|| t.attempts.iter().map(|a| a.id).max())
        })
    });
    // Whether the shown attempt still runs. Owned here, not by the log: a
    // new attempt replaces the log while this is read.
    let shown_active = Signal::derive(move || {
        shown.get().is_some_and(|a| {
            task.with(|t| {
                t.attempts
                    .iter()
                    .any(|x| x.id == a && x.state == AttemptState::Active)
            })
        })
    });
    let task_href = format!(
        "/ops/operations/jobengine/jobs/{job_id}/dag?task={}",
        encode_segment(&key)
    );
    let job_terminal = move || state.with(|v| v.job.job.state.is_terminal());
    let job_name = move || state.with(|v| v.job.job.name.clone());
    let retry_path = format!("/api/v1/jobs/{job_id}/tasks/{}/retry", encode_segment(&key));
    view! {
        <h2 data-task=key.clone()>"Task " {key.clone()}</h2>
        <dl class="facts">
            <dt>"State"</dt>
            <dd><span class="state" data-state=move || task.with(|t| t.state.as_str())>{move || task.with(|t| t.state.as_str())}</span></dd>
            <dt>"Kind"</dt>
            <dd>{move || task.with(|t| t.kind.clone())}</dd>
            <dt>"Attempts"</dt>
            <dd>{move || task.with(|t| format!("{} of {}", t.attempts_used, t.max_attempts))}</dd>
            <dt>"Last error"</dt>
            <dd>{move || task.with(|t| t.last_error.clone().unwrap_or_else(|| "—".into()))}</dd>
        </dl>
        <div class="actions" aria-label="Task actions">
            {move || (task.with(|t| t.state == TaskState::Failed)).then(|| view! {
                <ActionButton
                    label="Retry task"
                    path=retry_path.clone()
                    scope=Scope::RunsManage
                    done="Retrying: the task has a fresh attempt budget."
                />
            })}
            {move || (!job_terminal()).then(|| view! {
                <ActionButton
                    label="Cancel job"
                    path=format!("/api/v1/jobs/{job_id}/cancel")
                    scope=Scope::RunsManage
                    confirm="Cancel every unfinished task of this job? Running tasks are told to stop."
                    type_to_confirm=job_name()
                    done="Cancelled; the graph follows live."
                />
            })}
        </div>
        <table class="data-table attempts">
            <thead><tr>
                <th scope="col">"#"</th><th scope="col">"Node"</th><th scope="col">"Epoch"</th>
                <th scope="col">"State"</th><th scope="col">"Error"</th><th scope="col">"Log"</th>
            </tr></thead>
            <tbody>
                {move || task.with(|t| t.attempts.iter().map(|a| {
                    let attempt = a.id;
                    view! {
                        <tr data-attempt=a.id>
                            <td>{a.number}</td>
                            <td>{a.node_id.map(|n| n.to_string()).unwrap_or_else(|| "—".into())}</td>
                            <td>{a.epoch}</td>
                            <td><span class="state" data-state=a.state.as_str()>{a.state.as_str()}</span></td>
                            <td>{a.error.clone().unwrap_or_else(|| "—".into())}</td>
                            <td>
                                <a href=format!("{task_href}&attempt={attempt}") aria-current=move || (shown.get() == Some(attempt)).then_some("true")>
                                    "Log"
                                </a>
                            </td>
                        </tr>
                    }
                }).collect_view())}
            </tbody>
        </table>
        {move || shown.get().map(|attempt| view! { <AttemptLog attempt active=shown_active/> })}
        <p><a href=format!("/ops/operations/jobengine/jobs/{job_id}")>"Open the job page"</a></p>
    }
    .into_any()
}

/// What the page reads: the job alone (without its events and explainer).
type JobRead = Result<Option<JobView>, ServerFnError>;

/// Starts the DAG page's read of job `job_id` ahead, when the pointer or
/// the focus reaches a link to the page: the read then runs while the
/// click switches the route (tens of milliseconds of the browser's time for
/// a large job) instead of after it. The page takes it if it opens within
/// two seconds; otherwise it reads anew.
pub fn read_ahead(job_id: i64) {
    #[cfg(feature = "hydrate")]
    ahead::start(job_id.to_string());
    #[cfg(not(feature = "hydrate"))]
    let _ = job_id;
}

#[cfg(feature = "hydrate")]
mod ahead {
    use std::cell::RefCell;

    use futures::future::{FutureExt, LocalBoxFuture, Shared};

    use super::{get_job_view, JobRead};

    type Started = (String, f64, Shared<LocalBoxFuture<'static, JobRead>>);

    thread_local! {
        static STARTED: RefCell<Option<Started>> = const { RefCell::new(None) };
    }

    /// Longest a read started ahead is kept for the page.
    const FRESH_MS: f64 = 2_000.0;

    pub fn start(job_id: String) {
        let now = js_sys::Date::now();
        STARTED.with(|s| {
            let mut s = s.borrow_mut();
            if s.as_ref()
                .is_some_and(|(id, at, _)| *id == job_id && now - at < FRESH_MS)
            {
                return;
            }
            let read = get_job_view(job_id.clone(), false).boxed_local().shared();
            // A shared future runs only while polled: drive it now.
            let driven = read.clone();
            leptos::task::spawn_local(async move {
                let _ = driven.await;
            });
            *s = Some((job_id, now, read));
        });
    }

    pub fn take(job_id: &str) -> Option<Shared<LocalBoxFuture<'static, JobRead>>> {
        let now = js_sys::Date::now();
        STARTED.with(|s| {
            let started = s.borrow_mut().take()?;
            (started.0 == job_id && now - started.1 < FRESH_MS).then_some(started.2)
        })
    }
}

/// The page's read of job `job_id`: the one started ahead, if any.
fn read_job(
    job_id: String,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = JobRead> + Send>> {
    #[cfg(feature = "hydrate")]
    if let Some(started) = ahead::take(&job_id) {
        return Box::pin(send_wrapper::SendWrapper::new(started));
    }
    Box::pin(get_job_view(job_id, false))
}

/// The page.
#[component]
pub fn JobDagPage() -> impl IntoView {
    let spec = page_by_id("job-dag");
    let params_map = use_params_map();
    let job_id = Memo::new(move |_| params_map.read().get("jobId").unwrap_or_default());
    let params = Signal::derive(move || vec![("jobId", job_id.get())]);
    view! {
        <PageFrame spec params>
            {move || {
                let id = job_id.get();
                let job = crate::api::once(read_job(id.clone()));
                view! {
                    <Suspense fallback=|| view! { <p class="loading-state">"Reading the job…"</p> }>
                        {move || {
                            let id = id.clone();
                            job.get().map(move |result| match result {
                                Ok(Some(initial)) => view! { <LiveDag initial/> }.into_any(),
                                Ok(None) => view! { <NoSuchJob id/> }.into_any(),
                                Err(e) => view! { <LoadError what="this job" error=e.to_string()/> }.into_any(),
                            })
                        }}
                    </Suspense>
                }
            }}
        </PageFrame>
    }
}

#[component]
fn LiveDag(initial: JobView) -> impl IntoView {
    let id = initial.job.job.id;
    let after = initial.seq;
    // The graph's shape is fixed at submit; only states change live.
    let keys: Vec<String> = initial.job.tasks.iter().map(|t| t.key.clone()).collect();
    let index: std::collections::HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let edges: Vec<(usize, usize)> = initial
        .job
        .tasks
        .iter()
        .enumerate()
        .flat_map(|(to, t)| {
            let index = &index;
            t.depends_on
                .iter()
                .filter_map(move |d| index.get(d.as_str()).map(|&from| (from, to)))
        })
        .collect();
    let spacing = Spacing::default();
    let drawn = layout(keys.len(), &edges, spacing);
    let state = RwSignal::new(initial);
    use_live_feed(LiveOptions {
        stream: format!("/api/v1/jobs/{id}/stream"),
        after,
        accept: Arc::new(move |e| e.subject.job_id == Some(id)),
        on_event: Arc::new(move |event| state.update(|v| v.apply(&event))),
    });

    let query = use_query_map();
    let selected = Memo::new(move |_| query.read().get("task"));
    let navigate = use_navigate();
    let base = format!("/ops/operations/jobengine/jobs/{id}/dag");

    // Pan and zoom: the viewBox [x, y, width, height].
    let home = [0.0, 0.0, drawn.width.max(1.0), drawn.height.max(1.0)];
    let view_box = RwSignal::new(home);
    let zoom = move |factor: f64| {
        view_box.update(|[x, y, w, h]| {
            let (cx, cy) = (*x + *w / 2.0, *y + *h / 2.0);
            *w *= factor;
            *h *= factor;
            *x = cx - *w / 2.0;
            *y = cy - *h / 2.0;
        })
    };
    // Labels are drawn only while they can be read. A big graph opens
    // zoomed out to fit, its labels a pixel or two high; a thousand of them
    // cost the browser tens of milliseconds of text layout for nothing
    // (docs/benchmarks.md, "Rendering in the browser").
    // (The drawing's size on screen is measured once it is there, and again
    // when the window resizes; zooming and panning do not change it. Before,
    // a typical one is assumed.)
    let graph = NodeRef::<leptos::svg::Svg>::new();
    let graph_px = RwSignal::new((1_000.0, 600.0));
    let measure = move || {
        if let Some(svg) = graph.get_untracked() {
            let (width, height) = (svg.client_width(), svg.client_height());
            if width > 0 && height > 0 {
                graph_px.set((f64::from(width), f64::from(height)));
            }
        }
    };
    Effect::new(move |_| {
        graph.track();
        measure();
    });
    let resized = window_event_listener(leptos::ev::resize, move |_| measure());
    on_cleanup(move || resized.remove());
    let graph_class = move || {
        // The whole viewBox fits in the drawing (`xMidYMid meet`).
        let (width, height) = graph_px.get();
        let scale = view_box.with(|[_, _, w, h]| (width / w).min(height / h));
        if labels_legible(scale) {
            "dag"
        } else {
            "dag labels-hidden"
        }
    };
    let drag = StoredValue::new(None::<(i32, i32)>);
    let on_move = move |ev: leptos::ev::PointerEvent| {
        let Some((px, py)) = drag.get_value() else {
            return;
        };
        let (cx, cy) = (ev.client_x(), ev.client_y());
        drag.set_value(Some((cx, cy)));
        let width = ev
            .current_target()
            .map(|t| {
                use leptos::wasm_bindgen::JsCast;
                t.unchecked_into::<leptos::web_sys::Element>()
                    .client_width()
            })
            .unwrap_or(0)
            .max(1) as f64;
        view_box.update(|[x, y, w, _]| {
            let scale = *w / width;
            *x -= (cx - px) as f64 * scale;
            *y -= (cy - py) as f64 * scale;
        });
    };

    // The graph is drawn as one piece of SVG markup, not a view per node
    // and edge: on a 1,000-task graph that is ~4,500 elements the browser
    // parses at once instead of creating them one call at a time. Clicks
    // are delegated to the group; states and the selection are kept by two
    // effects ([`follow_nodes`]).
    let initial_states: Vec<TaskState> =
        state.with_untracked(|v| v.job.tasks.iter().map(|t| t.state).collect());
    let edge_markup = edges_markup(&drawn);
    let node_markup = nodes_markup(
        &drawn,
        &keys,
        &initial_states,
        selected.get_untracked().as_deref(),
        spacing,
    );
    follow_nodes(state, selected, initial_states);
    let open_task = move |ev: leptos::ev::MouseEvent| {
        use leptos::wasm_bindgen::JsCast;
        let key = ev
            .target()
            .and_then(|t| t.dyn_into::<leptos::web_sys::Element>().ok())
            .and_then(|t| t.closest("g.dag-node").ok().flatten())
            .and_then(|g| g.get_attribute("data-task"));
        if let Some(key) = key {
            navigate(
                &format!("{base}?task={}", encode_segment(&key)),
                Default::default(),
            );
        }
    };
    let legend = STATES
        .iter()
        .map(|s| view! { <li class="dag-node" data-state=*s><svg width="14" height="14"><rect width="14" height="14" rx="3"/></svg>" " {*s}</li> })
        .collect_view();

    view! {
        <div class="dag-layout">
            <section class="panel dag-panel" aria-label="Task graph">
                <div class="dag-tools">
                    <button type="button" aria-label="Zoom in" on:click=move |_| zoom(1.0 / 1.25)>"+"</button>
                    <button type="button" aria-label="Zoom out" on:click=move |_| zoom(1.25)>"−"</button>
                    <button type="button" on:click=move |_| view_box.set(home)>"Reset"</button>
                    <a href=format!("/ops/operations/jobengine/jobs/{id}")>"Job " {id}</a>
                </div>
                <svg
                    node_ref=graph
                    class=graph_class
                    role="img"
                    aria-label="Task graph"
                    viewBox=move || view_box.with(|[x, y, w, h]| format!("{x} {y} {w} {h}"))
                    on:wheel=move |ev: leptos::ev::WheelEvent| {
                        ev.prevent_default();
                        zoom(if ev.delta_y() > 0.0 { 1.1 } else { 1.0 / 1.1 });
                    }
                    on:pointerdown=move |ev: leptos::ev::PointerEvent| drag.set_value(Some((ev.client_x(), ev.client_y())))
                    on:pointermove=on_move
                    on:pointerup=move |_| drag.set_value(None)
                    on:pointerleave=move |_| drag.set_value(None)
                >
                    <g class="dag-edges" inner_html=edge_markup></g>
                    <g id="dag-nodes" inner_html=node_markup on:click=open_task></g>
                </svg>
                <ul class="dag-legend" aria-label="Legend">{legend}</ul>
            </section>
            <aside class="panel dag-inspector" aria-label="Inspector">
                {move || match selected.get() {
                    None => view! {
                        <h2>"Inspector"</h2>
                        <p class="empty-note">"Select a task in the graph."</p>
                    }.into_any(),
                    Some(key) => view! { <TaskInspector job_id=id key state/> }.into_any(),
                }}
            </aside>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_drawn_from_8_px_on_screen() {
        assert!(labels_legible(1.0));
        assert!(labels_legible(8.0 / 13.0));
        assert!(!labels_legible(0.6));
        // A 1,000-task graph fitted into a typical panel.
        assert!(!labels_legible(0.1));
    }

    #[test]
    fn the_markup_draws_each_node_once_with_its_state_and_escapes_keys() {
        let spacing = Spacing::default();
        let drawn = layout(2, &[(0, 1)], spacing);
        let keys = vec!["a<b".to_string(), "c".to_string()];
        let states = [TaskState::Succeeded, TaskState::Ready];
        let nodes = nodes_markup(&drawn, &keys, &states, Some("c"), spacing);
        assert_eq!(nodes.matches(r#"<g class="dag-node""#).count(), 2);
        assert!(
            nodes.contains(r#"data-task="a&lt;b" data-state="succeeded" aria-selected="false""#)
        );
        assert!(nodes.contains(r#"data-task="c" data-state="ready" aria-selected="true""#));
        assert!(!nodes.contains("a<b"));
        let edges = edges_markup(&drawn);
        assert_eq!(edges.matches("<path").count(), 2);
        assert_eq!(
            edges.matches('M').count(),
            2,
            "one line and one head: {edges}"
        );
    }
}
