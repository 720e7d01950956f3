//! What the server's test suites share: API tokens made straight in the
//! kernel, and one request through the real router (bearer token, extra
//! headers, a JSON body) read back as status, headers and body.

#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kernel::model::{CreatedToken, NewToken, Scope};
use kernel::Kernel;
use serde_json::Value;
use tower::ServiceExt;

/// Creates an API token of `scopes` on `tenants` (`"*"`: every tenant).
pub async fn create_token(
    kernel: &Kernel,
    name: &str,
    scopes: &[Scope],
    tenants: &[&str],
) -> CreatedToken {
    kernel
        .create_token(
            &NewToken {
                name: name.into(),
                scopes: scopes.to_vec(),
                tenants: tenants.iter().map(|t| t.to_string()).collect(),
            },
            "test",
        )
        .await
        .unwrap()
}

/// The bearer secret of a new token (see [`create_token`]).
pub async fn token(kernel: &Kernel, name: &str, scopes: &[Scope], tenants: &[&str]) -> String {
    create_token(kernel, name, scopes, tenants).await.secret
}

/// A request: method, URI, `Authorization: Bearer` when given, extra
/// headers, and a JSON body when given.
pub fn request(
    method: Method,
    uri: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(b) = bearer {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {b}"));
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some(v) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    builder.body(body).unwrap()
}

/// Sends `request` through `router` and reads the whole answer.
pub async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes)
}

/// A client that sends `token` on every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Waits (up to 30 s) until the server at `base` answers `/readyz`.
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not become ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `GET url`, read as JSON.
pub async fn get(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// `POST url` with `body` as JSON, the answer read as JSON.
pub async fn post(client: &reqwest::Client, url: String, body: &Value) -> Value {
    client
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
