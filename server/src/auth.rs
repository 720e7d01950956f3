//! Who is calling, and whether they may (SPEC §6).
//!
//! One middleware, [`authenticate`], runs in front of everything. It turns
//! the request's credentials — a bearer token (API or node token) or the
//! session cookie — into a [`Principal`], then applies the rules that do not
//! depend on the endpoint:
//!
//! - open paths (`/healthz`, `/readyz`, the login page and API, node
//!   enrollment, static assets) pass as they are;
//! - any other API request without valid credentials gets `401` with the
//!   typed error body; a console page redirects to `/login?next=…` (the
//!   browser keeps the fragment across the redirect);
//! - a cookie-authenticated request that changes state (any method but
//!   GET/HEAD/OPTIONS) must carry the session's `X-CSRF-Token`.
//!
//! Handlers then ask the [`Caller`] extractor for the scope and tenant they
//! need. Every state-changing API call is appended to the event log as an
//! `audit.*` event with who, what, target, from where and the outcome.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{
    ConnectInfo, FromRequestParts, MatchedPath, OptionalFromRequestParts, OriginalUri, Request,
    State,
};
use axum::http::header::{AUTHORIZATION, COOKIE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kernel::model::{Principal, PrincipalKind, Scope, TenantGrant, TenantSelection, ALL_TENANTS};
use kernel::{AuditRecord, Kernel, SessionPolicy, SessionView};

use crate::api::error::{ApiError, ApiResult};
use crate::AppState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "sy_session";
/// The header carrying the session's CSRF token (SPEC §9).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Failed logins allowed per account, and per client address, within
/// [`LOGIN_WINDOW`] before further attempts are refused.
pub const LOGIN_FAILURES_PER_ACCOUNT: usize = 5;
pub const LOGIN_FAILURES_PER_ADDRESS: usize = 20;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Wrong enrollment secrets allowed per client address within
/// [`LOGIN_WINDOW`] before that address may not enroll for a while.
pub const ENROLLMENT_FAILURES_PER_ADDRESS: usize = 20;

/// Settings of identity and access.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub session: SessionPolicy,
    /// Mark the session cookie `Secure` (served over TLS, or behind a proxy
    /// that terminates TLS).
    pub secure_cookies: bool,
    /// The shared secret worker nodes enroll with; without it, remote
    /// nodes cannot enroll (the embedded pool still works).
    pub enrollment_secret: Option<String>,
}

/// Identity and access state shared by every request.
#[derive(Clone, Debug)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

#[derive(Debug)]
struct AuthInner {
    settings: AuthSettings,
    limiter: Mutex<LoginLimiter>,
}

impl Auth {
    pub fn new(settings: AuthSettings) -> Auth {
        Auth {
            inner: Arc::new(AuthInner {
                settings,
                limiter: Mutex::new(LoginLimiter::default()),
            }),
        }
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.inner.settings
    }

    /// `Err(seconds to wait)` when this account or address has failed too
    /// often lately.
    pub fn login_allowed(&self, username: &str, addr: Option<&str>) -> Result<(), u64> {
        self.inner
            .limiter
            .lock()
            .expect("limiter lock")
            .check(username, addr, Instant::now())
    }

    pub fn login_failed(&self, username: &str, addr: Option<&str>) {
        self.inner
            .limiter
            .lock()
            .expect("limiter lock")
            .fail(username, addr, Instant::now());
    }

    /// `Err(seconds to wait)` when this address has sent too many wrong
    /// enrollment secrets lately (never without an address).
    pub fn enrollment_allowed(&self, addr: Option<&str>) -> Result<(), u64> {
        let Some(addr) = addr else { return Ok(()) };
        let mut limiter = self.inner.limiter.lock().expect("limiter lock");
        let now = Instant::now();
        let failures = window(&mut limiter.enrollments, addr, now);
        match blocked_for(failures, ENROLLMENT_FAILURES_PER_ADDRESS, now) {
            0 => Ok(()),
            wait => Err(wait),
        }
    }

    pub fn enrollment_failed(&self, addr: Option<&str>) {
        let Some(addr) = addr else { return };
        let mut limiter = self.inner.limiter.lock().expect("limiter lock");
        record_failure(&mut limiter.enrollments, addr, Instant::now());
    }

