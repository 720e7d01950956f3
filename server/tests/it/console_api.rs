//! The JobEngine console's API through the real router on a real SQLite
//! file: bulk cancel and retry (by ids and by filter, dry run first), queue
//! health, the quota export; each refused without its scope and confined
//! to the caller's tenants. Also the jobs search the jobs list reads.

use crate::common;

use axum::http::{header, Method, StatusCode};
use axum::Router;
use kernel::model::{
    ClaimRequest, JobSearch, JobSort, JobState, NewJob, NewNode, NewTask, Scope, TaskFailure,
    TaskState,
};
use kernel::{Kernel, KernelConfig};
use leptos::prelude::LeptosOptions;
use serde_json::{json, Value};
use server::{app, AppState};

struct Api {
    router: Router,
    kernel: Kernel,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn token(kernel: &Kernel, scopes: Vec<Scope>, tenants: &[&str]) -> String {
    common::token(kernel, &format!("test-{}", scopes.len()), &scopes, tenants).await
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("console.db").display());
    let kernel = Kernel::open(&url, KernelConfig::default()).await.unwrap();
    let leptos_options = LeptosOptions::builder().output_name("switchyard").build();
    let admin = token(&kernel, vec![Scope::Admin], &["*"]).await;
    Api {
        router: app(AppState::new(
            leptos_options,
            kernel.clone(),
            Default::default(),
            server::auth::AuthSettings::default(),
        )),
        kernel,
        admin,
        _dir: dir,
    }
}

/// Status, headers and raw body of one call with `bearer`.
async fn raw(
    api: &Api,
    bearer: Option<&str>,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let (status, headers, bytes) = common::send(
        &api.router,
        common::request(method, uri, bearer, &[], body.as_ref()),
    )
    .await;
    (status, headers, bytes.to_vec())
}

async fn call(
    api: &Api,
    bearer: &str,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, _, bytes) = raw(api, Some(bearer), method, uri, body).await;
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{uri}: not JSON"))
    };
    (status, value)
}

fn job(name: &str, tenant: &str, queue: &str, kind: &str, payload: Value) -> NewJob {
    NewJob {
        name: name.into(),
        tenant: tenant.into(),
        queue: queue.into(),
        priority: 0,
        idempotency_key: None,
        tasks: vec![NewTask::new("main", kind, payload)],
    }
}

async fn submit(kernel: &Kernel, j: NewJob) -> i64 {
    kernel.submit(j).await.unwrap().job.id
}

