//! The worker protocol (SPEC §9): claim, heartbeat, complete, fail, release,
//! and the attempt log. Single-lease forms follow the spec; batch forms of
//! heartbeat and complete let one HTTP round trip carry many leases, which
//! is what makes remote workers fast.
//!
//! The request and response types are public: `switchyard worker` speaks
//! this protocol with the same types.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use kernel::model::{
    ClaimRequest, Completion, ErrorBody, FailOutcome, HeartbeatOutcome, Lease, LeaseProof, LogLine,
    NewLogLine, Scope, TaskFailure,
};
use kernel::Kernel;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::auth::Caller;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/leases/claim", post(claim))
        .route("/leases/heartbeat", post(heartbeat_batch))
        .route("/leases/complete", post(complete_batch))
        .route("/leases/{attempt_id}/heartbeat", post(heartbeat))
        .route("/leases/{attempt_id}/complete", post(complete))
        .route("/leases/{attempt_id}/fail", post(fail))
        .route("/leases/{attempt_id}/release", post(release))
        .route("/leases/{attempt_id}/log", post(append_log))
        .route("/attempts/{attempt_id}/log", get(read_log))
}

/// Refuses a caller that is not a node, or a node reporting on a lease
/// another node holds. Unknown attempts pass: the kernel answers for them.
async fn own(kernel: &Kernel, caller: &Caller, attempt_ids: &[i64]) -> ApiResult<()> {
    let node = caller.node()?;
    let owners = kernel.attempt_owners(attempt_ids).await?;
    if let Some(foreign) = owners.iter().find(|o| o.node_id != Some(node)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "attempt {} is leased to another node; a node may only report on its own leases",
                foreign.attempt_id
            ),
        ));
    }
    Ok(())
}

/// Longest long-poll a claim may ask for.
pub const MAX_WAIT_MS: i64 = 30_000;
/// Most leases one claim may ask for.
pub const MAX_CLAIM: i64 = 1_000;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClaimResponse {
    pub leases: Vec<Lease>,
}