    pub fn login_succeeded(&self, username: &str) {
        self.inner
            .limiter
            .lock()
            .expect("limiter lock")
            .accounts
            .remove(&username.to_lowercase());
    }

    /// The `Set-Cookie` value that starts a session.
    pub fn session_cookie(&self, secret: &str) -> HeaderValue {
        let secure = if self.inner.settings.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        let max_age = self.inner.settings.session.absolute_ms / 1000;
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .expect("cookie value is ASCII")
    }

    /// The `Set-Cookie` value that ends a session in the browser.
    pub fn clear_cookie(&self) -> HeaderValue {
        HeaderValue::from_static("sy_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}

/// Failed logins in a sliding window, per account and per address, and
/// wrong enrollment secrets per address.
#[derive(Debug, Default)]
struct LoginLimiter {
    accounts: HashMap<String, VecDeque<Instant>>,
    addresses: HashMap<String, VecDeque<Instant>>,
    enrollments: HashMap<String, VecDeque<Instant>>,
}

impl LoginLimiter {
    fn check(&mut self, username: &str, addr: Option<&str>, now: Instant) -> Result<(), u64> {
        let account = window(&mut self.accounts, &username.to_lowercase(), now);
        let mut wait = blocked_for(account, LOGIN_FAILURES_PER_ACCOUNT, now);
        if let Some(addr) = addr {
            let address = window(&mut self.addresses, addr, now);
            wait = wait.max(blocked_for(address, LOGIN_FAILURES_PER_ADDRESS, now));
        }
        if wait > 0 {
            Err(wait)
        } else {
            Ok(())
        }
    }

    fn fail(&mut self, username: &str, addr: Option<&str>, now: Instant) {
        record_failure(&mut self.accounts, &username.to_lowercase(), now);
        if let Some(addr) = addr {
            record_failure(&mut self.addresses, addr, now);
        }
    }
}

/// Notes a failure of `key` at `now`, keeping memory bounded under a spray
/// of keys (usernames, addresses).
fn record_failure(map: &mut HashMap<String, VecDeque<Instant>>, key: &str, now: Instant) {
    window(map, key, now).push_back(now);
    if map.len() > 100_000 {
        map.retain(|_, v| !v.is_empty());
    }
}

/// The failures of `key` still inside the window.
fn window<'a>(
    map: &'a mut HashMap<String, VecDeque<Instant>>,
    key: &str,
    now: Instant,
) -> &'a mut VecDeque<Instant> {
    let entries = map.entry(key.to_string()).or_default();
    while entries
        .front()
        .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
    {
        entries.pop_front();
    }
    entries
}

/// Seconds until the oldest failure leaves the window, if at the limit.
fn blocked_for(failures: &VecDeque<Instant>, limit: usize, now: Instant) -> u64 {
    if failures.len() < limit {
        return 0;
    }
    let oldest = failures[failures.len() - limit];
    LOGIN_WINDOW
        .saturating_sub(now.duration_since(oldest))
        .as_secs()
        .max(1)
}

/// The caller of one request, as [`authenticate`] established it. Handlers
/// take it as an extractor; without credentials it rejects with `401`.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// The principal, if it holds `scope`; else `403 forbidden` naming it.
    pub fn require(&self, scope: Scope) -> ApiResult<&Principal> {
        if self.0.has(scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this action {}", scope.needed_for()),
            )
            .with_details(serde_json::json!({ "required_scope": scope })))
        }
    }

    /// `404` for a tenant the caller may not see: to them it does not exist.
    pub fn require_tenant(
        &self,
        tenant: &str,
        what: &'static str,
        id: impl ToString,
    ) -> ApiResult<()> {
        if self.0.sees_tenant(tenant) {
            Ok(())
        } else {
            Err(ApiError::from(kernel::KernelError::not_found(what, id)))
        }
    }

    /// The tenants a list may show (`None`: every tenant).
    pub fn tenant_restriction(&self) -> Option<Vec<String>> {
        self.0.tenants.restriction()
    }

    /// `403` unless the caller sees every tenant: for things every tenant
    /// shares (queues, nodes, queue quotas).
    pub fn require_all_tenants(&self, action: &str) -> ApiResult<()> {
        if self.0.tenants.is_all() {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{action} affects every tenant: it needs a grant of all tenants (in the console, with All tenants picked)"),
            ))
        }
    }

    /// `403` unless the caller manages identity: `admin` over every tenant
    /// (see [`Principal::manages_identity`]).
    pub fn require_identity_admin(&self) -> ApiResult<&Principal> {
        self.require(Scope::Admin)?;
        self.require_all_tenants("managing users, tokens and nodes")?;
        Ok(&self.0)
    }

    /// The node a node token speaks for; `403` for any other caller.
    pub fn node(&self) -> ApiResult<i64> {
        match (self.0.kind, self.0.node_id) {
            (PrincipalKind::Node, Some(id)) => Ok(id),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the lease protocol accepts node tokens only (enroll the node first)",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(unauthenticated)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned().map(Caller))
    }
}

