//! Submitting jobs: validate every job, then write all of them (jobs, tasks,
//! edges, events) in one transaction with a handful of set-based statements,
//! whatever the batch size.
//!
//! Idempotency: a job with an idempotency key that its tenant already used
//! is not created again; the earlier job is returned. Two replicas racing on
//! one key meet the unique index; the loser retries and finds the winner.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::json;

use crate::db::Backend;
use crate::error::{KernelError, Result};
use crate::model::{event_type, JobState, NewJob, Submitted, TaskState};
use crate::sql::{args, Arg, Tx};

use super::{dag, job_text, Kernel};

/// `INSERT INTO table (cols) SELECT … FROM <JSON array of objects in $param>`.
pub(crate) fn recordset_insert_sql(
    backend: Backend,
    table: &str,
    cols: &[(&str, &str)],
    param: usize,
) -> String {
    let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
    let names = names.join(", ");
    match backend {
        Backend::Sqlite => {
            let values: Vec<String> = cols
                .iter()
                .map(|(c, _)| format!("value ->> '{c}'"))
                .collect();
            format!(
                "INSERT INTO {table} ({names}) SELECT {} FROM json_each(${param})",
                values.join(", ")
            )
        }
        Backend::Postgres => {
            let types: Vec<String> = cols.iter().map(|(c, t)| format!("{c} {t}")).collect();
            format!(
                "INSERT INTO {table} ({names}) SELECT {names} FROM json_to_recordset(${param}::json) AS r({})",
                types.join(", ")
            )
        }
    }
}

/// An insert statement with its rows as JSON, and whether there are none.
fn with_rows<T: Serialize>(sql: String, rows: &[T]) -> (String, String, bool) {
    let json = serde_json::to_string(rows).expect("rows");
    (sql, json, rows.is_empty())
}

/// Fresh ids for `jobs` new jobs and `tasks` new tasks, each in increasing
/// order.
async fn allocate_ids(tx: &mut Tx, jobs: usize, tasks: usize) -> Result<(Vec<i64>, Vec<i64>)> {
    match tx.backend() {
        Backend::Sqlite => {
            // The one writer connection holds the write lock: nobody else
            // can take these ids before we commit.
            let row = tx
                .fetch_one(
                    "SELECT CAST(COALESCE((SELECT MAX(id) FROM jobs), 0) AS BIGINT) AS jobs, \
                            CAST(COALESCE((SELECT MAX(id) FROM tasks), 0) AS BIGINT) AS tasks",
                    args![],
                )
                .await?;
            let after = |base: i64, n: usize| (1..=n as i64).map(|i| base + i).collect();
            Ok((
                after(row.i64("jobs")?, jobs),
                after(row.i64("tasks")?, tasks),
            ))
        }
        Backend::Postgres => {
            // Both sequences in one round trip.
            let rows = tx
                .fetch_all(
                    "SELECT 'jobs' AS seq, nextval('jobs_id_seq') AS id FROM generate_series(1, $1::BIGINT) \
                     UNION ALL \
                     SELECT 'tasks', nextval('tasks_id_seq') FROM generate_series(1, $2::BIGINT)",
                    args![jobs as i64, tasks as i64],
                )
                .await?;
            let (mut job_ids, mut task_ids) = (Vec::with_capacity(jobs), Vec::with_capacity(tasks));
            for r in &rows {
                match r.text("seq")?.as_str() {
                    "jobs" => job_ids.push(r.i64("id")?),
                    _ => task_ids.push(r.i64("id")?),
                }
            }
            job_ids.sort_unstable();
            task_ids.sort_unstable();
            Ok((job_ids, task_ids))
        }
    }
}

#[derive(Serialize)]
struct JobRow<'a> {
    id: i64,
    name: &'a str,
    tenant: &'a str,
    queue: &'a str,
    priority: i64,
    state: &'static str,
    idempotency_key: Option<&'a str>,
    created_at: i64,
    updated_at: i64,
}

