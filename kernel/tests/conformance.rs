//! The kernel conformance suite (SPEC §2, §7): every test runs against a
//! real SQLite file and against Postgres, through the public API only.
//! Nothing here measures time: clocks are moved by hand, waits poll with a
//! generous bound.

mod common;

use std::collections::{BTreeSet, HashMap};

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use common::{eventually, Env};
use kernel::model::*;
use kernel::worker::{BoxFuture, SourceResult};
use kernel::KernelError;
use serde_json::{json, Value};

conformance!(
    dag_runs_in_dependency_order,
    invalid_dags_are_refused_and_nothing_is_written,
    submit_is_idempotent,
    concurrent_submitters_each_get_increasing_ids,
    concurrent_claimers_never_share_a_task,
    stale_epoch_is_fenced_after_a_re_lease,
    a_batch_of_completions_is_answered_item_by_item,
    single_task_and_larger_jobs_complete_alike_in_one_batch,
    a_completion_racing_a_cancel_ends_one_way_or_the_other,
    a_bulk_cancel_racing_a_batch_of_completions_ends_one_way_or_the_other,
    concurrent_single_calls_are_each_answered_their_own,
    a_claim_that_goes_away_gives_its_lease_back,
    a_job_finishes_when_its_last_tasks_complete_at_once,
    a_job_with_a_dead_lettered_task_fails_when_its_last_task_succeeds,
    expired_leases_recover_without_an_operator,
    one_lease_that_cannot_be_recovered_does_not_hold_up_the_others,
    retries_back_off_then_dead_letter,
    non_retryable_failure_dead_letters_at_once,
    a_dead_letter_keeps_every_attempt_of_its_spent_budget,
    replay_and_resolve_dead_letters,
    batch_dead_letter_actions,
    a_cancelled_jobs_dead_letters_are_not_replayed,
    a_replayed_tasks_queue_decides_whether_its_job_waits,
    paused_queue_blocks_and_resumes,
    quotas_limit_concurrency_and_starts,
    drained_node_gets_no_leases,
    heartbeat_extends_and_reports_cancellation,
    cancel_and_retry_jobs,
    release_gives_the_task_back,
    event_log_is_ordered_without_gaps,
    many_events_of_one_transaction_are_all_logged_in_order,
    lists_filter_and_paginate,
    attempt_log_appends_and_reads,
    long_poll_wakes_when_work_arrives,
    waiting_claims_of_one_node_each_get_a_burst,
    a_waiting_claim_gets_new_work_as_its_claim_would,
    a_waiting_claim_takes_older_ready_work_first,
    a_waiting_claim_gets_only_what_a_claim_may_lease,
    a_claim_that_stops_waiting_is_handed_nothing,
    worker_pool_runs_the_builtin_kinds,
    a_finished_run_is_not_renewed_while_it_is_reported,
    exec_logs_every_line_whatever_its_bytes,
    an_attempts_log_stops_at_its_cap_and_says_so,
    stopping_an_exec_task_stops_what_it_started,
    a_stopped_command_may_clean_up_before_it_is_killed,
    exec_commands_do_not_inherit_switchyards_configuration,
    text_with_a_nul_is_refused_or_kept_with_a_replacement,
    cancellation_reaches_a_running_worker,
    pool_shutdown_releases_running_leases,
    late_completion_leaves_a_fenced_attempt,
    quota_blocks_jobs_until_it_has_room,
    retention_deletes_old_finished_jobs_and_events,
    a_tenant_sees_only_the_queues_its_work_used,
    free_text_searches_names_and_payloads_through_the_index,
    the_kind_filter_reads_the_kinds_of_each_job,
);

mod postgres_only {
    use super::*;

    /// Connections are not pinged before each use, only after a second
    /// idle: when the server closes them all (a restart), the kernel still
    /// submits, claims and completes once that second has passed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_kernel_carries_on_after_the_server_closes_its_connections() {
        let Some(env) = common::postgres_env("carries_on_after_closed_connections").await else {
            return;
        };
        let k = &env.kernel;
        let node = env.node("n1").await;
        let claim = || env.claim(node, 1);
        k.submit(NewJob::single("before", "noop", json!({})))
            .await
            .unwrap();
        let leases = claim().await;
        k.complete(leases[0].attempt_id, &leases[0].proof(), None)
            .await
            .unwrap();
        // Every connection to this database, closed by the server.
        let admin_url = std::env::var("SWITCHYARD_TEST_POSTGRES_URL").unwrap();
        let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
        let db = env.url.rsplit('/').next().unwrap();
        let closed: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1) t",
        )
        .bind(db)
        .fetch_one(&admin)
        .await
        .unwrap();
        assert!(
            closed >= 3,
            "the kernel's connections were closed ({closed})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
        let job = k
            .submit(NewJob::single("after", "noop", json!({})))
            .await
            .unwrap()
            .job;
        let leases = claim().await;
        assert_eq!(leases.len(), 1);
        k.complete(leases[0].attempt_id, &leases[0].proof(), None)
            .await
            .unwrap();
        assert_eq!(
            k.get_job(job.id).await.unwrap().job.state,
            JobState::Succeeded
        );
    }

    /// Sessions of this test's database waiting for a lock.
    async fn lock_waiters(pool: &sqlx::PgPool) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    }

    /// Holds job `job` locked in a transaction of its own while `op` runs;
    /// once `op` waits for that lock, writes attempt `attempt` from the
    /// same transaction, which `op` holds: a cycle that Postgres breaks by
    /// failing `op` (it waited first; this side waits ten seconds before
    /// looking). Commits, then answers what `op` answered.
    async fn deadlock_against<T: Send + 'static>(
        env: &Env,
        job: i64,
        attempt: i64,
        op: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let pool = sqlx::PgPool::connect(&env.url).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SET LOCAL deadlock_timeout = '10s'")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(job)
            .execute(&mut *tx)
            .await
            .unwrap();
        let op = tokio::spawn(op);
        eventually("the operation waits for the job's lock", || {
            let pool = pool.clone();
            async move { (lock_waiters(&pool).await > 0).then_some(()) }
        })
        .await;
        sqlx::query("UPDATE attempts SET heartbeat_at = 1 WHERE id = $1")
            .bind(attempt)
            .execute(&mut *tx)
            .await
            .expect("the operation, not this transaction, lost the deadlock");
        tx.commit().await.unwrap();
        op.await.unwrap()
    }

    /// A replay reads the states of its job's tasks to decide what each
    /// revived task waits for, so it takes the job's lock first, as a
    /// completion or a failure of another of its tasks does. Read without
    /// it, a sibling's success committed between the replay's read and its
    /// commit was never counted: the task after both waited in `pending`
    /// for good, its job `running`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_replay_waits_for_its_job_as_a_completion_does() {
        let Some(env) = common::postgres_env("replay_waits_for_its_job").await else {
            return;
        };
        let node = env.node("n1").await;
        let (job, entry, u) = dead_lettered_beside_a_running_task(&env, node).await;
        let pool = sqlx::PgPool::connect(&env.url).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(job)
            .execute(&mut *tx)
            .await
            .unwrap();
        let k = env.kernel.clone();
        let replay =
            tokio::spawn(
                async move { k.replay_dead_letter(entry, &ReplayOptions::default()).await },
            );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if lock_waiters(&pool).await > 0 {
                break;
            }
            assert!(
                !replay.is_finished(),
                "the replay went ahead without its job's lock"
            );
            assert!(std::time::Instant::now() < deadline, "no lock wait seen");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tx.commit().await.unwrap();
        replay.await.unwrap().expect("the replay is done");
        let k = &env.kernel;
        k.complete(u.attempt_id, &u.proof(), None).await.unwrap();
        let f = env.claim(node, 1).await.pop().unwrap();
        k.complete(f.attempt_id, &f.proof(), None).await.unwrap();
        let s = env.claim(node, 1).await.pop().expect("s is ready");
        k.complete(s.attempt_id, &s.proof(), None).await.unwrap();
        assert_eq!(k.get_job(job).await.unwrap().job.state, JobState::Succeeded);
    }

    /// Each replica takes ids ahead of need; a replica that submits rarely
    /// once kept old ones for as long as it liked, so its new job got an
    /// id below other replicas' jobs of long before: listed among old
    /// jobs (the lists go by id), and claimed before older work (the
    /// claims too). Ids held over a second are dropped now.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_rarely_used_replica_does_not_give_new_jobs_old_ids() {
        let Some(env) = common::postgres_env("replica_ids_age").await else {
            return;
        };
        let other = kernel::Kernel::open(&env.url, common::test_config(&env.clock))
            .await
            .unwrap();
        let first = env.kernel.submit_many(noop_jobs(1, |_| 1)).await.unwrap()[0].0;
        let busy = other.submit_many(noop_jobs(40, |_| 1)).await.unwrap();
        let newest_elsewhere = busy.iter().map(|(id, _)| *id).max().unwrap();
        assert!(newest_elsewhere > first);
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        let late = env.kernel.submit_many(noop_jobs(1, |_| 1)).await.unwrap()[0].0;
        assert!(
            late > newest_elsewhere,
            "job {late}, submitted last, is older by id than job {newest_elsewhere}"
        );
        other.db().close().await;
    }

    /// A job can be `blocked` while its last task runs: a transaction
    /// ending another of its tasks derives the job's state without seeing
    /// a claim of that last task that has not committed yet, and finds the
    /// job held (a quota marked exhausted). Set here by hand, as that
    /// interleaving leaves it. The task's success then ends the job, as it
    /// would a running one; it once ended only running jobs, and this one
    /// stayed blocked for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_blocked_job_ends_when_its_last_task_does() {
        let Some(env) = common::postgres_env("blocked_job_ends").await else {
            return;
        };
        let k = &env.kernel;
        let node = env.node("n1").await;
        let job = k.submit_many(noop_jobs(1, |_| 2)).await.unwrap()[0].0;
        let leases = env.claim(node, 2).await;
        k.complete(leases[0].attempt_id, &leases[0].proof(), None)
            .await
            .unwrap();
        let pool = sqlx::PgPool::connect(&env.url).await.unwrap();
        sqlx::query("UPDATE jobs SET state = 'blocked' WHERE id = $1")
            .bind(job)
            .execute(&pool)
            .await
            .unwrap();
        k.complete(leases[1].attempt_id, &leases[1].proof(), None)
            .await
            .unwrap();
        assert_eq!(k.get_job(job).await.unwrap().job.state, JobState::Succeeded);
        let ended = env
            .all_events()
            .await
            .into_iter()
            .rfind(|e| e.event_type == "job.stateChanged")
            .unwrap();
        assert_eq!(ended.data["from"], "blocked");
        assert_eq!(ended.data["to"], "succeeded");
    }

    /// A cancel that loses a deadlock to another writer is run again and
    /// cancels the job, instead of answering a storage error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_cancel_that_loses_a_deadlock_is_run_again() {
        let Some(env) = common::postgres_env("cancel_loses_a_deadlock").await else {
            return;
        };
        let node = env.node("n1").await;
        let job = env
            .kernel
            .submit(NewJob::single("cancel-me", "noop", json!({})))
            .await
            .unwrap()
            .job
            .id;
        let lease = env.claim(node, 1).await.pop().unwrap();
        let k = env.kernel.clone();
        let cancelled = deadlock_against(&env, job, lease.attempt_id, async move {
            k.cancel_job(job).await
        })
        .await
        .expect("the cancel is answered");
        assert_eq!(cancelled.job.state, JobState::Cancelled);
        assert_eq!(cancelled.tasks[0].state, TaskState::Cancelled);
        assert_eq!(
            cancelled.tasks[0].attempts[0].state,
            AttemptState::Cancelled
        );
    }

    /// A completion written in a transaction (a task of a larger job)
    /// that loses a deadlock is run again and succeeds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_completion_that_loses_a_deadlock_is_run_again() {
        let Some(env) = common::postgres_env("completion_loses_a_deadlock").await else {
            return;
        };
        let node = env.node("n1").await;
        let job = env.kernel.submit_many(noop_jobs(1, |_| 2)).await.unwrap()[0].0;
        let leases = env.claim(node, 2).await;
        let lease = leases.iter().find(|l| l.job_id == job).unwrap().clone();
        let (k, report) = (env.kernel.clone(), completion(&lease, None));
        let answers = deadlock_against(&env, job, lease.attempt_id, async move {
            k.complete_many(vec![report]).await
        })
        .await
        .expect("the batch is answered");
        assert_eq!(codes(&answers), ["ok"]);
        let detail = env.kernel.get_job(job).await.unwrap();
        let task = detail.tasks.iter().find(|t| t.id == lease.task_id).unwrap();
        assert_eq!(task.state, TaskState::Succeeded);
        assert_eq!(detail.job.state, JobState::Running);
    }

    /// Statements that name their jobs by id find them by id, whatever the
    /// statistics say. Taken while every job was queued, statistics say
    /// that no job runs, and a guard written `state = 'running'` then sent
    /// the update through `jobs_state`, once for every job (in session 9,
    /// a completion of 512 tasks took 10 to 48 seconds that way). Here
    /// the claim, both kinds of completion and both cancels run on such
    /// statistics, and none of them reads `jobs_state`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn jobs_named_by_id_are_not_looked_up_by_state() {
        let Some(env) = common::postgres_env("jobs_not_looked_up_by_state").await else {
            return;
        };
        let k = &env.kernel;
        let node = env.node("n1").await;
        let pool = sqlx::PgPool::connect(&env.url).await.unwrap();
        // Statistics stay as taken below.
        sqlx::query("ALTER TABLE jobs SET (autovacuum_enabled = false)")
            .execute(&pool)
            .await
            .unwrap();
        // 300 jobs, every fifth of two tasks.
        let ids: Vec<i64> = k
            .submit_many(noop_jobs(300, |i| if i % 5 == 0 { 2 } else { 1 }))
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        sqlx::query("ANALYZE jobs").execute(&pool).await.unwrap();
        let stat = |sql: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        let scans =
            || stat("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'jobs_state'");
        let updates = || stat("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'jobs'");
        let (scans_before, updates_before) = (scans().await, updates().await);

        let leases = env.claim(node, 1_000).await;
        assert_eq!(leases.len(), 360);
        // The first 200 jobs complete (single-task jobs in one statement,
        // the others in a transaction); one more is cancelled alone, ten
        // at once.
        let done = leases
            .iter()
            .filter(|l| l.job_id <= ids[199])
            .map(|l| completion(l, None))
            .collect();
        assert!(k
            .complete_many(done)
            .await
            .unwrap()
            .iter()
            .all(|a| a.is_ok()));
        k.cancel_job(ids[200]).await.unwrap();
        let outcome = k
            .bulk_jobs(
                BulkJobAction::Cancel,
                &JobSelection::Ids(ids[201..211].to_vec()),
                None,
                false,
            )
            .await
            .unwrap();
        assert_eq!(outcome.results.len(), 10);

        // Every job started, 211 finished: once the server counted those
        // updates, it has counted this test's index scans too (a backend
        // reports both at once).
        let wanted = updates_before + 300 + 211;
        eventually("the server counts the updates", || async move {
            (updates().await >= wanted).then_some(())
        })
        .await;
        assert_eq!(
            scans().await,
            scans_before,
            "a statement naming its jobs by id read them through jobs_state"
        );
    }

    /// Two kernels with their own pools (as two replicas) claim from one
    /// database at once: no task is ever leased twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_kernel_instances_never_double_lease() {
        let Some(url) = common::postgres_url("two_kernel_instances_never_double_lease").await
        else {
            return;
        };
        let clock = kernel::ManualClock::default();
        let a = kernel::Kernel::open(&url, common::test_config(&clock))
            .await
            .unwrap();
        let b = kernel::Kernel::open(&url, common::test_config(&clock))
            .await
            .unwrap();
        let total = 800;
        a.submit_many(
            (0..total)
                .map(|i| NewJob::single(format!("j{i}"), "noop", json!({})))
                .collect(),
        )
        .await
        .unwrap();
        let mut claimers = Vec::new();
        for (i, k) in [
            a.clone(),
            b.clone(),
            a.clone(),
            b.clone(),
            a.clone(),
            b.clone(),
        ]
        .into_iter()
        .enumerate()
        {
            let node = k
                .register_node(&NewNode {
                    name: format!("replica-node-{i}"),
                    kinds: vec!["noop".into()],
                    capacity: 8,
                    labels: Default::default(),
                    file_scopes: vec![],
                })
                .await
                .unwrap()
                .id;
            claimers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let leases = k
                        .claim(&ClaimRequest {
                            node_id: node,
                            kinds: vec!["noop".into()],
                            max: 9,
                            wait_ms: 0,
                        })
                        .await
                        .unwrap();
                    if leases.is_empty() {
                        return got;
                    }
                    let done = leases.iter().map(|l| completion(l, None)).collect();
                    for r in k.complete_many(done).await.unwrap() {
                        r.unwrap();
                    }
                    got.extend(leases.into_iter().map(|l| l.task_id));
                }
            }));
        }
        let mut seen: HashMap<i64, usize> = HashMap::new();
        for c in claimers {
            for t in c.await.unwrap() {
                *seen.entry(t).or_default() += 1;
            }
        }
        assert_eq!(seen.len(), total);
        assert!(seen.values().all(|n| *n == 1), "a task was leased twice");
        let overview = b.overview(None).await.unwrap();
        assert_eq!(
            overview.jobs_by_state.get("succeeded"),
            Some(&(total as i64))
        );
    }
}

fn dag_job(name: &str) -> NewJob {
    NewJob {
        tasks: vec![
            NewTask::new("a", "noop", json!({})),
            NewTask::new("b", "noop", json!({})).after(&["a"]),
            NewTask::new("c", "noop", json!({})).after(&["a"]),
            NewTask::new("d", "noop", json!({})).after(&["b", "c"]),
        ],
        ..NewJob::single(name, "noop", json!({}))
    }
}

/// `n` jobs `j0`, `j1`, … of `tasks(i)` independent `noop` tasks each.
fn noop_jobs(n: usize, tasks: impl Fn(usize) -> usize) -> Vec<NewJob> {
    (0..n)
        .map(|i| NewJob {
            tasks: (0..tasks(i))
                .map(|t| NewTask::new(format!("t{t}"), "noop", json!({})))
                .collect(),
            ..NewJob::single(format!("j{i}"), "noop", json!({}))
        })
        .collect()
}

/// The report of `lease`'s success.
fn completion(lease: &Lease, output: Option<Value>) -> Completion {
    Completion {
        attempt_id: lease.attempt_id,
        proof: lease.proof(),
        output,
    }
}

/// Each answer of a batch as its error code, `ok` for a success.
fn codes(answers: &[Result<(), KernelError>]) -> Vec<&'static str> {
    answers
        .iter()
        .map(|a| a.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code()))
        .collect()
}

