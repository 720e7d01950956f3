//! What the router renders for a path no route matches: a redirect for a
//! legacy alias (in-app navigation), otherwise the 404 page.
//!
//! Full page loads of legacy paths never get here: the server answers them
//! with a 308 first. The server marks unmatched paths with status 404.

use leptos::prelude::*;
use leptos_router::{hooks::use_location, hooks::use_navigate, NavigateOptions};

use crate::components::page::DocumentTitle;
use crate::legacy;

/// The router's fallback view.
#[component]
pub fn Fallback() -> impl IntoView {
    let location = use_location();
    let navigate = use_navigate();
    let is_legacy = move || legacy::canonical_path(&location.pathname.get()).is_some();

    // The fragment is only known in the browser, so the redirect happens in
    // an effect (effects never run on the server).
    Effect::new(move |_| {
        let path = location.pathname.get();
        let search = location.search.get();
        let hash = location.hash.get();
        let query = search.trim_start_matches('?');
        let fragment = hash.trim_start_matches('#');
        if let Some(target) = legacy::canonical_location(&path, query, fragment) {
            navigate(
                &target,
                NavigateOptions {
                    replace: true,
                    ..Default::default()
                },
            );
        }
    });

    view! {
        <Show when=move || !is_legacy() fallback=|| view! { <p class="redirecting">"Redirecting…"</p> }>
            <NotFound/>
        </Show>
    }
}

/// The 404 page.
#[component]
pub fn NotFound() -> impl IntoView {
    let location = use_location();
    view! {
        <DocumentTitle text="Page not found".to_string()/>
        <article class="page" data-page="not-found">
            <h1>"Page not found"</h1>
            <p>
                "No console page lives at " <code>{move || location.pathname.get()}</code> "."
            </p>
            <p><a href="/ops">"Go to the operator snapshot"</a></p>
        </article>
    }
}
