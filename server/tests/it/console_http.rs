//! The console's HTTP surface driven through the real router (no socket):
//! probes, every canonical page, legacy redirects and the 404 page, on a real
//! SQLite file.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use leptos::prelude::LeptosOptions;
use server::{app, AppState};
use tower::ServiceExt;

struct TestApp {
    router: Router,
    /// `Cookie` header value of a signed-in admin session.
    cookie: String,
    _dir: tempfile::TempDir,
}

const ADMIN_PASSWORD: &str = "correct horse battery";

async fn test_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite:{}",
        dir.path().join("nested/switchyard.db").display()
    );
    let kernel = kernel::Kernel::open(&url, kernel::KernelConfig::default())
        .await
        .unwrap();
    let leptos_options = LeptosOptions::builder()
        .output_name("switchyard")
        .site_root(dir.path().to_string_lossy().as_ref())
        .build();
    kernel.ensure_admin(Some(ADMIN_PASSWORD)).await.unwrap();
    let router = app(AppState::new(
        leptos_options,
        kernel,
        Default::default(),
        Default::default(),
    ));
    let login = router
        .clone()
        .oneshot(
            Request::post("/api/v1/auth/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    serde_json::json!({ "username": "admin", "password": ADMIN_PASSWORD })
                        .to_string(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let set_cookie = login.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    TestApp {
        router,
        cookie,
        _dir: dir,
    }
}

async fn get(app: &TestApp, uri: &str) -> (StatusCode, http::HeaderMap, String) {
    let response = app
        .router
        .clone()
        .oneshot(
            Request::get(uri)
                .header(header::COOKIE, &app.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn probes_answer_with_json() {
    let app = test_app().await;
    let (status, _, body) = get(&app, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"status":"ok"}"#);

    let (status, _, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"database":"sqlite","status":"ready"}"#);
}

#[tokio::test]
async fn readyz_reports_an_unreachable_database() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = kernel::Kernel::open(
        &format!("sqlite:{}", dir.path().join("db").display()),
        kernel::KernelConfig::default(),
    )
    .await
    .unwrap();
    kernel.db().close().await;
    let leptos_options = LeptosOptions::builder().output_name("switchyard").build();
    let response = app(AppState::new(
        leptos_options,
        kernel,
        Default::default(),
        Default::default(),
    ))
    .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("unavailable"));
}

#[tokio::test]
async fn every_canonical_page_renders_with_its_title() {
    let app = test_app().await;
    let cases = [
        ("/ops", "Operator snapshot"),
        ("/ops/approvals", "Approvals"),
        ("/ops/operations/jobs-queues", "Jobs &amp; Queues"),
        ("/ops/operations/jobengine", "JobEngine"),
        ("/ops/operations/jobengine/jobs", "Jobs"),
        ("/ops/operations/jobengine/jobs/j-42", "Job j-42"),
        ("/ops/operations/jobengine/jobs/j-42/dag", "DAG of job j-42"),
        ("/ops/operations/jobengine/quotas", "Quotas"),
        ("/ops/operations/dead-letter", "Dead-letter"),
        ("/ops/operations/dead-letter/queue", "Dead-letter queue"),
        (
            "/ops/operations/dead-letter/entry/e-7",
            "Dead-letter entry e-7",
        ),
        ("/ops/operations/scheduler", "Scheduler"),
        ("/ops/operations/scheduler/runs", "Runs"),
        ("/ops/operations/scheduler/runs/r-9/stream", "Run r-9"),
        ("/ops/operations/scheduler/schedules", "Schedules"),
        ("/ops/operations/scheduler/workers", "Workers"),
        ("/ops/scanner-ops", "Scanner Ops"),
        ("/ops/scanner-ops/offline-kits", "Offline kits"),
        ("/ops/scanner-ops/baselines", "Baselines"),
        ("/ops/scanner-ops/analyzers", "Analyzers"),
        ("/ops/scanner-ops/performance", "Performance"),
        ("/ops/scanner-ops/settings", "Scanner settings"),
    ];
    for (path, title) in cases {
        let (status, _, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            body.contains(&format!("<title>{title} · Switchyard</title>")),
            "{path}: no title {title:?} in {body}"
        );
        assert!(
            body.contains(&format!("<h1>{title}</h1>")),
            "{path}: no heading"
        );
        assert!(
            body.contains("/pkg/switchyard.js"),
            "{path}: no hydration script"
        );
    }
}

/// No other site may frame a page; pages and API answers (the session's
/// CSRF token, tenants' data) are never cached.
#[tokio::test]
async fn answers_carry_protective_headers() {
    let app = test_app().await;
    for path in ["/ops", "/api/v1/auth/me", "/login", "/no-such-page"] {
        let (_, headers, _) = get(&app, path).await;
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "{path}");
        assert_eq!(
            header("content-security-policy").as_deref(),
            Some("frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(
            header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            header("cache-control").as_deref(),
            Some("no-store"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_root_redirects_to_the_operator_snapshot() {
    let app = test_app().await;
    let (status, headers, _) = get(&app, "/").await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(headers[header::LOCATION], "/ops");
}

#[tokio::test]
async fn legacy_paths_get_a_permanent_redirect_with_the_query_kept() {
    let app = test_app().await;
    let cases = [
        (
            "/ops/jobengine/jobs?state=failed",
            "/ops/operations/jobengine/jobs?state=failed",
        ),
        ("/ops/jobengine", "/ops/operations/jobengine"),
        (
            "/ops/scheduler/runs/r1/stream?tail=50",
            "/ops/operations/scheduler/runs/r1/stream?tail=50",
        ),
        ("/ops/scanner", "/ops/scanner-ops"),
        (
            "/ops/scanner/baselines?target=a",
            "/ops/scanner-ops/baselines?target=a",
        ),
        (
            "/platform-ops/jobengine/quotas",
            "/ops/operations/jobengine/quotas",
        ),
        (
            "/platform-ops/scheduler/workers?x=1&y=2",
            "/ops/operations/scheduler/workers?x=1&y=2",
        ),
        ("/platform-ops/scanner", "/ops/scanner-ops"),
        (
            "/platform-ops/scanner/settings",
            "/ops/scanner-ops/settings",
        ),
        (
            "/platform/ops/jobengine/jobs/7/dag?node=b",
            "/ops/operations/jobengine/jobs/7/dag?node=b",
        ),
        (
            "/platform/ops/scheduler/schedules",
            "/ops/operations/scheduler/schedules",
        ),
        (
            "/platform/ops/dead-letter/queue?status=open",
            "/ops/operations/dead-letter/queue?status=open",
        ),
    ];
    for (legacy, canonical) in cases {
        let (status, headers, _) = get(&app, legacy).await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT, "{legacy}");
        assert_eq!(headers[header::LOCATION], canonical, "{legacy}");
    }
}

#[tokio::test]
async fn unknown_paths_get_the_404_page() {
    let app = test_app().await;
    for path in [
        "/nowhere",
        "/ops/operations/nothing-here",
        "/ops/scanner/a/b",
    ] {
        let (status, _, body) = get(&app, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body.contains("Page not found"), "{path}: {body}");
    }
}

#[tokio::test]
async fn path_parameters_are_escaped_everywhere_they_are_shown() {
    let app = test_app().await;
    let (status, _, body) = get(
        &app,
        "/ops/operations/jobengine/jobs/%3C%2Ftitle%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("<script>alert(1)"), "{body}");
    assert!(
        body.contains(
            "<title>Job &lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt; · Switchyard</title>"
        ),
        "{body}"
    );
}
