//! "Why isn't this running?" (`Kernel::explain_job`) and retrying one task
//! (`Kernel::retry_task`), on SQLite and Postgres, through the public API.

mod common;

use common::Env;
use kernel::model::*;
use serde_json::json;

conformance!(
    unmet_dependencies_name_the_keys_and_states,
    paused_queue_holds_ready_tasks,
    exhausted_quotas_are_named_with_usage,
    no_online_node_for_the_kind,
    only_draining_nodes_for_the_kind,
    backoff_holds_until_a_time,
    unheld_ready_task_has_no_reason,
    retry_task_revives_one_failed_task,
    attempts_show_only_a_lease_token_prefix,
);

fn hold<'a>(holds: &'a [TaskHold], key: &str) -> &'a TaskHold {
    holds
        .iter()
        .find(|h| h.key == key)
        .unwrap_or_else(|| panic!("no hold for {key}: {holds:?}"))
}

async fn unmet_dependencies_name_the_keys_and_states(env: Env) {
    let k = &env.kernel;
    env.node("n1").await;
    let job = NewJob {
        tasks: vec![
            NewTask::new("a", "noop", json!({})),
            NewTask::new("b", "noop", json!({})),
            NewTask::new("c", "noop", json!({})).after(&["a", "b"]),
        ],
        ..NewJob::single("deps", "noop", json!({}))
    };
    let job_id = k.submit(job).await.unwrap().job.id;
    let leases = env.claim(env.node("n2").await, 10).await;
    assert_eq!(leases.len(), 2);
    let a = k.get_job(job_id).await.unwrap();
    let a_id = a.tasks.iter().find(|t| t.key == "a").unwrap().id;
    let la = leases.iter().find(|l| l.task_id == a_id).unwrap();
    k.complete(la.attempt_id, &la.proof(), None).await.unwrap();

    let holds = k.explain_job(job_id).await.unwrap();
    assert_eq!(holds.len(), 1, "only c waits: {holds:?}");
    let c = hold(&holds, "c");
    assert_eq!(c.state, TaskState::Pending);
    assert_eq!(
        c.reasons,
        vec![HoldReason::UnmetDependencies {
            dependencies: vec![DependencyState {
                key: "b".into(),
                state: TaskState::Leased
            }]
        }]
    );
    assert_eq!(k.explain_job(987654).await.unwrap_err().code(), "not_found");
}

