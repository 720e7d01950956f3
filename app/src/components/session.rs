//! The signed-in operator, as the server established it (SPEC §6).
//!
//! The server renders who is signed in (their scopes, tenants and the
//! session's CSRF token) into the page as JSON; the browser reads the same
//! JSON when it hydrates, so both renders agree on what the operator may do.
//! The console uses it to disable what the operator cannot do (saying why);
//! the server checks again on every request, whatever the console shows.

use kernel::model::{Principal, Scope, TenantSelection};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The id of the `<script type="application/json">` carrying the session.
pub const SESSION_SCRIPT_ID: &str = "sy-session";
/// Where the server sends a browser that is not signed in.
pub const LOGIN_PATH: &str = "/login";

/// Who is signed in, and the token their state-changing requests carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub principal: Principal,
    pub csrf_token: Option<String>,
    /// The shell's tenant selector (console pages only).
    #[serde(default)]
    pub tenants: TenantSelection,
}

/// The session of this page, `None` on the login page.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentSession(pub Option<SessionInfo>);

impl CurrentSession {
    /// `Ok` if the operator holds `scope`, else the reason to show beside a
    /// disabled control.
    pub fn allows(&self, scope: Scope) -> Result<(), String> {
        match &self.0 {
            Some(s) if s.principal.has(scope) => Ok(()),
            Some(_) => Err(format!("Your account lacks the {scope} scope.")),
            None => Err("Sign in first.".into()),
        }
    }

    /// `Ok` if the operator manages users and tokens (`admin` over every
    /// tenant, with every tenant picked), else the reason.
    pub fn allows_identity(&self) -> Result<(), String> {
        self.allows(Scope::Admin)?;
        match &self.0 {
            Some(s) if s.principal.manages_identity() => Ok(()),
            _ => Err(
                "Users and tokens are managed with every tenant in view: your admin scope \
                      covers only some tenants, or only some are picked."
                    .into(),
            ),
        }
    }

    pub fn csrf_token(&self) -> Option<String> {
        self.0.as_ref().and_then(|s| s.csrf_token.clone())
    }
}

/// The session as the server knows it for this request.
#[cfg(feature = "ssr")]
pub fn server_session() -> Option<SessionInfo> {
    let parts = use_context::<http::request::Parts>()?;
    let principal = parts.extensions.get::<Principal>()?.clone();
    let csrf_token = parts
        .extensions
        .get::<kernel::SessionView>()
        .map(|s| s.csrf_token.clone());
    let tenants = parts
        .extensions
        .get::<TenantSelection>()
        .cloned()
        .unwrap_or_default();
    Some(SessionInfo {
        principal,
        csrf_token,
        tenants,
    })
}

/// The session the server rendered into the page.
#[cfg(feature = "hydrate")]
pub fn page_session() -> Option<SessionInfo> {
    let text = document()
        .get_element_by_id(SESSION_SCRIPT_ID)?
        .text_content()?;
    crate::api::from_json::<Option<SessionInfo>>(&text)
        .ok()
        .flatten()
}

/// The session's JSON, safe inside a `<script>` element.
pub fn session_json(session: &Option<SessionInfo>) -> String {
    serde_json::to_string(session)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c")
}

/// Provides [`CurrentSession`] to the console: from the request on the
/// server, from the page in the browser.
pub fn provide_session() -> CurrentSession {
    #[cfg(feature = "ssr")]
    let session = server_session();
    #[cfg(feature = "hydrate")]
    let session = page_session();
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    let session = None;
    let current = CurrentSession(session);
    provide_context(current.clone());
    current
}

pub fn use_session() -> CurrentSession {
    use_context::<CurrentSession>().unwrap_or(CurrentSession(None))
}

/// Where to go after signing in: `next` if it is a path on this site,
/// else the operator snapshot. Never another origin (`//host`, `/\host`):
/// browsers read a backslash as a slash and drop tabs and line breaks
/// anywhere in a URL (`/<tab>/host` is `//host`), so a path holding any of
/// them, or any other control character, is refused whole. (A space is
/// kept: browsers encode it, and the query of `next` may hold one.)
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.chars().any(|c| c == '\\' || c.is_control())
                && !n.starts_with(LOGIN_PATH) =>
        {
            n.to_string()
        }
        _ => "/ops".to_string(),
    }
}

