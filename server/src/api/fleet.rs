//! Worker nodes, queues and quotas: registering and draining nodes, pausing
//! queues, reading and setting quotas.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use kernel::model::{NewNode, Node, Queue, Quota, QuotaLimits, QuotaScope};
use kernel::Kernel;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/nodes", get(list_nodes))
        .route("/nodes/register", post(register))
        .route("/nodes/{id}", get(node))
        .route("/nodes/{id}/drain", post(drain))
        .route("/nodes/{id}/undrain", post(undrain))
        .route("/queues", get(list_queues))
        .route("/queues/{name}", get(queue))
        .route("/queues/{name}/pause", post(pause))
        .route("/queues/{name}/resume", post(resume))
        .route("/quotas", get(list_quotas))
        .route("/quotas/{scope}/{name}", put(set_quota))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    pub node_id: i64,
    pub node: Node,
}

async fn register(
    State(kernel): State<Kernel>,
    ApiJson(node): ApiJson<NewNode>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    let node = kernel.register_node(&node).await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            node_id: node.id,
            node,
        }),
    ))
}

#[derive(Debug, Serialize)]
struct Items<T> {
    items: Vec<T>,
}

async fn list_nodes(State(kernel): State<Kernel>) -> ApiResult<Json<Items<Node>>> {
    Ok(Json(Items {
        items: kernel.list_nodes().await?,
    }))
}

async fn node(State(kernel): State<Kernel>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Node>> {
    Ok(Json(kernel.get_node(id).await?))
}

async fn drain(State(kernel): State<Kernel>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Node>> {
    Ok(Json(kernel.drain_node(id).await?))
}

async fn undrain(State(kernel): State<Kernel>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Node>> {
    Ok(Json(kernel.undrain_node(id).await?))
}

async fn list_queues(State(kernel): State<Kernel>) -> ApiResult<Json<Items<Queue>>> {
    Ok(Json(Items {
        items: kernel.list_queues().await?,
    }))
}

async fn queue(
    State(kernel): State<Kernel>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Queue>> {
    Ok(Json(kernel.get_queue(&name).await?))
}

async fn pause(
    State(kernel): State<Kernel>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Queue>> {
    Ok(Json(kernel.pause_queue(&name).await?))
}

async fn resume(
    State(kernel): State<Kernel>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Queue>> {
    Ok(Json(kernel.resume_queue(&name).await?))
}

async fn list_quotas(State(kernel): State<Kernel>) -> ApiResult<Json<Items<Quota>>> {
    Ok(Json(Items {
        items: kernel.list_quotas().await?,
    }))
}

/// Sets (or, with both limits null, removes) the quota of a tenant or queue.
/// Answers the quota as now stored, or `204` when it was removed.
async fn set_quota(
    State(kernel): State<Kernel>,
    ApiPath((scope, name)): ApiPath<(String, String)>,
    ApiJson(limits): ApiJson<QuotaLimits>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let scope: QuotaScope = scope.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("quota scope {scope:?} does not exist: use tenant or queue"),
        )
    })?;
    Ok(match kernel.set_quota(scope, &name, &limits).await? {
        Some(quota) => Json(quota).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}
