//! The job detail page's actions through the real router: retrying one
//! failed task needs `runs.manage` and a grant for the job's tenant.

use crate::common;

use axum::http::{Method, StatusCode};
use axum::Router;
use kernel::model::{ClaimRequest, NewJob, NewNode, NewTask, Scope, TaskFailure};
use kernel::{Kernel, KernelConfig};
use leptos::prelude::LeptosOptions;
use serde_json::{json, Value};
use server::auth::AuthSettings;
use server::{app, AppState};

struct Harness {
    router: Router,
    kernel: Kernel,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("jobs.db").display());
    let kernel = Kernel::open(&url, KernelConfig::default()).await.unwrap();
    let state = AppState::new(
        LeptosOptions::builder()
            .output_name("switchyard")
            .site_root(dir.path().to_string_lossy().as_ref())
            .build(),
        kernel.clone(),
        Default::default(),
        AuthSettings::default(),
    );
    Harness {
        router: app(state),
        kernel,
        _dir: dir,
    }
}

impl Harness {
    async fn post(&self, uri: &str, bearer: &str) -> (StatusCode, Value) {
        let (status, _, bytes) = common::send(
            &self.router,
            common::request(Method::POST, uri, Some(bearer), &[], None),
        )
        .await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A job whose task `bad` failed for good (dead-lettered) while `slow`
    /// still runs; `after` was skipped.
    async fn job_with_a_failed_task(&self) -> i64 {
        let k = &self.kernel;
        let node = k
            .register_node(&NewNode {
                name: "n1".into(),
                kinds: vec!["noop".into()],
                capacity: 4,
                labels: Default::default(),
                file_scopes: vec![],
            })
            .await
            .unwrap()
            .id;
        let job = NewJob {
            tasks: vec![
                NewTask::new("bad", "noop", json!({})).max_attempts(1),
                NewTask::new("after", "noop", json!({})).after(&["bad"]),
                NewTask::new("slow", "noop", json!({})),
            ],
            ..NewJob::single("detail", "noop", json!({}))
        };
        let job_id = k.submit(job).await.unwrap().job.id;
        let leases = k
            .claim(&ClaimRequest {
                node_id: node,
                kinds: vec!["noop".into()],
                max: 10,
                wait_ms: 0,
            })
            .await
            .unwrap();
        let detail = k.get_job(job_id).await.unwrap();
        let bad = detail.tasks.iter().find(|t| t.key == "bad").unwrap().id;
        let lease = leases.iter().find(|l| l.task_id == bad).unwrap();
        k.fail(
            lease.attempt_id,
            &lease.proof(),
            &TaskFailure {
                message: "boom".into(),
                retryable: false,
            },
        )
        .await
        .unwrap();
        job_id
    }
}

fn task_state<'a>(job: &'a Value, key: &str) -> &'a str {
    job["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == key)
        .unwrap()["state"]
        .as_str()
        .unwrap()
}

#[tokio::test]
async fn retry_task_needs_runs_manage_and_the_tenant() {
    let h = harness().await;
    let job_id = h.job_with_a_failed_task().await;
    let uri = format!("/api/v1/jobs/{job_id}/tasks/bad/retry");

    let reader = common::token(&h.kernel, "reader", &[Scope::RunsRead], &["*"]).await;
    let (status, body) = h.post(&uri, &reader).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "forbidden");

    let elsewhere = common::token(&h.kernel, "other", &[Scope::RunsManage], &["other"]).await;
    let (status, body) = h.post(&uri, &elsewhere).await;
    assert!(
        matches!(status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
        "another tenant's job is not retried: {status} {body}"
    );
    let unchanged = h.kernel.get_job(job_id).await.unwrap();
    assert!(unchanged
        .tasks
        .iter()
        .any(|t| t.key == "bad" && t.state == kernel::model::TaskState::Failed));

    let manager = common::token(&h.kernel, "manager", &[Scope::RunsManage], &["*"]).await;
    let (status, body) = h.post(&uri, &manager).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(task_state(&body, "bad"), "ready");
    assert_eq!(task_state(&body, "after"), "pending");

    // Not failed any more: a conflict. An unknown key: not found.
    let (status, body) = h.post(&uri, &manager).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = h
        .post(
            &format!("/api/v1/jobs/{job_id}/tasks/nosuch/retry"),
            &manager,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
