//! The REST API under `/api/v1` (SPEC §9): JSON in and out, a typed error
//! body for every failure. Each module owns one domain and exposes its
//! router; handlers only translate between HTTP and the kernel.

pub mod auth;
pub mod console;
pub mod dead_letter;
pub mod error;
pub mod events;
pub mod extract;
pub mod fleet;
pub mod jobs;
pub mod leases;
pub mod openapi;
pub mod stream;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;

use crate::AppState;
use error::ApiError;

/// The largest request body the API reads, 32 MiB: a job of 10,000 tasks
/// (the most one job may have) with payloads of a few KiB each fits.
/// Larger bodies are refused with `413 payload_too_large` (single payloads
/// have their own, smaller limit in the kernel's configuration).
pub const MAX_BODY_BYTES: usize = 32 << 20;

/// What any path under `/api/` that no endpoint serves answers.
pub fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}

pub fn router(state: &AppState) -> Router<AppState> {
    let v1 = Router::new()
        .merge(auth::router())
        .merge(jobs::router())
        .merge(console::router())
        .merge(leases::router())
        .merge(fleet::router())
        .merge(dead_letter::router())
        .merge(events::router())
        .merge(openapi::router())
        .merge(stream::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.kernel.clone(),
            crate::auth::audit,
        ))
        .fallback(|| async { not_found() })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "this endpoint does not answer {method} (the Allow header lists what it does)"
                ),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new().nest("/api/v1", v1)
}
