//! Sign-in, sign-out, who am I, and API tokens (SPEC §6, §9).

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use kernel::model::{
    ApiToken, CreatedToken, ErrorBody, LoginRequest, LoginResponse, NewToken, Principal, Scope,
    User,
};
use kernel::{AuditRecord, SessionView};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath};
use crate::auth::{record, Caller, ClientAddr};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/auth/tokens", get(list_tokens).post(create_token))
        .route("/auth/tokens/{id}/revoke", post(revoke_token))
        .route("/auth/users", get(list_users))
        .route("/audit", get(audit_export))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    summary = "Sign in: sets the session cookie and returns the CSRF token",
    request_body = LoginRequest,
    responses((status = 200, description = "Signed in", body = LoginResponse), (status = "default", description = "401 invalid_credentials, 429 rate_limited, or another typed error", body = ErrorBody))
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(from): ClientAddr,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<(HeaderMap, Json<LoginResponse>)> {
    let audit = |outcome: &str, status: StatusCode| AuditRecord {
        action: "auth.login".into(),
        actor: format!("user:{}", body.username),
        target: body.username.clone(),
        from: from.clone(),
        outcome: outcome.into(),
        status: Some(status.as_u16()),
        tenant: None,
    };
    if let Err(wait_s) = state.auth.login_allowed(&body.username, from.as_deref()) {
        let err = ApiError::rate_limited("failed sign-ins", wait_s);
        record(&state.kernel, audit("rate_limited", err.status)).await;
        return Err(err);
    }
    let Some(user) = state
        .kernel
        .verify_login(&body.username, &body.password)
        .await?
    else {
        state.auth.login_failed(&body.username, from.as_deref());
        let status = StatusCode::UNAUTHORIZED;
        record(&state.kernel, audit("denied", status)).await;
        return Err(ApiError::new(
            status,
            "invalid_credentials",
            "wrong username or password",
        ));
    };
    state.auth.login_succeeded(&body.username);
    let (secret, csrf_token) = state
        .kernel
        .create_session(&user, from.as_deref(), state.auth.settings().session)
        .await?;
    record(&state.kernel, audit("ok", StatusCode::OK)).await;
    let mut headers = HeaderMap::new();
    headers.insert(SET_COOKIE, state.auth.session_cookie(&secret));
    let principal = Principal {
        kind: kernel::model::PrincipalKind::User,
        id: user.id,
        name: user.username,
        scopes: user.scopes,
        tenants: user.tenants,
        node_id: None,
    };
    Ok((
        headers,
        Json(LoginResponse {
            csrf_token,
            principal,
        }),
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    summary = "Sign out: ends the session (needs X-CSRF-Token)",
    responses((status = 204, description = "Signed out"), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    _caller: Caller,
    session: Option<Extension<SessionView>>,
) -> ApiResult<(StatusCode, HeaderMap)> {
    let Some(Extension(session)) = session else {
        return Err(ApiError::bad_request(
            "only a console session can sign out; revoke a token instead",
        ));
    };
    state.kernel.revoke_session(session.session_id).await?;
    let mut headers = HeaderMap::new();
    headers.insert(SET_COOKIE, state.auth.clear_cookie());
    Ok((StatusCode::NO_CONTENT, headers))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Me {
    pub principal: Principal,
    /// The session's CSRF token (console sessions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    summary = "Who the credentials belong to, with their scopes and tenants",
    responses((status = 200, description = "The caller", body = Me), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn me(caller: Caller, session: Option<Extension<SessionView>>) -> Json<Me> {
    Json(Me {
        principal: caller.0,
        csrf_token: session.map(|Extension(s)| s.csrf_token),
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Tokens {
    items: Vec<ApiToken>,
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/tokens",
    tag = "auth",
    summary = "Every API and node token (admin); secrets are never listed",
    responses((status = 200, description = "Tokens", body = Tokens), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Tokens>> {
    caller.require_identity_admin()?;
    Ok(Json(Tokens {
        items: state.kernel.list_tokens().await?,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/tokens",
    tag = "auth",
    summary = "Create an API token (admin); its secret is returned this once",
    request_body = NewToken,
    responses((status = 201, description = "Created", body = CreatedToken), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    caller.require_identity_admin()?;
    let created = state.kernel.create_token(&new, &caller.0.actor()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/tokens/{id}/revoke",
    tag = "auth",
    summary = "Revoke a token (admin): refused from its next request on",
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 200, description = "Revoked", body = ApiToken), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ApiToken>> {
    caller.require_identity_admin()?;
    Ok(Json(state.kernel.revoke_token(id).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Users {
    items: Vec<User>,
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/users",
    tag = "auth",
    summary = "Console users (admin)",
    responses((status = 200, description = "Users", body = Users), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Users>> {
    caller.require_identity_admin()?;
    Ok(Json(Users {
        items: state.kernel.list_users().await?,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Records after this event seq.
    #[serde(default)]
    after: i64,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// Events scanned by one export call; `next_after` continues from there.
const AUDIT_SCAN: i64 = 10_000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPage {
    items: Vec<kernel::model::Event>,
    /// Ask again with `after` = this to continue.
    next_after: i64,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "auth",
    summary = "Export audit records (`audit.*` events) as JSON or CSV (downloads.read, every tenant)",
    params(AuditQuery),
    responses((status = 200, description = "Audit records after `after`", body = AuditPage), (status = "default", description = "Any failure: a typed error body", body = ErrorBody))
)]
pub(crate) async fn audit_export(
    State(state): State<AppState>,
    caller: Caller,
    super::extract::ApiQuery(query): super::extract::ApiQuery<AuditQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    caller.require(Scope::DownloadsRead)?;
    caller.require_all_tenants("the audit log")?;
    let mut after = query.after.max(0);
    let mut items = Vec::new();
    let mut scanned = 0;
    while scanned < AUDIT_SCAN {
        let page = state.kernel.events_after(after, 1_000).await?;
        scanned += page.items.len() as i64;
        let done = page.items.len() < 1_000;
        after = page.next_after;
        items.extend(
            page.items
                .into_iter()
                .filter(|e| e.event_type.starts_with("audit.")),
        );
        if done {
            break;
        }
    }
    match query.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(AuditPage {
            items,
            next_after: after,
        })
        .into_response()),
        "csv" => {
            let mut csv = String::from("seq,ts,action,actor,target,from,outcome,status\n");
            for e in &items {
                let field = |k: &str| {
                    let v = e.data.get(k).map_or(String::new(), |v| {
                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                    });
                    let v = if v == "null" { String::new() } else { v };
                    format!("\"{}\"", v.replace('"', "\"\""))
                };
                csv.push_str(&format!(
                    "{},{},{},{},{},{},{},{}\n",
                    e.seq,
                    e.ts,
                    field("action"),
                    field("actor"),
                    field("target"),
                    field("from"),
                    field("outcome"),
                    field("status")
                ));
            }
            Ok((
                [
                    (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        axum::http::header::CONTENT_DISPOSITION,
                        "attachment; filename=\"switchyard-audit.csv\"",
                    ),
                ],
                csv,
            )
                .into_response())
        }
        other => Err(ApiError::invalid_query(format!(
            "format must be json or csv, got {other:?}"
        ))),
    }
}