#[derive(Serialize)]
struct TaskRow<'a> {
    id: i64,
    job_id: i64,
    key: &'a str,
    kind: &'a str,
    tenant: &'a str,
    queue: &'a str,
    priority: i64,
    payload: String,
    state: &'static str,
    deps_remaining: i64,
    max_attempts: i64,
    timeout_s: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

#[derive(Serialize)]
struct EdgeRow {
    task_id: i64,
    depends_on: i64,
}

const JOB_COLS: &[(&str, &str)] = &[
    ("id", "BIGINT"),
    ("name", "TEXT"),
    ("tenant", "TEXT"),
    ("queue", "TEXT"),
    ("priority", "BIGINT"),
    ("state", "TEXT"),
    ("idempotency_key", "TEXT"),
    ("created_at", "BIGINT"),
    ("updated_at", "BIGINT"),
];

const TASK_COLS: &[(&str, &str)] = &[
    ("id", "BIGINT"),
    ("job_id", "BIGINT"),
    ("key", "TEXT"),
    ("kind", "TEXT"),
    ("tenant", "TEXT"),
    ("queue", "TEXT"),
    ("priority", "BIGINT"),
    ("payload", "TEXT"),
    ("state", "TEXT"),
    ("deps_remaining", "BIGINT"),
    ("max_attempts", "BIGINT"),
    ("timeout_s", "BIGINT"),
    ("created_at", "BIGINT"),
    ("updated_at", "BIGINT"),
];

const EDGE_COLS: &[(&str, &str)] = &[("task_id", "BIGINT"), ("depends_on", "BIGINT")];

#[derive(Serialize)]
struct KindRow<'a> {
    kind: &'a str,
    job_id: i64,
}

const KIND_COLS: &[(&str, &str)] = &[("kind", "TEXT"), ("job_id", "BIGINT")];

impl Kernel {
    /// Submits one job (SPEC §9 `POST /api/v1/jobs`).
    pub async fn submit(&self, job: NewJob) -> Result<Submitted> {
        let (id, created) = self.submit_many(vec![job]).await?[0];
        Ok(Submitted {
            job: self.get_job_summary(id).await?,
            created,
        })
    }

    /// Submits many jobs in one transaction: all are validated first (one
    /// bad job refuses the batch), then written with a constant number of
    /// statements. Returns `(job id, created)` per job, in order.
    pub async fn submit_many(&self, jobs: Vec<NewJob>) -> Result<Vec<(i64, bool)>> {
        for job in &jobs {
            dag::validate_job(job, self.config())?;
        }
        match self.insert_jobs(&jobs).await {
            Err(KernelError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                // Lost a race on an idempotency key: the retry finds the winner.
                self.insert_jobs(&jobs).await
            }
            other => other,
        }
    }