/// The client's address, when known (see [`client_addr`]).
#[derive(Debug, Clone)]
pub struct ClientAddr(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.extensions)))
    }
}

pub fn unauthenticated() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "sign in, or send `Authorization: Bearer <token>`",
    )
}

/// The client address of a request, when the server was started with
/// connection info (tests driving the router directly have none).
pub fn client_addr(parts_ext: &axum::http::Extensions) -> Option<String> {
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// Paths anyone may reach.
fn is_open(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/login" | "/api/v1/auth/login" | "/api/v1/nodes/register"
    ) || is_asset(path)
}

/// The built site's files: the wasm, its JS and CSS, the favicon.
pub(crate) fn is_asset(path: &str) -> bool {
    path.starts_with("/pkg/") || path == "/favicon.svg" || path == "/favicon.ico"
}

/// Paths for programs (the API, and `/metrics` for scrapers): without
/// credentials they answer `401` with the typed body, not a redirect to
/// the sign-in page.
fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/metrics"
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The token of an `Authorization: Bearer <token>` header (the scheme's
/// name in any case, as RFC 9110 has it).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("sy_session="))
        .filter(|v| !v.is_empty())
}

/// What the request's credentials prove, with the credential itself.
enum Credentials {
    None,
    /// Presented but unknown, revoked or expired.
    Invalid,
    Bearer(Principal, Credential),
    Session(SessionView, Credential),
}

async fn credentials(kernel: &Kernel, auth: &Auth, headers: &HeaderMap) -> ApiResult<Credentials> {
    if let Some(secret) = bearer(headers) {
        return Ok(match kernel.token_principal(secret).await? {
            Some(p) => Credentials::Bearer(p, Credential::Bearer(secret.into())),
            None => Credentials::Invalid,
        });
    }
    if let Some(secret) = session_cookie(headers) {
        return Ok(
            match kernel.session(secret, auth.settings().session).await? {
                Some(s) => Credentials::Session(s, Credential::Session(secret.into())),
                None => Credentials::Invalid,
            },
        );
    }
    Ok(Credentials::None)
}

/// The credential a request was let in with, for an answer that lasts (a
/// live stream) to check again while it does: a revoked token, an ended
/// session or a changed grant ends it, as it would refuse the next request.
#[derive(Clone)]
pub struct Recheck {
    credential: Credential,
    /// The grant as it was (before the console's tenant pick narrowed it).
    scopes: Vec<Scope>,
    tenants: TenantGrant,
    policy: SessionPolicy,
}

#[derive(Clone)]
enum Credential {
    Bearer(String),
    Session(String),
}

impl Recheck {
    /// Whether the credential still grants what it did. A failed read
    /// counts as yes: the next check decides, and an outage of the
    /// database should not drop every stream.
    pub async fn still_holds(&self, kernel: &Kernel) -> bool {
        let now = match &self.credential {
            Credential::Bearer(secret) => kernel.token_principal(secret).await,
            Credential::Session(secret) => kernel
                .session_still_valid(secret, self.policy)
                .await
                .map(|s| s.map(|s| s.principal)),
        };
        match now {
            Ok(Some(p)) => p.scopes == self.scopes && p.tenants == self.tenants,
            Ok(None) => false,
            Err(_) => true,
        }
    }
}

