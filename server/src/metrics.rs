//! `GET /metrics`: the kernel's figures in the Prometheus text format.
//!
//! Protected like the API (a bearer token or a session with `runs.read`);
//! a scraper uses an API token. Figures are the caller's tenants' only.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use kernel::model::Scope;
use kernel::Kernel;

use crate::api::error::ApiResult;
use crate::auth::Caller;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(kernel): State<Kernel>, caller: Caller) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::RunsRead)?;
    let o = kernel
        .overview(caller.tenant_restriction().as_deref())
        .await?;
    let mut out = String::new();
    out.push_str("# HELP switchyard_jobs Jobs by state.\n# TYPE switchyard_jobs gauge\n");
    for (state, n) in &o.jobs_by_state {
        out.push_str(&format!("switchyard_jobs{{state=\"{state}\"}} {n}\n"));
    }
    out.push_str(
        "# HELP switchyard_nodes Worker nodes by status.\n# TYPE switchyard_nodes gauge\n",
    );
    for (status, n) in &o.nodes_by_status {
        out.push_str(&format!("switchyard_nodes{{status=\"{status}\"}} {n}\n"));
    }
    for (name, help, value) in [
        (
            "switchyard_active_leases",
            "Leases held now.",
            o.active_leases,
        ),
        (
            "switchyard_stale_leases",
            "Active leases past their expiry, not yet recovered by the sweep.",
            o.stale_leases,
        ),
        (
            "switchyard_dead_letter_open",
            "Open dead-letter entries.",
            o.dead_letter_open,
        ),
        (
            "switchyard_last_event_seq",
            "Sequence number of the newest event.",
            o.last_event_seq,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