#[utoipa::path(
    post,
    path = "/api/v1/leases/claim",
    tag = "worker protocol",
    summary = "Lease up to `max` ready tasks of the given kinds, waiting up to `wait_ms`",
    request_body = ClaimRequest,
    responses((status = 200, description = "The leases granted (possibly none)", body = ClaimResponse), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn claim(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiJson(request): ApiJson<ClaimRequest>,
) -> ApiResult<Json<ClaimResponse>> {
    if caller.node()? != request.node_id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this node token speaks for another node than {}",
                request.node_id
            ),
        ));
    }
    if !(1..=MAX_CLAIM).contains(&request.max) {
        return Err(ApiError::invalid(format!(
            "max must be between 1 and {MAX_CLAIM}, got {}",
            request.max
        )));
    }
    if !(0..=MAX_WAIT_MS).contains(&request.wait_ms) {
        return Err(ApiError::invalid(format!(
            "wait_ms must be between 0 and {MAX_WAIT_MS}, got {}",
            request.wait_ms
        )));
    }
    Ok(Json(ClaimResponse {
        leases: kernel.claim(&request).await?,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/leases/{attempt_id}/heartbeat",
    tag = "worker protocol",
    summary = "Renew a lease; says whether the job was cancelled",
    params(("attempt_id" = i64, Path, description = "Attempt id")),
    request_body = LeaseProof,
    responses((status = 200, description = "The renewed lease", body = HeartbeatOutcome), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn heartbeat(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(attempt_id): ApiPath<i64>,
    ApiJson(proof): ApiJson<LeaseProof>,
) -> ApiResult<Json<HeartbeatOutcome>> {
    own(&kernel, &caller, &[attempt_id]).await?;
    Ok(Json(kernel.heartbeat(attempt_id, &proof).await?))
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub lease_token: String,
    pub epoch: i64,
    #[serde(default)]
    pub output: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Done {
    pub attempt_id: i64,
    pub state: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/leases/{attempt_id}/complete",
    tag = "worker protocol",
    summary = "Complete an attempt (409 stale_lease for an old token or epoch)",
    params(("attempt_id" = i64, Path, description = "Attempt id")),
    request_body = CompleteRequest,
    responses((status = 200, description = "Recorded", body = Done), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn complete(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(attempt_id): ApiPath<i64>,
    ApiJson(request): ApiJson<CompleteRequest>,
) -> ApiResult<Json<Done>> {
    own(&kernel, &caller, &[attempt_id]).await?;
    kernel
        .complete(
            attempt_id,
            &proof(&request.lease_token, request.epoch),
            request.output,
        )
        .await?;
    Ok(Json(Done {
        attempt_id,
        state: "succeeded".to_string(),
    }))
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub lease_token: String,
    pub epoch: i64,
    pub error: TaskFailure,
}

#[utoipa::path(
    post,
    path = "/api/v1/leases/{attempt_id}/fail",
    tag = "worker protocol",
    summary = "Fail an attempt; `retryable: false` dead-letters at once",
    params(("attempt_id" = i64, Path, description = "Attempt id")),
    request_body = FailRequest,
    responses((status = 200, description = "What became of the task", body = FailOutcome), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn fail(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(attempt_id): ApiPath<i64>,
    ApiJson(request): ApiJson<FailRequest>,
) -> ApiResult<Json<FailOutcome>> {
    own(&kernel, &caller, &[attempt_id]).await?;
    Ok(Json(
        kernel
            .fail(
                attempt_id,
                &proof(&request.lease_token, request.epoch),
                &request.error,
            )
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/leases/{attempt_id}/release",
    tag = "worker protocol",
    summary = "Give a lease back unfinished (worker shutting down)",
    params(("attempt_id" = i64, Path, description = "Attempt id")),
    request_body = LeaseProof,
    responses((status = 200, description = "Released", body = Done), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn release(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(attempt_id): ApiPath<i64>,
    ApiJson(proof): ApiJson<LeaseProof>,
) -> ApiResult<Json<Done>> {
    own(&kernel, &caller, &[attempt_id]).await?;
    kernel.release(attempt_id, &proof).await?;
    Ok(Json(Done {
        attempt_id,
        state: "released".to_string(),
    }))
}

/// The pair a request body carries at its top level.
fn proof(lease_token: &str, epoch: i64) -> LeaseProof {
    LeaseProof {
        lease_token: lease_token.to_string(),
        epoch,
    }
}

/// One lease of a batch request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRef {
    pub attempt_id: i64,
    pub lease_token: String,
    pub epoch: i64,
    /// Only read by batch complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub items: Vec<LeaseRef>,
}

/// Per-item result of a batch: exactly one of `ok` / `error` is set.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemResult<T> {
    pub attempt_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchResponse<T> {
    pub results: Vec<ItemResult<T>>,
}

/// Most leases one batch call may carry.
pub const MAX_BATCH: usize = 1_000;

fn check_batch(items: &[LeaseRef]) -> ApiResult<()> {
    if items.len() > MAX_BATCH {
        return Err(ApiError::invalid(format!(
            "a batch carries at most {MAX_BATCH} items, got {}",
            items.len()
        )));
    }
    Ok(())
}

fn item_results<T>(
    ids: impl Iterator<Item = i64>,
    results: Vec<kernel::Result<T>>,
) -> BatchResponse<T> {
    BatchResponse {
        results: ids
            .zip(results)
            .map(|(attempt_id, result)| match result {
                Ok(value) => ItemResult {
                    attempt_id,
                    ok: Some(value),
                    error: None,
                },
                Err(err) => ItemResult {
                    attempt_id,
                    ok: None,
                    error: Some(ApiError::from(err).body),
                },
            })
            .collect(),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/leases/heartbeat",
    tag = "worker protocol",
    summary = "Renew many leases in one call; results per item",
    request_body = BatchRequest,
    responses((status = 200, description = "Per-item results", body = BatchResponse<HeartbeatOutcome>), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn heartbeat_batch(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiJson(request): ApiJson<BatchRequest>,
) -> ApiResult<Json<BatchResponse<HeartbeatOutcome>>> {
    let ids: Vec<i64> = request.items.iter().map(|i| i.attempt_id).collect();
    own(&kernel, &caller, &ids).await?;
    check_batch(&request.items)?;
    let leases: Vec<(i64, LeaseProof)> = request
        .items
        .into_iter()
        .map(|item| (item.attempt_id, proof(&item.lease_token, item.epoch)))
        .collect();
    let results = kernel.heartbeat_many(&leases).await?;
    Ok(Json(item_results(
        leases.iter().map(|(id, _)| *id),
        results,
    )))
}

#[utoipa::path(
    post,
    path = "/api/v1/leases/complete",
    tag = "worker protocol",
    summary = "Complete many attempts in one call; results per item",
    request_body = BatchRequest,
    responses((status = 200, description = "Per-item results", body = BatchResponse<Done>), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn complete_batch(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiJson(request): ApiJson<BatchRequest>,
) -> ApiResult<Json<BatchResponse<Done>>> {
    let ids: Vec<i64> = request.items.iter().map(|i| i.attempt_id).collect();
    own(&kernel, &caller, &ids).await?;
    check_batch(&request.items)?;
    let completions = request
        .items
        .into_iter()
        .map(|item| Completion {
            attempt_id: item.attempt_id,
            proof: proof(&item.lease_token, item.epoch),
            output: item.output,
        })
        .collect();
    let results = kernel
        .complete_many(completions)
        .await?
        .into_iter()
        .zip(&ids)
        .map(|(result, &attempt_id)| {
            result.map(|()| Done {
                attempt_id,
                state: "succeeded".to_string(),
            })
        })
        .collect();
    Ok(Json(item_results(ids.into_iter(), results)))
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogRequest {
    pub lease_token: String,
    pub epoch: i64,
    pub lines: Vec<NewLogLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Appended {
    pub appended: usize,
}

#[utoipa::path(
    post,
    path = "/api/v1/leases/{attempt_id}/log",
    tag = "worker protocol",
    summary = "Append lines to an attempt's log",
    params(("attempt_id" = i64, Path, description = "Attempt id")),
    request_body = LogRequest,
    responses((status = 200, description = "Lines stored", body = Appended), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn append_log(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(attempt_id): ApiPath<i64>,
    ApiJson(request): ApiJson<LogRequest>,
) -> ApiResult<Json<Appended>> {
    own(&kernel, &caller, &[attempt_id]).await?;
    let appended = kernel
        .append_attempt_log(
            attempt_id,
            &proof(&request.lease_token, request.epoch),
            &request.lines,
        )
        .await?;
    Ok(Json(Appended { appended }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogPage {
    pub items: Vec<LogLine>,
    /// Ask for lines after this id to continue tailing.
    pub next_after: i64,
}

#[utoipa::path(
    get,
    path = "/api/v1/attempts/{attempt_id}/log",
    tag = "worker protocol",
    summary = "Read an attempt's log after a line id",
    params(("attempt_id" = i64, Path, description = "Attempt id"), LogQuery),
    responses((status = 200, description = "Log lines", body = LogPage), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn read_log(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(attempt_id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> ApiResult<Json<LogPage>> {
    caller.require(Scope::RunsRead)?;
    let owners = kernel.attempt_owners(&[attempt_id]).await?;
    match owners.first() {
        Some(owner) => caller.require_tenant(&owner.tenant, "attempt", attempt_id)?,
        None => return Err(kernel::KernelError::not_found("attempt", attempt_id).into()),
    }
    let limit = super::jobs::page_limit(query.limit.or(Some(500)))?;
    let items = kernel.attempt_log(attempt_id, query.after, limit).await?;
    let next_after = items.last().map_or(query.after, |line| line.id);
    Ok(Json(LogPage { items, next_after }))
}
