//! The event log, read by sequence number, and the kernel overview.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use kernel::model::{EventPage, Overview};
use kernel::Kernel;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::ApiQuery;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events", get(events))
        .route("/overview", get(overview))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

/// Most events one page may carry.
const MAX_EVENTS: i64 = 1_000;

async fn events(
    State(kernel): State<Kernel>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventPage>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_EVENTS).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_EVENTS}, got {limit}"
        )));
    }
    Ok(Json(kernel.events_after(query.after.max(0), limit).await?))
}

async fn overview(State(kernel): State<Kernel>) -> ApiResult<Json<Overview>> {
    Ok(Json(kernel.overview().await?))
}
