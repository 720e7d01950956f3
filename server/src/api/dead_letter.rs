//! Dead-letter entries: browse, group, replay and resolve, one at a time or
//! in batches selected by ids or by filter (with a dry-run count).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use kernel::model::{
    BatchOutcome, DeadLetterEntry, DeadLetterFilter, DeadLetterGroup, DeadLetterSelection,
    DeadLetterStatus, Page, ReplayOptions,
};
use kernel::model::{ErrorBody, Scope};
use kernel::Kernel;
use serde::Deserialize;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiBytes, ApiJson, ApiPath, ApiQuery};
use super::jobs::{non_empty, page_limit};
use crate::auth::Caller;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dead-letter", get(list))
        .route("/dead-letter/groups", get(groups))
        .route("/dead-letter/replay", post(replay_batch))
        .route("/dead-letter/resolve", post(resolve_batch))
        .route("/dead-letter/{id}", get(entry))
        .route("/dead-letter/{id}/replay", post(replay))
        .route("/dead-letter/{id}/resolve", post(resolve))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: Option<String>,
    queue: Option<String>,
    tenant: Option<String>,
    fingerprint: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/dead-letter",
    tag = "dead-letter",
    summary = "Browse dead-letter entries",
    params(ListQuery),
    responses((status = 200, description = "A page of entries", body = Page<DeadLetterEntry>), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn list(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<DeadLetterEntry>>> {
    caller.require(Scope::RunsRead)?;
    let status = match non_empty(query.status) {
        Some(s) => Some(
            s.parse::<DeadLetterStatus>()
                .map_err(|e| ApiError::invalid_query(e.to_string()))?,
        ),
        None => None,
    };
    let filter = DeadLetterFilter {
        status,
        queue: non_empty(query.queue),
        tenant: non_empty(query.tenant),
        fingerprint: non_empty(query.fingerprint),
        q: non_empty(query.q),
        tenants: caller.tenant_restriction(),
    };
    let limit = page_limit(query.limit)?;
    Ok(Json(
        kernel
            .list_dead_letters(
                &filter,
                limit,
                query.cursor.as_deref().filter(|c| !c.is_empty()),
            )
            .await?,
    ))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Groups {
    items: Vec<DeadLetterGroup>,
}

#[utoipa::path(
    get,
    path = "/api/v1/dead-letter/groups",
    tag = "dead-letter",
    summary = "Open entries grouped by error fingerprint",
    responses((status = 200, description = "Groups", body = Groups), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn groups(
    State(kernel): State<Kernel>,
    caller: Caller,
) -> ApiResult<Json<Groups>> {
    caller.require(Scope::RunsRead)?;
    Ok(Json(Groups {
        items: kernel
            .dead_letter_groups(caller.tenant_restriction().as_deref())
            .await?,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/dead-letter/{id}",
    tag = "dead-letter",
    summary = "One entry with its payload and attempt history",
    params(("id" = i64, Path, description = "Entry id")),
    responses((status = 200, description = "The entry", body = DeadLetterEntry), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn entry(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<DeadLetterEntry>> {
    caller.require(Scope::RunsRead)?;
    let entry = kernel.get_dead_letter(id).await?;
    caller.require_tenant(&entry.tenant, "dead-letter entry", id)?;
    Ok(Json(entry))
}

/// Succeeds if the caller holds `runs.manage` and sees the entry's tenant.
async fn manageable(kernel: &Kernel, caller: &Caller, id: i64) -> ApiResult<()> {
    caller.require(Scope::RunsManage)?;
    let entry = kernel.get_dead_letter(id).await?;
    caller.require_tenant(&entry.tenant, "dead-letter entry", id)
}

#[utoipa::path(
    post,
    path = "/api/v1/dead-letter/{id}/replay",
    tag = "dead-letter",
    summary = "Replay: the task is ready again with a fresh attempt budget (optionally another queue or payload; the body is optional)",
    params(("id" = i64, Path, description = "Entry id")),
    request_body = Option<ReplayOptions>,
    responses((status = 200, description = "The entry", body = DeadLetterEntry), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn replay(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Json<DeadLetterEntry>> {
    manageable(&kernel, &caller, id).await?;
    // The body is optional: no body replays as it was.
    let options: ReplayOptions = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayOptions::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("replay options: {e}"),
            )
        })?
    };
    Ok(Json(kernel.replay_dead_letter(id, &options).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResolveRequest {
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/dead-letter/{id}/resolve",
    tag = "dead-letter",
    summary = "Close an entry with a reason",
    params(("id" = i64, Path, description = "Entry id")),
    request_body = ResolveRequest,
    responses((status = 200, description = "The entry", body = DeadLetterEntry), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn resolve(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<ResolveRequest>,
) -> ApiResult<Json<DeadLetterEntry>> {
    manageable(&kernel, &caller, id).await?;
    Ok(Json(kernel.resolve_dead_letter(id, &request.reason).await?))
}

/// `{"ids": [...]}` or `{"filter": {...}}`, with `dry_run` to only count.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchSelection {
    #[serde(default)]
    ids: Option<Vec<i64>>,
    #[serde(default)]
    filter: Option<DeadLetterFilter>,
    #[serde(default)]
    dry_run: bool,
    // replay only
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    payload: Option<Value>,
    // resolve only
    #[serde(default)]
    reason: Option<String>,
}

impl BatchSelection {
    /// The entries selected, limited to the caller's tenants: an id of
    /// another tenant is answered as not found, a filter is narrowed.
    async fn selection(&self, kernel: &Kernel, caller: &Caller) -> ApiResult<DeadLetterSelection> {
        match (&self.ids, &self.filter) {
            (Some(ids), None) => {
                if caller.tenant_restriction().is_some() {
                    for id in ids {
                        manageable(kernel, caller, *id).await?;
                    }
                }
                Ok(DeadLetterSelection::Ids(ids.clone()))
            }
            (None, Some(filter)) => Ok(DeadLetterSelection::Filter(DeadLetterFilter {
                tenants: caller.tenant_restriction(),
                ..filter.clone()
            })),
            _ => Err(ApiError::invalid(
                "give exactly one of \"ids\" or \"filter\"",
            )),
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/dead-letter/replay",
    tag = "dead-letter",
    summary = "Replay entries by ids or by filter; dry_run only counts",
    request_body = BatchSelection,
    responses((status = 200, description = "What matched and what changed", body = BatchOutcome), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn replay_batch(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiJson(request): ApiJson<BatchSelection>,
) -> ApiResult<Json<BatchOutcome>> {
    caller.require(Scope::RunsManage)?;
    if request.reason.is_some() {
        return Err(ApiError::invalid(
            "a replay takes no \"reason\" (that is for resolve); it takes \"queue\" and \"payload\"",
        ));
    }
    let selection = request.selection(&kernel, &caller).await?;
    let options = ReplayOptions {
        queue: request.queue,
        payload: request.payload,
    };
    Ok(Json(
        kernel
            .replay_dead_letters(&selection, &options, request.dry_run)
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/dead-letter/resolve",
    tag = "dead-letter",
    summary = "Resolve entries by ids or by filter; dry_run only counts",
    request_body = BatchSelection,
    responses((status = 200, description = "What matched and what changed", body = BatchOutcome), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn resolve_batch(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiJson(request): ApiJson<BatchSelection>,
) -> ApiResult<Json<BatchOutcome>> {
    caller.require(Scope::RunsManage)?;
    if request.queue.is_some() || request.payload.is_some() {
        return Err(ApiError::invalid(
            "a resolve takes no \"queue\" nor \"payload\" (those are for replay); it takes \"reason\"",
        ));
    }
    let selection = request.selection(&kernel, &caller).await?;
    let reason = request.reason.unwrap_or_default();
    Ok(Json(
        kernel
            .resolve_dead_letters(&selection, &reason, request.dry_run)
            .await?,
    ))
}
