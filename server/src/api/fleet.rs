//! Worker nodes, queues and quotas: registering and draining nodes, pausing
//! queues, reading and setting quotas.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use kernel::model::{ErrorBody, Scope};
use kernel::model::{NewNode, Node, Queue, Quota, QuotaLimits, QuotaScope};
use kernel::Kernel;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath};
use crate::auth::{Caller, ClientAddr};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/nodes", get(list_nodes))
        .route("/nodes/register", post(register))
        .route("/nodes/{id}", get(node))
        .route("/nodes/{id}/drain", post(drain))
        .route("/nodes/{id}/undrain", post(undrain))
        .route("/nodes/{id}/offline", post(sign_off))
        .route("/queues", get(list_queues))
        .route("/queues/{name}", get(queue))
        .route("/queues/{name}/pause", post(pause))
        .route("/queues/{name}/resume", post(resume))
        .route("/quotas", get(list_quotas))
        .route("/quotas/{scope}/{name}", put(set_quota))
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Registered {
    pub node_id: i64,
    pub node: Node,
    /// The node token: send it as `Authorization: Bearer` on the lease
    /// protocol. Shown this once.
    pub token: String,
    /// How long a lease lasts without a heartbeat (the server's
    /// `--lease-ms`): renew well within it.
    pub lease_ms: i64,
}

#[utoipa::path(
    post,
    path = "/api/v1/nodes/register",
    tag = "nodes",
    summary = "Register (or re-register by name) a worker node",
    request_body = NewNode,
    responses((status = 201, description = "Registered", body = Registered), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    caller: Option<Caller>,
    ClientAddr(from): ClientAddr,
    headers: HeaderMap,
    ApiJson(node): ApiJson<NewNode>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    // The secret is guessed at no faster than a password is.
    let secret_given = headers.contains_key(ENROLLMENT_HEADER);
    if secret_given {
        if let Err(wait) = state.auth.enrollment_allowed(from.as_deref()) {
            return Err(ApiError::rate_limited(
                "wrong enrollment secrets from this address",
                wait,
            ));
        }
    }
    let enrolled_by = match (enrollment_ok(&state, &headers), caller) {
        (true, _) => "enrollment".to_string(),
        (false, Some(caller)) => {
            caller.require_identity_admin()?;
            caller.0.actor()
        }
        (false, None) => {
            if secret_given {
                state.auth.enrollment_failed(from.as_deref());
            }
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("enroll with the `{ENROLLMENT_HEADER}` header (the server's enrollment secret) or an admin token"),
            ));
        }
    };
    // A serve process's embedded pool is not a remote worker's to take
    // over (its leases, its drain), nor to pose as.
    if node.labels.contains_key(EMBEDDED_LABEL) {
        return Err(ApiError::invalid(format!(
            "the label {EMBEDDED_LABEL:?} is kept for serve's embedded worker pool"
        )));
    }
    let taken = state.kernel.list_nodes().await?;
    if taken
        .iter()
        .any(|n| n.name == node.name && n.labels.contains_key(EMBEDDED_LABEL))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the node name {:?} is a serve process's embedded worker pool: pick another",
                node.name
            ),
        ));
    }
    let enrollment = state.kernel.enroll_node(&node, &enrolled_by).await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            node_id: enrollment.node.id,
            node: enrollment.node,
            token: enrollment.token,
            lease_ms: state.kernel.config().lease_ms,
        }),
    ))
}

/// The label serve's embedded worker pool registers with.
pub const EMBEDDED_LABEL: &str = "embedded";

/// The header a node sends the enrollment secret in.
pub const ENROLLMENT_HEADER: &str = "x-enrollment-secret";

