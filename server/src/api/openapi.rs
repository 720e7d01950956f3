//! The OpenAPI document of `/api/v1`, generated from the handlers'
//! `#[utoipa::path]` attributes and the wire types' schemas, served at
//! `/api/v1/openapi.json`. A test checks that every documented path is
//! routed, so the document cannot drift from the router unnoticed.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use super::{auth, console, dead_letter, events, fleet, jobs, leases, stream};
use crate::auth::Caller;
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard API",
        description = "Jobs (DAGs of tasks), the worker lease protocol, dead-letter, queues, nodes, quotas and the event log. Every failure answers {code, message, details}."
    ),
    paths(
        jobs::submit, jobs::list, jobs::detail, jobs::cancel, jobs::retry, jobs::retry_task,
        leases::claim, leases::heartbeat, leases::complete, leases::fail, leases::release,
        leases::heartbeat_batch, leases::complete_batch, leases::append_log, leases::read_log,
        fleet::register, fleet::list_nodes, fleet::node, fleet::drain, fleet::undrain, fleet::sign_off,
        fleet::list_queues, fleet::queue, fleet::pause, fleet::resume,
        fleet::list_quotas, fleet::set_quota,
        dead_letter::list, dead_letter::groups, dead_letter::entry, dead_letter::replay,
        dead_letter::resolve, dead_letter::replay_batch, dead_letter::resolve_batch,
        events::events, events::overview, stream::events_stream, stream::job_stream,
        auth::login, auth::logout, auth::me, auth::list_tokens, auth::create_token,
        auth::revoke_token, auth::list_users, auth::audit_export,
        console::search, console::cancel_batch, console::retry_batch, console::queue_health, console::export_quotas,
    ),
    tags(
        (name = "jobs", description = "Submit and steer jobs"),
        (name = "worker protocol", description = "What worker nodes speak: claim, heartbeat, complete, fail"),
        (name = "nodes", description = "The worker fleet"),
        (name = "queues", description = "Queues and their depth"),
        (name = "quotas", description = "Concurrency and start-rate limits"),
        (name = "dead-letter", description = "Tasks whose attempts are spent"),
        (name = "events", description = "The ordered event log"),
        (name = "auth", description = "Sign-in, sessions and API tokens. Send `Authorization: Bearer <token>`, or the session cookie plus `X-CSRF-Token` on state-changing requests"),
    ),
    modifiers(&Security),
    security(("bearer" = []), ("session" = []))
)]
pub struct ApiDoc;

/// How callers authenticate: an API or node token as a bearer token, or
/// the console's session cookie (with `X-CSRF-Token` on changes). Node
/// registration sends the enrollment secret in `X-Enrollment-Secret`.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::SESSION_COOKIE,
            ))),
        );
        components.add_security_scheme(
            "enrollment",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(
                super::fleet::ENROLLMENT_HEADER,
            ))),
        );
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

async fn document(_caller: Caller) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
