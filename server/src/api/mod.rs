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

use axum::http::StatusCode;
use axum::Router;

use crate::AppState;
use error::ApiError;

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
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
        });
    Router::new().nest("/api/v1", v1)
}