fn keys_of(job: &JobDetail, leases: &[Lease]) -> BTreeSet<String> {
    leases
        .iter()
        .map(|l| {
            job.tasks
                .iter()
                .find(|t| t.id == l.task_id)
                .expect("task of lease")
                .key
                .clone()
        })
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

async fn dag_runs_in_dependency_order(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let submitted = k.submit(dag_job("build")).await.unwrap();
    assert!(submitted.created);
    assert_eq!(submitted.job.state, JobState::Queued);
    assert_eq!(submitted.job.task_counts.ready, 1);
    assert_eq!(submitted.job.task_counts.pending, 3);
    // The answer is the job as written.
    assert_eq!(
        submitted.job,
        k.get_job_summary(submitted.job.id).await.unwrap()
    );
    let job_id = submitted.job.id;

    let first = env.claim(node, 10).await;
    let detail = k.get_job(job_id).await.unwrap();
    assert_eq!(keys_of(&detail, &first), set(&["a"]));
    assert_eq!(detail.job.state, JobState::Running);
    assert_eq!(first[0].epoch, 1);
    assert_eq!(first[0].attempt_number, 1);
    k.complete(
        first[0].attempt_id,
        &first[0].proof(),
        Some(json!({"ok": true})),
    )
    .await
    .unwrap();

    let second = env.claim(node, 10).await;
    assert_eq!(keys_of(&detail, &second), set(&["b", "c"]));
    assert!(env.claim(node, 10).await.is_empty(), "d waits for b and c");
    k.complete(second[0].attempt_id, &second[0].proof(), None)
        .await
        .unwrap();
    assert!(
        env.claim(node, 10).await.is_empty(),
        "d still waits for one of them"
    );
    k.complete(second[1].attempt_id, &second[1].proof(), None)
        .await
        .unwrap();

    let third = env.claim(node, 10).await;
    assert_eq!(keys_of(&detail, &third), set(&["d"]));
    k.complete(third[0].attempt_id, &third[0].proof(), None)
        .await
        .unwrap();

    let done = k.get_job(job_id).await.unwrap();
    assert_eq!(done.job.state, JobState::Succeeded);
    assert!(done.job.finished_at.is_some());
    assert!(done.tasks.iter().all(|t| t.state == TaskState::Succeeded));
    let a = done.tasks.iter().find(|t| t.key == "a").unwrap();
    assert_eq!(a.output, Some(json!({"ok": true})));
    assert_eq!(a.attempts.len(), 1);
    assert_eq!(a.attempts[0].state, AttemptState::Succeeded);
    assert_eq!(a.attempts[0].node_id, Some(node));
    let d = done.tasks.iter().find(|t| t.key == "d").unwrap();
    assert_eq!(d.depends_on, vec!["b".to_string(), "c".to_string()]);

    // Completing again is stale: the lease ended.
    let again = k
        .complete(first[0].attempt_id, &first[0].proof(), None)
        .await;
    assert!(
        matches!(again, Err(KernelError::StaleLease { .. })),
        "{again:?}"
    );

    let types = env.event_types().await;
    for t in [
        "job.submitted",
        "lease.granted",
        "task.stateChanged",
        "job.stateChanged",
        "node.online",
        "lease.fenced",
    ] {
        assert!(
            types.iter().any(|x| x == t),
            "missing event {t} in {types:?}"
        );
    }
    let job_events = k.job_events_after(job_id, 0, 1000).await.unwrap();
    let last = job_events.items.last().unwrap();
    assert_eq!(last.event_type, "lease.fenced");
}

async fn invalid_dags_are_refused_and_nothing_is_written(env: Env) {
    let k = &env.kernel;
    let cycle = NewJob {
        tasks: vec![
            NewTask::new("a", "noop", json!({})).after(&["b"]),
            NewTask::new("b", "noop", json!({})).after(&["a"]),
        ],
        ..NewJob::single("cyclic", "noop", json!({}))
    };
    let err = k.submit(cycle).await.unwrap_err();
    assert_eq!(err.code(), "dag_cycle");
    let keys = err.details().unwrap()["keys"].clone();
    assert!(keys.as_array().unwrap().contains(&json!("a")));
    assert!(keys.as_array().unwrap().contains(&json!("b")));

    let unknown = NewJob {
        tasks: vec![NewTask::new("a", "noop", json!({})).after(&["ghost"])],
        ..NewJob::single("unknown", "noop", json!({}))
    };
    let err = k.submit(unknown).await.unwrap_err();
    assert_eq!(err.code(), "unknown_dependency");
    assert!(err.to_string().contains("ghost"), "{err}");
    assert_eq!(err.details().unwrap()["keys"], json!(["ghost"]));

    let dup = NewJob {
        tasks: vec![
            NewTask::new("a", "noop", json!({})),
            NewTask::new("a", "noop", json!({})),
        ],
        ..NewJob::single("dup", "noop", json!({}))
    };
    let err = k.submit(dup).await.unwrap_err();
    assert_eq!(err.code(), "duplicate_task_key");
    assert_eq!(err.details().unwrap()["keys"], json!(["a"]));

    let big = NewJob::single("big", "noop", json!({ "blob": "x".repeat(300 * 1024) }));
    let err = k.submit(big).await.unwrap_err();
    assert_eq!(err.code(), "payload_too_large");

    let empty = NewJob {
        tasks: vec![],
        ..NewJob::single("empty", "noop", json!({}))
    };
    assert_eq!(
        k.submit(empty).await.unwrap_err().code(),
        "validation_failed"
    );

    // A batch with one bad job writes nothing either.
    let batch = vec![
        NewJob::single("fine", "noop", json!({})),
        NewJob {
            tasks: vec![NewTask::new("a", "noop", json!({})).after(&["a"])],
            ..NewJob::single("self", "noop", json!({}))
        },
    ];
    assert_eq!(k.submit_many(batch).await.unwrap_err().code(), "dag_cycle");

    let jobs = k.list_jobs(&JobFilter::default(), 100, None).await.unwrap();
    assert!(jobs.items.is_empty());
    assert!(env.all_events().await.is_empty());
}

/// Ids are unique, and increase in the order one submitter's jobs were
/// submitted, while many submit at once: on Postgres they come from a
/// reserve that submits refill when it runs out and top up behind them when
/// it runs low, here racing each other and a batch far larger than the
/// reserve.
async fn concurrent_submitters_each_get_increasing_ids(env: Env) {
    let k = &env.kernel;
    let mut handles = Vec::new();
    for s in 0..8 {
        let k = k.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..40 {
                if s == 0 && i == 20 {
                    let batch = (0..100)
                        .map(|b| NewJob::single(format!("batch-{b}"), "noop", json!({})))
                        .collect();
                    ids.extend(
                        k.submit_many(batch)
                            .await
                            .unwrap()
                            .iter()
                            .map(|(id, _)| *id),
                    );
                }
                let job = NewJob::single(format!("s{s}-{i}"), "noop", json!({}));
                ids.push(k.submit(job).await.unwrap().job.id);
            }
            ids
        }));
    }
    let mut all = BTreeSet::new();
    for h in handles {
        let ids = h.await.unwrap();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one submitter's ids went down: {ids:?}"
        );
        all.extend(ids);
    }
    assert_eq!(all.len(), 8 * 40 + 100, "every job has an id of its own");
    let tasks: BTreeSet<i64> = task_ids_of(k, &all).await;
    assert_eq!(tasks.len(), all.len(), "every task has an id of its own");
}

/// The task ids of the one-task jobs `jobs`.
async fn task_ids_of(k: &kernel::Kernel, jobs: &BTreeSet<i64>) -> BTreeSet<i64> {
    let mut tasks = BTreeSet::new();
    for id in jobs {
        let job = k.get_job(*id).await.unwrap();
        tasks.extend(job.tasks.iter().map(|t| t.id));
    }
    tasks
}

async fn submit_is_idempotent(env: Env) {
    let k = &env.kernel;
    let mut job = NewJob::single("once", "noop", json!({}));
    job.idempotency_key = Some("key-1".into());
    let first = k.submit(job.clone()).await.unwrap();
    let second = k.submit(job.clone()).await.unwrap();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.job.id, second.job.id);

    let mut other_tenant = job.clone();
    other_tenant.tenant = "acme".into();
    let third = k.submit(other_tenant).await.unwrap();
    assert!(third.created);
    assert_ne!(third.job.id, first.job.id);

    // Racing submits of a new key create one job.
    let mut racing = job.clone();
    racing.idempotency_key = Some("key-2".into());
    let mut handles = Vec::new();
    for _ in 0..8 {
        let k = k.clone();
        let j = racing.clone();
        handles.push(tokio::spawn(async move { k.submit(j).await.unwrap() }));
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for h in handles {
        let s = h.await.unwrap();
        ids.insert(s.job.id);
        created += s.created as usize;
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);

    // Repeats inside one batch too.
    let out = k
        .submit_many(vec![racing.clone(), job.clone()])
        .await
        .unwrap();
    assert_eq!(out[0], (*ids.iter().next().unwrap(), false));
    assert_eq!(out[1], (first.job.id, false));
    let all = k.list_jobs(&JobFilter::default(), 100, None).await.unwrap();
    assert_eq!(all.items.len(), 3);

    // The key names one job: the same job again (its JSON written another
    // way) is answered with the first; another job under it is refused
    // (it was answered with the first, as if it had been created), and
    // nothing of a refused batch is written.
    let mut keyed = NewJob::single("deploy", "noop", json!({"env": "prod", "region": "eu"}));
    keyed.idempotency_key = Some("key-3".into());
    let original = k.submit(keyed.clone()).await.unwrap();
    let same: NewJob = serde_json::from_value(json!({
        "tasks": [{ "payload": {"region": "eu", "env": "prod"}, "kind": "noop", "key": "main" }],
        "idempotency_key": "key-3", "queue": "default", "name": "deploy",
    }))
    .unwrap();
    let again = k.submit(same).await.unwrap();
    assert_eq!((again.job.id, again.created), (original.job.id, false));
    let mut different = keyed.clone();
    different.tasks[0].payload = json!({"env": "staging", "region": "eu"});
    let refused = k.submit(different.clone()).await.unwrap_err();
    assert_eq!(refused.code(), "conflict");
    assert!(refused.to_string().contains("key-3"), "{refused}");
    let fresh = NewJob::single("unrelated", "noop", json!({}));
    let refused = k.submit_many(vec![fresh, different]).await.unwrap_err();
    assert_eq!(refused.code(), "conflict");
    let all = k.list_jobs(&JobFilter::default(), 100, None).await.unwrap();
    assert_eq!(all.items.len(), 4, "nothing of the refused batch");
}

async fn concurrent_claimers_never_share_a_task(env: Env) {
    let k = &env.kernel;
    let total = 600;
    let jobs: Vec<NewJob> = (0..total)
        .map(|i| NewJob::single(format!("j{i}"), "noop", json!({ "i": i })))
        .collect();
    k.submit_many(jobs).await.unwrap();
    let mut claimers = Vec::new();
    for c in 0..6 {
        let node = env.node(&format!("claimer-{c}")).await;
        let k = k.clone();
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let leases = k
                    .claim(&ClaimRequest {
                        node_id: node,
                        kinds: vec!["noop".into()],
                        max: 7,
                        wait_ms: 0,
                    })
                    .await
                    .unwrap();
                if leases.is_empty() {
                    return got;
                }
                let done: Vec<Completion> = leases.iter().map(|l| completion(l, None)).collect();
                for r in k.complete_many(done).await.unwrap() {
                    r.unwrap();
                }
                got.extend(leases.into_iter().map(|l| l.task_id));
            }
        }));
    }
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for c in claimers {
        for task in c.await.unwrap() {
            *seen.entry(task).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), total, "every task leased");
    assert!(seen.values().all(|n| *n == 1), "a task was leased twice");
    let succeeded = k
        .list_jobs(
            &JobFilter {
                state: Some(JobState::Succeeded),
                ..Default::default()
            },
            500,
            None,
        )
        .await
        .unwrap();
    assert_eq!(succeeded.items.len(), 500);
    assert!(succeeded.next_cursor.is_some());
}

/// In one batch, the completions that hold are applied (with their
/// outputs) and the others refused, each answered in its place; the stale
/// one is recorded.
/// Claims and completions that arrive together are merged inside the
/// kernel (one statement, one transaction); each call still gets exactly
/// its own answer.
async fn concurrent_single_calls_are_each_answered_their_own(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let n = 24;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob::single(format!("j{i}"), "noop", json!({})))
        .collect();
    k.submit_many(jobs).await.unwrap();
    let claims = spawn_claims_of_one(k, node, n, 0);
    let mut leases = Vec::new();
    for c in claims {
        let got = c.await.unwrap();
        assert_eq!(
            got.len(),
            1,
            "each claim of one gets one of the 24 ready tasks"
        );
        leases.extend(got);
    }
    let tasks: BTreeSet<i64> = leases.iter().map(|l| l.task_id).collect();
    assert_eq!(tasks.len(), n, "no task was dealt twice");

    // One of the completions carries a wrong epoch: only it is refused.
    let stale = leases[5].task_id;
    let completions: Vec<_> = leases
        .iter()
        .map(|l| {
            let k = k.clone();
            let mut proof = l.proof();
            if l.task_id == stale {
                proof.epoch += 1;
            }
            let (attempt, task) = (l.attempt_id, l.task_id);
            tokio::spawn(async move {
                let answer = k
                    .complete(attempt, &proof, Some(json!({ "task": task })))
                    .await;
                (task, answer)
            })
        })
        .collect();
    for c in completions {
        let (task, answer) = c.await.unwrap();
        if task == stale {
            assert_eq!(answer.unwrap_err().code(), "stale_lease");
        } else {
            answer.unwrap();
        }
    }
    for l in &leases {
        let detail = k.get_job(l.job_id).await.unwrap();
        let t = &detail.tasks[0];
        if l.task_id == stale {
            assert_eq!((t.state, &t.output), (TaskState::Leased, &None));
        } else {
            // Each output landed on its own task.
            assert_eq!(
                (t.state, &t.output),
                (TaskState::Succeeded, &Some(json!({ "task": l.task_id })))
            );
        }
    }
    assert!(env.event_types().await.iter().any(|t| t == "lease.fenced"));
}

/// The last tasks of a job completed at the same moment, by separate
/// calls that may commit in separate transactions, still finish the job:
/// each transaction must see the others' successes, not only its own.
async fn a_job_finishes_when_its_last_tasks_complete_at_once(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let ids = k.submit_many(noop_jobs(60, |_| 3)).await.unwrap();
    let leases = env.claim(node, 180).await;
    assert_eq!(leases.len(), 180);
    let calls: Vec<_> = leases
        .into_iter()
        .map(|l| {
            let k = k.clone();
            tokio::spawn(async move { k.complete(l.attempt_id, &l.proof(), None).await })
        })
        .collect();
    each_call_succeeds_then_every_job_is(k, calls, &ids, JobState::Succeeded).await;
}

/// `n` claims of one `noop` task each by `node`, at once.
fn spawn_claims_of_one(
    k: &kernel::Kernel,
    node: i64,
    n: usize,
    wait_ms: i64,
) -> Vec<tokio::task::JoinHandle<Vec<Lease>>> {
    (0..n).map(|_| spawn_claim(k, node, 1, wait_ms)).collect()
}

/// A claim of up to `max` `noop` tasks by `node`, waiting up to `wait_ms`.
fn spawn_claim(
    k: &kernel::Kernel,
    node: i64,
    max: i64,
    wait_ms: i64,
) -> tokio::task::JoinHandle<Vec<Lease>> {
    let k = k.clone();
    tokio::spawn(async move {
        k.claim(&ClaimRequest {
            node_id: node,
            kinds: vec!["noop".into()],
            max,
            wait_ms,
        })
        .await
        .unwrap()
    })
}

/// Awaits spawned kernel calls (each must succeed), then checks the state
/// every job of `ids` ended in.
async fn each_call_succeeds_then_every_job_is(
    k: &kernel::Kernel,
    calls: Vec<tokio::task::JoinHandle<Result<(), KernelError>>>,
    ids: &[(i64, bool)],
    state: JobState,
) {
    for c in calls {
        c.await.unwrap().unwrap();
    }
    for (id, _) in ids {
        assert_eq!(k.get_job(*id).await.unwrap().job.state, state, "job {id}");
    }
}

/// One task dead-lettered while another still runs: the job stays
/// running until the other ends, and then fails (its last task succeeding
/// does not leave it running).
async fn a_job_with_a_dead_lettered_task_fails_when_its_last_task_succeeds(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job = NewJob {
        tasks: vec![
            NewTask::new("bad", "noop", json!({})),
            NewTask::new("good", "noop", json!({})),
        ],
        ..NewJob::single("j", "noop", json!({}))
    };
    let id = k.submit(job).await.unwrap().job.id;
    let detail = k.get_job(id).await.unwrap();
    let bad_task = detail.tasks.iter().find(|t| t.key == "bad").unwrap().id;
    let leases = env.claim(node, 2).await;
    let (bad, good): (Vec<Lease>, Vec<Lease>) =
        leases.into_iter().partition(|l| l.task_id == bad_task);
    let failure = TaskFailure {
        message: "broken".into(),
        retryable: false,
    };
    k.fail(bad[0].attempt_id, &bad[0].proof(), &failure)
        .await
        .unwrap();
    assert_eq!(k.get_job(id).await.unwrap().job.state, JobState::Running);
    k.complete(good[0].attempt_id, &good[0].proof(), None)
        .await
        .unwrap();
    assert_eq!(k.get_job(id).await.unwrap().job.state, JobState::Failed);

    // The same at the same moment, in separate transactions: each job
    // still ends failed, whichever commits first.
    let jobs: Vec<NewJob> = (0..40)
        .map(|i| NewJob {
            tasks: vec![
                NewTask::new("bad", "noop", json!({})),
                NewTask::new("good", "noop", json!({})),
            ],
            ..NewJob::single(format!("race-{i}"), "noop", json!({}))
        })
        .collect();
    let ids = k.submit_many(jobs).await.unwrap();
    let mut bad_tasks = BTreeSet::new();
    for (id, _) in &ids {
        let detail = k.get_job(*id).await.unwrap();
        bad_tasks.insert(detail.tasks.iter().find(|t| t.key == "bad").unwrap().id);
    }
    let calls: Vec<_> = env
        .claim(node, 80)
        .await
        .into_iter()
        .map(|l| {
            let (k, failure) = (k.clone(), failure.clone());
            let bad = bad_tasks.contains(&l.task_id);
            tokio::spawn(async move {
                if bad {
                    k.fail(l.attempt_id, &l.proof(), &failure).await.map(|_| ())
                } else {
                    k.complete(l.attempt_id, &l.proof(), None).await
                }
            })
        })
        .collect();
    each_call_succeeds_then_every_job_is(k, calls, &ids, JobState::Failed).await;
}