fn enrollment_ok(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(expected) = state.auth.settings().enrollment_secret.as_deref() else {
        return false;
    };
    headers
        .get(ENROLLMENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| crate::auth::constant_time_eq(given.as_bytes(), expected.as_bytes()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Items<T> {
    items: Vec<T>,
}

#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    tag = "nodes",
    summary = "Every worker node",
    responses((status = 200, description = "Nodes", body = Items<Node>), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn list_nodes(
    State(kernel): State<Kernel>,
    caller: Caller,
) -> ApiResult<Json<Items<Node>>> {
    caller.require(Scope::RunsRead)?;
    Ok(Json(Items {
        items: kernel.list_nodes().await?,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/nodes/{id}",
    tag = "nodes",
    summary = "One worker node",
    params(("id" = i64, Path, description = "Node id")),
    responses((status = 200, description = "The node", body = Node), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn node(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Node>> {
    caller.require(Scope::RunsRead)?;
    Ok(Json(kernel.get_node(id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/nodes/{id}/drain",
    tag = "nodes",
    summary = "Drain a node: no new leases, running ones finish",
    params(("id" = i64, Path, description = "Node id")),
    responses((status = 200, description = "The node", body = Node), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn drain(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Node>> {
    caller.require(Scope::RunsManage)?;
    caller.require_all_tenants("draining a node")?;
    Ok(Json(kernel.drain_node(id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/nodes/{id}/offline",
    tag = "nodes",
    summary = "A worker signs its node off as it stops (node token of that node): offline at once, not after a minute without heartbeats; a draining node stays draining",
    params(("id" = i64, Path, description = "Node id")),
    responses((status = 200, description = "The node", body = Node), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn sign_off(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Node>> {
    if caller.node()? != id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("a node token signs off its own node only, not node {id}"),
        ));
    }
    Ok(Json(kernel.sign_off_node(id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/nodes/{id}/undrain",
    tag = "nodes",
    summary = "End a drain",
    params(("id" = i64, Path, description = "Node id")),
    responses((status = 200, description = "The node", body = Node), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn undrain(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Node>> {
    caller.require(Scope::RunsManage)?;
    caller.require_all_tenants("ending a drain")?;
    Ok(Json(kernel.undrain_node(id).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/queues",
    tag = "queues",
    summary = "Every queue with its depth",
    responses((status = 200, description = "Queues", body = Items<Queue>), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn list_queues(
    State(kernel): State<Kernel>,
    caller: Caller,
) -> ApiResult<Json<Items<Queue>>> {
    caller.require(Scope::RunsRead)?;
    Ok(Json(Items {
        items: kernel
            .list_queues(caller.tenant_restriction().as_deref())
            .await?,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/queues/{name}",
    tag = "queues",
    summary = "One queue",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, description = "The queue", body = Queue), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn queue(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Queue>> {
    caller.require(Scope::RunsRead)?;
    Ok(Json(
        kernel
            .get_queue(&name, caller.tenant_restriction().as_deref())
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/queues/{name}/pause",
    tag = "queues",
    summary = "Pause a queue: its tasks are not leased",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, description = "The queue", body = Queue), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn pause(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Queue>> {
    caller.require(Scope::RunsManage)?;
    caller.require_all_tenants("pausing a queue")?;
    Ok(Json(kernel.pause_queue(&name).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/queues/{name}/resume",
    tag = "queues",
    summary = "Resume a paused queue",
    params(("name" = String, Path, description = "Queue name")),
    responses((status = 200, description = "The queue", body = Queue), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn resume(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Queue>> {
    caller.require(Scope::RunsManage)?;
    caller.require_all_tenants("resuming a queue")?;
    Ok(Json(kernel.resume_queue(&name).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/quotas",
    tag = "quotas",
    summary = "Every quota with its live usage",
    responses((status = 200, description = "Quotas", body = Items<Quota>), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn list_quotas(
    State(kernel): State<Kernel>,
    caller: Caller,
) -> ApiResult<Json<Items<Quota>>> {
    caller.require(Scope::RunsRead)?;
    Ok(Json(Items {
        items: kernel
            .list_quotas()
            .await?
            .into_iter()
            .filter(|q| q.scope == QuotaScope::Queue || caller.0.sees_tenant(&q.name))
            .collect(),
    }))
}

/// The body of `PUT /api/v1/quotas/{scope}/{name}`: the limits, `null` (or
/// left out) for unlimited. Its own type, as `QuotaLimits` is also part of
/// the answers (flattened), where unknown fields cannot be refused: a
/// misspelled limit here would otherwise read as "unlimited".
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaRequest {
    #[serde(default)]
    max_concurrent: Option<i64>,
    #[serde(default)]
    max_starts_per_minute: Option<i64>,
}

impl From<QuotaRequest> for QuotaLimits {
    fn from(r: QuotaRequest) -> QuotaLimits {
        QuotaLimits {
            max_concurrent: r.max_concurrent,
            max_starts_per_minute: r.max_starts_per_minute,
        }
    }
}

/// Sets (or, with both limits null, removes) the quota of a tenant or queue.
/// Answers the quota as now stored, or `204` when it was removed.
#[utoipa::path(
    put,
    path = "/api/v1/quotas/{scope}/{name}",
    tag = "quotas",
    summary = "Set a tenant or queue quota; both limits null removes it",
    params(("scope" = String, Path, description = "tenant or queue"), ("name" = String, Path, description = "Tenant or queue name")),
    request_body = QuotaRequest,
    responses((status = 200, description = "The quota as stored", body = Quota), (status = 204, description = "Removed"), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn set_quota(
    State(kernel): State<Kernel>,
    caller: Caller,
    ApiPath((scope, name)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<QuotaRequest>,
) -> ApiResult<axum::response::Response> {
    let limits = QuotaLimits::from(request);
    caller.require(Scope::RunsManage)?;
    use axum::response::IntoResponse;
    let scope: QuotaScope = scope.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("quota scope {scope:?} does not exist: use tenant or queue"),
        )
    })?;
    match scope {
        QuotaScope::Tenant => caller.require_tenant(&name, "tenant", &name)?,
        QuotaScope::Queue => caller.require_all_tenants("a queue quota")?,
    }
    Ok(match kernel.set_quota(scope, &name, &limits).await? {
        Some(quota) => Json(quota).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}
