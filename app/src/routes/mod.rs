//! The console's pages.
//!
//! Pages that are not yet connected to their data render [`StaticPage`]: the
//! page's frame and an honest statement of what will appear there. Each page
//! graduates to its own module here when it starts reading the kernel.

pub mod access;
pub mod dag;
pub mod job;
pub mod jobengine;
pub mod jobs_list;
pub mod login;
pub mod not_found;
pub mod ops;
pub mod quotas;

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::components::page::{PageFrame, PARAM_NAMES};
use crate::pages::{page_by_id, page_by_path, PageSpec};

/// The view of every route to a page that does not read any data yet: the
/// page is found by the path the route matched. (One view function for all
/// these routes, rather than a closure per route, keeps the wasm small.)
#[component]
pub fn StaticRoute() -> impl IntoView {
    let matched = leptos_router::hooks::use_matched().get_untracked();
    let spec = page_by_path(&matched)
        .or_else(|| {
            page_by_path(
                &leptos_router::hooks::use_location()
                    .pathname
                    .get_untracked(),
            )
        })
        .unwrap_or_else(|| page_by_id("snapshot"));
    static_page(spec)
}

/// A catalogued page that does not read any data yet.
#[component]
pub fn StaticPage(id: &'static str) -> impl IntoView {
    static_page(page_by_id(id))
}

fn static_page(spec: &'static PageSpec) -> impl IntoView {
    let params_map = use_params_map();
    let params = Signal::derive(move || {
        let map = params_map.read();
        PARAM_NAMES
            .iter()
            .filter_map(|name| map.get(name).map(|value| (*name, value)))
            .collect::<Vec<_>>()
    });
    let shown_params = move || {
        params
            .get()
            .into_iter()
            .map(|(name, value)| view! { <dt>{name}</dt><dd data-param=name>{value}</dd> })
            .collect_view()
    };

    view! {
        <PageFrame spec params>
            <dl class="path-params">{shown_params}</dl>
            <section class="empty-state" aria-label="Empty state">
                <h2>"Nothing to show yet"</h2>
                <p>"This page will show " {spec.will_show} "."</p>
                <p>
                    "It is not connected to the kernel in this build, so it shows nothing rather than invented figures."
                </p>
            </section>
        </PageFrame>
    }
}