/// A job whose only task failed for good (dead-lettered).
async fn failed_job(kernel: &Kernel, name: &str, tenant: &str) -> i64 {
    let id = submit(kernel, job(name, tenant, "fail-q", "breaks", json!({}))).await;
    let node = kernel
        .register_node(&NewNode {
            name: format!("node-{name}"),
            kinds: vec!["breaks".into()],
            capacity: 4,
            labels: Default::default(),
            file_scopes: vec![],
        })
        .await
        .unwrap();
    let leases = kernel
        .claim(&ClaimRequest {
            node_id: node.id,
            kinds: vec!["breaks".into()],
            max: 10,
            wait_ms: 0,
        })
        .await
        .unwrap();
    let lease = leases.iter().find(|l| l.job_id == id).expect("leased");
    kernel
        .fail(
            lease.attempt_id,
            &lease.proof(),
            &TaskFailure {
                message: "boom".into(),
                retryable: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        kernel.get_job_summary(id).await.unwrap().state,
        JobState::Failed
    );
    id
}

#[tokio::test]
async fn bulk_cancel_by_filter_counts_first_then_cancels_each_match() {
    let api = api().await;
    let k = &api.kernel;
    let mut nightly = Vec::new();
    for i in 0..3 {
        nightly.push(
            submit(
                k,
                job(
                    &format!("nightly-{i}"),
                    "default",
                    "default",
                    "noop",
                    json!({}),
                ),
            )
            .await,
        );
    }
    let other = submit(k, job("adhoc", "default", "default", "noop", json!({}))).await;

    let filter = json!({ "state": "queued", "q": "nightly" });
    let (status, dry) = call(
        &api,
        &api.admin,
        Method::POST,
        "/api/v1/jobs/cancel",
        Some(json!({ "filter": filter, "dry_run": true })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["matched"], 3);
    assert_eq!(dry["applicable"], 3);
    assert_eq!(dry["results"], json!([]));
    // A dry run changes nothing.
    for id in &nightly {
        assert_eq!(
            k.get_job_summary(*id).await.unwrap().state,
            JobState::Queued
        );
    }

    let (status, done) = call(
        &api,
        &api.admin,
        Method::POST,
        "/api/v1/jobs/cancel",
        Some(json!({ "filter": filter })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let results = done["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for r in results {
        assert_eq!(r["status"], "changed", "{r}");
        assert_eq!(r["from"], "queued");
    }
    for id in &nightly {
        let detail = k.get_job(*id).await.unwrap();
        assert_eq!(detail.job.state, JobState::Cancelled);
        assert!(detail.tasks.iter().all(|t| t.state == TaskState::Cancelled));
    }
    assert_eq!(
        k.get_job_summary(other).await.unwrap().state,
        JobState::Queued
    );

    // Nothing left to cancel: the same filter now matches nothing.
    let (_, again) = call(
        &api,
        &api.admin,
        Method::POST,
        "/api/v1/jobs/cancel",
        Some(json!({ "filter": filter, "dry_run": true })),
    )
    .await;
    assert_eq!(again["matched"], 0);
}

#[tokio::test]
async fn bulk_by_ids_reports_each_job() {
    let api = api().await;
    let k = &api.kernel;
    let queued = submit(k, job("a", "default", "default", "noop", json!({}))).await;
    let failed = failed_job(k, "b", "default").await;

    let (status, out) = call(
        &api,
        &api.admin,
        Method::POST,
        "/api/v1/jobs/cancel",
        Some(json!({ "ids": [queued, failed, 999_999] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let by_id = |id: i64| {
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["job_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id(queued)["status"], "changed");
    assert_eq!(by_id(failed)["status"], "skipped");
    assert_eq!(by_id(failed)["from"], "failed");
    assert_eq!(by_id(999_999)["status"], "not_found");

    // Retry the failed one: its task is ready again, its dead-letter entry replayed.
    let (status, dry) = call(
        &api,
        &api.admin,
        Method::POST,
        "/api/v1/jobs/retry",
        Some(json!({ "ids": [failed, queued], "dry_run": true })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["matched"], 2);
    assert_eq!(dry["applicable"], 1);
    let (status, out) = call(
        &api,
        &api.admin,
        Method::POST,
        "/api/v1/jobs/retry",
        Some(json!({ "ids": [failed, queued] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let detail = k.get_job(failed).await.unwrap();
    assert_eq!(detail.tasks[0].state, TaskState::Ready);
    assert!(!detail.job.state.is_terminal(), "{:?}", detail.job.state);
    let statuses: Vec<_> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert!(statuses.contains(&json!("changed")) && statuses.contains(&json!("skipped")));

    // Exactly one of ids or filter.
    let (status, body) = call(
        &api,
        &api.admin,
        Method::POST,
        "/api/v1/jobs/cancel",
        Some(json!({ "dry_run": true })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn every_endpoint_refuses_without_its_scope() {
    let api = api().await;
    let reader = token(&api.kernel, vec![Scope::RunsRead], &["*"]).await;
    let manager = token(&api.kernel, vec![Scope::RunsManage], &["*"]).await;
    submit(
        &api.kernel,
        job("a", "default", "default", "noop", json!({})),
    )
    .await;

    for path in ["/api/v1/jobs/cancel", "/api/v1/jobs/retry"] {
        let (status, body) = call(
            &api,
            &reader,
            Method::POST,
            path,
            Some(json!({ "filter": {}, "dry_run": true })),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("runs.manage"),
            "{body}"
        );
        let (status, _, _) = raw(
            &api,
            None,
            Method::POST,
            path,
            Some(json!({ "filter": {} })),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // Exports need downloads.read, which runs.manage does not include.
    let (status, body) = call(
        &api,
        &manager,
        Method::GET,
        "/api/v1/quotas/export?format=csv",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("downloads.read"),
        "{body}"
    );
    let (status, _, _) = raw(&api, None, Method::GET, "/api/v1/queues/health", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&api, &reader, Method::GET, "/api/v1/queues/health", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn bulk_actions_stay_in_the_callers_tenants() {
    let api = api().await;
    let k = &api.kernel;
    let mine = submit(k, job("m", "acme", "default", "noop", json!({}))).await;
    let theirs = submit(k, job("t", "globex", "default", "noop", json!({}))).await;
    let acme = token(k, vec![Scope::RunsManage], &["acme"]).await;

    let (_, dry) = call(
        &api,
        &acme,
        Method::POST,
        "/api/v1/jobs/cancel",
        Some(json!({ "filter": {}, "dry_run": true })),
    )
    .await;
    assert_eq!(dry["matched"], 1, "{dry}");
    let (_, out) = call(
        &api,
        &acme,
        Method::POST,
        "/api/v1/jobs/cancel",
        Some(json!({ "ids": [mine, theirs] })),
    )
    .await;
    let results = out["results"].as_array().unwrap();
    let of = |id: i64| results.iter().find(|r| r["job_id"] == id).unwrap()["status"].clone();
    assert_eq!(of(mine), "changed");
    assert_eq!(of(theirs), "not_found");
    assert_eq!(
        k.get_job_summary(theirs).await.unwrap().state,
        JobState::Queued
    );

    // Queue health counts only acme's tasks for acme.
    submit(k, job("t2", "globex", "default", "noop", json!({}))).await;
    let (_, health) = call(&api, &acme, Method::GET, "/api/v1/queues/health", None).await;
    let default = health["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .unwrap()
        .clone();
    assert_eq!(default["ready"], 0, "{health}");
    let (_, health) = call(&api, &api.admin, Method::GET, "/api/v1/queues/health", None).await;
    let default = health["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .unwrap()
        .clone();
    assert_eq!(default["ready"], 2, "{health}");
}

#[tokio::test]
async fn queue_health_counts_depth_failures_and_pause() {
    let api = api().await;
    let k = &api.kernel;
    submit(k, job("a", "default", "work", "noop", json!({}))).await;
    submit(k, job("b", "default", "work", "noop", json!({}))).await;
    failed_job(k, "c", "default").await;
    k.pause_queue("work").await.unwrap();

    let (status, health) = call(&api, &api.admin, Method::GET, "/api/v1/queues/health", None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let q = |name: &str| {
        health["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(q("work")["ready"], 2);
    assert_eq!(q("work")["paused"], true);
    assert!(q("work")["oldest_ready_at"].is_i64());
    assert_eq!(q("fail-q")["failed_last_hour"], 1);
    assert_eq!(q("fail-q")["ready"], 0);
}

#[tokio::test]
async fn quota_export_is_a_download_in_json_and_csv() {
    let api = api().await;
    submit(&api.kernel, job("a", "acme", "default", "noop", json!({}))).await;
    let (status, _) = call(
        &api,
        &api.admin,
        Method::PUT,
        "/api/v1/quotas/tenant/acme",
        Some(json!({ "max_concurrent": 5, "max_starts_per_minute": null })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, headers, body) = raw(
        &api,
        Some(&api.admin),
        Method::GET,
        "/api/v1/quotas/export",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"switchyard-quotas-"));
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let board: Value = serde_json::from_slice(&body).unwrap();
    let acme = board["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["scope"] == "tenant" && q["name"] == "acme")
        .unwrap()
        .clone();
    assert_eq!(acme["max_concurrent"], 5);
    assert_eq!(acme["configured"], true);
    let queue = board["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["scope"] == "queue" && q["name"] == "default")
        .unwrap()
        .clone();
    assert_eq!(queue["configured"], false);

    let (status, headers, body) = raw(
        &api,
        Some(&api.admin),
        Method::GET,
        "/api/v1/quotas/export?format=csv",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .ends_with(".csv\""));
    let csv = String::from_utf8(body).unwrap();
    assert!(
        csv.starts_with("scope,name,configured,max_concurrent,"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with("tenant,acme,true,5,0,,,false,")),
        "{csv}"
    );

    let (status, body) = call(
        &api,
        &api.admin,
        Method::GET,
        "/api/v1/quotas/export?format=xml",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn openapi_documents_the_console_endpoints() {
    let api = api().await;
    let (status, doc) = call(&api, &api.admin, Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/jobs/cancel",
        "/api/v1/jobs/retry",
        "/api/v1/queues/health",
        "/api/v1/quotas/export",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }
}

#[tokio::test]
async fn the_jobs_search_filters_sorts_and_pages() {
    let api = api().await;
    let k = &api.kernel;
    let a = submit(
        k,
        job(
            "alpha",
            "default",
            "q1",
            "fetch",
            json!({"repo": "Switchyard"}),
        ),
    )
    .await;
    let b = submit(
        k,
        job("beta", "acme", "q2", "build", json!({"target": "x86"})),
    )
    .await;
    let c = submit(k, job("gamma", "default", "q1", "build", json!({}))).await;

    let ids = |page: &kernel::model::Page<kernel::model::JobRow>| {
        page.items.iter().map(|r| r.job.id).collect::<Vec<_>>()
    };
    let all = k
        .search_jobs(&JobSearch::default(), JobSort::Newest, 50, None)
        .await
        .unwrap();
    assert_eq!(ids(&all), vec![c, b, a]);
    let oldest = k
        .search_jobs(&JobSearch::default(), JobSort::Oldest, 2, None)
        .await
        .unwrap();
    assert_eq!(ids(&oldest), vec![a, b]);
    let next = k
        .search_jobs(
            &JobSearch::default(),
            JobSort::Oldest,
            2,
            oldest.next_cursor.as_deref(),
        )
        .await
        .unwrap();
    assert_eq!(ids(&next), vec![c]);
    assert_eq!(next.next_cursor, None);

    let search = |s: JobSearch| async move {
        ids(&k.search_jobs(&s, JobSort::Newest, 50, None).await.unwrap())
    };
    assert_eq!(
        search(JobSearch {
            kind: Some("build".into()),
            ..Default::default()
        })
        .await,
        vec![c, b]
    );
    // Free text: payload (case-insensitive), name, id.
    assert_eq!(
        search(JobSearch {
            q: Some("switchYARD".into()),
            ..Default::default()
        })
        .await,
        vec![a]
    );
    assert_eq!(
        search(JobSearch {
            q: Some("gam".into()),
            ..Default::default()
        })
        .await,
        vec![c]
    );
    assert_eq!(
        search(JobSearch {
            q: Some(b.to_string()),
            ..Default::default()
        })
        .await,
        vec![b]
    );
    assert_eq!(
        search(JobSearch {
            queue: Some("q1".into()),
            task_state: Some(TaskState::Ready),
            ..Default::default()
        })
        .await,
        vec![c, a]
    );
    assert_eq!(
        search(JobSearch {
            tenants: Some(vec!["acme".into()]),
            ..Default::default()
        })
        .await,
        vec![b]
    );
    let created = k.get_job_summary(b).await.unwrap().created_at;
    assert_eq!(
        search(JobSearch {
            created_from: Some(created + 1_000_000),
            ..Default::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        search(JobSearch {
            created_to: Some(created + 1_000_000),
            created_from: Some(0),
            ..Default::default()
        })
        .await
        .len(),
        3
    );
    assert_eq!(
        k.count_jobs(&JobSearch {
            kind: Some("build".into()),
            ..Default::default()
        })
        .await
        .unwrap(),
        2
    );
    // Only active task states are searchable.
    assert!(k
        .search_jobs(
            &JobSearch {
                task_state: Some(TaskState::Succeeded),
                ..Default::default()
            },
            JobSort::Newest,
            5,
            None
        )
        .await
        .is_err());
}

#[tokio::test]
async fn job_search_over_the_api_filters_by_kind_and_payload_within_the_callers_tenants() {
    let api = api().await;
    let a = submit(
        &api.kernel,
        job("build-a", "acme", "q", "exec", json!({"repo": "alpha"})),
    )
    .await;
    let _b = submit(
        &api.kernel,
        job("build-b", "acme", "q", "sleep", json!({"repo": "beta"})),
    )
    .await;
    let c = submit(
        &api.kernel,
        job("build-c", "other", "q", "exec", json!({"repo": "alpha"})),
    )
    .await;

    let ids = |v: &Value| -> Vec<i64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_i64().unwrap())
            .collect()
    };
    let (status, page) = call(
        &api,
        &api.admin,
        Method::GET,
        "/api/v1/jobs/search?kind=exec&q=alpha&sort=oldest",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(ids(&page), vec![a, c]);
    assert!(page["items"][0]["attempts"].is_i64(), "{page}");

    // A token of one tenant finds only that tenant's jobs.
    let acme = token(&api.kernel, vec![Scope::RunsRead], &["acme"]).await;
    let (_, page) = call(
        &api,
        &acme,
        Method::GET,
        "/api/v1/jobs/search?kind=exec",
        None,
    )
    .await;
    assert_eq!(ids(&page), vec![a]);

    let (status, err) = call(
        &api,
        &api.admin,
        Method::GET,
        "/api/v1/jobs/search?sort=sideways",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["code"], "invalid_query");
    let (status, err) = call(
        &api,
        &api.admin,
        Method::GET,
        "/api/v1/jobs/search?state=bogus",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, _) = call(
        &api,
        "sya_not-a-token",
        Method::GET,
        "/api/v1/jobs/search",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
