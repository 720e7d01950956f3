//! The REST API driven through the real router on a real SQLite file, and
//! the HTTP worker protocol on a real socket.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use axum::Router;
use kernel::{Kernel, KernelConfig};
use leptos::prelude::LeptosOptions;
use serde_json::{json, Value};
use server::{app, AppState};

struct Api {
    router: Router,
    kernel: Kernel,
    /// An admin API token of every tenant, sent on every call.
    token: String,
    /// The node token of the last node registered, sent on lease calls.
    node_token: std::sync::Mutex<Option<String>>,
    _dir: tempfile::TempDir,
}

const ENROLLMENT_SECRET: &str = "test-enrollment";

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("api.db").display());
    let kernel = Kernel::open(&url, KernelConfig::default()).await.unwrap();
    let leptos_options = LeptosOptions::builder().output_name("switchyard").build();
    let token = common::token(
        &kernel,
        "test-admin",
        &[kernel::model::Scope::Admin],
        &["*"],
    )
    .await;
    Api {
        router: app(AppState::new(
            leptos_options,
            kernel.clone(),
            Default::default(),
            server::auth::AuthSettings {
                enrollment_secret: Some(ENROLLMENT_SECRET.into()),
                ..Default::default()
            },
        )),
        kernel,
        token,
        node_token: Default::default(),
        _dir: dir,
    }
}

