//! Switchyard's operator console.
//!
//! `shell` is the HTML document the server renders around [`App`]; `App`
//! holds the router with every canonical route of SPEC §3. The same code
//! renders on the server (`ssr`) and hydrates in the browser (`hydrate`).
//! Server-only code stays behind the `ssr` feature.

// Leptos view types nest deeply; the hydrate build of the larger pages needs
// more than the default 128 levels to compute their layout.
#![recursion_limit = "256"]

pub mod api;
pub mod components;
pub mod dag;
pub mod legacy;
pub mod pages;
pub mod routes;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet};
use leptos_router::{
    components::{Redirect, Route, Router, Routes},
    path, SsrMode,
};

use components::shell::Shell;
use routes::{
    access::AccessPage, job::JobPage, login::LoginPage, not_found::Fallback, ops::OpsSnapshotPage,
    StaticRoute,
};

/// The HTML document around the app, rendered by the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    let session = components::session::server_session();
    #[cfg(not(feature = "ssr"))]
    let session = None;
    let session_json = components::session::session_json(&session);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
                <script
                    id=components::session::SESSION_SCRIPT_ID
                    type="application/json"
                    inner_html=session_json
                ></script>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The console: the Ops shell around the routed page.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    components::session::provide_session();
    mark_hydrated();

    view! {
        <Stylesheet id="leptos" href="/pkg/switchyard.css"/>
        <Router>
            <Shell>
                <Routes fallback=Fallback>
                    <Route path=path!("/") view=|| view! { <Redirect path="/ops"/> }/>
                    <Route path=path!("/login") view=LoginPage/>
                    <Route path=path!("/ops") view=OpsSnapshotPage ssr=SsrMode::Async/>
                    <Route path=path!("/ops/access") view=AccessPage ssr=SsrMode::Async/>
                    <Route path=path!("/ops/approvals") view=StaticRoute/>
                    <Route path=path!("/ops/operations/jobs-queues") view=StaticRoute/>
                    <Route path=path!("/ops/operations/jobengine") view=routes::jobengine::JobEnginePage ssr=SsrMode::Async/>
                    <Route path=path!("/ops/operations/jobengine/jobs") view=routes::jobs_list::JobsListPage ssr=SsrMode::Async/>
                    <Route path=path!("/ops/operations/jobengine/jobs/:jobId") view=JobPage ssr=SsrMode::Async/>
                    <Route path=path!("/ops/operations/jobengine/jobs/:jobId/dag") view=routes::dag::JobDagPage ssr=SsrMode::Async/>
                    <Route path=path!("/ops/operations/jobengine/quotas") view=routes::quotas::QuotasPage ssr=SsrMode::Async/>
                    <Route path=path!("/ops/operations/dead-letter") view=StaticRoute/>
                    <Route path=path!("/ops/operations/dead-letter/queue") view=StaticRoute/>
                    <Route path=path!("/ops/operations/dead-letter/entry/:entryId") view=StaticRoute/>
                    <Route path=path!("/ops/operations/scheduler") view=StaticRoute/>
                    <Route path=path!("/ops/operations/scheduler/runs") view=StaticRoute/>
                    <Route path=path!("/ops/operations/scheduler/runs/:runId/stream") view=StaticRoute/>
                    <Route path=path!("/ops/operations/scheduler/schedules") view=StaticRoute/>
                    <Route path=path!("/ops/operations/scheduler/workers") view=StaticRoute/>
                    <Route path=path!("/ops/scanner-ops") view=StaticRoute/>
                    <Route path=path!("/ops/scanner-ops/offline-kits") view=StaticRoute/>
                    <Route path=path!("/ops/scanner-ops/baselines") view=StaticRoute/>
                    <Route path=path!("/ops/scanner-ops/analyzers") view=StaticRoute/>
                    <Route path=path!("/ops/scanner-ops/performance") view=StaticRoute/>
                    <Route path=path!("/ops/scanner-ops/settings") view=StaticRoute/>
                </Routes>
            </Shell>
        </Router>
    }
}

/// Sets `data-hydrated` on `<body>` once the wasm has taken over the page.
///
/// Effects run only in the browser, so the attribute appears exactly when
/// the page became interactive; end-to-end tests wait for it.
fn mark_hydrated() {
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
}