async fn paused_queue_holds_ready_tasks(env: Env) {
    let k = &env.kernel;
    env.node("n1").await;
    k.pause_queue("default").await.unwrap();
    let job_id = k
        .submit(NewJob::single("p", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let holds = k.explain_job(job_id).await.unwrap();
    let only = hold(&holds, "main");
    assert_eq!(only.state, TaskState::Ready);
    assert!(
        matches!(&only.reasons[..], [HoldReason::QueuePaused { queue, paused_at: Some(_) }] if queue == "default"),
        "{only:?}"
    );
    k.resume_queue("default").await.unwrap();
    assert!(hold(&k.explain_job(job_id).await.unwrap(), "main")
        .reasons
        .is_empty());
}

async fn exhausted_quotas_are_named_with_usage(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let mut jobs = Vec::new();
    for i in 0..3 {
        let mut j = NewJob::single(format!("acme{i}"), "noop", json!({}));
        j.tenant = "acme".into();
        j.queue = "slow".into();
        jobs.push(j);
    }
    let ids: Vec<i64> = k
        .submit_many(jobs)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    k.set_quota(
        QuotaScope::Tenant,
        "acme",
        &QuotaLimits {
            max_concurrent: Some(1),
            max_starts_per_minute: None,
        },
    )
    .await
    .unwrap();
    k.set_quota(
        QuotaScope::Queue,
        "slow",
        &QuotaLimits {
            max_concurrent: None,
            max_starts_per_minute: Some(1),
        },
    )
    .await
    .unwrap();
    let leased = env.claim(node, 10).await;
    assert_eq!(leased.len(), 1);
    let waiting = ids.iter().find(|id| **id != leased[0].job_id).unwrap();
    let holds = k.explain_job(*waiting).await.unwrap();
    let reasons = &hold(&holds, "main").reasons;
    assert!(
        reasons.contains(&HoldReason::QuotaExhausted {
            scope: QuotaScope::Tenant,
            name: "acme".into(),
            max_concurrent: Some(1),
            concurrent: 1,
            max_starts_per_minute: None,
            starts_last_minute: 0,
        }),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&HoldReason::QuotaExhausted {
            scope: QuotaScope::Queue,
            name: "slow".into(),
            max_concurrent: None,
            concurrent: 1,
            max_starts_per_minute: Some(1),
            starts_last_minute: 1,
        }),
        "{reasons:?}"
    );
    // The leased job's own task is not waiting: nothing to explain.
    assert!(k.explain_job(leased[0].job_id).await.unwrap().is_empty());
}

async fn no_online_node_for_the_kind(env: Env) {
    let k = &env.kernel;
    env.node("n1").await; // declares noop, sleep, exec
    let job_id = k
        .submit(NewJob::single("gpu", "gpu-render", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let holds = k.explain_job(job_id).await.unwrap();
    assert_eq!(
        hold(&holds, "main").reasons,
        vec![HoldReason::NoOnlineNode {
            kind: "gpu-render".into(),
            nodes: vec![]
        }]
    );
    // A node that declares the kind but went silent is named as offline.
    let gpu = k
        .register_node(&NewNode {
            name: "gpu1".into(),
            kinds: vec!["gpu-render".into()],
            capacity: 1,
            labels: Default::default(),
            file_scopes: vec![],
        })
        .await
        .unwrap()
        .id;
    assert!(hold(&k.explain_job(job_id).await.unwrap(), "main")
        .reasons
        .is_empty());
    env.clock.advance(61_000);
    k.sweep().await.unwrap();
    assert_eq!(
        hold(&k.explain_job(job_id).await.unwrap(), "main").reasons,
        vec![HoldReason::NoOnlineNode {
            kind: "gpu-render".into(),
            nodes: vec![NodeRef {
                id: gpu,
                name: "gpu1".into(),
                status: NodeStatus::Offline
            }]
        }]
    );
}

async fn only_draining_nodes_for_the_kind(env: Env) {
    let k = &env.kernel;
    let a = env.node("a").await;
    k.drain_node(a).await.unwrap();
    let job_id = k
        .submit(NewJob::single("x", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    assert_eq!(
        hold(&k.explain_job(job_id).await.unwrap(), "main").reasons,
        vec![HoldReason::OnlyDrainingNodes {
            kind: "noop".into(),
            nodes: vec![NodeRef {
                id: a,
                name: "a".into(),
                status: NodeStatus::Draining
            }]
        }]
    );
    k.undrain_node(a).await.unwrap();
    assert!(hold(&k.explain_job(job_id).await.unwrap(), "main")
        .reasons
        .is_empty());
}

async fn backoff_holds_until_a_time(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job_id = k
        .submit(NewJob {
            tasks: vec![NewTask::new("flaky", "noop", json!({})).max_attempts(3)],
            ..NewJob::single("b", "noop", json!({}))
        })
        .await
        .unwrap()
        .job
        .id;
    let lease = env.claim(node, 1).await.pop().unwrap();
    let out = k
        .fail(
            lease.attempt_id,
            &lease.proof(),
            &TaskFailure {
                message: "boom".into(),
                retryable: true,
            },
        )
        .await
        .unwrap();
    let until = out.retry_at.unwrap();
    assert_eq!(
        hold(&k.explain_job(job_id).await.unwrap(), "flaky").reasons,
        vec![HoldReason::Backoff { until }]
    );
    env.clock.advance(120_000);
    assert!(!hold(&k.explain_job(job_id).await.unwrap(), "flaky")
        .reasons
        .iter()
        .any(|r| matches!(r, HoldReason::Backoff { .. })));
}

async fn unheld_ready_task_has_no_reason(env: Env) {
    let k = &env.kernel;
    env.node("n1").await;
    let job_id = k
        .submit(NewJob::single("free", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let holds = k.explain_job(job_id).await.unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].state, TaskState::Ready);
    assert!(holds[0].reasons.is_empty());
}

async fn retry_task_revives_one_failed_task(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job = NewJob {
        tasks: vec![
            NewTask::new("bad", "noop", json!({})).max_attempts(1),
            NewTask::new("after", "noop", json!({})).after(&["bad"]),
            NewTask::new("slow", "noop", json!({})),
        ],
        ..NewJob::single("rt", "noop", json!({}))
    };
    let job_id = k.submit(job).await.unwrap().job.id;
    let leases = env.claim(node, 10).await;
    let detail = k.get_job(job_id).await.unwrap();
    let bad_id = detail.tasks.iter().find(|t| t.key == "bad").unwrap().id;
    let bad = leases.iter().find(|l| l.task_id == bad_id).unwrap();
    k.fail(
        bad.attempt_id,
        &bad.proof(),
        &TaskFailure {
            message: "nope".into(),
            retryable: false,
        },
    )
    .await
    .unwrap();
    // "slow" still runs: the job has not failed, yet the task can be retried.
    let before = k.get_job(job_id).await.unwrap();
    assert_ne!(before.job.state, JobState::Failed);
    let state = |d: &JobDetail, key: &str| d.tasks.iter().find(|t| t.key == key).unwrap().state;
    assert_eq!(state(&before, "bad"), TaskState::Failed);
    assert_eq!(state(&before, "after"), TaskState::Skipped);

    // Only a failed task, only a known key.
    assert_eq!(
        k.retry_task(job_id, "slow").await.unwrap_err().code(),
        "conflict"
    );
    assert_eq!(
        k.retry_task(job_id, "nosuch").await.unwrap_err().code(),
        "not_found"
    );
    let after = k.retry_task(job_id, "bad").await.unwrap();
    assert_eq!(state(&after, "bad"), TaskState::Ready);
    assert_eq!(state(&after, "after"), TaskState::Pending);
    let t = after.tasks.iter().find(|t| t.key == "bad").unwrap();
    assert_eq!(t.attempts_used, 0);
    let entries = k
        .list_dead_letters(&DeadLetterFilter::default(), 50, None)
        .await
        .unwrap();
    assert!(entries
        .items
        .iter()
        .filter(|e| e.task_id == bad_id)
        .all(|e| e.status == DeadLetterStatus::Replayed));
    // It runs again.
    let again = env.claim(node, 10).await;
    assert!(again.iter().any(|l| l.task_id == bad_id));
    assert_eq!(
        k.retry_task(job_id, "bad").await.unwrap_err().code(),
        "conflict"
    );
    k.cancel_job(job_id).await.unwrap();
    assert_eq!(
        k.retry_task(job_id, "bad").await.unwrap_err().code(),
        "conflict"
    );
}

async fn attempts_show_only_a_lease_token_prefix(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job_id = k
        .submit(NewJob::single("tok", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let lease = env.claim(node, 1).await.pop().unwrap();
    let detail = k.get_job(job_id).await.unwrap();
    let attempt = &detail.tasks[0].attempts[0];
    let prefix = attempt.lease_token_prefix.clone().unwrap();
    assert_eq!(prefix.chars().count(), 8);
    assert!(lease.lease_token.starts_with(&prefix));
    assert_ne!(prefix, lease.lease_token);
}