/// The `message` of an API error answer.
#[derive(Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub message: Option<String>,
}

/// The API's error message in an answer's body, if it has one.
pub fn api_error_message(body: &str) -> Option<String> {
    crate::api::from_json::<ApiError>(body).ok()?.message
}

/// Sends a state-changing JSON request to the API with the session's CSRF
/// token; answers the body (JSON, read with [`crate::api::from_json`] by the
/// caller) or the API's error message.
#[cfg(feature = "hydrate")]
pub async fn send_json(
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<String, String> {
    use gloo_net::http::RequestBuilder;
    let mut request = RequestBuilder::new(path).method(match method {
        "PUT" => gloo_net::http::Method::PUT,
        "DELETE" => gloo_net::http::Method::DELETE,
        _ => gloo_net::http::Method::POST,
    });
    if let Some(token) = use_session()
        .csrf_token()
        .or_else(|| page_session().and_then(|s| s.csrf_token))
    {
        request = request.header("X-CSRF-Token", &token);
    }
    let sent = match body {
        Some(b) => {
            request
                .header("Content-Type", "application/json")
                .body(b.to_string())
                .map_err(|e| e.to_string())?
                .send()
                .await
        }
        None => request.send().await,
    }
    .map_err(|e| format!("the server could not be reached: {e}"))?;
    let ok = sent.ok();
    let status = sent.status();
    let text = sent.text().await.unwrap_or_default();
    if ok {
        Ok(text)
    } else if status == 401 {
        // The API's own words ("sign in, or send a bearer token") are for
        // programs; an operator's session has simply ended.
        Err("Your session has ended: reload the page to sign in again.".to_string())
    } else {
        Err(api_error_message(&text).unwrap_or_else(|| format!("the server answered {status}")))
    }
}

/// The cookie the tenant selector sets; the server narrows every request of
/// the session to these tenants (never beyond the grant).
pub const TENANT_COOKIE: &str = "sy_tenants";

/// Stores the tenant selection and reloads, so every figure on the page is
/// read again for the new selection.
#[cfg(feature = "hydrate")]
pub fn choose_tenants(tenants: &[String]) {
    use wasm_bindgen::JsCast;
    let value = tenants.join(",");
    let cookie = if value.is_empty() {
        format!("{TENANT_COOKIE}=; Path=/; SameSite=Strict; Max-Age=0")
    } else {
        format!("{TENANT_COOKIE}={value}; Path=/; SameSite=Strict; Max-Age=31536000")
    };
    if let Ok(doc) = document().dyn_into::<web_sys::HtmlDocument>() {
        let _ = doc.set_cookie(&cookie);
    }
    let _ = window().location().reload();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/ops/x?a=1")), "/ops/x?a=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/ops");
        assert_eq!(safe_next(Some("/\\evil.example/")), "/ops");
        // Browsers drop tabs and line breaks: these are `//evil.example/`.
        for sneaky in [
            "/\t/evil.example/",
            "/\n/evil.example/",
            "/\r/evil.example",
            "/ops\\..\\x",
        ] {
            assert_eq!(safe_next(Some(sneaky)), "/ops", "{sneaky:?}");
        }
        assert_eq!(safe_next(Some("https://evil.example/")), "/ops");
        assert_eq!(safe_next(Some("/ops/x?q=a b")), "/ops/x?q=a b");
        assert_eq!(safe_next(None), "/ops");
    }

    #[test]
    fn session_json_cannot_close_its_script() {
        let s = Some(SessionInfo {
            principal: Principal {
                kind: kernel::model::PrincipalKind::User,
                id: 1,
                name: "</script><script>alert(1)</script>".into(),
                scopes: vec![],
                tenants: kernel::model::TenantGrant::all(),
                node_id: None,
            },
            csrf_token: None,
            tenants: TenantSelection::default(),
        });
        assert!(!session_json(&s).contains("</script>"));
    }
}