/// A claim dropped while the kernel looks for its work (an HTTP request
/// that went away) does not strand what was leased for it: the lease is
/// given back at once, not left to expire.
async fn a_claim_that_goes_away_gives_its_lease_back(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job = k
        .submit(NewJob::single("j", "noop", json!({})))
        .await
        .unwrap()
        .job;
    let req = ClaimRequest {
        node_id: node,
        kinds: vec!["noop".into()],
        max: 1,
        wait_ms: 0,
    };
    {
        let claim = k.claim(&req);
        tokio::pin!(claim);
        // Polled once, the claim is queued for its look; then dropped.
        tokio::select! {
            biased;
            _ = &mut claim => panic!("the claim answered before any statement ran"),
            _ = std::future::ready(()) => {}
        }
    }
    eventually("the lease given back", || async {
        let types = env.event_types().await;
        types.iter().any(|t| t == "lease.released").then_some(())
    })
    .await;
    let task = k.get_job(job.id).await.unwrap().tasks[0].clone();
    assert_eq!(task.state, TaskState::Ready);
    assert_eq!(task.attempts_used, 0, "giving back spends no attempt");
    // Ready again at once: the next claim gets it, with no clock moved.
    assert_eq!(env.claim(node, 1).await.len(), 1);
}

async fn a_batch_of_completions_is_answered_item_by_item(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let jobs: Vec<NewJob> = (0..4)
        .map(|i| NewJob::single(format!("j{i}"), "noop", json!({})))
        .collect();
    k.submit_many(jobs).await.unwrap();
    let leases = env.claim(node, 4).await;
    assert_eq!(leases.len(), 4);
    // Outputs of several tasks in one batch each reach their own task.
    let text = json!({"line": "a \"quoted\" word,\n then ünïcode"});
    let stale = LeaseProof {
        lease_token: leases[1].lease_token.clone(),
        epoch: leases[1].epoch + 1,
    };
    let batch = vec![
        Completion {
            attempt_id: leases[0].attempt_id,
            proof: leases[0].proof(),
            output: Some(json!({"n": 0})),
        },
        Completion {
            attempt_id: leases[1].attempt_id,
            proof: stale,
            output: None,
        },
        Completion {
            attempt_id: 987_654_321,
            proof: leases[2].proof(),
            output: None,
        },
        Completion {
            attempt_id: leases[2].attempt_id,
            proof: leases[2].proof(),
            output: None,
        },
        Completion {
            attempt_id: leases[3].attempt_id,
            proof: leases[3].proof(),
            output: Some(text.clone()),
        },
    ];
    let answers = k.complete_many(batch).await.unwrap();
    assert_eq!(
        codes(&answers),
        ["ok", "stale_lease", "not_found", "ok", "ok"]
    );
    let state_of = |lease: &Lease| {
        let k = k.clone();
        let (job, task) = (lease.job_id, lease.task_id);
        async move {
            let detail = k.get_job(job).await.unwrap();
            let t = detail.tasks.iter().find(|t| t.id == task).unwrap().clone();
            (detail.job.state, t.state, t.output)
        }
    };
    assert_eq!(
        state_of(&leases[0]).await,
        (
            JobState::Succeeded,
            TaskState::Succeeded,
            Some(json!({"n": 0}))
        )
    );
    assert_eq!(
        state_of(&leases[1]).await,
        (JobState::Running, TaskState::Leased, None)
    );
    assert_eq!(
        state_of(&leases[2]).await,
        (JobState::Succeeded, TaskState::Succeeded, None)
    );
    assert_eq!(
        state_of(&leases[3]).await,
        (JobState::Succeeded, TaskState::Succeeded, Some(text))
    );
    assert!(env.event_types().await.iter().any(|t| t == "lease.fenced"));
}

/// One batch of completions holding jobs of one task (Postgres completes
/// these in one statement of their own) and tasks of larger jobs (a
/// transaction): each is answered, written and logged as if alone.
async fn single_task_and_larger_jobs_complete_alike_in_one_batch(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let two = |name: &str, chained: bool| NewJob {
        tasks: vec![
            NewTask::new("x", "noop", json!({})),
            if chained {
                NewTask::new("y", "noop", json!({})).after(&["x"])
            } else {
                NewTask::new("y", "noop", json!({}))
            },
        ],
        ..NewJob::single(name, "noop", json!({}))
    };
    let ids = k
        .submit_many(vec![
            NewJob::single("alone", "noop", json!({})),
            two("chain", true),
            two("pair", false),
        ])
        .await
        .unwrap();
    let (alone, chain, pair) = (ids[0].0, ids[1].0, ids[2].0);
    let leases = env.claim(node, 10).await;
    assert_eq!(leases.len(), 4, "alone, chain's x, pair's x and y");
    let of = |job: i64| -> Vec<&Lease> { leases.iter().filter(|l| l.job_id == job).collect() };
    let seen = env.all_events().await.last().unwrap().seq;
    let answers = k
        .complete_many(vec![
            completion(of(alone)[0], Some(json!({"n": 1}))),
            completion(of(chain)[0], Some(json!({"n": 2}))),
            completion(of(alone)[0], None),
            completion(of(pair)[0], None),
            completion(of(pair)[1], Some(json!({"n": 3}))),
        ])
        .await
        .unwrap();
    assert_eq!(codes(&answers), ["ok", "ok", "stale_lease", "ok", "ok"]);

    let detail = k.get_job(alone).await.unwrap();
    assert_eq!(detail.job.state, JobState::Succeeded);
    assert!(detail.job.finished_at.is_some());
    let task = &detail.tasks[0];
    assert_eq!(
        (task.state, task.output.clone()),
        (TaskState::Succeeded, Some(json!({"n": 1})))
    );
    assert_eq!(task.attempts[0].state, AttemptState::Succeeded);
    assert!(task.attempts[0].finished_at.is_some());
    let detail = k.get_job(chain).await.unwrap();
    assert_eq!(detail.job.state, JobState::Running);
    let states: Vec<TaskState> = detail.tasks.iter().map(|t| t.state).collect();
    assert_eq!(states, [TaskState::Succeeded, TaskState::Ready]);
    let detail = k.get_job(pair).await.unwrap();
    assert_eq!(detail.job.state, JobState::Succeeded);
    assert_eq!(detail.tasks[1].output, Some(json!({"n": 3})));

    // The same events, with the same data, whichever way each was written.
    // Type, job, attempt, node and data of each event.
    type Logged = (String, Option<i64>, Option<i64>, Option<i64>, Value);
    let events: Vec<Logged> = env
        .all_events()
        .await
        .into_iter()
        .filter(|e| e.seq > seen)
        .map(|e| {
            let s = e.subject;
            (e.event_type, s.job_id, s.attempt_id, s.node_id, e.data)
        })
        .collect();
    let succeeded = |l: &Lease| {
        (
            "task.stateChanged".to_string(),
            Some(l.job_id),
            Some(l.attempt_id),
            Some(node),
            json!({"from": "leased", "to": "succeeded", "attempt_state": "succeeded"}),
        )
    };
    let job_ended = |job: i64| {
        (
            "job.stateChanged".to_string(),
            Some(job),
            None,
            None,
            json!({"from": "running", "to": "succeeded"}),
        )
    };
    let mine = |job: i64| -> Vec<_> {
        events
            .iter()
            .filter(|e| e.1 == Some(job))
            .cloned()
            .collect()
    };
    assert_eq!(mine(alone), [succeeded(of(alone)[0]), job_ended(alone)]);
    assert_eq!(
        mine(pair),
        [
            succeeded(of(pair)[0]),
            succeeded(of(pair)[1]),
            job_ended(pair)
        ]
    );
    assert_eq!(mine(chain)[0], succeeded(of(chain)[0]));
    assert_eq!(mine(chain)[1].4, json!({"from": "pending", "to": "ready"}));
    assert_eq!(mine(chain).len(), 2);
}

/// Completions racing cancellations, in jobs of one task (Postgres
/// completes them in one statement) and of two (in a transaction): every
/// task ends one way or the other, its attempt and its job with it, and
/// neither call fails for any other reason (a deadlock, say).
async fn a_completion_racing_a_cancel_ends_one_way_or_the_other(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let ids = k.submit_many(noop_jobs(40, |i| 1 + i % 2)).await.unwrap();
    let leases = env.claim(node, 100).await;
    assert_eq!(leases.len(), 60);
    let mut races = Vec::new();
    for (i, (job, _)) in ids.iter().enumerate() {
        let job = *job;
        // Cancels start a little later and later, so both sides win some.
        let delay = std::time::Duration::from_millis(i as u64 % 10);
        let completions: Vec<_> = leases
            .iter()
            .filter(|l| l.job_id == job)
            .map(|l| {
                let (k, l) = (k.clone(), l.clone());
                let task = l.task_id;
                (
                    task,
                    tokio::spawn(async move { k.complete(l.attempt_id, &l.proof(), None).await }),
                )
            })
            .collect();
        let k = k.clone();
        races.push((
            job,
            completions,
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                k.cancel_job(job).await
            }),
        ));
    }
    for (job, completions, cancel) in races {
        let cancel = cancel.await.unwrap();
        let detail = k.get_job(job).await.unwrap();
        match &cancel {
            Ok(_) => assert_eq!(detail.job.state, JobState::Cancelled, "job {job}"),
            Err(e) => {
                assert_eq!(e.code(), "conflict", "job {job}: {e}");
                assert_eq!(detail.job.state, JobState::Succeeded, "job {job}");
            }
        }
        for (task, completion) in completions {
            let t = detail.tasks.iter().find(|t| t.id == task).unwrap();
            let ended = (t.state, t.attempts[0].state);
            match completion.await.unwrap() {
                Ok(()) => assert_eq!(
                    ended,
                    (TaskState::Succeeded, AttemptState::Succeeded),
                    "task {task}"
                ),
                Err(e) => {
                    assert_eq!(e.code(), "task_cancelled", "task {task}: {e}");
                    assert!(cancel.is_ok(), "task {task}");
                    assert_eq!(
                        ended,
                        (TaskState::Cancelled, AttemptState::Cancelled),
                        "task {task}"
                    );
                }
            }
        }
    }
}

/// The console's bulk cancel of many jobs racing one batch of completions
/// of their tasks: both calls are answered (neither is the loser of a
/// deadlock), and every task ends as the answer to its report says.
async fn a_bulk_cancel_racing_a_batch_of_completions_ends_one_way_or_the_other(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    for round in 0..8u64 {
        let jobs: Vec<i64> = k
            .submit_many(noop_jobs(30, |i| 1 + i % 2))
            .await
            .unwrap()
            .into_iter()
            .map(|(job, _)| job)
            .collect();
        let mut leases = env.claim(node, 100).await;
        assert_eq!(leases.len(), 45);
        // Reported in an order unlike the cancel's, oldest job last.
        leases.sort_by_key(|l| (l.attempt_id % 7, l.attempt_id));
        let completions = {
            let k = k.clone();
            let items = leases.iter().map(|l| completion(l, None)).collect();
            tokio::spawn(async move { k.complete_many(items).await })
        };
        let cancel = {
            let (k, jobs) = (k.clone(), jobs.clone());
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(round % 4)).await;
                k.bulk_jobs(BulkJobAction::Cancel, &JobSelection::Ids(jobs), None, false)
                    .await
            })
        };
        let answers = completions
            .await
            .unwrap()
            .expect("the completions are answered");
        let outcome = cancel.await.unwrap().expect("the bulk cancel is answered");
        for job in &jobs {
            let detail = k.get_job(*job).await.unwrap();
            let result = outcome.results.iter().find(|r| r.job_id == *job).unwrap();
            let expected = match result.status {
                BulkItemStatus::Changed => JobState::Cancelled,
                _ => JobState::Succeeded,
            };
            assert_eq!(detail.job.state, expected, "round {round}, job {job}");
            for t in &detail.tasks {
                let i = leases.iter().position(|l| l.task_id == t.id).unwrap();
                let ended = match &answers[i] {
                    Ok(()) => (TaskState::Succeeded, AttemptState::Succeeded),
                    Err(e) => {
                        assert_eq!(e.code(), "task_cancelled", "task {}: {e}", t.id);
                        (TaskState::Cancelled, AttemptState::Cancelled)
                    }
                };
                assert_eq!((t.state, t.attempts[0].state), ended, "task {}", t.id);
            }
        }
    }
}

async fn stale_epoch_is_fenced_after_a_re_lease(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job = k
        .submit(NewJob::single("fence", "noop", json!({})))
        .await
        .unwrap();
    let old = env.claim(node, 1).await.pop().unwrap();
    // The lease lapses; the sweep recovers it; the backoff passes; another
    // worker gets the task with a higher epoch.
    env.clock.advance(10_001);
    assert_eq!(k.sweep().await.unwrap(), 1);
    env.clock.advance(120_000);
    let new = env.claim(node, 1).await.pop().unwrap();
    assert_eq!(new.task_id, old.task_id);
    assert!(new.epoch > old.epoch);

    let stale = k
        .complete(old.attempt_id, &old.proof(), Some(json!("late")))
        .await;
    assert_eq!(stale.unwrap_err().code(), "stale_lease");
    // The old pair on the new attempt is stale too.
    let forged = LeaseProof {
        lease_token: new.lease_token.clone(),
        epoch: old.epoch,
    };
    assert_eq!(
        k.complete(new.attempt_id, &forged, None)
            .await
            .unwrap_err()
            .code(),
        "stale_lease"
    );
    let fail = k
        .fail(
            old.attempt_id,
            &old.proof(),
            &TaskFailure {
                message: "late".into(),
                retryable: false,
            },
        )
        .await;
    assert_eq!(fail.unwrap_err().code(), "stale_lease");
    let hb = k.heartbeat(old.attempt_id, &old.proof()).await;
    assert_eq!(hb.unwrap_err().code(), "stale_lease");

    // Nothing applied: the task is still leased under the new epoch.
    let detail = k.get_job(job.job.id).await.unwrap();
    let task = &detail.tasks[0];
    assert_eq!(task.state, TaskState::Leased);
    assert_eq!(task.epoch, new.epoch);
    assert_eq!(task.output, None);
    assert_eq!(task.attempts[0].state, AttemptState::Fenced);
    assert_eq!(task.attempts[1].state, AttemptState::Active);

    let fenced = env
        .all_events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "lease.fenced")
        .count();
    assert_eq!(fenced, 4);

    k.complete(new.attempt_id, &new.proof(), None)
        .await
        .unwrap();
    assert_eq!(
        k.get_job(job.job.id).await.unwrap().job.state,
        JobState::Succeeded
    );
}

async fn expired_leases_recover_without_an_operator(env: Env) {
    let k = &env.kernel;
    let background = k.start_background();
    let node = env.node("n1").await;
    let job = k
        .submit(NewJob::single("crash", "noop", json!({})))
        .await
        .unwrap();
    let lost = env.claim(node, 1).await.pop().unwrap();
    // The worker dies: no heartbeat. Time passes; the background sweep alone
    // brings the task back.
    env.clock.advance(10_001);
    let task = eventually("the sweep to expire the lease", || async {
        let d = k.get_job(job.job.id).await.unwrap();
        (d.tasks[0].state == TaskState::Ready).then(|| d.tasks[0].clone())
    })
    .await;
    assert_eq!(task.attempts[0].state, AttemptState::Expired);
    assert!(task
        .last_error
        .as_deref()
        .unwrap()
        .contains("lease expired"));
    assert!(task.not_before > env.clock_now());
    env.clock.advance(120_000);
    let again = env.claim(node, 1).await.pop().unwrap();
    assert_eq!(again.task_id, lost.task_id);
    assert_eq!(again.attempt_number, 2);
    k.complete(again.attempt_id, &again.proof(), None)
        .await
        .unwrap();
    assert_eq!(
        k.get_job(job.job.id).await.unwrap().job.state,
        JobState::Succeeded
    );
    assert!(env.event_types().await.iter().any(|t| t == "lease.expired"));
    background.shutdown().await;
}

trait ClockNow {
    fn clock_now(&self) -> i64;
}
impl ClockNow for Env {
    fn clock_now(&self) -> i64 {
        use kernel::Clock;
        self.clock.now_ms()
    }
}

