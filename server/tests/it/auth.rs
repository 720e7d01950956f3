//! Identity and access (SPEC §6, issue #4) through the real router, and the
//! live stream on a real socket: every endpoint refuses anonymous callers,
//! scopes and tenants are enforced, sessions need their CSRF token, revoked
//! credentials stop working, node tokens speak for their own node only,
//! sign-in is rate limited, passwords never reach the log, and changes are
//! audited.

use crate::common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kernel::model::{LoginRequest, NewJob, Scope};
use kernel::{Kernel, KernelConfig};
use leptos::prelude::LeptosOptions;
use serde_json::{json, Value};
use server::auth::AuthSettings;
use server::{app, AppState};
use tower::ServiceExt;

const ENROLLMENT_SECRET: &str = "test-enrollment";
const ADMIN_PASSWORD: &str = "correct horse battery staple";

struct Harness {
    router: Router,
    kernel: Kernel,
    /// An admin token of every tenant.
    admin: String,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("auth.db").display());
    let kernel = Kernel::open(&url, KernelConfig::default()).await.unwrap();
    kernel.ensure_admin(Some(ADMIN_PASSWORD)).await.unwrap();
    let state = AppState::new(
        LeptosOptions::builder()
            .output_name("switchyard")
            .site_root(dir.path().to_string_lossy().as_ref())
            .build(),
        kernel.clone(),
        Default::default(),
        AuthSettings {
            enrollment_secret: Some(ENROLLMENT_SECRET.into()),
            ..Default::default()
        },
    );
    let admin = token(&kernel, "admin", &[Scope::Admin], &["*"]).await.1;
    Harness {
        router: app(state),
        kernel,
        admin,
        _dir: dir,
    }
}

/// Creates an API token; returns its id and secret.
async fn token(kernel: &Kernel, name: &str, scopes: &[Scope], tenants: &[&str]) -> (i64, String) {
    let created = common::create_token(kernel, name, scopes, tenants).await;
    (created.token.id, created.secret)
}

/// How a request proves who is calling.
#[derive(Clone, Copy)]
enum As<'a> {
    Nobody,
    Bearer(&'a str),
    /// Session cookie, with or without the CSRF header.
    Session {
        cookie: &'a str,
        csrf: Option<&'a str>,
    },
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    text: String,
}

impl Harness {
    async fn call(&self, method: Method, uri: &str, who: As<'_>, body: Option<Value>) -> Answer {
        let (bearer, cookie, csrf) = match who {
            As::Nobody => (None, None, None),
            As::Bearer(token) => (Some(token), None, None),
            As::Session { cookie, csrf } => (None, Some(cookie), csrf),
        };
        let mut headers = Vec::new();
        if let Some(cookie) = cookie {
            headers.push(("cookie", cookie));
        }
        if let Some(csrf) = csrf {
            headers.push(("x-csrf-token", csrf));
        }
        let request = common::request(method, uri, bearer, &headers, body.as_ref());
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        // Streams never end: read what is there within a moment.
        let bytes =
            match tokio::time::timeout(Duration::from_millis(500), response.into_body().collect())
                .await
            {
                Ok(collected) => collected.unwrap().to_bytes().to_vec(),
                Err(_) => Vec::new(),
            };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    async fn get(&self, uri: &str, who: As<'_>) -> Answer {
        self.call(Method::GET, uri, who, None).await
    }

    async fn post(&self, uri: &str, who: As<'_>, body: Value) -> Answer {
        self.call(Method::POST, uri, who, Some(body)).await
    }

    /// Signs in; returns the `Cookie` header value and the CSRF token.
    async fn login(&self, username: &str, password: &str) -> (String, String) {
        let a = self
            .post(
                "/api/v1/auth/login",
                As::Nobody,
                json!({ "username": username, "password": password }),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let set_cookie = a.headers[header::SET_COOKIE].to_str().unwrap();
        assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        (cookie, a.body["csrf_token"].as_str().unwrap().to_string())
    }

    async fn submit(&self, name: &str, tenant: &str) -> i64 {
        let mut job = NewJob::single(name, "noop", json!({}));
        job.tenant = tenant.into();
        self.kernel.submit(job).await.unwrap().job.id
    }

    async fn enroll(&self, name: &str) -> (i64, String) {
        let request = Request::post("/api/v1/nodes/register")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-enrollment-secret", ENROLLMENT_SECRET)
            .body(Body::from(
                json!({ "name": name, "kinds": ["noop"], "capacity": 4, "labels": {} }).to_string(),
            ))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        (
            body["node_id"].as_i64().unwrap(),
            body["token"].as_str().unwrap().to_string(),
        )
    }

    async fn events(&self) -> Vec<kernel::model::Event> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.kernel.events_after(after, 1_000).await.unwrap();
            if page.items.is_empty() {
                return out;
            }
            after = page.next_after;
            out.extend(page.items);
        }
    }
}

