//! What the JobEngine console drives beyond the per-job API: bulk cancel and
//! retry of jobs (by ids or by filter, with a dry-run count), queue health,
//! and the quota snapshot export. Handlers check scope and tenants and hand
//! over to the kernel.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kernel::model::{
    BulkJobAction, BulkJobOutcome, ErrorBody, JobRow, JobSearch, JobSelection, JobSort, Page,
    QueueHealthReport, QuotaBoard, Scope,
};
use kernel::Kernel;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery};
use crate::auth::Caller;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs/search", get(search))
        .route("/jobs/cancel", post(cancel_batch))
        .route("/jobs/retry", post(retry_batch))
        .route("/queues/health", get(queue_health))
        .route("/quotas/export", get(export_quotas))
}

/// `{"ids": [...]}` or `{"filter": {...}}`, with `dry_run` to only count.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkJobRequest {
    #[serde(default)]
    ids: Option<Vec<i64>>,
    #[serde(default)]
    filter: Option<JobSearch>,
    #[serde(default)]
    dry_run: bool,
}

async fn bulk(
    kernel: &Kernel,
    caller: &Caller,
    action: BulkJobAction,
    request: BulkJobRequest,
) -> ApiResult<Json<BulkJobOutcome>> {
    caller.require(Scope::RunsManage)?;
    let selection = match (request.ids, request.filter) {
        (Some(ids), None) => JobSelection::Ids(ids),
        (None, Some(filter)) => JobSelection::Filter(filter),
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of \"ids\" or \"filter\"",
            ))
        }
    };
    let tenants = caller.tenant_restriction();
    Ok(Json(
        kernel
            .bulk_jobs(action, &selection, tenants.as_deref(), request.dry_run)
            .await?,
    ))
}

/// `GET /api/v1/jobs/search`: the console's jobs list over the API.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchQuery {
    state: Option<String>,
    queue: Option<String>,
    tenant: Option<String>,
    /// Jobs with a task of this kind.
    kind: Option<String>,
    /// Jobs with a task in this state (pending, ready or leased).
    task_state: Option<String>,
    /// Created at or after (unix ms).
    created_from: Option<i64>,
    /// Created before (unix ms).
    created_to: Option<i64>,
    /// Finished at or after (unix ms).
    finished_from: Option<i64>,
    /// A job id, or a substring of the name or of a task payload.
    q: Option<String>,
    /// `newest` (default) or `oldest`.
    sort: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn parsed<T: std::str::FromStr>(name: &str, value: Option<String>) -> ApiResult<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match super::jobs::non_empty(value) {
        None => Ok(None),
        Some(v) => v
            .parse::<T>()
            .map(Some)
            .map_err(|e| ApiError::invalid_query(format!("{name}: {e}"))),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/search",
    tag = "jobs",
    summary = "Search jobs with every filter of the console's jobs list (kind, task state, time, payload text), newest or oldest first, keyset pages",
    params(SearchQuery),
    responses((status = 200, description = "A page of jobs with their attempt counts", body = Page<JobRow>), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn search(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> ApiResult<Json<Page<JobRow>>> {
    caller.require(Scope::RunsRead)?;
    let sort = match super::jobs::non_empty(query.sort) {
        None => JobSort::Newest,
        Some(s) => JobSort::parse(&s).ok_or_else(|| {
            ApiError::invalid_query(format!("sort must be newest or oldest, got {s:?}"))
        })?,
    };
    let search = JobSearch {
        state: parsed("state", query.state)?,
        queue: super::jobs::non_empty(query.queue),
        tenant: super::jobs::non_empty(query.tenant),
        kind: super::jobs::non_empty(query.kind),
        task_state: parsed("task_state", query.task_state)?,
        created_from: query.created_from,
        created_to: query.created_to,
        finished_from: query.finished_from,
        q: super::jobs::non_empty(query.q),
        tenants: caller.tenant_restriction(),
    };
    let limit = super::jobs::page_limit(query.limit)?;
    Ok(Json(
        kernel
            .search_jobs(
                &search,
                sort,
                limit,
                query.cursor.as_deref().filter(|c| !c.is_empty()),
            )
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/cancel",
    tag = "jobs",
    summary = "Cancel jobs by ids or by filter; dry_run only counts",
    request_body = BulkJobRequest,
    responses((status = 200, description = "What matched, and what became of each job", body = BulkJobOutcome), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn cancel_batch(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiJson(request): ApiJson<BulkJobRequest>,
) -> ApiResult<Json<BulkJobOutcome>> {
    bulk(&kernel, &caller, BulkJobAction::Cancel, request).await
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/retry",
    tag = "jobs",
    summary = "Retry failed jobs by ids or by filter; dry_run only counts",
    request_body = BulkJobRequest,
    responses((status = 200, description = "What matched, and what became of each job", body = BulkJobOutcome), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn retry_batch(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiJson(request): ApiJson<BulkJobRequest>,
) -> ApiResult<Json<BulkJobOutcome>> {
    bulk(&kernel, &caller, BulkJobAction::Retry, request).await
}

#[utoipa::path(
    get,
    path = "/api/v1/queues/health",
    tag = "queues",
    summary = "Queue health: ready, leased and pending tasks, failures in the last hour, oldest ready task, paused",
    responses((status = 200, description = "Every queue's health, counting the caller's tenants", body = QueueHealthReport), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn queue_health(
    State(kernel): State<Kernel>,
    caller: Caller,
) -> ApiResult<Json<QueueHealthReport>> {
    caller.require(Scope::RunsRead)?;
    let tenants = caller.tenant_restriction();
    Ok(Json(kernel.queue_health(tenants.as_deref()).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    /// `json` (default) or `csv`.
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/quotas/export",
    tag = "quotas",
    summary = "Download a snapshot of every quota and its live usage, as JSON or CSV",
    params(ExportQuery),
    responses((status = 200, description = "The snapshot, as an attachment", body = QuotaBoard), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn export_quotas(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    caller.require(Scope::DownloadsRead)?;
    let csv = match query.format.as_deref().unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => {
            return Err(ApiError::invalid_query(format!(
                "format must be json or csv, not {other:?}"
            )))
        }
    };
    let tenants = caller.tenant_restriction();
    let board = kernel.quota_board(tenants.as_deref()).await?;
    let (body, content_type, ext) = if csv {
        (board.to_csv(), "text/csv; charset=utf-8", "csv")
    } else {
        (
            serde_json::to_string_pretty(&board).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?,
            "application/json",
            "json",
        )
    };
    let disposition = format!(
        "attachment; filename=\"switchyard-quotas-{}.{ext}\"",
        board.measured_at
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}