/// A lapsed lease whose recovery fails (here its task is no longer leased,
/// a state no operation leaves, set by hand) once failed the whole sweep:
/// every second, with the same lease first, so no lease was ever
/// recovered again. Now the others are, and the sweep says what failed.
async fn one_lease_that_cannot_be_recovered_does_not_hold_up_the_others(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let broken = k
        .submit(NewJob::single("broken", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let healthy = k
        .submit(NewJob::single("healthy", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    assert_eq!(env.claim(node, 2).await.len(), 2);
    common::execute(
        &env.url,
        &format!("UPDATE tasks SET state = 'succeeded' WHERE job_id = {broken}"),
    )
    .await;
    env.clock.advance(60_000);
    let failed = k.sweep().await.unwrap_err();
    assert_eq!(failed.code(), "conflict", "{failed}");
    let detail = k.get_job(healthy).await.unwrap();
    assert_eq!(detail.tasks[0].attempts[0].state, AttemptState::Expired);
    assert_eq!(detail.tasks[0].state, TaskState::Ready);
    // Put right, the broken one is recovered too.
    common::execute(
        &env.url,
        &format!("UPDATE tasks SET state = 'leased' WHERE job_id = {broken}"),
    )
    .await;
    assert_eq!(k.sweep().await.unwrap(), 1);
}

async fn retries_back_off_then_dead_letter(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job = NewJob {
        tasks: vec![
            NewTask::new("flaky", "noop", json!({"x": 1})).max_attempts(3),
            NewTask::new("after", "noop", json!({})).after(&["flaky"]),
            NewTask::new("later", "noop", json!({})).after(&["after"]),
            NewTask::new("free", "noop", json!({})),
        ],
        ..NewJob::single("retry", "noop", json!({}))
    };
    let job_id = k.submit(job).await.unwrap().job.id;
    // Run the independent task to completion first.
    let leases = env.claim(node, 10).await;
    assert_eq!(leases.len(), 2);
    let detail = k.get_job(job_id).await.unwrap();
    let flaky_id = detail.tasks.iter().find(|t| t.key == "flaky").unwrap().id;
    for l in &leases {
        if l.task_id != flaky_id {
            k.complete(l.attempt_id, &l.proof(), None).await.unwrap();
        }
    }
    let mut lease = leases.into_iter().find(|l| l.task_id == flaky_id).unwrap();
    for attempt in 1..=3 {
        assert_eq!(lease.attempt_number, attempt);
        let now = env.clock_now();
        let out = k
            .fail(
                lease.attempt_id,
                &lease.proof(),
                &TaskFailure {
                    message: format!("connection reset by peer 10.0.0.{attempt}"),
                    retryable: true,
                },
            )
            .await
            .unwrap();
        if attempt < 3 {
            assert_eq!(out.task_state, TaskState::Ready);
            let delay = out.retry_at.unwrap() - now;
            let base = 1_000 * (1 << (attempt - 1));
            assert!(
                delay >= base && delay <= base + base / 2,
                "backoff {delay} for attempt {attempt}"
            );
            assert!(
                env.claim(node, 10).await.is_empty(),
                "not before the backoff ends"
            );
            env.clock.advance(delay);
            lease = env
                .claim(node, 10)
                .await
                .pop()
                .expect("retried after the backoff");
        } else {
            assert_eq!(out.task_state, TaskState::Failed);
            let dl = k
                .get_dead_letter(out.dead_letter_id.unwrap())
                .await
                .unwrap();
            assert_eq!(dl.status, DeadLetterStatus::Open);
            assert_eq!(dl.attempts.len(), 3);
            assert_eq!(dl.payload, json!({"x": 1}));
            assert_eq!(dl.task_key, "flaky");
            assert!(dl.error.contains("10.0.0.3"));
            assert_eq!(
                dl.fingerprint,
                kernel::error_fingerprint("connection reset by peer 10.0.0.1")
            );
        }
    }
    let detail = k.get_job(job_id).await.unwrap();
    assert_eq!(detail.job.state, JobState::Failed);
    let state = |key: &str| detail.tasks.iter().find(|t| t.key == key).unwrap().state;
    assert_eq!(state("flaky"), TaskState::Failed);
    assert_eq!(state("after"), TaskState::Skipped);
    assert_eq!(state("later"), TaskState::Skipped);
    assert_eq!(state("free"), TaskState::Succeeded);
    let groups = k.dead_letter_groups(None).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].count, 1);
}

async fn non_retryable_failure_dead_letters_at_once(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job = k
        .submit(NewJob::single("bad", "noop", json!({})))
        .await
        .unwrap();
    let lease = env.claim(node, 1).await.pop().unwrap();
    let out = k
        .fail(
            lease.attempt_id,
            &lease.proof(),
            &TaskFailure {
                message: "invalid input".into(),
                retryable: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(out.task_state, TaskState::Failed);
    assert!(out.dead_letter_id.is_some());
    assert_eq!(
        k.get_job(job.job.id).await.unwrap().job.state,
        JobState::Failed
    );
    assert!(env.event_types().await.iter().any(|t| t == "dlq.added"));
}

/// A dead-letter entry keeps the attempts that spent its task's budget,
/// and the ones the worker gave back among them: a released attempt spends
/// nothing, so the budget's first attempt can be older than its count says.
async fn a_dead_letter_keeps_every_attempt_of_its_spent_budget(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    k.submit(NewJob::single("flaky", "noop", json!({})).tap(|j| j.tasks[0].max_attempts = Some(2)))
        .await
        .unwrap();
    let fail = |lease: Lease| async move {
        let failure = TaskFailure {
            message: format!("attempt {} failed", lease.epoch),
            retryable: true,
        };
        k.fail(lease.attempt_id, &lease.proof(), &failure)
            .await
            .unwrap()
    };
    // 1 fails, 2 is given back, 3 fails: two attempts spent the budget of two.
    let first = env.claim(node, 1).await.pop().unwrap();
    let retry_at = fail(first).await.retry_at.unwrap();
    env.clock.advance(retry_at - env.clock_now());
    let second = env.claim(node, 1).await.pop().unwrap();
    k.release(second.attempt_id, &second.proof()).await.unwrap();
    let third = env.claim(node, 1).await.pop().unwrap();
    assert_eq!((third.epoch, third.attempt_number), (3, 2));
    let out = fail(third).await;
    assert_eq!(out.task_state, TaskState::Failed);
    let entry = k
        .get_dead_letter(out.dead_letter_id.unwrap())
        .await
        .unwrap();
    let numbers: Vec<i64> = entry.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(entry.attempts[1].state, AttemptState::Cancelled);

    // Replayed, the task has a new budget: its entry, when it fails again,
    // holds the attempts of that budget only.
    k.replay_dead_letter(entry.id, &Default::default())
        .await
        .unwrap();
    let fourth = env.claim(node, 1).await.pop().unwrap();
    let retry_at = fail(fourth).await.retry_at.unwrap();
    env.clock.advance(retry_at - env.clock_now());
    let fifth = env.claim(node, 1).await.pop().unwrap();
    let again = fail(fifth).await.dead_letter_id.unwrap();
    let numbers: Vec<i64> = k
        .get_dead_letter(again)
        .await
        .unwrap()
        .attempts
        .iter()
        .map(|a| a.number)
        .collect();
    assert_eq!(numbers, [4, 5]);
}

/// Dead-letters task `a` of an `a → b` job; returns (job id, entry id).
async fn dead_lettered(env: &Env, node: i64, name: &str) -> (i64, i64) {
    let job = NewJob {
        tasks: vec![
            NewTask::new("a", "noop", json!({"v": 1})),
            NewTask::new("b", "noop", json!({})).after(&["a"]),
        ],
        ..NewJob::single(name, "noop", json!({}))
    };
    let job_id = env.kernel.submit(job).await.unwrap().job.id;
    let lease = env.claim(node, 1).await.pop().unwrap();
    let out = env
        .kernel
        .fail(
            lease.attempt_id,
            &lease.proof(),
            &TaskFailure {
                message: format!("disk full on {name}"),
                retryable: false,
            },
        )
        .await
        .unwrap();
    (job_id, out.dead_letter_id.unwrap())
}

async fn replay_and_resolve_dead_letters(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let (job_id, entry) = dead_lettered(&env, node, "first").await;
    let replayed = k
        .replay_dead_letter(
            entry,
            &ReplayOptions {
                queue: Some("rescue".into()),
                payload: Some(json!({"v": 2})),
            },
        )
        .await
        .unwrap();
    assert_eq!(replayed.status, DeadLetterStatus::Replayed);
    let detail = k.get_job(job_id).await.unwrap();
    assert_eq!(detail.job.state, JobState::Running);
    let a = detail.tasks.iter().find(|t| t.key == "a").unwrap();
    let b = detail.tasks.iter().find(|t| t.key == "b").unwrap();
    assert_eq!(a.state, TaskState::Ready);
    assert_eq!(a.queue, "rescue");
    assert_eq!(a.payload, json!({"v": 2}));
    assert_eq!(a.attempts_used, 0);
    assert_eq!(
        b.state,
        TaskState::Pending,
        "skipped downstream waits again"
    );
    // Replaying twice is a conflict.
    let again = k.replay_dead_letter(entry, &ReplayOptions::default()).await;
    assert_eq!(again.unwrap_err().code(), "conflict");

    let lease = env.claim(node, 1).await.pop().unwrap();
    assert_eq!(lease.queue, "rescue");
    assert_eq!(lease.payload, json!({"v": 2}));
    k.complete(lease.attempt_id, &lease.proof(), None)
        .await
        .unwrap();
    let lease = env.claim(node, 1).await.pop().unwrap();
    k.complete(lease.attempt_id, &lease.proof(), None)
        .await
        .unwrap();
    assert_eq!(
        k.get_job(job_id).await.unwrap().job.state,
        JobState::Succeeded
    );
    assert!(k
        .list_queues(None)
        .await
        .unwrap()
        .iter()
        .any(|q| q.name == "rescue"));

    let (job2, entry2) = dead_lettered(&env, node, "second").await;
    assert_eq!(
        k.resolve_dead_letter(entry2, "  ")
            .await
            .unwrap_err()
            .code(),
        "validation_failed"
    );
    let resolved = k
        .resolve_dead_letter(entry2, "data fixed by hand")
        .await
        .unwrap();
    assert_eq!(resolved.status, DeadLetterStatus::Resolved);
    assert_eq!(resolved.reason.as_deref(), Some("data fixed by hand"));
    assert_eq!(k.get_job(job2).await.unwrap().job.state, JobState::Failed);
    assert_eq!(
        k.resolve_dead_letter(entry2, "again")
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );
    let types = env.event_types().await;
    assert!(types.iter().any(|t| t == "dlq.replayed"));
    assert!(types.iter().any(|t| t == "dlq.resolved"));
}

/// A job of three tasks: `f` dead-lettered (so `s`, after `f` and `u`,
/// skipped), `u` leased and running. Answers (job, entry, u's lease).
async fn dead_lettered_beside_a_running_task(env: &Env, node: i64) -> (i64, i64, Lease) {
    let job = NewJob {
        tasks: vec![
            NewTask::new("f", "noop", json!({"t": "f"})),
            NewTask::new("u", "noop", json!({"t": "u"})),
            NewTask::new("s", "noop", json!({"t": "s"})).after(&["f", "u"]),
        ],
        ..NewJob::single("beside", "noop", json!({}))
    };
    let job_id = env.kernel.submit(job).await.unwrap().job.id;
    let leases = env.claim(node, 2).await;
    assert_eq!(leases.len(), 2);
    let key = |l: &Lease| l.payload["t"].clone();
    let f = leases.iter().find(|l| key(l) == "f").unwrap();
    let u = leases.iter().find(|l| key(l) == "u").unwrap().clone();
    let failure = TaskFailure {
        message: "no such bucket".into(),
        retryable: false,
    };
    let out = env
        .kernel
        .fail(f.attempt_id, &f.proof(), &failure)
        .await
        .unwrap();
    (job_id, out.dead_letter_id.unwrap(), u)
}

/// Cancelling a job leaves its open dead-letter entries open; replaying
/// one would run its task (and the tasks after it) inside a job that
/// stays cancelled, as `retry_task` refuses to.
async fn a_cancelled_jobs_dead_letters_are_not_replayed(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let (job, entry, _u) = dead_lettered_beside_a_running_task(&env, node).await;
    k.cancel_job(job).await.unwrap();
    let refused = k
        .replay_dead_letter(entry, &ReplayOptions::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "conflict");
    assert!(refused.to_string().contains("cancelled"), "{refused}");
    let batch = k
        .replay_dead_letters(
            &DeadLetterSelection::Ids(vec![entry]),
            &ReplayOptions::default(),
            false,
        )
        .await
        .unwrap();
    assert!(batch.changed.is_empty());
    assert_eq!(batch.skipped, [entry]);
    let by_filter = k
        .replay_dead_letters(
            &DeadLetterSelection::Filter(DeadLetterFilter::default()),
            &ReplayOptions::default(),
            false,
        )
        .await
        .unwrap();
    assert!(by_filter.changed.is_empty());
    // Nothing changed: the entry is open (it can still be resolved), the
    // task failed, the job cancelled, nothing to lease.
    assert_eq!(
        k.get_dead_letter(entry).await.unwrap().status,
        DeadLetterStatus::Open
    );
    let detail = k.get_job(job).await.unwrap();
    assert_eq!(detail.job.state, JobState::Cancelled);
    let f = detail.tasks.iter().find(|t| t.key == "f").unwrap();
    assert_eq!(f.state, TaskState::Failed);
    assert!(env.claim(node, 10).await.is_empty());
    k.resolve_dead_letter(entry, "job cancelled").await.unwrap();
}

/// A replay may move a task to another queue than its job's: whether the
/// job waits is the task's queue's to say. It was the job's: a task
/// replayed into a paused queue left its job `running` with nothing to
/// run, and one replayed out of it left its job `blocked` while it ran.
async fn a_replayed_tasks_queue_decides_whether_its_job_waits(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let (into_pause, entry) = dead_lettered(&env, node, "into").await;
    k.pause_queue("held").await.unwrap();
    let opts = |queue: &str| ReplayOptions {
        queue: Some(queue.into()),
        payload: None,
    };
    k.replay_dead_letter(entry, &opts("held")).await.unwrap();
    let state = |id: i64| async move { k.get_job_summary(id).await.unwrap().state };
    assert_eq!(state(into_pause).await, JobState::Blocked);
    assert!(env.claim(node, 10).await.is_empty());

    let mut job = NewJob::single("out", "noop", json!({}));
    job.queue = "p".into();
    let out_of_pause = k.submit(job).await.unwrap().job.id;
    let lease = env.claim(node, 1).await.pop().unwrap();
    let failure = TaskFailure {
        message: "bad input".into(),
        retryable: false,
    };
    let entry = k
        .fail(lease.attempt_id, &lease.proof(), &failure)
        .await
        .unwrap()
        .dead_letter_id
        .unwrap();
    k.pause_queue("p").await.unwrap();
    k.replay_dead_letter(entry, &opts("open")).await.unwrap();
    assert_eq!(state(out_of_pause).await, JobState::Running);
    let leases = env.claim(node, 10).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].job_id, out_of_pause);
    assert_eq!(state(out_of_pause).await, JobState::Running);
}

async fn batch_dead_letter_actions(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let mut entries = Vec::new();
    for i in 0..5 {
        entries.push(dead_lettered(&env, node, &format!("batch{i}")).await.1);
    }
    let filter = DeadLetterFilter {
        q: Some("DISK FULL".into()),
        ..Default::default()
    };
    let dry = k
        .resolve_dead_letters(&DeadLetterSelection::Filter(filter.clone()), "noise", true)
        .await
        .unwrap();
    assert_eq!(dry.matched, 5);
    assert!(dry.changed.is_empty());
    assert_eq!(
        k.list_dead_letters(
            &DeadLetterFilter {
                status: Some(DeadLetterStatus::Open),
                ..Default::default()
            },
            50,
            None
        )
        .await
        .unwrap()
        .items
        .len(),
        5
    );
    let replay = k
        .replay_dead_letters(
            &DeadLetterSelection::Ids(vec![entries[0], entries[1], 999_999]),
            &ReplayOptions::default(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(replay.changed, vec![entries[0], entries[1]]);
    assert_eq!(replay.skipped, vec![999_999]);
    let resolved = k
        .resolve_dead_letters(&DeadLetterSelection::Filter(filter), "noise", false)
        .await
        .unwrap();
    assert_eq!(resolved.changed.len(), 3);
    let page = k
        .list_dead_letters(
            &DeadLetterFilter {
                status: Some(DeadLetterStatus::Resolved),
                ..Default::default()
            },
            2,
            None,
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = k
        .list_dead_letters(
            &DeadLetterFilter {
                status: Some(DeadLetterStatus::Resolved),
                ..Default::default()
            },
            2,
            page.next_cursor.as_deref(),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next_cursor.is_none());
}

async fn paused_queue_blocks_and_resumes(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let q = k.pause_queue("default").await.unwrap();
    assert!(q.paused);
    let job = k
        .submit(NewJob::single("waits", "noop", json!({})))
        .await
        .unwrap();
    assert_eq!(job.job.state, JobState::Blocked);
    assert_eq!(job.job, k.get_job_summary(job.job.id).await.unwrap());
    let mut other = NewJob::single("other", "noop", json!({}));
    other.queue = "fast".into();
    let other = k.submit(other).await.unwrap();
    let leases = env.claim(node, 10).await;
    assert_eq!(leases.len(), 1, "only the open queue is served");
    assert_eq!(leases[0].job_id, other.job.id);
    let queues = k.list_queues(None).await.unwrap();
    let default = queues.iter().find(|q| q.name == "default").unwrap();
    assert_eq!(default.depth.ready, 1);
    let resumed = k.resume_queue("default").await.unwrap();
    assert!(!resumed.paused);
    assert_eq!(
        k.get_job_summary(job.job.id).await.unwrap().state,
        JobState::Queued
    );
    let leases = env.claim(node, 10).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].job_id, job.job.id);
    let types = env.event_types().await;
    assert!(types.iter().any(|t| t == "queue.paused"));
    assert!(types.iter().any(|t| t == "queue.resumed"));
    // Resuming a queue that does not exist is refused (it created it).
    let unknown = k.resume_queue("no-such-queue").await.unwrap_err();
    assert_eq!(unknown.code(), "not_found");
    let names: Vec<String> = k
        .list_queues(None)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert!(!names.iter().any(|n| n == "no-such-queue"), "{names:?}");
    k.complete(leases[0].attempt_id, &leases[0].proof(), None)
        .await
        .unwrap();

    // A started job waits on a pause too: between two tasks when it
    // begins (blocked at once), or when its next task becomes ready after
    // it began (blocked by the sweep). Both were left `running`.
    let chain = || NewJob {
        tasks: vec![
            NewTask::new("a", "noop", json!({})),
            NewTask::new("b", "noop", json!({})).after(&["a"]),
        ],
        ..NewJob::single("chain", "noop", json!({}))
    };
    let during = k.submit(chain()).await.unwrap().job.id;
    let lease = env.claim(node, 1).await.pop().unwrap();
    assert_eq!(lease.job_id, during);
    let between = k.submit(chain()).await.unwrap().job.id;
    let first = env.claim(node, 1).await.pop().unwrap();
    assert_eq!(first.job_id, between);
    k.complete(first.attempt_id, &first.proof(), None)
        .await
        .unwrap();
    k.pause_queue("default").await.unwrap();
    let state = |id: i64| async move { k.get_job_summary(id).await.unwrap().state };
    assert_eq!(state(between).await, JobState::Blocked);
    assert_eq!(state(during).await, JobState::Running, "a task is leased");
    k.complete(lease.attempt_id, &lease.proof(), None)
        .await
        .unwrap();
    k.sweep().await.unwrap();
    assert_eq!(state(during).await, JobState::Blocked);
    k.resume_queue("default").await.unwrap();
    assert_eq!(state(between).await, JobState::Running);
    assert_eq!(state(during).await, JobState::Running);
}

async fn quotas_limit_concurrency_and_starts(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let mut jobs = Vec::new();
    for i in 0..10 {
        let mut j = NewJob::single(format!("acme{i}"), "noop", json!({}));
        j.tenant = "acme".into();
        jobs.push(j);
    }
    k.submit_many(jobs).await.unwrap();
    k.set_quota(
        QuotaScope::Tenant,
        "acme",
        &QuotaLimits {
            max_concurrent: Some(2),
            max_starts_per_minute: None,
        },
    )
    .await
    .unwrap();
    let first = env.claim(node, 10).await;
    assert_eq!(first.len(), 2);
    assert!(
        env.claim(node, 10).await.is_empty(),
        "tenant at its concurrency limit"
    );
    let quotas = k.list_quotas().await.unwrap();
    assert_eq!(quotas[0].usage.concurrent, 2);
    k.complete(first[0].attempt_id, &first[0].proof(), None)
        .await
        .unwrap();
    assert_eq!(env.claim(node, 10).await.len(), 1);

    // Starts per minute on the queue (7 acme tasks are still ready).
    k.set_quota(QuotaScope::Tenant, "acme", &QuotaLimits::default())
        .await
        .unwrap();
    assert!(
        k.list_quotas().await.unwrap().is_empty(),
        "no limits = quota removed"
    );
    k.set_quota(
        QuotaScope::Queue,
        "default",
        &QuotaLimits {
            max_concurrent: None,
            max_starts_per_minute: Some(5),
        },
    )
    .await
    .unwrap();
    // The three starts of a moment ago count: a new limit once counted
    // only the starts made after it, so 5 more started here.
    assert_eq!(env.claim(node, 10).await.len(), 2);
    assert!(
        env.claim(node, 10).await.is_empty(),
        "5 starts in the last minute"
    );
    let q = k.list_quotas().await.unwrap();
    assert_eq!(q[0].usage.starts_last_minute, 5);
    assert_eq!(q[0].usage.concurrent, 4);
    env.clock.advance(61_000);
    assert_eq!(
        env.claim(node, 10).await.len(),
        5,
        "a new minute: the last five start"
    );
    assert!(env.event_types().await.iter().any(|t| t == "quota.updated"));
}

async fn drained_node_gets_no_leases(env: Env) {
    let k = &env.kernel;
    let a = env.node("a").await;
    let b = env.node("b").await;
    k.submit(NewJob::single("x", "noop", json!({})))
        .await
        .unwrap();
    let drained = k.drain_node(a).await.unwrap();
    assert_eq!(drained.status, NodeStatus::Draining);
    assert!(env.claim(a, 10).await.is_empty());
    assert_eq!(env.claim(b, 10).await.len(), 1);
    let nodes = k.list_nodes().await.unwrap();
    assert_eq!(nodes.iter().find(|n| n.id == b).unwrap().active_leases, 1);
    assert_eq!(k.undrain_node(a).await.unwrap().status, NodeStatus::Online);
    assert!(env.event_types().await.iter().any(|t| t == "node.draining"));
    // A silent node goes offline, and comes back when it claims.
    env.clock.advance(61_000);
    k.sweep().await.unwrap();
    assert_eq!(k.get_node(a).await.unwrap().status, NodeStatus::Offline);
    env.claim(a, 1).await;
    assert_eq!(k.get_node(a).await.unwrap().status, NodeStatus::Online);
    assert_eq!(k.drain_node(12345).await.unwrap_err().code(), "not_found");
    // A drain lasts until it is ended: not through a silence (the sweep
    // once made the node offline, and its next claim online again) nor
    // through its worker registering again after a restart.
    k.submit(NewJob::single("y", "noop", json!({})))
        .await
        .unwrap();
    k.drain_node(a).await.unwrap();
    env.clock.advance(61_000);
    k.sweep().await.unwrap();
    assert_eq!(k.get_node(a).await.unwrap().status, NodeStatus::Draining);
    assert!(env.claim(a, 10).await.is_empty());
    assert_eq!(env.node("a").await, a);
    assert_eq!(k.get_node(a).await.unwrap().status, NodeStatus::Draining);
    assert!(env.claim(a, 10).await.is_empty());
    k.undrain_node(a).await.unwrap();
    // (x too: b's lease of it lapsed meanwhile.)
    assert!(!env.claim(a, 10).await.is_empty());
}

async fn heartbeat_extends_and_reports_cancellation(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job = k
        .submit(NewJob::single("hb", "noop", json!({})))
        .await
        .unwrap();
    let lease = env.claim(node, 1).await.pop().unwrap();
    env.clock.advance(8_000);
    let hb = k.heartbeat(lease.attempt_id, &lease.proof()).await.unwrap();
    assert!(!hb.cancelled);
    assert_eq!(hb.lease_expires_at, env.clock_now() + 10_000);
    // Past the original expiry, but renewed: the sweep leaves it alone.
    env.clock.advance(8_000);
    assert_eq!(k.sweep().await.unwrap(), 0);
    k.cancel_job(job.job.id).await.unwrap();
    let hb = k.heartbeat(lease.attempt_id, &lease.proof()).await.unwrap();
    assert!(hb.cancelled);
    let done = k.complete(lease.attempt_id, &lease.proof(), None).await;
    assert_eq!(done.unwrap_err().code(), "task_cancelled");
    let detail = k.get_job(job.job.id).await.unwrap();
    assert_eq!(detail.job.state, JobState::Cancelled);
    assert_eq!(detail.tasks[0].state, TaskState::Cancelled);
    assert_eq!(detail.tasks[0].attempts[0].state, AttemptState::Cancelled);
}

async fn cancel_and_retry_jobs(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job = k.submit(dag_job("cancel-me")).await.unwrap();
    let cancelled = k.cancel_job(job.job.id).await.unwrap();
    assert_eq!(cancelled.job.state, JobState::Cancelled);
    assert!(cancelled
        .tasks
        .iter()
        .all(|t| t.state == TaskState::Cancelled));
    assert!(env.claim(node, 10).await.is_empty());
    assert_eq!(
        k.cancel_job(job.job.id).await.unwrap_err().code(),
        "conflict"
    );
    assert_eq!(
        k.retry_job(job.job.id).await.unwrap_err().code(),
        "conflict"
    );
    assert_eq!(k.cancel_job(424242).await.unwrap_err().code(), "not_found");

    let (job_id, entry) = dead_lettered(&env, node, "retry-me").await;
    let retried = k.retry_job(job_id).await.unwrap();
    assert_eq!(retried.job.state, JobState::Running);
    let a = retried.tasks.iter().find(|t| t.key == "a").unwrap();
    assert_eq!(a.state, TaskState::Ready);
    assert_eq!(a.attempts_used, 0);
    assert_eq!(
        retried.tasks.iter().find(|t| t.key == "b").unwrap().state,
        TaskState::Pending
    );
    assert_eq!(
        k.get_dead_letter(entry).await.unwrap().status,
        DeadLetterStatus::Replayed
    );
    for _ in 0..2 {
        let l = env.claim(node, 1).await.pop().unwrap();
        k.complete(l.attempt_id, &l.proof(), None).await.unwrap();
    }
    assert_eq!(
        k.get_job(job_id).await.unwrap().job.state,
        JobState::Succeeded
    );
}

async fn release_gives_the_task_back(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job = k
        .submit(NewJob::single("r", "noop", json!({})))
        .await
        .unwrap();
    let lease = env.claim(node, 1).await.pop().unwrap();
    k.release(lease.attempt_id, &lease.proof()).await.unwrap();
    let d = k.get_job(job.job.id).await.unwrap();
    assert_eq!(d.tasks[0].state, TaskState::Ready);
    assert_eq!(d.tasks[0].attempts_used, 0);
    assert_eq!(d.tasks[0].attempts[0].state, AttemptState::Cancelled);
    let again = env.claim(node, 1).await.pop().unwrap();
    assert!(again.epoch > lease.epoch);
    assert_eq!(again.attempt_number, 1, "a release spends no attempt");
}

async fn event_log_is_ordered_without_gaps(env: Env) {
    let k = &env.kernel;
    let background = k.start_background();
    let mut rx = k.subscribe_events();
    // Many concurrent writers while a reader tails the log.
    let tail = {
        let k = k.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            while seen.len() < 200 && tokio::time::Instant::now() < deadline {
                let page = k.events_after(after, 50).await.unwrap();
                if page.items.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    continue;
                }
                after = page.next_after;
                seen.extend(page.items.into_iter().map(|e| e.seq));
            }
            seen
        })
    };
    let mut writers = Vec::new();
    for w in 0..8 {
        let k = k.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..25 {
                k.submit(NewJob::single(format!("w{w}-{i}"), "noop", json!({})))
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    eventually("a change notification", || {
        let changed = rx.has_changed().unwrap_or(false);
        async move { changed.then_some(()) }
    })
    .await;
    rx.mark_unchanged();
    let seen = tail.await.unwrap();
    let all: Vec<i64> = env.all_events().await.into_iter().map(|e| e.seq).collect();
    assert_eq!(all.len(), 200, "every committed event is in the log");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "seq increases");
    if env.kernel.backend() == kernel::Backend::Sqlite {
        assert_eq!(all, (1..=200).collect::<Vec<i64>>(), "SQLite numbers 1..N");
    }
    assert_eq!(
        seen, all,
        "the tailing reader saw every event once, in order"
    );
    assert_eq!(k.last_event_seq().await.unwrap(), *all.last().unwrap());
    background.shutdown().await;
}

/// One transaction writing 341 events (256 + 64 + 16 + 4 + 1: every size
/// of statement the SQLite insert splits a list into) logs each of them
/// once, in the order they were made.
async fn many_events_of_one_transaction_are_all_logged_in_order(env: Env) {
    let k = &env.kernel;
    let jobs: Vec<NewJob> = (0..341)
        .map(|i| NewJob::single(format!("bulk-{i}"), "noop", json!({ "i": i })))
        .collect();
    let written = k.submit_many(jobs).await.unwrap();
    let ids: Vec<i64> = written.iter().map(|(id, _)| *id).collect();
    let events = env.all_events().await;
    let submitted: Vec<&kernel::model::Event> = events
        .iter()
        .filter(|e| e.event_type == kernel::model::event_type::JOB_SUBMITTED)
        .collect();
    let logged: Vec<i64> = submitted
        .iter()
        .map(|e| e.subject.job_id.expect("a submit event names its job"))
        .collect();
    assert_eq!(logged, ids, "one event per job, in the jobs' order");
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq increases"
    );
    if k.backend() == kernel::Backend::Sqlite {
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        let first = seqs[0];
        assert_eq!(
            seqs,
            (first..first + events.len() as i64).collect::<Vec<i64>>(),
            "SQLite numbers them without a gap"
        );
    }
}

