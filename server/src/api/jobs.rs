//! Jobs: submit, list, get, cancel, retry (a job or one task).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use kernel::model::{ErrorBody, Scope};
use kernel::model::{Job, JobDetail, JobFilter, JobState, NewJob, Page};
use kernel::Kernel;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", post(submit).get(list))
        .route("/jobs/{id}", get(detail))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/retry", post(retry))
        .route("/jobs/{id}/tasks/{key}/retry", post(retry_task))
}

/// `201` with the new job, or `200` with the existing one when the
/// idempotency key was seen before.
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    tag = "jobs",
    summary = "Submit a job (a DAG of tasks)",
    request_body = NewJob,
    responses((status = 201, description = "Created", body = JobDetail), (status = 200, description = "Already submitted with this idempotency key", body = JobDetail), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn submit(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiJson(job): ApiJson<NewJob>,
) -> ApiResult<(StatusCode, Json<JobDetail>)> {
    caller.require(Scope::RunsManage)?;
    if !caller.0.sees_tenant(&job.tenant) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("no grant for tenant {:?}", job.tenant),
        ));
    }
    let submitted = kernel.submit(job).await?;
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(kernel.get_job(submitted.job.id).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    queue: Option<String>,
    tenant: Option<String>,
    /// A substring of the job name (case-insensitive); digits also match
    /// the job with that id.
    q: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Largest page a caller may ask for.
pub const MAX_PAGE: i64 = 500;

#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    summary = "List jobs, newest first, with filters and a keyset cursor",
    params(ListQuery),
    responses((status = 200, description = "A page of jobs", body = Page<Job>), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn list(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Job>>> {
    caller.require(Scope::RunsRead)?;
    let state = match query.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<JobState>()
                .map_err(|e| ApiError::invalid_query(e.to_string()))?,
        ),
        None => None,
    };
    let filter = JobFilter {
        state,
        queue: non_empty(query.queue),
        tenant: non_empty(query.tenant),
        q: non_empty(query.q),
        tenants: caller.tenant_restriction(),
    };
    let limit = page_limit(query.limit)?;
    Ok(Json(
        kernel
            .list_jobs(
                &filter,
                limit,
                query.cursor.as_deref().filter(|c| !c.is_empty()),
            )
            .await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    summary = "A job with its tasks and their attempts",
    params(("id" = i64, Path, description = "Job id")),
    responses((status = 200, description = "The job", body = JobDetail), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn detail(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<JobDetail>> {
    caller.require(Scope::RunsRead)?;
    let job = kernel.get_job(id).await?;
    caller.require_tenant(&job.job.tenant, "job", id)?;
    Ok(Json(job))
}

/// The job, if the caller holds `runs.manage` and sees its tenant.
async fn manageable(kernel: &Kernel, caller: &Caller, id: i64) -> ApiResult<()> {
    caller.require(Scope::RunsManage)?;
    let job = kernel.get_job_summary(id).await?;
    caller.require_tenant(&job.tenant, "job", id)
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/cancel",
    tag = "jobs",
    summary = "Cancel a job: its unfinished tasks are cancelled",
    params(("id" = i64, Path, description = "Job id")),
    responses((status = 200, description = "The cancelled job", body = JobDetail), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn cancel(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<JobDetail>> {
    manageable(&kernel, &caller, id).await?;
    Ok(Json(kernel.cancel_job(id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/retry",
    tag = "jobs",
    summary = "Retry a failed job: failed and skipped tasks get a fresh attempt budget",
    params(("id" = i64, Path, description = "Job id")),
    responses((status = 200, description = "The job", body = JobDetail), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn retry(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<JobDetail>> {
    manageable(&kernel, &caller, id).await?;
    Ok(Json(kernel.retry_job(id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/tasks/{key}/retry",
    tag = "jobs",
    summary = "Retry one failed (dead-lettered) task: a fresh attempt budget; the tasks it skipped wait for it again",
    params(("id" = i64, Path, description = "Job id"), ("key" = String, Path, description = "Task key within the job")),
    responses((status = 200, description = "The job", body = JobDetail), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn retry_task(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath((id, key)): ApiPath<(i64, String)>,
) -> ApiResult<Json<JobDetail>> {
    manageable(&kernel, &caller, id).await?;
    Ok(Json(kernel.retry_task(id, &key).await?))
}

pub fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// The page size asked for, checked: 1..=MAX_PAGE, 50 when absent.
pub fn page_limit(limit: Option<i64>) -> ApiResult<i64> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid_query(format!(
            "limit must be between 1 and {MAX_PAGE}, got {n}"
        ))),
    }
}