    async fn insert_jobs(&self, jobs: &[NewJob]) -> Result<Vec<(i64, bool)>> {
        let mut w = self.begin().await?;
        let now = w.now;

        let tenants = super::distinct(jobs.iter().map(|j| j.tenant.as_str()));
        let queues = super::distinct(jobs.iter().map(|j| j.queue.as_str()));
        // Tenants and queues come into being with their first job. Then
        // the queues that are paused, and the tenants and queues whose quota
        // is exhausted: their new jobs start `blocked`.
        const HELD: &str =
            "SELECT 'queue' AS scope, name FROM queues WHERE paused AND name @in($1) \
             UNION ALL SELECT scope, name FROM quotas WHERE exhausted \
               AND ((scope = 'queue' AND name @in($1)) OR (scope = 'tenant' AND name @in($2)))";
        let held_rows = match w.tx.backend() {
            Backend::Sqlite => {
                for t in &tenants {
                    w.tx.execute(
                        "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                        args![t.as_str(), now],
                    )
                    .await?;
                }
                for q in &queues {
                    w.tx.execute(
                        "INSERT INTO queues (name, paused, created_at) VALUES ($1, false, $2) \
                         ON CONFLICT (name) DO NOTHING",
                        args![q.as_str(), now],
                    )
                    .await?;
                }
                w.tx.fetch_all(HELD, args![queues.clone(), tenants.clone()])
                    .await?
            }
            // One round trip. The check reads the snapshot from before the
            // inserts, which is right: a queue created here is not paused.
            Backend::Postgres => {
                w.tx.fetch_all(
                    &format!(
                        "WITH new_tenants AS (INSERT INTO tenants (name, created_at) \
                             SELECT unnest($2::TEXT[]), $3 ON CONFLICT (name) DO NOTHING), \
                         new_queues AS (INSERT INTO queues (name, paused, created_at) \
                             SELECT unnest($1::TEXT[]), false, $3 ON CONFLICT (name) DO NOTHING) \
                         {HELD}"
                    ),
                    args![queues.clone(), tenants.clone(), now],
                )
                .await?
            }
        };
        let held: BTreeSet<(String, String)> = held_rows
            .iter()
            .map(|r| Ok((r.text("scope")?, r.text("name")?)))
            .collect::<Result<_, sqlx::Error>>()?;
        let is_held =
            |scope: &str, name: &str| held.contains(&(scope.to_string(), name.to_string()));

        // Idempotency: earlier jobs, and repeats within this batch.
        let mut outcome: Vec<Option<(i64, bool)>> = vec![None; jobs.len()];
        let mut batch_keys: HashMap<(&str, &str), usize> = HashMap::new();
        let mut to_create: Vec<usize> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            if let Some(key) = job.idempotency_key.as_deref() {
                if let Some(row) =
                    w.tx.fetch_optional(
                        "SELECT id FROM jobs WHERE tenant = $1 AND idempotency_key = $2",
                        args![job.tenant.as_str(), key],
                    )
                    .await?
                {
                    outcome[i] = Some((row.i64("id")?, false));
                    continue;
                }
                if let Some(&first) = batch_keys.get(&(job.tenant.as_str(), key)) {
                    // Resolved after ids are allocated.
                    outcome[i] = Some((-(first as i64) - 1, false));
                    continue;
                }
                batch_keys.insert((job.tenant.as_str(), key), i);
            }
            to_create.push(i);
        }

        let task_total: usize = to_create.iter().map(|&i| jobs[i].tasks.len()).sum();
        let (job_ids, task_ids) = allocate_ids(&mut w.tx, to_create.len(), task_total).await?;

