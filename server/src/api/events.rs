//! The event log, read by sequence number, and the kernel overview.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use kernel::model::ErrorBody;
use kernel::model::{EventPage, Overview, Scope};
use kernel::Kernel;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::ApiQuery;
use crate::auth::Caller;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events", get(events))
        .route("/overview", get(overview))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

/// Most events one page may carry.
const MAX_EVENTS: i64 = 1_000;

#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    summary = "Events after a sequence number, in order",
    params(EventsQuery),
    responses((status = 200, description = "A page of events", body = EventPage), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn events(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventPage>> {
    caller.require(Scope::RunsRead)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_EVENTS).contains(&limit) {
        return Err(ApiError::invalid_query(format!(
            "limit must be between 1 and {MAX_EVENTS}, got {limit}"
        )));
    }
    let after = query.after.max(0);
    let check = kernel.check_resume(after).await?;
    if check.beyond_head {
        // An empty page, again and again, would leave the caller waiting
        // for events that never come.
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            format!(
                "after={after} is beyond every event of this log (a seq from another database, \
                 or from before a restore): read again from after=0"
            ),
        ));
    }
    let mut page = kernel.events_after(after, limit).await?;
    page.deleted_through = check.deleted_through;
    page.items
        .retain(|e| caller.0.sees_event(&e.event_type, e.tenant.as_deref()));
    Ok(Json(page))
}

#[utoipa::path(
    get,
    path = "/api/v1/overview",
    tag = "events",
    summary = "Counts across the kernel",
    responses((status = 200, description = "The overview", body = Overview), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn overview(
    State(kernel): State<Kernel>,
    caller: Caller,
) -> ApiResult<Json<Overview>> {
    caller.require(Scope::RunsRead)?;
    Ok(Json(
        kernel
            .overview(caller.tenant_restriction().as_deref())
            .await?,
    ))
}