/// The middleware described in the module documentation.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if is_asset(&path) || matches!(path.as_str(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let creds = match credentials(&state.kernel, &state.auth, req.headers()).await {
        Ok(c) => c,
        Err(err) => return err.into_response(),
    };
    let (principal, session, credential) = match creds {
        Credentials::Bearer(p, c) => (Some(p), None, Some(c)),
        Credentials::Session(s, c) => (Some(s.principal.clone()), Some(s), Some(c)),
        Credentials::None | Credentials::Invalid => (None, None, None),
    };
    if let (Some(credential), Some(p)) = (credential, &principal) {
        req.extensions_mut().insert(Recheck {
            credential,
            scopes: p.scopes.clone(),
            tenants: p.tenants.clone(),
            policy: state.auth.settings().session,
        });
    }
    let api = is_api(&path);
    if principal.is_none() && !is_open(&path) {
        if !api {
            return redirect_to_login(&req);
        }
        return refuse(&state.kernel, Attempted::of(&req), None, unauthenticated()).await;
    }
    if let Some(session) = &session {
        if changes_state(req.method()) && api && !csrf_matches(req.headers(), session) {
            let err = ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "this request needs the session's X-CSRF-Token header",
            );
            return refuse(&state.kernel, Attempted::of(&req), principal.as_ref(), err).await;
        }
    }
    let mut principal = principal;
    if let (Some(p), Some(_)) = (principal.as_mut(), &session) {
        let picked = tenant_cookie(req.headers());
        if !api {
            // A console page: the shell's tenant selector needs the choices.
            match tenant_selection(&state.kernel, p, &picked).await {
                Ok(selection) => {
                    req.extensions_mut().insert(selection);
                }
                Err(err) => return err.into_response(),
            }
        }
        narrow(p, &picked);
    }
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
    }
    if let Some(s) = session {
        req.extensions_mut().insert(s);
    }
    next.run(req).await
}

/// The cookie the console's tenant selector sets.
pub const TENANT_COOKIE: &str = "sy_tenants";

/// The tenants picked in the console (`sy_tenants=a,b`), if any.
fn tenant_cookie(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("sy_tenants="))
        .map(|list| {
            list.split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty() && t != ALL_TENANTS)
                .collect()
        })
        .unwrap_or_default()
}

/// Narrows a session's tenant grant to the tenants picked in the console:
/// a pick never widens a grant, and picking none (or only tenants outside
/// the grant) leaves the grant as it is.
fn narrow(principal: &mut Principal, picked: &[String]) {
    let kept: Vec<String> = picked
        .iter()
        .filter(|t| principal.sees_tenant(t))
        .cloned()
        .collect();
    if !kept.is_empty() {
        principal.tenants = TenantGrant(kept);
    }
}

async fn tenant_selection(
    kernel: &Kernel,
    principal: &Principal,
    picked: &[String],
) -> ApiResult<TenantSelection> {
    let available: Vec<String> = if principal.tenants.is_all() {
        kernel.list_tenants().await?
    } else {
        principal.tenants.0.clone()
    };
    Ok(TenantSelection {
        selected: picked
            .iter()
            .filter(|t| available.contains(t))
            .cloned()
            .collect(),
        available,
    })
}

/// What a refused request tried to do, taken from it before any `await`
/// (a request body is not `Sync`).
struct Attempted {
    changes_state: bool,
    path: String,
    from: Option<String>,
}

impl Attempted {
    fn of(req: &Request) -> Attempted {
        Attempted {
            changes_state: changes_state(req.method()),
            path: req.uri().path().to_string(),
            from: client_addr(req.extensions()),
        }
    }
}

/// Answers `err`, auditing the refusal when the request tried to change
/// something.
async fn refuse(
    kernel: &Kernel,
    attempted: Attempted,
    principal: Option<&Principal>,
    err: ApiError,
) -> Response {
    if attempted.changes_state {
        record(
            kernel,
            AuditRecord {
                action: action_name(None, &attempted.path),
                actor: principal
                    .map(Principal::actor)
                    .unwrap_or_else(|| "anonymous".into()),
                target: attempted.path,
                from: attempted.from,
                outcome: outcome(err.status).into(),
                status: Some(err.status.as_u16()),
                tenant: None,
            },
        )
        .await;
    }
    err.into_response()
}