async fn lists_filter_and_paginate(env: Env) {
    let k = &env.kernel;
    let mut jobs = Vec::new();
    for i in 0..12 {
        let mut j = NewJob::single(format!("report-{i}"), "noop", json!({}));
        if i % 3 == 0 {
            j.queue = "reports".into();
            j.tenant = "acme".into();
        }
        jobs.push(j);
    }
    k.submit_many(jobs).await.unwrap();
    let page1 = k.list_jobs(&JobFilter::default(), 5, None).await.unwrap();
    assert_eq!(page1.items.len(), 5);
    assert_eq!(page1.items[0].name, "report-11", "newest first");
    let page2 = k
        .list_jobs(&JobFilter::default(), 5, page1.next_cursor.as_deref())
        .await
        .unwrap();
    let page3 = k
        .list_jobs(&JobFilter::default(), 5, page2.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(page3.items.len(), 2);
    assert!(page3.next_cursor.is_none());
    let by_queue = k
        .list_jobs(
            &JobFilter {
                queue: Some("reports".into()),
                ..Default::default()
            },
            50,
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_queue.items.len(), 4);
    let by_tenant = k
        .list_jobs(
            &JobFilter {
                tenant: Some("acme".into()),
                ..Default::default()
            },
            50,
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_tenant.items.len(), 4);
    let by_q = k
        .list_jobs(
            &JobFilter {
                q: Some("PORT-1".into()),
                ..Default::default()
            },
            50,
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_q.items.len(), 3, "report-1, report-10, report-11");
    // A cursor is what `next_cursor` gave: digits, nothing else.
    for bad in ["+2", "-2", "2x", "x"] {
        let refused = k
            .list_jobs(&JobFilter::default(), 5, Some(bad))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "validation_failed", "{bad}");
    }
    let by_id = k
        .list_jobs(
            &JobFilter {
                q: Some(page1.items[0].id.to_string()),
                ..Default::default()
            },
            50,
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_id.items.len(), 1);
    assert_eq!(by_q.items[0].task_counts.ready, 1);
    assert_eq!(
        k.list_jobs(&JobFilter::default(), 5, Some("nope"))
            .await
            .unwrap_err()
            .code(),
        "validation_failed"
    );
    let overview = k.overview(None).await.unwrap();
    assert_eq!(overview.jobs_by_state.get("queued"), Some(&12));
}

async fn attempt_log_appends_and_reads(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    k.submit(NewJob::single("log", "noop", json!({})))
        .await
        .unwrap();
    let lease = env.claim(node, 1).await.pop().unwrap();
    let lines: Vec<NewLogLine> = (0..3)
        .map(|i| NewLogLine {
            stream: LogStream::Stdout,
            line: format!("line {i}"),
            ts: i,
        })
        .collect();
    assert_eq!(
        k.append_attempt_log(lease.attempt_id, &lease.proof(), &lines)
            .await
            .unwrap(),
        3
    );
    let bad = LeaseProof {
        lease_token: "x".into(),
        epoch: lease.epoch,
    };
    assert_eq!(
        k.append_attempt_log(lease.attempt_id, &bad, &lines)
            .await
            .unwrap_err()
            .code(),
        "stale_lease"
    );
    let read = k.attempt_log(lease.attempt_id, 0, 100).await.unwrap();
    assert_eq!(
        read.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
        ["line 0", "line 1", "line 2"]
    );
    let tail = k
        .attempt_log(lease.attempt_id, read[1].id, 100)
        .await
        .unwrap();
    assert_eq!(tail.len(), 1);
}

