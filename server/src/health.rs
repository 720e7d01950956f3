//! Liveness and readiness probes. Both stay open to unauthenticated callers
//! so orchestrators can use them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up and serving HTTP.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers a query: the server can do real work.
async fn readyz(State(kernel): State<kernel::Kernel>) -> (StatusCode, Json<Value>) {
    let db = kernel.db();
    match db.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "database": db.backend().to_string() })),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "unavailable",
                    "database": db.backend().to_string(),
                    "error": "the database did not answer",
                })),
            )
        }
    }
}
