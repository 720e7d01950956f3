//! Full page loads of legacy console URLs get a permanent redirect to their
//! canonical path (SPEC §3), the query string kept. The browser carries the
//! fragment over by itself. `/` is sent to the operator snapshot. The alias table lives in `app::legacy` and is
//! shared with the client router.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

pub async fn redirect_legacy(request: Request, next: Next) -> Response {
    let uri = request.uri();
    // The bare origin is an entry point too: it opens the operator snapshot.
    // Temporary, since what `/` opens may change; the client router has the
    // same route for in-app links.
    if uri.path() == "/" {
        return Redirect::temporary("/ops").into_response();
    }
    match app::legacy::canonical_location(uri.path(), uri.query().unwrap_or(""), "") {
        Some(target) => Redirect::permanent(&target).into_response(),
        None => next.run(request).await,
    }
}