async fn long_poll_wakes_when_work_arrives(env: Env) {
    let k = env.kernel.clone();
    let node = env.node("n1").await;
    let claimer = tokio::spawn(async move {
        k.claim(&ClaimRequest {
            node_id: node,
            kinds: vec!["noop".into()],
            max: 5,
            wait_ms: 20_000,
        })
        .await
        .unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    env.kernel
        .submit(NewJob::single("wake", "noop", json!({})))
        .await
        .unwrap();
    let leases = claimer.await.unwrap();
    assert_eq!(leases.len(), 1);
    // With nothing to do, the wait ends empty.
    let empty = env
        .kernel
        .claim(&ClaimRequest {
            node_id: node,
            kinds: vec!["noop".into()],
            max: 5,
            wait_ms: 30,
        })
        .await
        .unwrap();
    assert!(empty.is_empty());
}

/// Of several claims of one node waiting at once, the wake-up reaches one
/// and each that returns with work hands the wait on: a burst of three
/// tasks reaches all three claims. The fallback poll is longer than their
/// wait, so only wake-ups can deliver the work.
async fn waiting_claims_of_one_node_each_get_a_burst(env: Env) {
    let config = kernel::KernelConfig {
        claim_poll_every: std::time::Duration::from_secs(600),
        ..common::test_config(&env.clock)
    };
    let k = kernel::Kernel::open(&env.url, config).await.unwrap();
    let node = env.node("n1").await;
    let claims = spawn_claims_of_one(&k, node, 3, 20_000);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let tasks = ["a", "b", "c"].map(|key| NewTask::new(key, "noop", json!({})));
    let job = NewJob {
        tasks: tasks.to_vec(),
        ..NewJob::single("burst", "noop", json!({}))
    };
    k.submit(job).await.unwrap();
    let mut leased = BTreeSet::new();
    for claim in claims {
        let leases = claim.await.unwrap();
        assert_eq!(leases.len(), 1, "each waiting claim gets one task");
        leased.insert(leases[0].task_id);
    }
    assert_eq!(leased.len(), 3, "three different tasks");
}

/// A kernel on `env`'s database whose waiting claims look again only when
/// woken (or handed work), never by polling: what a waiting claim gets
/// then comes from the submit that wakes it.
async fn kernel_without_polling(env: &Env) -> kernel::Kernel {
    let config = kernel::KernelConfig {
        claim_poll_every: std::time::Duration::from_secs(600),
        ..common::test_config(&env.clock)
    };
    kernel::Kernel::open(&env.url, config).await.unwrap()
}

/// Lets spawned claims look for work and start waiting (ordering only:
/// a claim that has not started waiting yet looks when it starts).
async fn claims_start_waiting() {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

/// New work reaches a claim that waits for it as that claim would have
/// leased it: the best of its kinds, no more than it asked for, each a
/// first attempt with a working lease, the job running, and the same
/// events in the same order. (The submit's own writes lease it, on both
/// backends.)
async fn a_waiting_claim_gets_new_work_as_its_claim_would(env: Env) {
    use kernel::Clock;
    let k = kernel_without_polling(&env).await;
    let node = env.node("n1").await;
    let claim = spawn_claim(&k, node, 2, 20_000);
    claims_start_waiting().await;
    let job = NewJob {
        tasks: vec![
            NewTask::new("a", "noop", json!({"n": 1})),
            NewTask::new("b", "noop", json!({"n": 2})),
            NewTask::new("c", "noop", json!({"n": 3})),
            NewTask::new("s", "sleep", json!({"ms": 1})),
            NewTask::new("after", "noop", json!({})).after(&["a"]),
        ],
        ..NewJob::single("handed", "noop", json!({}))
    };
    let answer = k.submit(job).await.unwrap().job;
    let id = answer.id;
    let leases = claim.await.unwrap();
    let detail = k.get_job(id).await.unwrap();
    // The submit leased the work itself, and answers so.
    assert_eq!(answer.state, JobState::Running);
    assert_eq!(keys_of(&detail, &leases), set(&["a", "b"]));
    assert_eq!(detail.job.state, JobState::Running);
    assert_eq!(detail.job.started_at, Some(env.clock.now_ms()));
    for (lease, n) in leases.iter().zip([1, 2]) {
        assert_eq!((lease.epoch, lease.attempt_number), (1, 1));
        assert_eq!(lease.payload, json!({ "n": n }));
        assert_eq!(lease.lease_token.len(), 32);
        assert_eq!(lease.lease_expires_at, env.clock.now_ms() + 10_000);
        let task = detail.tasks.iter().find(|t| t.id == lease.task_id).unwrap();
        assert_eq!(
            (task.state, task.epoch, task.attempts_used),
            (TaskState::Leased, 1, 1)
        );
        assert_eq!(task.attempts.len(), 1);
        assert_eq!(task.attempts[0].id, lease.attempt_id);
        assert_eq!(task.attempts[0].node_id, Some(node));
        assert_eq!(task.attempts[0].state, AttemptState::Active);
        assert!(
            !k.heartbeat(lease.attempt_id, &lease.proof())
                .await
                .unwrap()
                .cancelled
        );
    }
    let state_of = |key: &str| detail.tasks.iter().find(|t| t.key == key).unwrap().state;
    assert_eq!(state_of("c"), TaskState::Ready);
    assert_eq!(state_of("s"), TaskState::Ready);
    assert_eq!(state_of("after"), TaskState::Pending);

    // The events: submitted, the two grants, then the job running (then
    // the heartbeats above).
    let events: Vec<_> = env
        .all_events()
        .await
        .into_iter()
        .filter(|e| e.subject.job_id == Some(id))
        .take(4)
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "job.submitted",
            "lease.granted",
            "lease.granted",
            "job.stateChanged"
        ]
    );
    let granted: Vec<Option<i64>> = events[1..3].iter().map(|e| e.subject.attempt_id).collect();
    assert_eq!(
        granted,
        leases
            .iter()
            .map(|l| Some(l.attempt_id))
            .collect::<Vec<_>>()
    );
    assert_eq!(events[1].subject.node_id, Some(node));
    assert_eq!(events[1].data["epoch"], 1);
    assert_eq!(events[3].data, json!({ "from": "queued", "to": "running" }));

    // The rest is claimed as usual, and the job runs to its end.
    for lease in &leases {
        k.complete(lease.attempt_id, &lease.proof(), None)
            .await
            .unwrap();
    }
    let mut rest = Vec::new();
    while rest.len() < 3 {
        let more = env.claim(node, 10).await;
        assert!(!more.is_empty(), "c, s and after are claimable");
        rest.extend(more);
    }
    assert_eq!(
        keys_of(&k.get_job(id).await.unwrap(), &rest),
        set(&["c", "s", "after"])
    );
    for lease in &rest {
        k.complete(lease.attempt_id, &lease.proof(), None)
            .await
            .unwrap();
    }
    assert_eq!(k.get_job(id).await.unwrap().job.state, JobState::Succeeded);
}

/// Ready work that became claimable while a claim waited (a retry whose
/// backoff ended: nothing wakes a claim for that) comes before newer work
/// that wakes it: the new work is not handed to the claim over it.
async fn a_waiting_claim_takes_older_ready_work_first(env: Env) {
    let k = kernel_without_polling(&env).await;
    let node = env.node("n1").await;
    let old = k
        .submit(NewJob::single("old", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let lease = env.claim(node, 1).await.remove(0);
    let failure = TaskFailure {
        message: "try again".into(),
        retryable: true,
    };
    k.fail(lease.attempt_id, &lease.proof(), &failure)
        .await
        .unwrap();
    let claim = spawn_claim(&k, node, 1, 20_000);
    claims_start_waiting().await;
    env.clock.advance(120_000);
    let new = k
        .submit(NewJob::single("new", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let leases = claim.await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].job_id, old, "the older task, first");
    assert_eq!(leases[0].attempt_number, 2);
    let new = k.get_job(new).await.unwrap();
    assert_eq!(new.tasks[0].state, TaskState::Ready);
    assert_eq!(new.job.state, JobState::Queued);
}

/// A waiting claim is handed nothing its claim could not lease: not over
/// a quota, not on a draining node, not from a paused queue. Each case
/// runs on a kernel of its own (a kernel that could not hand work off
/// stops trying for a while).
async fn a_waiting_claim_gets_only_what_a_claim_may_lease(env: Env) {
    // Waits for a claim of `node` that ends empty-handed while a job that
    // `submit` makes is written; returns the job's task.
    async fn nothing_handed<F, Fut>(env: &Env, node: i64, submit: F) -> Task
    where
        F: FnOnce(kernel::Kernel) -> Fut,
        Fut: std::future::Future<Output = i64>,
    {
        let k = kernel_without_polling(env).await;
        let claim = spawn_claim(&k, node, 5, 500);
        claims_start_waiting().await;
        let id = submit(k.clone()).await;
        assert!(claim.await.unwrap().is_empty(), "nothing for the claim");
        k.get_job(id).await.unwrap().tasks.remove(0)
    }
    let k = &env.kernel;
    let node = env.node("n1").await;

    // A tenant with room for one more lease: of two new tasks, the claim
    // gets one.
    let mut busy = NewJob::single("busy", "noop", json!({}));
    busy.tenant = "acme".into();
    k.submit(busy.clone()).await.unwrap();
    assert_eq!(env.claim(node, 1).await.len(), 1);
    let two_at_a_time = QuotaLimits {
        max_concurrent: Some(2),
        max_starts_per_minute: None,
    };
    k.set_quota(QuotaScope::Tenant, "acme", &two_at_a_time)
        .await
        .unwrap();
    let quoted = kernel_without_polling(&env).await;
    let claim = spawn_claim(&quoted, node, 5, 20_000);
    claims_start_waiting().await;
    busy.tasks.push(NewTask::new("second", "noop", json!({})));
    quoted.submit(busy).await.unwrap();
    assert_eq!(claim.await.unwrap().len(), 1, "the quota's room");
    k.set_quota(QuotaScope::Tenant, "acme", &QuotaLimits::default())
        .await
        .unwrap();
    assert_eq!(env.claim(node, 5).await.len(), 1, "the other task");

    // A node drained while its claim waits.
    let draining = env.node("draining").await;
    let task = nothing_handed(&env, draining, |k| async move {
        k.drain_node(draining).await.unwrap();
        k.submit(NewJob::single("x", "noop", json!({})))
            .await
            .unwrap()
            .job
            .id
    })
    .await;
    assert_eq!(task.state, TaskState::Ready, "for a draining node");
    assert_eq!(env.claim(node, 1).await[0].task_id, task.id);

    // A paused queue.
    let task = nothing_handed(&env, node, |k| async move {
        k.pause_queue("held").await.unwrap();
        let mut job = NewJob::single("y", "noop", json!({}));
        job.queue = "held".into();
        k.submit(job).await.unwrap().job.id
    })
    .await;
    assert_eq!(task.state, TaskState::Ready, "in a paused queue");
    assert_eq!(
        k.get_job(task.job_id).await.unwrap().job.state,
        JobState::Blocked
    );
}

/// A claim that stops waiting (its caller went away) is handed nothing:
/// no lease is granted to it, and the new work is there for the next claim.
async fn a_claim_that_stops_waiting_is_handed_nothing(env: Env) {
    let k = kernel_without_polling(&env).await;
    let node = env.node("n1").await;
    let claim = spawn_claim(&k, node, 1, 20_000);
    claims_start_waiting().await;
    claim.abort();
    assert!(claim.await.unwrap_err().is_cancelled());
    let id = k
        .submit(NewJob::single("after", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let types = env.event_types().await;
    assert!(!types.iter().any(|t| t.starts_with("lease.")), "{types:?}");
    let leases = env.claim(node, 1).await;
    assert_eq!(leases[0].job_id, id);
    assert_eq!(leases[0].attempt_number, 1);
}

async fn start_pool(env: &Env, slots: usize) -> kernel::worker::WorkerPool {
    use kernel::worker::{Executors, PoolConfig, WorkerPool};
    let node = env.node("pool").await;
    let mut config = PoolConfig::new(node, slots);
    config.heartbeat_every = std::time::Duration::from_millis(20);
    config.claim_wait_ms = 50;
    WorkerPool::start(
        std::sync::Arc::new(env.kernel.clone()),
        Executors::builtin(),
        config,
    )
}

/// A renewal sent between a run's end and its report's commit was refused
/// as stale and recorded (`lease.fenced`), about once in 150 leases, and
/// the worker logged the lease as lost. A finished run is not renewed for
/// a moment now.
async fn a_finished_run_is_not_renewed_while_it_is_reported(env: Env) {
    let k = &env.kernel;
    let pool = start_pool(&env, 8).await; // renewals every 20 ms
    let ids: Vec<i64> = k
        .submit_many(
            (0..100)
                .map(|i| NewJob::single(format!("s{i}"), "sleep", json!({"ms": 30})))
                .collect(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for id in ids {
        assert_eq!(finished(k, id).await, JobState::Succeeded);
    }
    pool.shutdown(kernel::worker::Shutdown::Release).await;
    let fenced = env
        .event_types()
        .await
        .into_iter()
        .filter(|t| t == "lease.fenced")
        .count();
    assert_eq!(fenced, 0, "renewals refused as stale");
}

/// Waits for job `id` to reach a terminal state, and returns it.
async fn finished(k: &kernel::Kernel, id: i64) -> JobState {
    eventually("the job to finish", || async {
        let state = k.get_job_summary(id).await.unwrap().state;
        state.is_terminal().then_some(state)
    })
    .await
}

async fn worker_pool_runs_the_builtin_kinds(env: Env) {
    let k = &env.kernel;
    let pool = start_pool(&env, 8).await;
    let ok = k
        .submit(NewJob {
            tasks: vec![
                NewTask::new("noop", "noop", json!({})),
                NewTask::new("nap", "sleep", json!({"ms": 5})).after(&["noop"]),
                NewTask::new(
                    "say",
                    "exec",
                    json!({"cmd": "sh", "args": ["-c", "echo hello $WHO; echo oops >&2"], "env": {"WHO": "world"}}),
                )
                .after(&["nap"]),
            ],
            ..NewJob::single("works", "noop", json!({}))
        })
        .await
        .unwrap()
        .job
        .id;
    let bad = k
        .submit(
            NewJob::single(
                "fails",
                "exec",
                json!({"cmd": "sh", "args": ["-c", "exit 3"]}),
            )
            .tap(|j| {
                j.tasks[0].max_attempts = Some(1);
            }),
        )
        .await
        .unwrap()
        .job
        .id;
    let slow = k
        .submit(
            NewJob::single(
                "slow",
                "exec",
                json!({"cmd": "sleep", "args": ["30"], "timeout_s": 0.2}),
            )
            .tap(|j| {
                j.tasks[0].max_attempts = Some(1);
            }),
        )
        .await
        .unwrap()
        .job
        .id;
    let nowhere = k
        .submit(NewJob::single(
            "nowhere",
            "exec",
            json!({"cmd": "true", "cwd": "/no/such/switchyard/dir"}),
        ))
        .await
        .unwrap()
        .job
        .id;
    for id in [ok, bad, slow, nowhere] {
        finished(k, id).await;
    }
    let lost = k.get_job(nowhere).await.unwrap();
    assert_eq!(
        lost.tasks[0].last_error.as_deref(),
        Some("cannot start \"true\": no directory \"/no/such/switchyard/dir\" to run it in"),
        "a missing directory is named, and not retried: {lost:#?}"
    );
    assert_eq!(lost.tasks[0].attempts.len(), 1);
    let detail = k.get_job(ok).await.unwrap();
    assert_eq!(detail.job.state, JobState::Succeeded, "{detail:#?}");
    let say = detail.tasks.iter().find(|t| t.key == "say").unwrap();
    assert_eq!(say.output, Some(json!({"exit_code": 0})));
    let log = k.attempt_log(say.attempts[0].id, 0, 100).await.unwrap();
    let lines: Vec<(LogStream, &str)> = log.iter().map(|l| (l.stream, l.line.as_str())).collect();
    assert!(
        lines.contains(&(LogStream::Stdout, "hello world")),
        "{lines:?}"
    );
    assert!(lines.contains(&(LogStream::Stderr, "oops")), "{lines:?}");

    let failed = k.get_job(bad).await.unwrap();
    assert_eq!(failed.job.state, JobState::Failed);
    assert!(failed.tasks[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("exited with code 3"));
    let timed_out = k.get_job(slow).await.unwrap();
    assert_eq!(timed_out.job.state, JobState::Failed);
    assert!(timed_out.tasks[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("timed out"));
    let stats = pool.shutdown(kernel::worker::Shutdown::Release).await;
    assert_eq!(stats.snapshot()[1], 3, "three successes reported");
}

/// Text the database cannot hold (a NUL character: Postgres `text` has no
/// room for it) is refused with the field's name where an operator or a
/// client chose it, and replaced by U+FFFD where a worker reports it, so that
/// a failure or a log line is never lost to it.
async fn text_with_a_nul_is_refused_or_kept_with_a_replacement(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    for (job, field) in [
        (NewJob::single("bad\0name", "noop", json!({})), "job name"),
        (
            NewJob {
                tasks: vec![NewTask::new("a\0b", "noop", json!({}))],
                ..NewJob::single("job", "noop", json!({}))
            },
            "task key",
        ),
        (NewJob::single("job", "no\0op", json!({})), "task kind"),
    ] {
        let err = k.submit(job).await.unwrap_err();
        assert_eq!(err.code(), "validation_failed", "{err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    assert!(k
        .list_jobs(&JobFilter::default(), 10, None)
        .await
        .unwrap()
        .items
        .is_empty());

    let job = k
        .submit(NewJob::single("nul", "noop", json!({"text": "a\0b"})))
        .await
        .unwrap()
        .job
        .id;
    let lease = env.claim(node, 1).await.pop().unwrap();
    assert_eq!(
        lease.payload,
        json!({"text": "a\0b"}),
        "JSON keeps its escape"
    );
    let line = NewLogLine {
        stream: LogStream::Stdout,
        line: "before\0after".into(),
        ts: 0,
    };
    k.append_attempt_log(lease.attempt_id, &lease.proof(), &[line])
        .await
        .unwrap();
    let failure = TaskFailure {
        message: "exit\0code".into(),
        retryable: false,
    };
    k.fail(lease.attempt_id, &lease.proof(), &failure)
        .await
        .unwrap();
    let log = k.attempt_log(lease.attempt_id, 0, 10).await.unwrap();
    assert!(
        log.iter().any(|l| l.line == "before\u{FFFD}after"),
        "{log:?}"
    );
    let detail = k.get_job(job).await.unwrap();
    assert_eq!(detail.job.state, JobState::Failed);
    assert_eq!(
        detail.tasks[0].last_error.as_deref(),
        Some("exit\u{FFFD}code")
    );
    let entry = k
        .list_dead_letters(&DeadLetterFilter::default(), 10, None)
        .await
        .unwrap()
        .items
        .pop()
        .unwrap();
    let err = k
        .resolve_dead_letter(entry.id, "known\0noise")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "validation_failed", "{err}");
    assert!(err.to_string().contains("reason"), "{err}");
}

/// A command's output reaches the attempt's log line by line whatever its
/// bytes: text that is not UTF-8 (kept with U+FFFD), NUL characters, CRLF
/// endings, a line longer than the log keeps, a last line with no newline,
/// and in the order written. Output that is not UTF-8 used to stop the
/// reading, and the command then failed writing to a closed pipe; lines in
/// two report batches could be appended out of order.
async fn exec_logs_every_line_whatever_its_bytes(env: Env) {
    let k = &env.kernel;
    let pool = start_pool(&env, 2).await;
    let script = "printf 'caf\\351\\n'; printf 'nul\\000byte\\n'; printf 'crlf\\r\\n'; \
                  head -c 20000 /dev/zero | tr '\\000' a; echo; \
                  printf 'binary\\377\\376\\n'; seq 1 300; printf 'no newline'";
    let job = k
        .submit(NewJob::single(
            "bytes",
            "exec",
            json!({"cmd": "sh", "args": ["-c", script]}),
        ))
        .await
        .unwrap()
        .job
        .id;
    finished(k, job).await;
    let detail = k.get_job(job).await.unwrap();
    assert_eq!(detail.job.state, JobState::Succeeded, "{detail:#?}");
    let log = k
        .attempt_log(detail.tasks[0].attempts[0].id, 0, 1_000)
        .await
        .unwrap();
    let stdout: Vec<&str> = log
        .iter()
        .filter(|l| l.stream == LogStream::Stdout)
        .map(|l| l.line.as_str())
        .collect();
    let long = stdout.iter().find(|l| l.starts_with("aaa")).unwrap();
    assert_eq!(
        long.len(),
        kernel::MAX_LOG_LINE_BYTES,
        "cut where the log cuts"
    );
    assert!(long.bytes().all(|b| b == b'a'));
    let numbers: Vec<u32> = stdout.iter().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(
        numbers,
        (1..=300).collect::<Vec<_>>(),
        "in the order written"
    );
    let rest: Vec<&str> = stdout
        .iter()
        .filter(|l| !l.starts_with("aaa") && l.parse::<u32>().is_err())
        .copied()
        .collect();
    assert_eq!(
        rest,
        [
            "caf\u{FFFD}",
            "nul\u{FFFD}byte",
            "crlf",
            "binary\u{FFFD}\u{FFFD}",
            "no newline"
        ]
    );
    pool.shutdown(kernel::worker::Shutdown::Release).await;
}

/// A timeout or a cancellation stops everything an `exec` task started,
/// not only the command: a shell's children used to run on, orphaned,
/// doing the work a retry would do again.
async fn stopping_an_exec_task_stops_what_it_started(env: Env) {
    let k = &env.kernel;
    let pool = start_pool(&env, 4).await;
    // Durations no other process has: this run's, found by command line.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let timed_out = format!("313.{:05}", nanos % 100_000);
    let cancelled = format!("314.{:05}", nanos % 100_000);
    let shell = |secs: &str| json!(["-c", format!("sleep {secs}; echo never")]);
    let slow = k
        .submit(
            NewJob::single(
                "slow",
                "exec",
                json!({"cmd": "sh", "args": shell(&timed_out), "timeout_s": 0.3}),
            )
            .tap(|j| j.tasks[0].max_attempts = Some(1)),
        )
        .await
        .unwrap()
        .job
        .id;
    let long = k
        .submit(NewJob::single(
            "long",
            "exec",
            json!({"cmd": "sh", "args": shell(&cancelled)}),
        ))
        .await
        .unwrap()
        .job
        .id;
    eventually("both sleeps to run", || async {
        (sleeping(&timed_out) && sleeping(&cancelled)).then_some(())
    })
    .await;
    k.cancel_job(long).await.unwrap();
    for id in [slow, long] {
        finished(k, id).await;
    }
    eventually("the workers to stop", || async {
        (pool.running() == 0).then_some(())
    })
    .await;
    assert_eq!(
        k.get_job_summary(slow).await.unwrap().state,
        JobState::Failed
    );
    assert!(
        !sleeping(&timed_out),
        "the timed-out task's sleep still runs"
    );
    assert!(
        !sleeping(&cancelled),
        "the cancelled task's sleep still runs"
    );
    pool.shutdown(kernel::worker::Shutdown::Release).await;
}

/// A command timed out (or cancelled) gets SIGTERM first, so a `trap`
/// cleans up; one that ignores it is killed once its `grace_s` has passed.
/// A misspelled payload field fails the task instead of being ignored.
async fn a_stopped_command_may_clean_up_before_it_is_killed(env: Env) {
    let k = &env.kernel;
    let pool = start_pool(&env, 4).await;
    let exec = |name: &str, script: &str, extra: Value| {
        let mut payload = json!({"cmd": "sh", "args": ["-c", script], "timeout_s": 0.5});
        payload
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        NewJob::single(name, "exec", payload).tap(|j| j.tasks[0].max_attempts = Some(1))
    };
    let polite = k
        .submit(exec(
            "polite",
            "trap 'echo cleaning up; exit 3' TERM; sleep 30 & wait",
            json!({}),
        ))
        .await
        .unwrap()
        .job
        .id;
    let stubborn = k
        .submit(exec(
            "stubborn",
            "trap '' TERM; sleep 30",
            json!({"grace_s": 0.5}),
        ))
        .await
        .unwrap()
        .job
        .id;
    let typo = k
        .submit(exec("typo", "true", json!({"timout_s": 1})))
        .await
        .unwrap()
        .job
        .id;
    let log_of = |id: i64| async move {
        assert_eq!(finished(k, id).await, JobState::Failed);
        let attempt = k.get_job(id).await.unwrap().tasks[0].attempts[0].clone();
        let lines: Vec<String> = k
            .attempt_log(attempt.id, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        (lines.join("\n"), attempt.error.unwrap_or_default())
    };
    let (log, _) = log_of(polite).await;
    assert!(log.contains("cleaning up"), "{log}");
    assert!(log.contains("stopped (SIGTERM) after the timeout"), "{log}");
    let (log, _) = log_of(stubborn).await;
    assert!(
        log.contains("killed (SIGKILL, 0.5s after SIGTERM)"),
        "{log}"
    );
    let (_, error) = log_of(typo).await;
    assert!(error.contains("timout_s"), "{error}");
    pool.shutdown(kernel::worker::Shutdown::Release).await;
}

/// Whether a live `sleep SECS` process exists (a zombie has no command line).
fn sleeping(secs: &str) -> bool {
    let wanted = format!("sleep\0{secs}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
}

/// An `exec` command does not inherit the worker's own configuration (the
/// database URL, the enrollment secret, the admin password): anyone who may
/// submit a job could otherwise print them to its log. What its payload
/// sets, it gets.
async fn exec_commands_do_not_inherit_switchyards_configuration(env: Env) {
    let k = &env.kernel;
    let own: Vec<String> = std::env::vars()
        .map(|(name, _)| name)
        .filter(|n| n.starts_with("SWITCHYARD_") || n == "DATABASE_URL" || n.starts_with("PG"))
        .collect();
    if own.is_empty() {
        // CI runs every test with SWITCHYARD_REQUIRE_POSTGRES set.
        eprintln!("skipped: this process has no Switchyard configuration in its environment");
        return;
    }
    let pool = start_pool(&env, 2).await;
    let job = k
        .submit(NewJob::single(
            "env",
            "exec",
            json!({"cmd": "env", "env": {"SWITCHYARD_MINE": "set by the job", "KEEP": "1"}}),
        ))
        .await
        .unwrap()
        .job
        .id;
    assert_eq!(finished(k, job).await, JobState::Succeeded);
    let attempt = k.get_job(job).await.unwrap().tasks[0].attempts[0].id;
    let log = k.attempt_log(attempt, 0, 1_000).await.unwrap();
    let names: Vec<&str> = log
        .iter()
        .filter(|l| l.stream == LogStream::Stdout)
        .filter_map(|l| l.line.split_once('=').map(|(name, _)| name))
        .collect();
    assert!(names.contains(&"PATH"), "the rest is inherited: {names:?}");
    assert!(names.contains(&"KEEP"), "{names:?}");
    for name in &own {
        assert!(
            !names.contains(&name.as_str()),
            "{name} reached the command"
        );
    }
    assert!(log
        .iter()
        .any(|l| l.line == "SWITCHYARD_MINE=set by the job"));
    pool.shutdown(kernel::worker::Shutdown::Release).await;
}

/// An attempt's log keeps at most `max_log_lines_per_attempt` lines: the
/// append that reaches the cap adds one line from the system saying so, and
/// later lines are dropped while the calls still succeed.
async fn an_attempts_log_stops_at_its_cap_and_says_so(env: Env) {
    let config = kernel::KernelConfig {
        max_log_lines_per_attempt: 5,
        ..common::test_config(&env.clock)
    };
    let k = kernel::Kernel::open(&env.url, config).await.unwrap();
    let node = env.node("n1").await;
    k.submit(NewJob::single("chatty", "noop", json!({})))
        .await
        .unwrap();
    let lease = env.claim(node, 1).await.pop().unwrap();
    let lines = |from: i64, n: i64| -> Vec<NewLogLine> {
        (from..from + n)
            .map(|i| NewLogLine {
                stream: LogStream::Stdout,
                line: format!("line {i}"),
                ts: i,
            })
            .collect()
    };
    let append = |batch: Vec<NewLogLine>| {
        let (k, lease) = (&k, &lease);
        async move {
            k.append_attempt_log(lease.attempt_id, &lease.proof(), &batch)
                .await
                .unwrap()
        }
    };
    assert_eq!(append(lines(0, 3)).await, 3);
    assert_eq!(append(lines(3, 4)).await, 2, "two more fit");
    assert_eq!(append(lines(7, 2)).await, 0, "the log is full");
    let log = k.attempt_log(lease.attempt_id, 0, 100).await.unwrap();
    let read: Vec<(LogStream, &str)> = log.iter().map(|l| (l.stream, l.line.as_str())).collect();
    assert_eq!(read.len(), 6, "{read:?}");
    assert_eq!(
        read[..5].iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        ["line 0", "line 1", "line 2", "line 3", "line 4"]
    );
    assert_eq!(read[5].0, LogStream::System);
    assert!(read[5].1.contains("at most 5 lines"), "{read:?}");

    // A worker stops sending once the log is full: a command printing
    // 100,000 lines sends about one batch, not all of them (it once sent
    // every line, buffered without limit in the worker's memory).
    let sent = Arc::new(AtomicUsize::new(0));
    let source = CountingLines {
        kernel: k.clone(),
        sent: sent.clone(),
    };
    let pool_node = env.node("pool").await;
    let mut config = kernel::worker::PoolConfig::new(pool_node, 2);
    config.claim_wait_ms = 50;
    let pool = kernel::worker::WorkerPool::start(
        Arc::new(source),
        kernel::worker::Executors::builtin(),
        config,
    );
    let id = k
        .submit(NewJob::single(
            "flood",
            "exec",
            json!({"cmd": "seq", "args": ["1", "100000"]}),
        ))
        .await
        .unwrap()
        .job
        .id;
    assert_eq!(finished(&k, id).await, JobState::Succeeded);
    pool.shutdown(kernel::worker::Shutdown::Release).await;
    let attempt = k.get_job(id).await.unwrap().tasks[0].attempts[0].id;
    assert_eq!(k.attempt_log(attempt, 0, 100).await.unwrap().len(), 6);
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent <= 2_000, "the worker sent {sent} lines to a full log");
    k.db().close().await;
}

/// The kernel as a worker's lease source, counting the log lines sent.
struct CountingLines {
    kernel: kernel::Kernel,
    sent: Arc<AtomicUsize>,
}

impl kernel::worker::LeaseSource for CountingLines {
    fn claim(&self, req: ClaimRequest) -> BoxFuture<'_, SourceResult<Vec<Lease>>> {
        kernel::worker::LeaseSource::claim(&self.kernel, req)
    }
    fn heartbeat_many(
        &self,
        leases: Vec<(i64, LeaseProof)>,
    ) -> BoxFuture<'_, SourceResult<Vec<SourceResult<HeartbeatOutcome>>>> {
        kernel::worker::LeaseSource::heartbeat_many(&self.kernel, leases)
    }
    fn complete_many(
        &self,
        items: Vec<Completion>,
    ) -> BoxFuture<'_, SourceResult<Vec<SourceResult<()>>>> {
        kernel::worker::LeaseSource::complete_many(&self.kernel, items)
    }
    fn fail(
        &self,
        attempt_id: i64,
        proof: LeaseProof,
        failure: TaskFailure,
    ) -> BoxFuture<'_, SourceResult<()>> {
        kernel::worker::LeaseSource::fail(&self.kernel, attempt_id, proof, failure)
    }
    fn release(&self, attempt_id: i64, proof: LeaseProof) -> BoxFuture<'_, SourceResult<()>> {
        kernel::worker::LeaseSource::release(&self.kernel, attempt_id, proof)
    }
    fn append_log(
        &self,
        attempt_id: i64,
        proof: LeaseProof,
        lines: Vec<NewLogLine>,
    ) -> BoxFuture<'_, SourceResult<usize>> {
        self.sent
            .fetch_add(lines.len(), std::sync::atomic::Ordering::SeqCst);
        kernel::worker::LeaseSource::append_log(&self.kernel, attempt_id, proof, lines)
    }
    fn sign_off(&self, node_id: i64) -> BoxFuture<'_, SourceResult<()>> {
        kernel::worker::LeaseSource::sign_off(&self.kernel, node_id)
    }
}

trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl Tap for NewJob {}

async fn cancellation_reaches_a_running_worker(env: Env) {
    let k = &env.kernel;
    let pool = start_pool(&env, 4).await;
    let job = k
        .submit(NewJob::single(
            "long",
            "exec",
            json!({"cmd": "sleep", "args": ["600"]}),
        ))
        .await
        .unwrap()
        .job
        .id;
    eventually("the task to be running", || async {
        (pool.running() == 1).then_some(())
    })
    .await;
    k.cancel_job(job).await.unwrap();
    // The next heartbeat tells the pool, which kills the process.
    eventually("the worker to stop the task", || async {
        (pool.running() == 0).then_some(())
    })
    .await;
    let stats = pool.shutdown(kernel::worker::Shutdown::Release).await;
    assert_eq!(stats.snapshot()[3], 1, "one run stopped by cancellation");
    let detail = k.get_job(job).await.unwrap();
    assert_eq!(detail.job.state, JobState::Cancelled);
    assert_eq!(detail.tasks[0].attempts[0].state, AttemptState::Cancelled);
    let log = k
        .attempt_log(detail.tasks[0].attempts[0].id, 0, 10)
        .await
        .unwrap();
    assert!(
        log.iter()
            .any(|l| l.stream == LogStream::System && l.line.contains("JobCancelled")),
        "{log:?}"
    );
}

async fn pool_shutdown_releases_running_leases(env: Env) {
    let k = &env.kernel;
    let pool = start_pool(&env, 4).await;
    let job = k
        .submit(NewJob::single("nap", "sleep", json!({"seconds": 600})))
        .await
        .unwrap()
        .job
        .id;
    eventually("the task to be running", || async {
        (pool.running() == 1).then_some(())
    })
    .await;
    let stats = pool
        .shutdown(kernel::worker::Shutdown::Finish {
            timeout: std::time::Duration::from_millis(50),
        })
        .await;
    assert_eq!(stats.snapshot()[4], 1, "released");
    let task = &k.get_job(job).await.unwrap().tasks[0];
    assert_eq!(task.state, TaskState::Ready);
    assert_eq!(task.attempts_used, 0);
}

async fn late_completion_leaves_a_fenced_attempt(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let job = k
        .submit(NewJob::single("late", "noop", json!({})))
        .await
        .unwrap();
    let old = env.claim(node, 1).await.pop().unwrap();
    env.clock.advance(10_001);
    assert_eq!(k.sweep().await.unwrap(), 1);
    // Not superseded yet (the task waits out its backoff): the late report
    // is refused and the attempt stays expired.
    assert_eq!(
        k.heartbeat(old.attempt_id, &old.proof())
            .await
            .unwrap_err()
            .code(),
        "stale_lease"
    );
    let detail = k.get_job(job.job.id).await.unwrap();
    assert_eq!(detail.tasks[0].attempts[0].state, AttemptState::Expired);

    env.clock.advance(120_000);
    let new = env.claim(node, 1).await.pop().unwrap();
    assert!(new.epoch > old.epoch);
    // A pair that is not the attempt's own fences nothing.
    let forged = LeaseProof {
        lease_token: "not-the-token".into(),
        epoch: old.epoch,
    };
    assert_eq!(
        k.complete(old.attempt_id, &forged, None)
            .await
            .unwrap_err()
            .code(),
        "stale_lease"
    );
    assert_eq!(
        k.get_job(job.job.id).await.unwrap().tasks[0].attempts[0].state,
        AttemptState::Expired
    );
    // The old holder completes late: refused, and its attempt is fenced.
    assert_eq!(
        k.complete(old.attempt_id, &old.proof(), Some(json!("late")))
            .await
            .unwrap_err()
            .code(),
        "stale_lease"
    );
    let detail = k.get_job(job.job.id).await.unwrap();
    let task = &detail.tasks[0];
    assert_eq!(task.state, TaskState::Leased);
    assert_eq!(task.output, None);
    assert_eq!(task.attempts.len(), 2);
    assert_eq!(task.attempts[0].id, old.attempt_id);
    assert_eq!(task.attempts[0].state, AttemptState::Fenced);
    assert_eq!(task.attempts[0].epoch, old.epoch);
    assert_eq!(task.attempts[1].state, AttemptState::Active);
    // Fenced for good: another late report is refused the same way.
    let again = k
        .fail(
            old.attempt_id,
            &old.proof(),
            &TaskFailure {
                message: "late".into(),
                retryable: true,
            },
        )
        .await;
    assert_eq!(again.unwrap_err().code(), "stale_lease");

    let fenced: Vec<Event> = env
        .all_events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "lease.fenced")
        .collect();
    assert_eq!(fenced.len(), 4, "every refusal is recorded");
    assert!(fenced
        .iter()
        .all(|e| e.subject.attempt_id == Some(old.attempt_id)));
    let states: Vec<&str> = fenced
        .iter()
        .map(|e| e.data["attempt_state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["expired", "expired", "fenced", "fenced"]);
    assert_eq!(fenced[2].data["superseded"], json!(true));

    k.complete(new.attempt_id, &new.proof(), None)
        .await
        .unwrap();
    let detail = k.get_job(job.job.id).await.unwrap();
    assert_eq!(detail.job.state, JobState::Succeeded);
    assert_eq!(detail.tasks[0].attempts[0].state, AttemptState::Fenced);
}

async fn quota_blocks_jobs_until_it_has_room(env: Env) {
    let k = &env.kernel;
    let node = env.node("n1").await;
    let state = |id: i64| async move { k.get_job_summary(id).await.unwrap().state };
    let acme = |name: &str, priority: i64| NewJob {
        tenant: "acme".into(),
        priority,
        ..NewJob::single(name, "noop", json!({}))
    };
    let one = QuotaLimits {
        max_concurrent: Some(1),
        max_starts_per_minute: None,
    };
    k.set_quota(QuotaScope::Tenant, "acme", &one).await.unwrap();
    // A job with two independent tasks, a dozen single ones, all acme and
    // ahead of another tenant's job.
    let wide = NewJob {
        tasks: vec![
            NewTask::new("a", "noop", json!({})),
            NewTask::new("b", "noop", json!({})),
        ],
        ..acme("wide", 10)
    };
    let wide = k.submit(wide).await.unwrap().job.id;
    let mut singles = Vec::new();
    for i in 0..12 {
        singles.push(k.submit(acme(&format!("s{i}"), 5)).await.unwrap().job.id);
    }
    let other = k
        .submit(NewJob::single("other", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;

    // acme gets its one slot; the task behind thirteen held ones is not
    // starved by them.
    let leases = env.claim(node, 2).await;
    assert_eq!(leases.len(), 2);
    assert!(leases.iter().any(|l| l.job_id == other));
    let first = leases.iter().find(|l| l.job_id == wide).unwrap();
    assert_eq!(state(wide).await, JobState::Running);
    for &s in &singles {
        assert_eq!(state(s).await, JobState::Blocked, "job {s} waits on acme");
    }
    assert!(env.claim(node, 10).await.is_empty());
    // New acme work starts blocked.
    let late = k.submit(acme("late", 0)).await.unwrap();
    assert_eq!(late.job.state, JobState::Blocked);
    // The running job's other task waits on the quota once its first task
    // is done: the sweep says so.
    k.complete(first.attempt_id, &first.proof(), None)
        .await
        .unwrap();
    k.sweep().await.unwrap();
    assert_eq!(state(wide).await, JobState::Blocked);

    // Raising the limit lets them all go.
    let plenty = QuotaLimits {
        max_concurrent: Some(50),
        max_starts_per_minute: None,
    };
    k.set_quota(QuotaScope::Tenant, "acme", &plenty)
        .await
        .unwrap();
    assert_eq!(state(wide).await, JobState::Running, "it had started");
    for &s in singles.iter().chain([&late.job.id]) {
        assert_eq!(state(s).await, JobState::Queued);
    }
    assert_eq!(env.claim(node, 50).await.len(), 14);
    for &s in singles.iter().chain([&wide, &late.job.id]) {
        assert_eq!(state(s).await, JobState::Running);
    }
    let blocks = env
        .all_events()
        .await
        .into_iter()
        .filter(|e| {
            e.event_type == "job.stateChanged"
                && e.data["to"] == json!("blocked")
                && e.data["reason"] == json!("quota")
        })
        .count();
    assert_eq!(blocks, 12 + 1, "the singles, then the wide job");

    // A quota set to a limit already used up blocks at once; removing it
    // unblocks.
    let none_left = QuotaLimits {
        max_concurrent: Some(0),
        max_starts_per_minute: None,
    };
    k.set_quota(QuotaScope::Queue, "slow", &none_left)
        .await
        .unwrap();
    let slow = k
        .submit(NewJob {
            queue: "slow".into(),
            ..NewJob::single("slow", "noop", json!({}))
        })
        .await
        .unwrap();
    assert_eq!(slow.job.state, JobState::Blocked);
    assert!(env.claim(node, 10).await.is_empty());
    k.set_quota(QuotaScope::Queue, "slow", &QuotaLimits::default())
        .await
        .unwrap();
    assert_eq!(state(slow.job.id).await, JobState::Queued);
    assert_eq!(env.claim(node, 10).await.len(), 1);
}

/// Queues are shared, but one only other tenants use is theirs to know of:
/// queue health and the quota board name to a tenant's reader only the
/// queues its work has used.
async fn a_tenant_sees_only_the_queues_its_work_used(env: Env) {
    let k = &env.kernel;
    for (tenant, queue) in [("a", "a-work"), ("b", "b-secret-project")] {
        let job = NewJob {
            tenant: tenant.into(),
            queue: queue.into(),
            ..NewJob::single(queue, "noop", json!({}))
        };
        k.submit(job).await.unwrap();
    }
    let limits = QuotaLimits {
        max_concurrent: Some(2),
        max_starts_per_minute: None,
    };
    k.set_quota(QuotaScope::Queue, "b-secret-project", &limits)
        .await
        .unwrap();
    let a = ["a".to_string()];
    let health: Vec<String> = k
        .queue_health(Some(&a))
        .await
        .unwrap()
        .queues
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(health, ["a-work"]);
    let board = |tenants: Option<Vec<String>>| async move {
        k.quota_board(tenants.as_deref())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|i| i.scope == QuotaScope::Queue)
            .map(|i| i.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(board(Some(a.to_vec())).await, ["a-work"]);
    let listed: Vec<String> = k
        .list_queues(Some(&a))
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(listed, ["a-work"]);
    assert_eq!(
        k.get_queue("b-secret-project", Some(&a))
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert!(k.get_queue("b-secret-project", None).await.is_ok());
    // Every tenant's reader sees every queue.
    let all = board(None).await;
    assert!(all.contains(&"b-secret-project".to_string()), "{all:?}");
    let health = k.queue_health(None).await.unwrap().queues;
    assert!(health.iter().any(|q| q.name == "b-secret-project"));
}

async fn retention_deletes_old_finished_jobs_and_events(env: Env) {
    const DAY: i64 = 24 * 60 * 60 * 1_000;
    let k = &env.kernel;
    let node = env.node("n1").await;
    // Old: a succeeded a → b job with a log line; a failed job whose entry
    // is resolved; a failed job whose entry is still open; a cancelled job;
    // a job that never finished.
    let done = k
        .submit(NewJob {
            tasks: vec![
                NewTask::new("a", "noop", json!({})),
                NewTask::new("b", "noop", json!({})).after(&["a"]),
            ],
            ..NewJob::single("done", "noop", json!({}))
        })
        .await
        .unwrap()
        .job
        .id;
    let a = env.claim(node, 1).await.pop().unwrap();
    let line = NewLogLine {
        stream: LogStream::Stdout,
        line: "hello".into(),
        ts: 0,
    };
    k.append_attempt_log(a.attempt_id, &a.proof(), &[line])
        .await
        .unwrap();
    k.complete(a.attempt_id, &a.proof(), None).await.unwrap();
    let b = env.claim(node, 1).await.pop().unwrap();
    k.complete(b.attempt_id, &b.proof(), None).await.unwrap();
    assert_eq!(
        k.get_job_summary(done).await.unwrap().state,
        JobState::Succeeded
    );
    let (resolved_job, resolved_entry) = dead_lettered(&env, node, "resolved").await;
    k.resolve_dead_letter(resolved_entry, "known noise")
        .await
        .unwrap();
    let (open_job, open_entry) = dead_lettered(&env, node, "open").await;
    let cancelled = k
        .submit(NewJob::single("cancelled", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    k.cancel_job(cancelled).await.unwrap();
    let unfinished = k
        .submit(NewJob::single("unfinished", "noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let old_events = env.all_events().await;
    let first_seq = old_events.first().unwrap().seq;

    // A month later, a job finishes.
    env.clock.advance(31 * DAY);
    let recent = k
        .submit(NewJob {
            priority: 10,
            ..NewJob::single("recent", "noop", json!({}))
        })
        .await
        .unwrap()
        .job
        .id;
    let r = env.claim(node, 1).await.pop().unwrap();
    assert_eq!(r.job_id, recent);
    k.complete(r.attempt_id, &r.proof(), None).await.unwrap();
    // The newest job, task, attempt and dead-letter entry of all, resolved
    // (ahead of the unfinished job).
    let env = &env;
    let dead_letter_urgent = |name: &'static str| async move {
        let job = NewJob {
            priority: 10,
            ..NewJob::single(name, "noop", json!({}))
        };
        let job_id = k.submit(job).await.unwrap().job.id;
        let lease = env.claim(node, 1).await.pop().unwrap();
        assert_eq!(lease.job_id, job_id);
        let failure = TaskFailure {
            message: "disk full".into(),
            retryable: false,
        };
        let out = k
            .fail(lease.attempt_id, &lease.proof(), &failure)
            .await
            .unwrap();
        (job_id, out.dead_letter_id.unwrap())
    };
    let (late_job, late_entry) = dead_letter_urgent("late").await;
    k.resolve_dead_letter(late_entry, "known").await.unwrap();
    let late = k.get_job(late_job).await.unwrap();
    let newest_task = late.tasks.iter().map(|t| t.id).max().unwrap();
    let newest_attempt = late
        .tasks
        .iter()
        .flat_map(|t| &t.attempts)
        .map(|a| a.id)
        .max()
        .unwrap();

    let report = k.apply_retention().await.unwrap();
    assert_eq!(report.jobs, 3, "done, resolved and cancelled");
    assert_eq!(report.events, old_events.len() as u64);
    for gone in [done, resolved_job, cancelled] {
        assert_eq!(k.get_job(gone).await.unwrap_err().code(), "not_found");
    }
    assert_eq!(
        k.get_dead_letter(resolved_entry).await.unwrap_err().code(),
        "not_found"
    );
    assert!(k.attempt_log(a.attempt_id, 0, 10).await.unwrap().is_empty());
    assert_eq!(
        k.get_job_summary(open_job).await.unwrap().state,
        JobState::Failed
    );
    assert_eq!(
        k.get_dead_letter(open_entry).await.unwrap().status,
        DeadLetterStatus::Open
    );
    assert_eq!(
        k.get_job_summary(unfinished).await.unwrap().state,
        JobState::Queued
    );
    assert_eq!(
        k.get_job(recent).await.unwrap().job.state,
        JobState::Succeeded
    );

    // Only the recent events remain; a reader resuming from a deleted seq
    // gets exactly those.
    let events = env.all_events().await;
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.ts > env.clock_now() - DAY));
    let resumed = k.events_after(first_seq, 1_000).await.unwrap();
    assert_eq!(
        resumed.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        events.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    // ... and is told that it missed some (SPEC §5: no gap goes unsaid).
    let deleted = old_events.last().unwrap().seq;
    let check = k.check_resume(first_seq).await.unwrap();
    assert_eq!(check.deleted_through, Some(deleted));
    assert!(!check.beyond_head);
    let check = k.check_resume(deleted).await.unwrap();
    assert_eq!(check.deleted_through, None, "nothing missed from there");
    let newest = events.last().unwrap().seq;
    assert!(!k.check_resume(newest).await.unwrap().beyond_head);
    // A seq no event of this log ever had (another database's).
    assert!(
        k.check_resume(newest + 1_000_000)
            .await
            .unwrap()
            .beyond_head
    );
    assert_eq!(
        k.apply_retention().await.unwrap(),
        kernel::RetentionReport::default(),
        "nothing more is old enough"
    );

    // Everything ages out: the log empties, new events continue above every
    // seq it had, and unfinished work is still there.
    let last_seq = events.last().unwrap().seq;
    env.clock.advance(31 * DAY);
    let report = k.apply_retention().await.unwrap();
    assert_eq!(report.jobs, 2, "the recent job and the late one");
    assert!(env.all_events().await.is_empty());
    // New rows take no id a deleted row had (SQLite numbers from the rows
    // left, which are all older).
    let (after, after_entry) = dead_letter_urgent("after").await;
    assert!(after > late_job, "job {after} after {late_job}");
    assert!(
        after_entry > late_entry,
        "entry {after_entry} after {late_entry}"
    );
    let detail = k.get_job(after).await.unwrap();
    assert!(detail.tasks.iter().all(|t| t.id > newest_task));
    let attempt = &detail.tasks[0].attempts[0];
    assert!(
        attempt.id > newest_attempt,
        "attempt {} after {newest_attempt}",
        attempt.id
    );
    let events = env.all_events().await;
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.seq > last_seq));
    assert_eq!(
        k.get_job_summary(unfinished).await.unwrap().state,
        JobState::Queued
    );
    assert_eq!(
        k.get_dead_letter(open_entry).await.unwrap().status,
        DeadLetterStatus::Open
    );
}

/// The jobs search's free text (issue #6) reads the trigram index of job
/// documents: names and payloads, case-insensitive, `%` and `_` literal,
/// pages in id order with a cursor, a job's id matches it too, and a replay
/// that edits a payload is searchable at once.
async fn free_text_searches_names_and_payloads_through_the_index(env: Env) {
    let k = &env.kernel;
    let search = |q: &str| JobSearch {
        q: Some(q.into()),
        ..Default::default()
    };
    // Dead-lettered first, while its task is the only one to claim.
    let node = env.node("n1").await;
    let (edited, entry) = dead_lettered(&env, node, "to-edit").await;
    let ids_of = |page: &kernel::model::Page<JobRow>| -> Vec<i64> {
        page.items.iter().map(|r| r.job.id).collect()
    };
    let backup = k
        .submit(NewJob::single(
            "Nightly-Backup",
            "noop",
            json!({"target": "s3://vault"}),
        ))
        .await
        .unwrap()
        .job
        .id;
    let invoice = k
        .submit(NewJob::single(
            "invoices",
            "noop",
            json!({"customer_id": "cust_42", "discount": "100%"}),
        ))
        .await
        .unwrap()
        .job
        .id;
    let decoy = k
        .submit(NewJob::single(
            "decoy",
            "noop",
            json!({"customer-id": "custX42", "discount": "1000"}),
        ))
        .await
        .unwrap()
        .job
        .id;
    let mut bulk = Vec::new();
    for i in 0..7 {
        bulk.push(NewJob::single(
            format!("sweep-{i}"),
            "noop",
            json!({"zone": "eu"}),
        ));
    }
    k.submit_many(bulk).await.unwrap();

    let found = |q: &'static str| async move {
        ids_of(
            &k.search_jobs(&search(q), JobSort::Newest, 50, None)
                .await
                .unwrap(),
        )
    };
    assert_eq!(
        found("nightly-BACKUP").await,
        vec![backup],
        "names, any case"
    );
    assert_eq!(
        found("S3://VAULT").await,
        vec![backup],
        "payloads, any case"
    );
    assert_eq!(
        found("cust_42").await,
        vec![invoice],
        "an underscore is literal"
    );
    assert_eq!(
        found("100%").await,
        vec![invoice],
        "a percent sign is literal"
    );
    assert_eq!(
        found("42").await,
        vec![decoy, invoice],
        "short text still matches"
    );
    assert!(found("no such text anywhere").await.is_empty());
    assert_eq!(
        k.count_jobs(&search("cust_42")).await.unwrap(),
        1,
        "counts (and bulk actions) match the same jobs"
    );

    // Pages walk the matches in order, each once, both ways.
    for sort in [JobSort::Newest, JobSort::Oldest] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = k
                .search_jobs(&search("sweep"), sort, 3, cursor.as_deref())
                .await
                .unwrap();
            seen.extend(ids_of(&page));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        let mut expected = seen.clone();
        match sort {
            JobSort::Newest => expected.sort_by_key(|id| std::cmp::Reverse(*id)),
            JobSort::Oldest => expected.sort(),
        }
        expected.dedup();
        assert_eq!(seen, expected, "{sort:?}: in order, none twice");
        assert_eq!(seen.len(), 7, "{sort:?}");
    }

    // A job's id finds it, beside jobs whose text holds the digits; other
    // filters still apply to it.
    let by_id = found_owned(k, &backup.to_string(), None).await;
    assert!(by_id.contains(&backup), "{by_id:?}");
    let by_id_elsewhere = found_owned(k, &backup.to_string(), Some("another-queue")).await;
    assert!(!by_id_elsewhere.contains(&backup));

    // A replay with an edited payload is searchable; the old text is gone.
    assert_eq!(found("\"v\":1").await, vec![edited]);
    k.replay_dead_letter(
        entry,
        &ReplayOptions {
            queue: None,
            payload: Some(json!({"v": "patched-payload"})),
        },
    )
    .await
    .unwrap();
    assert_eq!(found("patched-payload").await, vec![edited]);
    assert!(found("\"v\":1").await.is_empty());
}

async fn found_owned(k: &kernel::Kernel, q: &str, queue: Option<&str>) -> Vec<i64> {
    let search = JobSearch {
        q: Some(q.into()),
        queue: queue.map(Into::into),
        ..Default::default()
    };
    k.search_jobs(&search, JobSort::Newest, 50, None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.job.id)
        .collect()
}

/// The jobs search's kind filter (issue #6) reads the kinds written at
/// submit: alone (pages in id order), with other filters, with free text,
/// and in counts; a job's id in the text still obeys the kind.
async fn the_kind_filter_reads_the_kinds_of_each_job(env: Env) {
    let k = &env.kernel;
    let with_report = |name: &str| NewJob {
        tasks: vec![
            NewTask::new("load", "noop", json!({})),
            NewTask::new("report", "exec-report", json!({"to": "finance"})).after(&["load"]),
        ],
        ..NewJob::single(name, "noop", json!({}))
    };
    let first = k.submit(with_report("monthly-a")).await.unwrap().job.id;
    k.submit(NewJob::single("plain-1", "noop", json!({})))
        .await
        .unwrap();
    let second = k.submit(with_report("monthly-b")).await.unwrap().job.id;
    k.submit(NewJob::single("plain-2", "noop", json!({})))
        .await
        .unwrap();
    let search = |kind: &str, q: Option<&str>| JobSearch {
        kind: Some(kind.into()),
        q: q.map(Into::into),
        ..Default::default()
    };
    let ids =
        |page: kernel::model::Page<JobRow>| page.items.iter().map(|r| r.job.id).collect::<Vec<_>>();

    let page1 = k
        .search_jobs(&search("exec-report", None), JobSort::Newest, 1, None)
        .await
        .unwrap();
    let cursor = page1.next_cursor.clone();
    assert_eq!(ids(page1), vec![second]);
    let page2 = k
        .search_jobs(
            &search("exec-report", None),
            JobSort::Newest,
            1,
            cursor.as_deref(),
        )
        .await
        .unwrap();
    assert!(page2.next_cursor.is_none());
    assert_eq!(ids(page2), vec![first]);
    let oldest = k
        .search_jobs(&search("exec-report", None), JobSort::Oldest, 10, None)
        .await
        .unwrap();
    assert_eq!(ids(oldest), vec![first, second]);
    assert_eq!(
        ids(k
            .search_jobs(&search("noop", None), JobSort::Newest, 10, None)
            .await
            .unwrap())
        .len(),
        4,
        "every job has a noop task"
    );
    assert_eq!(
        ids(k
            .search_jobs(
                &search("exec-report", Some("monthly-b")),
                JobSort::Newest,
                10,
                None
            )
            .await
            .unwrap()),
        vec![second]
    );
    assert_eq!(
        ids(k
            .search_jobs(
                &search("exec-report", Some(&first.to_string())),
                JobSort::Newest,
                10,
                None
            )
            .await
            .unwrap()),
        vec![first],
        "the id matches, and the kind still applies"
    );
    let plain_id = first + 1;
    assert!(ids(k
        .search_jobs(
            &search("exec-report", Some(&plain_id.to_string())),
            JobSort::Newest,
            10,
            None
        )
        .await
        .unwrap())
    .is_empty());
    assert_eq!(k.count_jobs(&search("exec-report", None)).await.unwrap(), 2);
    assert!(ids(k
        .search_jobs(&search("no-such-kind", None), JobSort::Newest, 10, None)
        .await
        .unwrap())
    .is_empty());
}

/// SQLite only: the background duty copies the WAL back into the database
/// file, so no commit of the writer pays for a checkpoint. The writer's own
/// checkpoint starts at 4,000 WAL pages; a few hundred jobs stay far below
/// it, so the database file grows only if the background checkpointer runs.
#[tokio::test]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    let env = common::sqlite_env().await;
    let path = env
        .url
        .strip_prefix("sqlite:")
        .expect("sqlite url")
        .to_string();
    let size = || std::fs::metadata(&path).expect("database file").len();
    let before = size();
    let jobs = (0..300)
        .map(|i| {
            NewJob::single(
                format!("wal-{i}"),
                "noop",
                json!({ "pad": "x".repeat(200) }),
            )
        })
        .collect();
    env.kernel.submit_many(jobs).await.expect("submit");
    let wal = std::fs::metadata(format!("{path}-wal")).expect("wal").len();
    assert!(wal > 100 * 4096, "the submit went to the WAL ({wal} bytes)");
    assert_eq!(size(), before, "nothing checkpointed yet");

    let background = env.kernel.start_background();
    eventually("the database file to take the WAL's pages", || async {
        (size() > before).then_some(())
    })
    .await;
    background.shutdown().await;
}

/// Upgrading a database that has jobs: migrations 0011 and 0012 count the
/// existing rows, and the kept counts agree with them from then on.
async fn counts_start_from_existing_rows_on_upgrade(url: &str) {
    use sqlx::migrate::Migrator;
    let sqlite = url.starts_with("sqlite:");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(if sqlite { "sqlite" } else { "postgres" });
    let mut before = Migrator::new(dir).await.expect("read migrations");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 11)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    // Jobs and tasks written before the counters existed, in several
    // states, tenants and queues; an attempt's log before its line count.
    let mut rows = String::new();
    for i in 1..=12_i64 {
        let state = ["queued", "running", "succeeded", "failed"][i as usize % 4];
        let task_state = ["ready", "leased", "succeeded", "failed"][i as usize % 4];
        let (tenant, queue) = (format!("t{}", i % 2), format!("q{}", i % 3));
        rows.push_str(&format!(
            "INSERT INTO jobs (id, name, tenant, queue, priority, state, created_at, updated_at) \
             VALUES ({i}, 'old-{i}', '{tenant}', '{queue}', 0, '{state}', {i}, {i});\n\
             INSERT INTO tasks (id, job_id, key, kind, tenant, queue, priority, payload, state, \
                                deps_remaining, max_attempts, created_at, updated_at) \
             VALUES ({i}, {i}, 'a', 'noop', '{tenant}', '{queue}', 0, '{{}}', '{task_state}', 0, 3, {i}, {i});\n\
             INSERT INTO tasks (id, job_id, key, kind, tenant, queue, priority, payload, state, \
                                deps_remaining, max_attempts, created_at, updated_at) \
             VALUES ({}, {i}, 'b', 'noop', '{tenant}', '{queue}', 0, '{{}}', 'pending', 1, 3, {i}, {i});\n",
            100 + i
        ));
    }
    // An attempt (of the leased task 1) with three lines in its log.
    rows.push_str(
        "INSERT INTO attempts (id, task_id, job_id, tenant, queue, number, state, node_id, \
                               lease_token, epoch, lease_expires_at, started_at) \
         VALUES (1, 1, 1, 't1', 'q1', 1, 'active', NULL, 'tok', 1, 9999999999999, 1);\n\
         INSERT INTO attempt_logs (attempt_id, stream, line, ts) \
         VALUES (1, 'stdout', 'a', 1), (1, 'stdout', 'b', 2), (1, 'stdout', 'c', 3);\n",
    );
    if sqlite {
        let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
            .expect("sqlite url")
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts)
            .await
            .expect("open sqlite");
        before.run(&pool).await.expect("migrate to 0010");
        sqlx::raw_sql(&rows).execute(&pool).await.expect("old rows");
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("open postgres");
        before.run(&pool).await.expect("migrate to 0010");
        sqlx::raw_sql(&rows).execute(&pool).await.expect("old rows");
        pool.close().await;
    }

    let clock = kernel::ManualClock::default();
    let config = kernel::KernelConfig {
        max_log_lines_per_attempt: 4,
        ..common::test_config(&clock)
    };
    let kernel = kernel::Kernel::open(url, config).await.expect("upgrade");
    let counts = kernel.overview(None).await.expect("overview").jobs_by_state;
    assert_eq!(
        counts.values().sum::<i64>(),
        12,
        "every old job counted: {counts:?}"
    );
    common::assert_counts_agree(&kernel, url).await;
    // The log's old lines count towards its cap (migration 0014).
    let proof = LeaseProof {
        lease_token: "tok".into(),
        epoch: 1,
    };
    let more: Vec<NewLogLine> = ["d", "e"]
        .iter()
        .map(|l| NewLogLine {
            stream: LogStream::Stdout,
            line: l.to_string(),
            ts: 4,
        })
        .collect();
    assert_eq!(
        kernel.append_attempt_log(1, &proof, &more).await.unwrap(),
        1,
        "room for one more after the three kept"
    );
    kernel.db().close().await;
}

#[tokio::test]
async fn sqlite_counts_start_from_existing_rows_on_upgrade() {
    let path =
        std::env::temp_dir().join(format!("switchyard-upgrade-{}.db", common::random_name()));
    let _cleanup = common::RemoveOnDrop::new(path.clone());
    counts_start_from_existing_rows_on_upgrade(&format!("sqlite:{}", path.display())).await;
}

#[tokio::test]
async fn postgres_counts_start_from_existing_rows_on_upgrade() {
    if let Some(url) = common::postgres_url("counts_start_from_existing_rows_on_upgrade").await {
        counts_start_from_existing_rows_on_upgrade(&url).await;
    }
}