/// Appends an `audit.*` event for every state-changing API request that
/// reached a route (who, what, target, from where, outcome). Installed as a
/// route layer of `/api/v1`, so the route's template names the action.
pub async fn audit(State(kernel): State<Kernel>, req: Request, next: Next) -> Response {
    // Inside the nested `/api/v1` router the URI has lost its prefix; the
    // original one names the target in full.
    let path = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().path(), |uri| uri.0.path())
        .to_string();
    // Login records itself (it knows the account); lease traffic is
    // recorded by the kernel's own `lease.*` events.
    if !changes_state(req.method()) || is_worker_traffic(&path) || path == "/api/v1/auth/login" {
        return next.run(req).await;
    }
    let action = action_name(req.extensions().get::<MatchedPath>(), &path);
    let actor = req
        .extensions()
        .get::<Principal>()
        .map(Principal::actor)
        .unwrap_or_else(|| "anonymous".into());
    let from = client_addr(req.extensions());
    let response = next.run(req).await;
    let status = response.status();
    record(
        &kernel,
        AuditRecord {
            action,
            actor,
            target: path,
            from,
            outcome: outcome(status).into(),
            status: Some(status.as_u16()),
            tenant: None,
        },
    )
    .await;
    response
}

fn csrf_matches(headers: &HeaderMap, session: &SessionView) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), session.csrf_token.as_bytes()))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lease traffic is recorded by the kernel's own `lease.*` events; auditing
/// every heartbeat would drown the log.
fn is_worker_traffic(path: &str) -> bool {
    path.starts_with("/api/v1/leases/")
}

/// `POST /api/v1/jobs/{id}/cancel` → `jobs.cancel` (from the route's
/// template; without one, from the path with its numbers left out).
fn action_name(matched: Option<&MatchedPath>, path: &str) -> String {
    let template = matched.map_or(path, MatchedPath::as_str);
    let rest = template
        .strip_prefix("/api/v1/")
        .or_else(|| template.strip_prefix("/api/"))
        .unwrap_or(template);
    let name = rest
        .split('/')
        .filter(|seg| {
            !seg.is_empty() && !seg.starts_with('{') && !seg.bytes().all(|b| b.is_ascii_digit())
        })
        .collect::<Vec<_>>()
        .join(".");
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

pub fn outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=399 => "ok",
        401 | 403 => "denied",
        429 => "rate_limited",
        400..=499 => "rejected",
        _ => "failed",
    }
}

/// Appends an audit record; a failure to do so is logged, never hidden.
pub async fn record(kernel: &Kernel, record: AuditRecord) {
    if let Err(err) = kernel.record_audit(record).await {
        tracing::error!(error = %err, "could not append an audit record");
    }
}

/// `303 /login?next=<path and query>`. The browser carries the fragment
/// over to the login page by itself, which hands it back after sign-in.
fn redirect_to_login(req: &Request) -> Response {
    let next = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/ops");
    let location = format!("/login?next={}", encode_component(next));
    (
        StatusCode::SEE_OTHER,
        [(
            LOCATION,
            HeaderValue::from_str(&location).expect("encoded location is ASCII"),
        )],
    )
        .into_response()
}

/// Percent-encodes everything but unreserved characters.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_blocks_after_the_limit_and_forgets_after_the_window() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..LOGIN_FAILURES_PER_ACCOUNT {
            assert!(l.check("Alice", Some("10.0.0.1"), t0).is_ok());
            l.fail("alice", Some("10.0.0.1"), t0);
        }
        assert!(l.check("ALICE", Some("10.0.0.2"), t0).is_err());
        assert!(l.check("bob", Some("10.0.0.1"), t0).is_ok());
        assert!(l.check("alice", None, t0 + LOGIN_WINDOW).is_ok());
    }

    #[test]
    fn components_are_encoded() {
        assert_eq!(
            encode_component("/ops/x?a=1&b=c d"),
            "%2Fops%2Fx%3Fa%3D1%26b%3Dc%20d"
        );
    }
}
