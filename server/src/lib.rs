//! The Switchyard server: hosts the kernel and serves the console and API.
//!
//! [`app`] builds the whole axum router from an [`AppState`], so tests drive
//! it without a socket. Handlers stay thin: the kernel does the work, the
//! console renders through Leptos.

pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod demo;
pub mod health;
pub mod legacy_redirect;
pub mod metrics;
pub mod site;
pub mod worker;

use axum::extract::FromRef;
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use std::sync::OnceLock;
use tower_http::compression::CompressionLayer;

/// Everything a request handler may need.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub kernel: kernel::Kernel,
    /// The SSE streams: their settings and the shutdown token that ends
    /// them, so graceful shutdown is not held open by subscribers.
    pub live: api::stream::LiveStreams,
    /// Identity and access settings and the login rate limiter.
    pub auth: auth::Auth,
}

impl AppState {
    /// State with default stream settings, whose streams end when
    /// `shutdown` is cancelled, and the given access settings.
    pub fn new(
        leptos_options: LeptosOptions,
        kernel: kernel::Kernel,
        shutdown: tokio_util::sync::CancellationToken,
        auth: auth::AuthSettings,
    ) -> AppState {
        AppState {
            leptos_options,
            kernel,
            live: api::stream::LiveStreams::new(api::stream::LiveConfig::default(), shutdown),
            auth: auth::Auth::new(auth),
        }
    }
}

/// The console's routes, generated once per process. Generating them runs the
/// app with resource loading suppressed by a process-wide flag (leptos#4773), so
/// a page rendered by another router in the same process (tests build one per
/// test, in parallel) during that window would wait forever on its data.
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(app::App)).clone()
}

/// What no route serves: under `/api/`, the API's typed 404 (the console's
/// server functions live there too, so it is not one nested router);
/// elsewhere a static file of the site, or the console's own 404 page.
fn site_or_api_not_found() -> impl Fn(
    axum::http::Uri,
    axum::extract::State<AppState>,
    axum::extract::Request,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = axum::response::Response> + Send>>
       + Clone
       + Send
       + 'static {
    let site = leptos_axum::file_and_error_handler::<AppState, _>(app::shell);
    move |uri, state, request| {
        if uri.path() == "/api" || uri.path().starts_with("/api/") {
            use axum::response::IntoResponse;
            return Box::pin(async { api::not_found().into_response() });
        }
        site(uri, state, request)
    }
}

/// The complete HTTP surface: health probes, the REST API, console pages, static site
/// assets, and legacy redirects in front of all of it.
pub fn app(state: AppState) -> Router {
    let routes = route_list();
    let shell_options = state.leptos_options.clone();
    // Server functions and pages reach the kernel through this context.
    let kernel = state.kernel.clone();
    let context = move || provide_context(kernel.clone());
    Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(api::router(&state))
        .leptos_routes_with_context(&state, routes, context, move || {
            app::shell(shell_options.clone())
        })
        .fallback(site_or_api_not_found())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(legacy_redirect::redirect_legacy))
        .layer(axum::middleware::from_fn(protective_headers))
        .layer(CompressionLayer::new())
        .with_state(state)
}

/// Headers on every answer: no other site may frame the console (a
/// click-jacking page could steer its buttons), browsers take each
/// answer's declared type, no address leaves with a link, and nothing but
/// the built assets is cached (pages carry the session's CSRF token and
/// tenants' data; answers that chose their own caching keep it).
async fn protective_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header::{
        CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
        X_FRAME_OPTIONS,
    };
    use axum::http::HeaderValue;
    let asset = auth::is_asset(request.uri().path());
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !asset && !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