fn assert_code(a: &Answer, status: StatusCode, code: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.text);
    assert_eq!(a.body["code"], code, "{what}: {}", a.text);
    assert!(
        a.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {}",
        a.text
    );
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{attempt_id}", "1")
        .replace("{name}", "default")
        .replace("{scope}", "queue")
}

#[tokio::test]
async fn every_endpoint_refuses_anonymous_callers_except_the_open_ones() {
    use utoipa::OpenApi;
    let h = harness().await;
    let doc = serde_json::to_value(server::api::openapi::ApiDoc::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 25, "{} paths", paths.len());
    let open = ["/api/v1/auth/login", "/api/v1/nodes/register"];
    let mut checked = 0;
    for (path, methods) in paths {
        if open.contains(&path.as_str()) {
            continue;
        }
        for method in methods.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let body = (method != Method::GET).then(|| json!({}));
            let a = h
                .call(method.clone(), &concrete(path), As::Nobody, body)
                .await;
            assert_code(
                &a,
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                &format!("{method} {path}"),
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked} endpoints checked");
    for path in [
        "/api/v1/events/stream",
        "/api/v1/events/stream?after=0",
        "/api/v1/jobs/1/stream",
        "/api/v1/openapi.json",
        "/api/v1/no-such-endpoint",
        "/metrics",
    ] {
        let a = h.get(path, As::Nobody).await;
        // `/metrics` is for scrapers: a 401 with the typed body, not the
        // console's redirect to its sign-in page.
        assert_code(&a, StatusCode::UNAUTHORIZED, "unauthenticated", path);
    }
    // A token that is not one is no better than none.
    let a = h.get("/api/v1/jobs", As::Bearer("sya_not-a-token")).await;
    assert_code(&a, StatusCode::UNAUTHORIZED, "unauthenticated", "bad token");
    let a = h
        .get(
            "/api/v1/jobs",
            As::Session {
                cookie: "sy_session=forged",
                csrf: None,
            },
        )
        .await;
    assert_code(
        &a,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "bad cookie",
    );

    // Node enrollment is open, but answers 401 itself without the secret.
    let node = json!({ "name": "n", "kinds": ["noop"], "capacity": 1, "labels": {} });
    let a = h
        .post("/api/v1/nodes/register", As::Nobody, node.clone())
        .await;
    assert_code(&a, StatusCode::UNAUTHORIZED, "unauthenticated", "register");
    let (status, _, _) = common::send(
        &h.router,
        common::request(
            Method::POST,
            "/api/v1/nodes/register",
            None,
            &[("x-enrollment-secret", "guess")],
            Some(&node),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a wrong secret");
    // Login is open: wrong credentials get their own typed answer.
    let a = h
        .post(
            "/api/v1/auth/login",
            As::Nobody,
            json!({ "username": "nobody", "password": "wrong password!" }),
        )
        .await;
    assert_code(&a, StatusCode::UNAUTHORIZED, "invalid_credentials", "login");

    // Console pages send the browser to sign in, keeping where it was going.
    for (page, next) in [
        ("/ops", "%2Fops"),
        (
            "/ops/operations/jobengine/jobs/5?x=1",
            "%2Fops%2Foperations%2Fjobengine%2Fjobs%2F5%3Fx%3D1",
        ),
        (
            "/ops/operations/dead-letter",
            "%2Fops%2Foperations%2Fdead-letter",
        ),
    ] {
        let a = h.get(page, As::Nobody).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(
            a.headers[header::LOCATION],
            format!("/login?next={next}"),
            "{page}"
        );
    }
    // The login page itself and the probes stay open.
    let a = h.get("/login", As::Nobody).await;
    assert!(!a.status.is_redirection(), "/login: {}", a.status);
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            h.get(probe, As::Nobody).await.status,
            StatusCode::OK,
            "{probe}"
        );
    }
    // With credentials, the same endpoints answer.
    let a = h.get("/api/v1/openapi.json", As::Bearer(&h.admin)).await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn a_read_only_token_cannot_cancel_and_the_job_is_unchanged() {
    let h = harness().await;
    let (_, reader) = token(&h.kernel, "reader", &[Scope::RunsRead], &["*"]).await;
    let job = h.submit("keep-me", "default").await;
    let before = h
        .get(&format!("/api/v1/jobs/{job}"), As::Bearer(&reader))
        .await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text);

    let a = h
        .post(
            &format!("/api/v1/jobs/{job}/cancel"),
            As::Bearer(&reader),
            json!({}),
        )
        .await;
    assert_code(
        &a,
        StatusCode::FORBIDDEN,
        "forbidden",
        "cancel with runs.read",
    );
    assert!(
        a.body["message"].as_str().unwrap().contains("runs.manage"),
        "the message names the scope: {}",
        a.text
    );

    let after = h
        .get(&format!("/api/v1/jobs/{job}"), As::Bearer(&reader))
        .await;
    assert_eq!(after.body["state"], before.body["state"]);
    assert_eq!(after.body["state"], "queued");
    let a = h
        .post(
            "/api/v1/jobs",
            As::Bearer(&reader),
            json!({ "name": "x", "tasks": [{ "key": "k", "kind": "noop" }] }),
        )
        .await;
    assert_code(
        &a,
        StatusCode::FORBIDDEN,
        "forbidden",
        "submit with runs.read",
    );
    let a = h.get("/api/v1/auth/tokens", As::Bearer(&reader)).await;
    assert_code(
        &a,
        StatusCode::FORBIDDEN,
        "forbidden",
        "tokens without admin",
    );

    // The refusal is audited.
    let events = h.events().await;
    let denied = events
        .iter()
        .find(|e| e.event_type == "audit.jobs.cancel")
        .expect("an audit event for the refused cancel");
    assert_eq!(denied.data["outcome"], "denied", "{:?}", denied);
    assert_eq!(denied.data["actor"], "token:reader", "{:?}", denied);
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_jobs_and_events() {
    let h = harness().await;
    let (_, a_token) = token(&h.kernel, "tenant-a", &[Scope::RunsRead], &["a"]).await;
    let b_job = h.submit("b-secret", "b").await;
    let a_job = h.submit("a-visible", "a").await;

    let list = h.get("/api/v1/jobs", As::Bearer(&a_token)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let ids: Vec<i64> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![a_job], "{}", list.text);
    let a = h
        .get(&format!("/api/v1/jobs/{b_job}"), As::Bearer(&a_token))
        .await;
    assert_code(
        &a,
        StatusCode::NOT_FOUND,
        "not_found",
        "another tenant's job",
    );
    let a = h
        .get(&format!("/api/v1/jobs/{a_job}"), As::Bearer(&a_token))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = h
        .get(
            &format!("/api/v1/jobs/{b_job}/stream"),
            As::Bearer(&a_token),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
    let page = h
        .get("/api/v1/events?after=0&limit=1000", As::Bearer(&a_token))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for event in page.body["items"].as_array().unwrap() {
        assert_eq!(event["tenant"], "a", "{event}");
    }
    // A queue is shared, what waits in it is not: A counts its own task.
    for uri in ["/api/v1/queues", "/api/v1/queues/default"] {
        let a = h.get(uri, As::Bearer(&a_token)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let queue = a.body["items"].get(0).unwrap_or(&a.body);
        assert_eq!(queue["name"], "default", "{}", a.text);
        assert_eq!(queue["depth"]["ready"], 1, "{uri}: {}", a.text);
    }
    let a = h.get("/api/v1/queues/default", As::Bearer(&h.admin)).await;
    assert_eq!(a.body["depth"]["ready"], 2, "{}", a.text);

    // The live stream on a real socket: A's events, never B's.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = h.router.clone();
    let served = tokio::spawn(async move { axum::serve(listener, router).await });
    let mut response = reqwest::Client::new()
        .get(format!("{base}/api/v1/events/stream?after=0"))
        .bearer_auth(&a_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Written while connected: B first, so a leak would show before A's.
    let b_later = h.submit("b-later", "b").await;
    let a_later = h.submit("a-later", "a").await;
    let b_ids = [b_job, b_later];
    let mut buffer = String::new();
    let mut seen_a = Vec::new();
    while !seen_a.contains(&a_later) {
        let event = next_stream_event(&mut response, &mut buffer).await;
        assert_eq!(event["tenant"], "a", "a foreign event: {event}");
        let job = event["subject"]["job_id"].as_i64();
        assert!(
            !job.is_some_and(|j| b_ids.contains(&j)),
            "B's event leaked: {event}"
        );
        if let Some(job) = job {
            seen_a.push(job);
        }
    }
    assert!(seen_a.contains(&a_job), "{seen_a:?}");
    drop(response);
    served.abort();
}

/// Every token, user and node is a grant of tenants: an admin of some
/// tenants may not list, issue or revoke them, nor enroll a node (whose
/// token serves every tenant), or it could grant itself all tenants.
#[tokio::test]
async fn an_admin_of_some_tenants_cannot_manage_identity() {
    let h = harness().await;
    let (_, acme_admin) = token(&h.kernel, "acme-admin", &[Scope::Admin], &["acme"]).await;
    let (other, _) = token(&h.kernel, "other", &[Scope::RunsRead], &["*"]).await;
    let new_token = json!({ "name": "escalate", "scopes": ["admin"], "tenants": ["*"] });
    let node = json!({ "name": "rogue", "kinds": ["noop"], "capacity": 1, "labels": {} });
    let tokens = || async {
        let all = h.kernel.list_tokens().await.unwrap();
        all.into_iter()
            .map(|t| (t.id, t.revoked_at))
            .collect::<Vec<_>>()
    };
    let before = tokens().await;
    let refused = [
        h.get("/api/v1/auth/tokens", As::Bearer(&acme_admin)).await,
        h.post(
            "/api/v1/auth/tokens",
            As::Bearer(&acme_admin),
            new_token.clone(),
        )
        .await,
        h.post(
            &format!("/api/v1/auth/tokens/{other}/revoke"),
            As::Bearer(&acme_admin),
            json!({}),
        )
        .await,
        h.get("/api/v1/auth/users", As::Bearer(&acme_admin)).await,
        h.post(
            "/api/v1/nodes/register",
            As::Bearer(&acme_admin),
            node.clone(),
        )
        .await,
    ];
    for (i, a) in refused.iter().enumerate() {
        assert_code(a, StatusCode::FORBIDDEN, "forbidden", &format!("call {i}"));
        assert!(a.text.contains("every tenant"), "call {i}: {}", a.text);
    }
    assert_eq!(tokens().await, before, "nothing issued or revoked");
    assert!(
        h.kernel.list_nodes().await.unwrap().is_empty(),
        "no node enrolled"
    );
    // Its own tenant's work it still manages.
    let job = h.submit("acme-job", "acme").await;
    let a = h
        .post(
            &format!("/api/v1/jobs/{job}/cancel"),
            As::Bearer(&acme_admin),
            json!({}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    // An admin of every tenant does all of it.
    let a = h
        .post("/api/v1/auth/tokens", As::Bearer(&h.admin), new_token)
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let a = h
        .post("/api/v1/nodes/register", As::Bearer(&h.admin), node)
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
}

/// The enrollment secret is guessed no faster than a password: after
/// too many wrong ones from an address, that address waits, even with the
/// right one; other addresses enroll.
#[tokio::test]
async fn wrong_enrollment_secrets_are_limited_per_address() {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;
    let h = harness().await;
    let node = json!({ "name": "n", "kinds": ["noop"], "capacity": 1, "labels": {} });
    let enroll = |secret: &str, ip: [u8; 4]| {
        let mut request = common::request(
            Method::POST,
            "/api/v1/nodes/register",
            None,
            &[("x-enrollment-secret", secret)],
            Some(&node),
        );
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
        common::send(&h.router, request)
    };
    let guesser = [10, 0, 0, 7];
    for i in 0..server::auth::ENROLLMENT_FAILURES_PER_ADDRESS {
        let (status, _, _) = enroll(&format!("guess-{i}"), guesser).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let (status, headers, body) = enroll(ENROLLMENT_SECRET, guesser).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body:?}");
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert!(
        h.kernel.list_nodes().await.unwrap().is_empty(),
        "nothing enrolled"
    );
    let (status, _, body) = enroll(ENROLLMENT_SECRET, [10, 0, 0, 8]).await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
}

/// A serve process's embedded pool keeps its node: a remote worker may not
/// register under its name (and take its leases and drain), nor wear its
/// label.
#[tokio::test]
async fn a_remote_worker_cannot_take_the_embedded_pools_node() {
    let h = harness().await;
    let embedded = h
        .kernel
        .enroll_node(
            &kernel::model::NewNode {
                name: "embedded-host-3000".into(),
                kinds: vec!["noop".into()],
                capacity: 4,
                labels: [("embedded".to_string(), "true".to_string())].into(),
                file_scopes: vec![],
            },
            "embedded",
        )
        .await
        .unwrap();
    let register = |name: &str, labels: Value| {
        let body = json!({ "name": name, "kinds": ["evil"], "capacity": 1, "labels": labels });
        let request = common::request(
            Method::POST,
            "/api/v1/nodes/register",
            None,
            &[("x-enrollment-secret", ENROLLMENT_SECRET)],
            Some(&body),
        );
        common::send(&h.router, request)
    };
    let (status, _, body) = register("embedded-host-3000", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body:?}");
    let (status, _, body) = register("impostor", json!({ "embedded": "true" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:?}");
    // The embedded node is as it was, its token still good.
    let node = h.kernel.get_node(embedded.node.id).await.unwrap();
    assert_eq!(node.kinds, ["noop"]);
    assert_eq!(
        node.labels.get("embedded").map(String::as_str),
        Some("true")
    );
    assert!(h
        .kernel
        .token_principal(&embedded.token)
        .await
        .unwrap()
        .is_some());
    assert_eq!(h.kernel.list_nodes().await.unwrap().len(), 1);
    // Any other name enrolls.
    let (status, _, body) = register("remote-1", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
}

#[tokio::test]
async fn a_session_needs_its_csrf_token_to_change_anything() {
    let h = harness().await;
    let (cookie, csrf) = h.login("admin", ADMIN_PASSWORD).await;
    let job = h.submit("cancel-me", "default").await;
    let cancel = format!("/api/v1/jobs/{job}/cancel");

    // Reading needs no CSRF token.
    let a = h
        .get(
            "/api/v1/auth/me",
            As::Session {
                cookie: &cookie,
                csrf: None,
            },
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["principal"]["name"], "admin");
    assert_eq!(a.body["csrf_token"], csrf.as_str());

    let a = h
        .post(
            &cancel,
            As::Session {
                cookie: &cookie,
                csrf: None,
            },
            json!({}),
        )
        .await;
    assert_code(&a, StatusCode::FORBIDDEN, "csrf_failed", "no CSRF header");
    let a = h
        .post(
            &cancel,
            As::Session {
                cookie: &cookie,
                csrf: Some("0123456789abcdef"),
            },
            json!({}),
        )
        .await;
    assert_code(
        &a,
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "a wrong CSRF header",
    );
    let state = h.kernel.get_job_summary(job).await.unwrap().state;
    assert_eq!(state.as_str(), "queued", "nothing changed");

    let a = h
        .post(
            &cancel,
            As::Session {
                cookie: &cookie,
                csrf: Some(&csrf),
            },
            json!({}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["state"], "cancelled", "{}", a.text);
}

#[tokio::test]
async fn revoked_tokens_and_ended_sessions_are_refused() {
    let h = harness().await;
    let (id, secret) = token(&h.kernel, "short-lived", &[Scope::RunsRead], &["*"]).await;
    assert_eq!(
        h.get("/api/v1/jobs", As::Bearer(&secret)).await.status,
        StatusCode::OK
    );
    // The scheme's name in any case (RFC 9110).
    for scheme in ["bearer", "BEARER"] {
        let value = format!("{scheme} {secret}");
        let request = common::request(
            Method::GET,
            "/api/v1/jobs",
            None,
            &[("authorization", &value)],
            None,
        );
        let (status, _, _) = common::send(&h.router, request).await;
        assert_eq!(status, StatusCode::OK, "{scheme}");
    }
    let a = h
        .post(
            &format!("/api/v1/auth/tokens/{id}/revoke"),
            As::Bearer(&h.admin),
            json!({}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(!a.body["revoked_at"].is_null(), "{}", a.text);
    let a = h.get("/api/v1/jobs", As::Bearer(&secret)).await;
    assert_code(
        &a,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "revoked token",
    );

    let (cookie, csrf) = h.login("admin", ADMIN_PASSWORD).await;
    let session = As::Session {
        cookie: &cookie,
        csrf: Some(&csrf),
    };
    assert_eq!(h.get("/api/v1/jobs", session).await.status, StatusCode::OK);
    let a = h.post("/api/v1/auth/logout", session, json!({})).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text);
    let cleared = a.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let a = h.get("/api/v1/auth/me", session).await;
    assert_code(
        &a,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "ended session",
    );
    let a = h.get("/ops", session).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "a page after sign-out");
}

#[tokio::test]
async fn a_node_token_speaks_for_its_own_node_only() {
    let h = harness().await;
    h.submit("one", "default").await;
    let (node1, token1) = h.enroll("node-1").await;
    let (node2, token2) = h.enroll("node-2").await;
    assert_ne!(node1, node2);

    let claim = |node: i64| json!({ "node_id": node, "kinds": ["noop"], "max": 1, "wait_ms": 0 });
    // Node 2 cannot claim in node 1's name.
    let a = h
        .post("/api/v1/leases/claim", As::Bearer(&token2), claim(node1))
        .await;
    assert_code(
        &a,
        StatusCode::FORBIDDEN,
        "forbidden",
        "claim for another node",
    );
    // A user's API token is not a node.
    let a = h
        .post("/api/v1/leases/claim", As::Bearer(&h.admin), claim(node1))
        .await;
    assert_code(
        &a,
        StatusCode::FORBIDDEN,
        "forbidden",
        "admin token on the lease protocol",
    );

    let a = h
        .post("/api/v1/leases/claim", As::Bearer(&token1), claim(node1))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let lease = a.body["leases"][0].clone();
    let attempt = lease["attempt_id"].as_i64().expect("a lease");
    let done =
        json!({ "lease_token": lease["lease_token"], "epoch": lease["epoch"], "output": {} });
    let complete = format!("/api/v1/leases/{attempt}/complete");

    let a = h.post(&complete, As::Bearer(&token2), done.clone()).await;
    assert_code(
        &a,
        StatusCode::FORBIDDEN,
        "forbidden",
        "complete another node's lease",
    );
    let a = h
        .post(
            "/api/v1/leases/complete",
            As::Bearer(&token2),
            json!({ "items": [{ "attempt_id": attempt, "lease_token": lease["lease_token"], "epoch": lease["epoch"] }] }),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "batch: {}", a.text);
    let a = h
        .post(
            &format!("/api/v1/leases/{attempt}/heartbeat"),
            As::Bearer(&h.admin),
            json!({ "lease_token": lease["lease_token"], "epoch": lease["epoch"] }),
        )
        .await;
    assert_code(&a, StatusCode::FORBIDDEN, "forbidden", "admin heartbeat");
    let a = h.post(&complete, As::Bearer(&token1), done).await;
    assert_eq!(a.status, StatusCode::OK, "the owner completes: {}", a.text);

    // Lease traffic is recorded by the kernel's `lease.*` events, not audited.
    let events = h.events().await;
    assert!(
        !events
            .iter()
            .any(|e| e.event_type.starts_with("audit.leases")),
        "lease calls were audited"
    );

    // A node token is no user: it reads nothing else.
    let a = h.get("/api/v1/jobs", As::Bearer(&token1)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_account_for_a_while() {
    let h = harness().await;
    for i in 0..server::auth::LOGIN_FAILURES_PER_ACCOUNT {
        let a = h
            .post(
                "/api/v1/auth/login",
                As::Nobody,
                json!({ "username": "admin", "password": format!("wrong password {i}") }),
            )
            .await;
        assert_code(
            &a,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong password",
        );
    }
    let a = h
        .post(
            "/api/v1/auth/login",
            As::Nobody,
            json!({ "username": "admin", "password": ADMIN_PASSWORD }),
        )
        .await;
    assert_code(
        &a,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "the right password, too late",
    );
    assert!(a.headers.get(header::SET_COOKIE).is_none());
    let wait = a.body["details"]["retry_after_s"].as_u64().unwrap();
    assert!(wait > 0, "{}", a.text);
    assert_eq!(a.headers[header::RETRY_AFTER], wait.to_string().as_str());
    let events = h.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.event_type == "audit.auth.login" && e.data["outcome"] == "rate_limited"),
        "the refusal is audited"
    );
}

/// Collects everything the server logs while it runs on this thread.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn passwords_are_never_logged_nor_recorded() {
    let request = LoginRequest {
        username: "admin".into(),
        password: "hunter2-hunter2".into(),
    };
    let debug = format!("{request:?} {request:#?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("admin"), "{debug}");

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = harness().await;
    let wrong = "not-the-password-xyzzy";
    let a = h
        .post(
            "/api/v1/auth/login",
            As::Nobody,
            json!({ "username": "admin", "password": wrong }),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    h.login("admin", ADMIN_PASSWORD).await;

    let events = h.events().await;
    let logins: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "audit.auth.login")
        .collect();
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert_eq!(logins[0].data["outcome"], "denied");
    assert_eq!(logins[1].data["outcome"], "ok");
    assert_eq!(logins[1].data["actor"], "user:admin");
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(wrong), "a password in the event log");
    assert!(!all.contains(ADMIN_PASSWORD), "a password in the event log");
    let logged = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(!logged.contains(wrong), "a password in the log: {logged}");
    assert!(
        !logged.contains(ADMIN_PASSWORD),
        "a password in the log: {logged}"
    );
}

#[tokio::test]
async fn a_state_changing_call_is_audited_with_actor_action_target_and_outcome() {
    let h = harness().await;
    let job = h.submit("audited", "default").await;
    let target = format!("/api/v1/jobs/{job}/cancel");
    let a = h.post(&target, As::Bearer(&h.admin), json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let a = h
        .post("/api/v1/queues/q1/pause", As::Bearer(&h.admin), json!({}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    // Reads are not audited.
    h.get("/api/v1/jobs", As::Bearer(&h.admin)).await;

    let events = h.events().await;
    let audits: Vec<_> = events
        .iter()
        .filter(|e| e.event_type.starts_with("audit."))
        .collect();
    let cancel = audits
        .iter()
        .find(|e| e.event_type == "audit.jobs.cancel")
        .unwrap_or_else(|| panic!("no audit for the cancel: {audits:?}"));
    assert_eq!(cancel.data["actor"], "token:admin", "{cancel:?}");
    assert_eq!(cancel.data["action"], "jobs.cancel", "{cancel:?}");
    assert_eq!(cancel.data["target"], target.as_str(), "{cancel:?}");
    assert_eq!(cancel.data["outcome"], "ok", "{cancel:?}");
    assert_eq!(cancel.data["status"], 200, "{cancel:?}");
    let pause = audits
        .iter()
        .find(|e| e.event_type == "audit.queues.pause")
        .unwrap_or_else(|| panic!("no audit for the pause: {audits:?}"));
    assert_eq!(pause.data["target"], "/api/v1/queues/q1/pause");
    assert_eq!(audits.len(), 2, "reads are not audited: {audits:?}");

    // An anonymous attempt to change something is audited too.
    let a = h.post(&target, As::Nobody, json!({})).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let events = h.events().await;
    let anonymous = events
        .iter()
        .rev()
        .find(|e| e.event_type.starts_with("audit."))
        .unwrap();
    assert_eq!(anonymous.data["actor"], "anonymous", "{anonymous:?}");
    assert_eq!(anonymous.data["outcome"], "denied", "{anonymous:?}");
}

#[tokio::test]
async fn the_audit_log_exports_as_json_and_csv_to_whom_may_download_it() {
    let h = harness().await;
    let job = h.submit("exported", "default").await;
    let target = format!("/api/v1/jobs/{job}/cancel");
    let a = h.post(&target, As::Bearer(&h.admin), json!({})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    let a = h.get("/api/v1/audit", As::Bearer(&h.admin)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let items = a.body["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .all(|e| e["type"].as_str().unwrap().starts_with("audit.")),
        "only audit records: {items:?}"
    );
    assert!(items.iter().any(|e| e["data"]["target"] == target.as_str()));

    let a = h
        .get("/api/v1/audit?format=csv", As::Bearer(&h.admin))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let mut lines = a.text.lines();
    assert_eq!(
        lines.next(),
        Some("seq,ts,action,actor,target,from,outcome,status")
    );
    assert!(a
        .text
        .contains(&format!("\"jobs.cancel\",\"token:admin\",\"{target}\"")));

    // Reading runs is not downloading evidence; a tenant's token sees no
    // tenant-less records.
    let (_, reader) = token(&h.kernel, "reader", &[Scope::RunsRead], &["*"]).await;
    let a = h.get("/api/v1/audit", As::Bearer(&reader)).await;
    assert_code(&a, StatusCode::FORBIDDEN, "forbidden", "runs.read only");
    let (_, tenant) = token(&h.kernel, "acme", &[Scope::DownloadsRead], &["acme"]).await;
    let a = h.get("/api/v1/audit", As::Bearer(&tenant)).await;
    assert_code(&a, StatusCode::FORBIDDEN, "forbidden", "one tenant");

    // Nor does the event log or its stream hand the records to a reader.
    let a = h
        .get("/api/v1/events?after=0&limit=1000", As::Bearer(&reader))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let types: Vec<&str> = a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.iter().any(|t| t.starts_with("job.")), "{types:?}");
    assert!(!types.iter().any(|t| t.starts_with("audit.")), "{types:?}");
    let a = h
        .get("/api/v1/events/stream?family=audit", As::Bearer(&reader))
        .await;
    assert_code(&a, StatusCode::FORBIDDEN, "forbidden", "the audit family");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = h.router.clone();
    let served = tokio::spawn(async move { axum::serve(listener, router).await });
    let types = stream_types_through_a_new_job(&h, &base, &reader).await;
    assert!(!types.iter().any(|t| t.starts_with("audit.")), "{types:?}");
    // Whoever may download it reads it in the log too.
    let types = stream_types_through_a_new_job(&h, &base, &h.admin).await;
    assert!(types.iter().any(|t| t.starts_with("audit.")), "{types:?}");
    served.abort();
}

/// The event types the global stream sends `token`, from the log's start
/// through the submission of a job submitted once it is connected.
async fn stream_types_through_a_new_job(h: &Harness, base: &str, token: &str) -> Vec<String> {
    let mut response = reqwest::Client::new()
        .get(format!("{base}/api/v1/events/stream?after=0"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let marker = h.submit("marker", "default").await;
    let mut buffer = String::new();
    let mut types = Vec::new();
    loop {
        let event = next_stream_event(&mut response, &mut buffer).await;
        types.push(event["type"].as_str().unwrap().to_string());
        if event["subject"]["job_id"] == marker {
            return types;
        }
    }
}

/// The next log event of an SSE answer (connection frames, which carry no
/// `id:`, are skipped); `buffer` keeps what was read beyond it.
async fn next_stream_event(response: &mut reqwest::Response, buffer: &mut String) -> Value {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            if block.lines().any(|l| l.starts_with("id: ")) {
                return serde_json::from_str(data).unwrap();
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk())
            .await
            .expect("the stream went silent")
            .unwrap()
            .expect("the stream ended");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}