impl Api {
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        // Lease calls speak for the registered node (before one is, the
        // admin token, which the lease protocol refuses).
        let node_token = self.node_token.lock().unwrap().clone();
        let bearer = match node_token {
            Some(token) if uri.starts_with("/api/v1/leases/") => token,
            _ => self.token.clone(),
        };
        let enrollment = [("x-enrollment-secret", ENROLLMENT_SECRET)];
        let headers: &[(&str, &str)] = if uri == "/api/v1/nodes/register" {
            &enrollment
        } else {
            &[]
        };
        let (status, _, bytes) = common::send(
            &self.router,
            common::request(method, uri, Some(&bearer), headers, body.as_ref()),
        )
        .await;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("{uri}: not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, None).await
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, uri, Some(body)).await
    }

    async fn register(&self, name: &str, kinds: &[&str]) -> i64 {
        let (status, body) = self
            .post(
                "/api/v1/nodes/register",
                json!({ "name": name, "kinds": kinds, "capacity": 4, "labels": {} }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        *self.node_token.lock().unwrap() = Some(body["token"].as_str().unwrap().to_string());
        body["node_id"].as_i64().unwrap()
    }

    async fn claim(&self, node_id: i64, kinds: &[&str], max: i64) -> Vec<Value> {
        let (status, body) = self
            .post(
                "/api/v1/leases/claim",
                json!({ "node_id": node_id, "kinds": kinds, "max": max, "wait_ms": 0 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["leases"].as_array().unwrap().clone()
    }
}

fn one_task_job(name: &str, kind: &str) -> Value {
    json!({ "name": name, "tasks": [{ "key": "only", "kind": kind, "payload": {} }] })
}

/// SPEC §9: every failure is `{code, message, details}`, `details` an
/// object even when it has nothing to say.
fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["details"].is_object(), "details: {body}");
}

#[tokio::test]
async fn submit_returns_the_job_and_honours_the_idempotency_key() {
    let api = api().await;
    let job = json!({
        "name": "nightly-build", "tenant": "default", "queue": "default", "priority": 0,
        "idempotency_key": "build-2026-11-20",
        "tasks": [
            { "key": "fetch", "kind": "exec", "payload": {"cmd": "git", "args": ["fetch"]},
              "depends_on": [], "max_attempts": 3, "timeout_s": 600 },
            { "key": "build", "kind": "exec", "payload": {"cmd": "make"}, "depends_on": ["fetch"] }
        ]
    });
    let (status, first) = api.post("/api/v1/jobs", job.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["name"], "nightly-build");
    assert_eq!(first["state"], "queued");
    let tasks = first["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["key"], "fetch");
    assert_eq!(tasks[0]["state"], "ready");
    assert_eq!(tasks[1]["state"], "pending");
    assert_eq!(tasks[1]["depends_on"], json!(["fetch"]));

    let (status, second) = api.post("/api/v1/jobs", job).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["id"], first["id"]);
    let (_, page) = api.get("/api/v1/jobs").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn invalid_submissions_are_refused_with_typed_errors_and_nothing_written() {
    let api = api().await;
    let cycle = json!({ "name": "c", "tasks": [
        { "key": "a", "kind": "noop", "depends_on": ["b"] },
        { "key": "b", "kind": "noop", "depends_on": ["a"] }
    ]});
    let (status, body) = api.post("/api/v1/jobs", cycle).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "dag_cycle");
    let keys = body["details"]["keys"].as_array().unwrap();
    assert!(
        keys.contains(&json!("a")) && keys.contains(&json!("b")),
        "{body}"
    );

    let unknown =
        json!({ "name": "u", "tasks": [{ "key": "a", "kind": "noop", "depends_on": ["ghost"] }]});
    let (status, body) = api.post("/api/v1/jobs", unknown).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "unknown_dependency");
    assert!(body["message"].as_str().unwrap().contains("ghost"));

    let duplicate = json!({ "name": "d", "tasks": [{ "key": "a", "kind": "noop" }, { "key": "a", "kind": "noop" }]});
    let (status, body) = api.post("/api/v1/jobs", duplicate).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "duplicate_task_key");

    let (status, body) = api.call(Method::POST, "/api/v1/jobs", None).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error(&body, "unsupported_media_type");

    let (status, body) = api.post("/api/v1/jobs", json!({ "tasks": "nope" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_body");

    let (_, page) = api.get("/api/v1/jobs").await;
    assert_eq!(page["items"], json!([]), "nothing was written");
}

#[tokio::test]
async fn jobs_list_filters_and_pages_with_a_cursor() {
    let api = api().await;
    for i in 0..5 {
        let mut job = one_task_job(&format!("report-{i}"), "noop");
        job["queue"] = json!(if i % 2 == 0 { "even" } else { "odd" });
        let (status, _) = api.post("/api/v1/jobs", job).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, even) = api.get("/api/v1/jobs?queue=even").await;
    assert_eq!(even["items"].as_array().unwrap().len(), 3);
    let (_, text) = api.get("/api/v1/jobs?q=report-3").await;
    assert_eq!(text["items"].as_array().unwrap().len(), 1);
    assert_eq!(text["items"][0]["name"], "report-3");
    // Digits find the job of that id and the names holding them.
    let id = even["items"][2]["id"].as_i64().unwrap();
    let (status, _) = api
        .post(
            "/api/v1/jobs",
            one_task_job(&format!("release-{id}"), "noop"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, digits) = api.get(&format!("/api/v1/jobs?q={id}")).await;
    let mut names: Vec<&str> = digits["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    names.sort();
    let by_id = even["items"][2]["name"].as_str().unwrap().to_string();
    assert!(names.contains(&by_id.as_str()), "{names:?}");
    assert!(
        names.contains(&format!("release-{id}").as_str()),
        "{names:?}"
    );

    let mut seen = Vec::new();
    let mut uri = "/api/v1/jobs?limit=2".to_string();
    loop {
        let (status, page) = api.get(&uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for job in page["items"].as_array().unwrap() {
            seen.push(job["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/jobs?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (6, 6), "{seen:?}");

    let (status, body) = api.get("/api/v1/jobs?state=exploded").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_query");
    let (status, body) = api.get("/api/v1/jobs?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_query");
    // The same code for the same mistake on every list.
    let (status, body) = api.get("/api/v1/events?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_query");
}

#[tokio::test]
async fn the_worker_protocol_leases_fences_and_completes() {
    let api = api().await;
    let (_, job) = api.post("/api/v1/jobs", one_task_job("ping", "noop")).await;
    let node = api.register("node-a", &["noop"]).await;
    let leases = api.claim(node, &["noop"], 10).await;
    assert_eq!(leases.len(), 1);
    let lease = &leases[0];
    for field in [
        "attempt_id",
        "task_id",
        "job_id",
        "kind",
        "payload",
        "lease_token",
        "epoch",
        "lease_expires_at",
    ] {
        assert!(!lease[field].is_null(), "lease lacks {field}: {lease}");
    }
    assert_eq!(lease["job_id"], job["id"]);
    let attempt = lease["attempt_id"].as_i64().unwrap();
    let proof = json!({ "lease_token": lease["lease_token"], "epoch": lease["epoch"] });

    let (status, beat) = api
        .post(
            &format!("/api/v1/leases/{attempt}/heartbeat"),
            proof.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{beat}");
    assert_eq!(beat["cancelled"], false);

    let stale = json!({ "lease_token": lease["lease_token"], "epoch": lease["epoch"].as_i64().unwrap() + 7 });
    let (status, body) = api
        .post(&format!("/api/v1/leases/{attempt}/complete"), stale)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "stale_lease");
    let (_, detail) = api.get(&format!("/api/v1/jobs/{}", job["id"])).await;
    assert_eq!(
        detail["tasks"][0]["state"], "leased",
        "a stale completion changes nothing"
    );

    let mut done = proof.clone();
    done["output"] = json!({ "pong": true });
    let (status, body) = api
        .post(&format!("/api/v1/leases/{attempt}/complete"), done)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, detail) = api.get(&format!("/api/v1/jobs/{}", job["id"])).await;
    assert_eq!(detail["state"], "succeeded");
    assert_eq!(detail["tasks"][0]["attempts"][0]["state"], "succeeded");
    assert_eq!(detail["tasks"][0]["attempts"][0]["node_id"], node);

    let (_, events) = api.get("/api/v1/events?after=0&limit=1000").await;
    let seqs: Vec<i64> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gapless, ordered: {seqs:?}"
    );
    let types: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"lease.granted"), "{types:?}");
    assert!(
        types
            .iter()
            .any(|t| t.starts_with("lease.") && t.contains("stale") || *t == "lease.fenced"),
        "stale rejection recorded: {types:?}"
    );
}

#[tokio::test]
async fn batch_heartbeat_and_complete_report_per_item() {
    let api = api().await;
    for i in 0..3 {
        api.post("/api/v1/jobs", one_task_job(&format!("b{i}"), "noop"))
            .await;
    }
    let node = api.register("node-b", &["noop"]).await;
    let leases = api.claim(node, &["noop"], 10).await;
    assert_eq!(leases.len(), 3);
    let mut items: Vec<Value> = leases
        .iter()
        .map(|l| json!({ "attempt_id": l["attempt_id"], "lease_token": l["lease_token"], "epoch": l["epoch"] }))
        .collect();
    let (status, beats) = api
        .post("/api/v1/leases/heartbeat", json!({ "items": items }))
        .await;
    assert_eq!(status, StatusCode::OK, "{beats}");
    assert!(beats["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["ok"]["cancelled"] == false));

    items[1]["lease_token"] = json!("forged");
    let (status, done) = api
        .post("/api/v1/leases/complete", json!({ "items": items }))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let results = done["results"].as_array().unwrap();
    assert!(
        results[0]["error"].is_null() && results[2]["error"].is_null(),
        "{done}"
    );
    assert_eq!(results[1]["error"]["code"], "stale_lease", "{done}");
}

#[tokio::test]
async fn a_permanent_failure_dead_letters_and_can_be_replayed_and_resolved() {
    let api = api().await;
    let job = json!({ "name": "flaky", "queue": "etl", "tasks": [
        { "key": "fetch", "kind": "noop", "payload": {"url": "x"} },
        { "key": "load", "kind": "noop", "depends_on": ["fetch"] }
    ]});
    let (_, job) = api.post("/api/v1/jobs", job).await;
    let node = api.register("node-c", &["noop"]).await;
    let lease = api.claim(node, &["noop"], 1).await.remove(0);
    let attempt = lease["attempt_id"].as_i64().unwrap();
    let (status, outcome) = api
        .post(
            &format!("/api/v1/leases/{attempt}/fail"),
            json!({ "lease_token": lease["lease_token"], "epoch": lease["epoch"],
                    "error": { "message": "upstream said 503", "retryable": false } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["task_state"], "failed");
    let entry_id = outcome["dead_letter_id"].as_i64().unwrap();

    let (_, detail) = api.get(&format!("/api/v1/jobs/{}", job["id"])).await;
    assert_eq!(detail["state"], "failed");
    assert_eq!(detail["tasks"][1]["state"], "skipped");

    let (_, listed) = api.get("/api/v1/dead-letter?status=open&queue=etl").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let (_, entry) = api.get(&format!("/api/v1/dead-letter/{entry_id}")).await;
    assert_eq!(entry["error"], "upstream said 503");
    assert_eq!(entry["payload"], json!({"url": "x"}));
    assert!(!entry["fingerprint"].as_str().unwrap().is_empty());

    let (status, dry) = api
        .post(
            "/api/v1/dead-letter/replay",
            json!({ "filter": { "queue": "etl" }, "dry_run": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(
        (dry["dry_run"].clone(), dry["matched"].clone()),
        (json!(true), json!(1))
    );
    let (_, still) = api.get(&format!("/api/v1/dead-letter/{entry_id}")).await;
    assert_eq!(still["status"], "open", "a dry run changes nothing");

    let (status, replayed) = api
        .post(
            &format!("/api/v1/dead-letter/{entry_id}/replay"),
            json!({ "payload": {"url": "y"} }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(replayed["status"], "replayed");
    let (_, detail) = api.get(&format!("/api/v1/jobs/{}", job["id"])).await;
    assert_eq!(detail["tasks"][0]["state"], "ready");
    assert_eq!(detail["tasks"][0]["payload"], json!({"url": "y"}));
    assert_eq!(
        detail["tasks"][1]["state"], "pending",
        "skipped downstream revived"
    );

    let (status, body) = api
        .post(
            &format!("/api/v1/dead-letter/{entry_id}/resolve"),
            json!({ "reason": "done" }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a replayed entry is no longer open: {body}"
    );

    let (status, body) = api
        .post(
            "/api/v1/dead-letter/resolve",
            json!({ "ids": [1], "filter": {} }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "validation_failed");
}

#[tokio::test]
async fn paused_queues_hold_work_and_cancel_and_retry_act_on_jobs() {
    let api = api().await;
    let mut job = one_task_job("held", "noop");
    job["queue"] = json!("q1");
    let (_, job) = api.post("/api/v1/jobs", job).await;
    let node = api.register("node-d", &["noop"]).await;

    let (status, queue) = api.post("/api/v1/queues/q1/pause", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue["paused"], true);
    assert!(api.claim(node, &["noop"], 5).await.is_empty());
    api.post("/api/v1/queues/q1/resume", json!({})).await;
    assert_eq!(api.claim(node, &["noop"], 5).await.len(), 1);

    let (status, cancelled) = api
        .post(&format!("/api/v1/jobs/{}/cancel", job["id"]), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let (status, body) = api.post("/api/v1/jobs/999999/cancel", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
}

#[tokio::test]
async fn quotas_are_set_and_listed_with_usage() {
    let api = api().await;
    let (status, quota) = api
        .call(
            Method::PUT,
            "/api/v1/quotas/queue/default",
            Some(json!({ "max_concurrent": 2, "max_starts_per_minute": 100 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{quota}");
    let (_, quotas) = api.get("/api/v1/quotas").await;
    let listed = &quotas["items"][0];
    assert_eq!(listed["max_concurrent"], 2);
    assert_eq!(listed["usage"]["concurrent"], 0);

    for i in 0..4 {
        api.post("/api/v1/jobs", one_task_job(&format!("q{i}"), "noop"))
            .await;
    }
    let node = api.register("node-e", &["noop"]).await;
    assert_eq!(
        api.claim(node, &["noop"], 10).await.len(),
        2,
        "the quota caps concurrency"
    );

    let (status, body) = api
        .call(
            Method::PUT,
            "/api/v1/quotas/planet/x",
            Some(json!({ "max_concurrent": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
}

#[tokio::test]
async fn unknown_api_paths_answer_with_the_typed_error() {
    let api = api().await;
    let (status, body) = api.get("/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    let (status, body) = api.get("/api/v1/jobs/not-a-number").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_path");
    // Outside /api/v1 as well: the console's HTML 404 is for pages.
    for uri in ["/api", "/api/v1/", "/api/v2/jobs"] {
        let (status, body) = api.get(uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_error(&body, "not_found");
    }
    // A method an endpoint does not answer: typed too, with its Allow.
    let (status, headers, bytes) = common::send(
        &api.router,
        common::request(
            Method::DELETE,
            "/api/v1/jobs/1",
            Some(&api.token),
            &[],
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
    assert_error(&body, "method_not_allowed");
    assert!(
        body["message"].as_str().unwrap().contains("DELETE"),
        "{body}"
    );
    let allow = headers.get("allow").expect("an Allow header");
    assert!(allow.to_str().unwrap().contains("GET"), "{allow:?}");
}

/// A misspelled field used to be dropped without a word, which made the
/// request mean something else: a filter that filtered nothing (a batch
/// resolve of every open entry), a quota with no limit (removed), a task
/// with the default budget. Every body and query now names what it does
/// not know, and nothing is changed.
#[tokio::test]
async fn a_misspelled_field_is_refused_by_name_and_nothing_changes() {
    let api = api().await;
    let refused = |status: StatusCode, body: &Value, field: &str| {
        assert!(status.is_client_error(), "{status} {body}");
        assert!(
            body["message"].as_str().unwrap().contains(field),
            "the message names {field}: {body}"
        );
        assert!(body["details"].is_object(), "{body}");
    };
    // A job with a dead-lettered task, so a dead-letter entry is open.
    api.post(
        "/api/v1/jobs",
        json!({ "name": "dl", "tasks": [{ "key": "a", "kind": "noop", "max_attempts": 1 }] }),
    )
    .await;
    let node = api.register("node-m", &["noop"]).await;
    let lease = api.claim(node, &["noop"], 1).await.pop().unwrap();
    let attempt = lease["attempt_id"].as_i64().unwrap();
    let (status, body) = api
        .post(
            &format!("/api/v1/leases/{attempt}/fail"),
            json!({ "lease_token": lease["lease_token"], "epoch": lease["epoch"],
                    "error": { "message": "boom", "retryable": false } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = api
        .post(
            "/api/v1/dead-letter/resolve",
            json!({ "filter": { "tennant": "gamma" }, "reason": "x" }),
        )
        .await;
    refused(status, &body, "tennant");
    // Nor does one action take the other's fields.
    let (status, body) = api
        .post(
            "/api/v1/dead-letter/resolve",
            json!({ "ids": [1], "reason": "x", "queue": "elsewhere" }),
        )
        .await;
    refused(status, &body, "queue");
    let (status, body) = api
        .post(
            "/api/v1/dead-letter/replay",
            json!({ "ids": [1], "reason": "x" }),
        )
        .await;
    refused(status, &body, "reason");
    let (_, open) = api.get("/api/v1/dead-letter?status=open").await;
    assert_eq!(open["items"].as_array().unwrap().len(), 1, "still open");

    let (status, body) = api
        .post(
            "/api/v1/jobs/cancel",
            json!({ "filter": { "tenat": "beta" }, "dry_run": true }),
        )
        .await;
    refused(status, &body, "tenat");

    let (status, _) = api
        .call(
            Method::PUT,
            "/api/v1/quotas/queue/q0",
            Some(json!({ "max_concurrent": 5 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .call(
            Method::PUT,
            "/api/v1/quotas/queue/q0",
            Some(json!({ "max_concurent": 10 })),
        )
        .await;
    refused(status, &body, "max_concurent");
    let (_, quotas) = api.get("/api/v1/quotas").await;
    assert_eq!(quotas["items"][0]["max_concurrent"], 5, "{quotas}");

    let (status, body) = api
        .post(
            "/api/v1/jobs",
            json!({ "name": "typo", "tasks": [{ "key": "a", "kind": "noop", "max_attempt": 5 }] }),
        )
        .await;
    refused(status, &body, "max_attempt");
    let (_, jobs) = api.get("/api/v1/jobs?q=typo").await;
    assert_eq!(jobs["items"], json!([]), "nothing was written");

    let (status, body) = api.get("/api/v1/jobs?stat=failed").await;
    refused(status, &body, "stat");

    // The worker protocol too: a completion's misspelled output is not
    // recorded as a completion without one.
    api.post("/api/v1/jobs", one_task_job("out", "noop")).await;
    let lease = api.claim(node, &["noop"], 1).await.pop().unwrap();
    let attempt = lease["attempt_id"].as_i64().unwrap();
    let (status, body) = api
        .post(
            &format!("/api/v1/leases/{attempt}/complete"),
            json!({ "lease_token": lease["lease_token"], "epoch": lease["epoch"], "outptu": 1 }),
        )
        .await;
    refused(status, &body, "outptu");
    let (_, job) = api.get(&format!("/api/v1/jobs/{}", lease["job_id"])).await;
    assert_eq!(job["tasks"][0]["state"], "leased", "{job}");
}

/// A body over the API's limit is refused as too large, saying the limit;
/// a job of 10,000 tasks (the most a job may have) with small payloads is
/// well inside it (it was not: axum's default limit of 2 MiB refused such
/// a job of 3 MB as "invalid JSON").
#[tokio::test]
async fn a_large_job_fits_and_a_body_over_the_limit_is_too_large() {
    let api = api().await;
    let tasks: Vec<Value> = (0..10_000)
        .map(|i| json!({ "key": format!("t{i}"), "kind": "noop", "payload": { "pad": "x".repeat(250) } }))
        .collect();
    let job = json!({ "name": "wide", "tasks": tasks });
    assert!(job.to_string().len() > 3_000_000);
    let (status, body) = api.post("/api/v1/jobs", job).await;
    assert_eq!(status, StatusCode::CREATED, "{}", body["message"]);
    assert_eq!(body["tasks"].as_array().unwrap().len(), 10_000);

    let huge = json!({ "name": "huge", "tasks": [{ "key": "a", "kind": "noop",
        "payload": { "pad": "x".repeat(server::api::MAX_BODY_BYTES) } }] });
    let (status, body) = api.post("/api/v1/jobs", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "payload_too_large");
    assert_eq!(body["details"]["limit_bytes"], server::api::MAX_BODY_BYTES);
    let (_, jobs) = api.get("/api/v1/jobs?q=huge").await;
    assert_eq!(jobs["items"], json!([]));
}

/// `switchyard worker`'s lease source against a real server on a socket:
/// jobs submitted over HTTP are claimed, run and completed over HTTP, and an
/// `exec` task's output lands in its attempt log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_worker_runs_jobs_end_to_end() {
    use kernel::model::NewNode;
    use kernel::worker::{PoolConfig, Shutdown, WorkerPool};
    use server::worker::{executors_for, HttpLeaseSource};
    use std::sync::Arc;

    let api = api().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = api.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let background = api.kernel.start_background();

    let client = reqwest::Client::new();
    let mut job_ids = Vec::new();
    for i in 0..20 {
        let job = one_task_job(&format!("n{i}"), "noop");
        let body: Value = client
            .post(format!("{base}/api/v1/jobs"))
            .bearer_auth(&api.token)
            .json(&job)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        job_ids.push(body["id"].as_i64().unwrap());
    }
    let exec = json!({ "name": "echo", "tasks": [{ "key": "say", "kind": "exec",
        "payload": { "cmd": "sh", "args": ["-c", "echo hello from exec; echo oops >&2"] } }] });
    let body: Value = client
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth(&api.token)
        .json(&exec)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exec_id = body["id"].as_i64().unwrap();
    job_ids.push(exec_id);

    let source = HttpLeaseSource::new(&base);
    let executors = executors_for(&[]).unwrap();
    let node_id = source
        .enroll(
            &NewNode {
                name: "remote-1".into(),
                kinds: executors.kinds(),
                capacity: 4,
                labels: Default::default(),
                file_scopes: vec![],
            },
            ENROLLMENT_SECRET,
        )
        .await
        .unwrap();
    let pool = WorkerPool::start(Arc::new(source), executors, PoolConfig::new(node_id, 4));

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut states = Vec::new();
        for id in &job_ids {
            let body: Value = client
                .get(format!("{base}/api/v1/jobs/{id}"))
                .bearer_auth(&api.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            states.push(body["state"].as_str().unwrap().to_string());
        }
        if states.iter().all(|s| s == "succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "jobs did not finish: {states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.shutdown(Shutdown::Finish {
        timeout: Duration::from_secs(5),
    })
    .await;

    let detail: Value = client
        .get(format!("{base}/api/v1/jobs/{exec_id}"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let attempt = detail["tasks"][0]["attempts"][0]["id"].as_i64().unwrap();
    assert_eq!(detail["tasks"][0]["attempts"][0]["node_id"], node_id);
    let log: Value = client
        .get(format!("{base}/api/v1/attempts/{attempt}/log"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lines: Vec<(String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_string(),
                l["line"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        lines.contains(&("stdout".into(), "hello from exec".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stderr".into(), "oops".into())),
        "{lines:?}"
    );

    background.shutdown().await;
    server.abort();
}

/// The OpenAPI document is served, and every path it documents is routed
/// (a request to it does not hit the API's "no such endpoint" fallback).
/// A server that accepts a worker's connection and never answers (gone
/// without closing it) costs the worker one call's time limit, not its
/// claim loop: the call fails as a transport error, and the pool retries.
#[tokio::test]
async fn a_worker_call_to_a_server_that_never_answers_fails_in_time() {
    use kernel::model::ClaimRequest;
    use kernel::worker::LeaseSource;
    use server::worker::HttpLeaseSource;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // Accepts, reads nothing, answers nothing, holds the connections open.
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let source = HttpLeaseSource::with_timeout(&base, Duration::from_millis(500));
    let started = Instant::now();
    let claim = source.claim(ClaimRequest {
        node_id: 1,
        kinds: vec!["noop".into()],
        max: 1,
        wait_ms: 0,
    });
    let err = tokio::time::timeout(Duration::from_secs(10), claim)
        .await
        .expect("the call ended on its own")
        .unwrap_err();
    assert_eq!(err.code, "transport", "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        server::worker::CALL_TIMEOUT
            > Duration::from_millis(server::api::leases::MAX_WAIT_MS as u64),
        "a claim may wait its whole time for work"
    );
    held.abort();
}

#[tokio::test]
async fn the_openapi_document_describes_routed_endpoints() {
    let api = api().await;
    let (status, doc) = api.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["info"]["title"], "Switchyard API");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 25, "{} paths", paths.len());
    for (path, methods) in paths {
        let concrete = path
            .replace("{id}", "1")
            .replace("{attempt_id}", "1")
            .replace("{name}", "default")
            .replace("{scope}", "queue");
        if path.ends_with("/stream") {
            // Endless bodies; routed and tested in the SSE suite.
            continue;
        }
        for method in methods.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let body = (method != Method::GET).then(|| json!({}));
            let (_, answer) = api.call(method.clone(), &concrete, body).await;
            assert_ne!(
                answer["message"], "no such API endpoint",
                "{method} {path} is documented but not routed"
            );
        }
    }
    for stream in ["/api/v1/events/stream", "/api/v1/jobs/{id}/stream"] {
        assert!(paths.contains_key(stream), "{stream} is not documented");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["session"]["in"], "cookie", "{schemes}");
    assert_eq!(schemes["enrollment"]["in"], "header", "{schemes}");
    for schema in [
        "NewJob",
        "JobDetail",
        "Lease",
        "ErrorBody",
        "DeadLetterEntry",
        "Quota",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
}