        let mut job_rows = Vec::with_capacity(to_create.len());
        let mut task_rows = Vec::with_capacity(task_total);
        let mut edge_rows = Vec::new();
        let mut docs = Vec::with_capacity(to_create.len());
        let mut kind_rows = Vec::with_capacity(to_create.len());
        let mut next_task = task_ids.into_iter();
        let mut any_ready = false;
        for (&i, &job_id) in to_create.iter().zip(&job_ids) {
            let job = &jobs[i];
            let state = if is_held("queue", &job.queue) || is_held("tenant", &job.tenant) {
                JobState::Blocked
            } else {
                JobState::Queued
            };
            job_rows.push(JobRow {
                id: job_id,
                name: &job.name,
                tenant: &job.tenant,
                queue: &job.queue,
                priority: job.priority,
                state: state.as_str(),
                idempotency_key: job.idempotency_key.as_deref(),
                created_at: now,
                updated_at: now,
            });
            let ids: HashMap<&str, i64> = job
                .tasks
                .iter()
                .map(|t| (t.key.as_str(), next_task.next().expect("allocated")))
                .collect();
            for task in &job.tasks {
                let id = ids[task.key.as_str()];
                let deps: BTreeSet<i64> = task.depends_on.iter().map(|d| ids[d.as_str()]).collect();
                let state = if deps.is_empty() {
                    any_ready = true;
                    TaskState::Ready
                } else {
                    TaskState::Pending
                };
                edge_rows.extend(deps.iter().map(|&d| EdgeRow {
                    task_id: id,
                    depends_on: d,
                }));
                task_rows.push(TaskRow {
                    id,
                    job_id,
                    key: &task.key,
                    kind: &task.kind,
                    tenant: &job.tenant,
                    queue: &job.queue,
                    priority: job.priority,
                    payload: task.payload.to_string(),
                    state: state.as_str(),
                    deps_remaining: deps.len() as i64,
                    max_attempts: task
                        .max_attempts
                        .unwrap_or(self.config().default_max_attempts),
                    timeout_s: task.timeout_s,
                    created_at: now,
                    updated_at: now,
                });
            }
            let kinds: BTreeSet<&str> = job.tasks.iter().map(|t| t.kind.as_str()).collect();
            kind_rows.extend(kinds.into_iter().map(|kind| KindRow { kind, job_id }));
            let payloads = &task_rows[task_rows.len() - job.tasks.len()..];
            docs.push((
                job_id,
                job_text::document(&job.name, payloads.iter().map(|t| t.payload.as_str())),
            ));
            outcome[i] = Some((job_id, true));
            w.event(event_type::JOB_SUBMITTED, Some(&job.tenant))
                .job(job_id)
                .queue(&job.queue)
                .data(json!({
                    "name": job.name,
                    "state": state,
                    "tasks": job.tasks.len(),
                    "priority": job.priority,
                }));
        }

        // Each insert with its rows, `$n`: on SQLite each is a statement
        // of its own (skipped when it has no rows); on Postgres they are
        // the data-modifying CTEs of one statement, one round trip
        // (foreign keys are checked at its end).
        let backend = w.tx.backend();
        let param = |i: usize| match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => i + 1,
        };
        let inserts = [
            with_rows(
                recordset_insert_sql(backend, "jobs", JOB_COLS, param(0)),
                &job_rows,
            ),
            with_rows(
                recordset_insert_sql(backend, "tasks", TASK_COLS, param(1)),
                &task_rows,
            ),
            with_rows(
                recordset_insert_sql(backend, "job_kinds", KIND_COLS, param(2)),
                &kind_rows,
            ),
            with_rows(
                recordset_insert_sql(backend, "task_deps", EDGE_COLS, param(3)),
                &edge_rows,
            ),
            (
                job_text::insert_sql(backend, param(4)),
                job_text::rows_json(&docs),
                docs.is_empty(),
            ),
        ];
        match backend {
            Backend::Sqlite => {
                for (sql, rows, empty) in inserts {
                    if !empty {
                        w.tx.execute(&sql, args![rows]).await?;
                    }
                }
            }
            Backend::Postgres => {
                let (sqls, rows): (Vec<String>, Vec<Arg>) = inserts
                    .into_iter()
                    .map(|(sql, rows, _)| (sql, rows.into()))
                    .unzip();
                let (last, ctes) = sqls.split_last().expect("inserts");
                let ctes: Vec<String> = ctes
                    .iter()
                    .enumerate()
                    .map(|(i, sql)| format!("p{i} AS ({sql})"))
                    .collect();
                w.tx.execute(&format!("WITH {} {last}", ctes.join(", ")), rows)
                    .await?;
            }
        }
        w.wake_claimers = any_ready;
        self.finish(w).await?;

        let resolved: Vec<(i64, bool)> = outcome
            .iter()
            .map(|o| o.expect("every job has an outcome"))
            .collect();
        Ok(resolved
            .iter()
            .map(|&(id, created)| {
                if id < 0 {
                    // A repeat of an earlier job of this batch.
                    (resolved[(-id - 1) as usize].0, created)
                } else {
                    (id, created)
                }
            })
            .collect())
    }
}
