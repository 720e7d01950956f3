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
use crate::sql::{args, Arg, Conns};

use super::{dag, events, job_text, Kernel, NewEvent};

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
    (sql, rows_json(rows), rows.is_empty())
}

/// Rows as the JSON array of objects [`recordset_insert_sql`] reads.
fn rows_json<T: Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("rows")
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

/// What a submit's writes depend on, read before them.
struct Prepared {
    /// `(scope, name)` of the paused queues and the exhausted quotas among
    /// the batch's: their new jobs start `blocked`.
    held: BTreeSet<(String, String)>,
    /// Jobs that already carry one of the batch's idempotency keys, by
    /// `(tenant, key)`.
    existing: HashMap<(String, String), i64>,
    /// Fresh ids, increasing: one per job and per task of the batch (those
    /// of repeated jobs go unused).
    job_ids: Vec<i64>,
    task_ids: Vec<i64>,
}

/// The paused queues among `$1` and the exhausted quotas of the queues in
/// `$1` and the tenants in `$2`.
const HELD: &str = "SELECT 'queue' AS scope, name FROM queues WHERE paused AND name @in($1) \
     UNION ALL SELECT scope, name FROM quotas WHERE exhausted \
       AND ((scope = 'queue' AND name @in($1)) OR (scope = 'tenant' AND name @in($2)))";

/// The rows a submit writes, and its answer.
struct Plan<'a> {
    jobs: Vec<JobRow<'a>>,
    tasks: Vec<TaskRow<'a>>,
    kinds: Vec<KindRow<'a>>,
    edges: Vec<EdgeRow>,
    docs: Vec<(i64, String)>,
    events: Vec<NewEvent>,
    /// A new task is ready at once.
    any_ready: bool,
    /// `(job id, created)` per submitted job, in order.
    outcome: Vec<(i64, bool)>,
}

impl Kernel {
    /// Submits one job (SPEC §9 `POST /api/v1/jobs`).
    pub async fn submit(&self, job: NewJob) -> Result<Submitted> {
        let (id, created) = self.submit_many(vec![job]).await?[0];
        Ok(Submitted {
            job: self.get_job_summary(id).await?,
            created,
        })
    }

    /// Submits many jobs at once: all are validated first (one bad job
    /// refuses the batch), then written together, atomically, with a
    /// constant number of statements. Returns `(job id, created)` per job,
    /// in order.
    pub async fn submit_many(&self, jobs: Vec<NewJob>) -> Result<Vec<(i64, bool)>> {
        for job in &jobs {
            dag::validate_job(job, self.config())?;
        }
        let insert = || async {
            match self.backend() {
                Backend::Sqlite => self.insert_jobs_sqlite(&jobs).await,
                Backend::Postgres => self.insert_jobs_postgres(&jobs).await,
            }
        };
        match insert().await {
            Err(KernelError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                // Lost a race on an idempotency key: the retry finds the winner.
                insert().await
            }
            other => other,
        }
    }

    /// SQLite: one transaction on the one writer, statement by statement
    /// (its round trips are function calls).
    async fn insert_jobs_sqlite(&self, jobs: &[NewJob]) -> Result<Vec<(i64, bool)>> {
        let mut w = self.begin().await?;
        let now = w.now;
        let tenants = super::distinct(jobs.iter().map(|j| j.tenant.as_str()));
        let queues = super::distinct(jobs.iter().map(|j| j.queue.as_str()));
        // Tenants and queues come into being with their first job.
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
        let mut held = BTreeSet::new();
        for r in w.tx.fetch_all(HELD, args![queues, tenants]).await? {
            held.insert((r.text("scope")?, r.text("name")?));
        }
        let mut existing = HashMap::new();
        for job in jobs {
            if let Some(key) = job.idempotency_key.as_deref() {
                if let Some(row) =
                    w.tx.fetch_optional(
                        "SELECT id FROM jobs WHERE tenant = $1 AND idempotency_key = $2",
                        args![job.tenant.as_str(), key],
                    )
                    .await?
                {
                    existing.insert((job.tenant.clone(), key.to_string()), row.i64("id")?);
                }
            }
        }
        // The one writer connection holds the write lock: nobody else can
        // take these ids before we commit.
        let row =
            w.tx.fetch_one(
                "SELECT CAST(COALESCE((SELECT MAX(id) FROM jobs), 0) AS BIGINT) AS jobs, \
                        CAST(COALESCE((SELECT MAX(id) FROM tasks), 0) AS BIGINT) AS tasks",
                args![],
            )
            .await?;
        let after = |base: i64, n: usize| (1..=n as i64).map(|i| base + i).collect();
        let task_total = jobs.iter().map(|j| j.tasks.len()).sum();
        let prepared = Prepared {
            held,
            existing,
            job_ids: after(row.i64("jobs")?, jobs.len()),
            task_ids: after(row.i64("tasks")?, task_total),
        };

        let plan = self.plan(jobs, prepared, now);
        let inserts = [
            with_rows(
                recordset_insert_sql(Backend::Sqlite, "jobs", JOB_COLS, 1),
                &plan.jobs,
            ),
            with_rows(
                recordset_insert_sql(Backend::Sqlite, "tasks", TASK_COLS, 1),
                &plan.tasks,
            ),
            with_rows(
                recordset_insert_sql(Backend::Sqlite, "job_kinds", KIND_COLS, 1),
                &plan.kinds,
            ),
            with_rows(
                recordset_insert_sql(Backend::Sqlite, "task_deps", EDGE_COLS, 1),
                &plan.edges,
            ),
            (
                job_text::insert_sql(Backend::Sqlite, 1),
                job_text::rows_json(&plan.docs),
                plan.docs.is_empty(),
            ),
        ];
        for (sql, rows, empty) in inserts {
            if !empty {
                w.tx.execute(&sql, args![rows]).await?;
            }
        }
        w.events = plan.events;
        w.wake_claimers = plan.any_ready;
        self.finish(w).await?;
        Ok(plan.outcome)
    }

    /// Postgres: two statements, each a transaction of its own, so no
    /// BEGIN or COMMIT round trip. The first only reads (and takes ids from
    /// the sequences, which no transaction would give back either); the
    /// second writes everything, tenants and queues included, atomically.
    /// A concurrent submit of the same idempotency key between the two
    /// makes the second fail on the unique index, and the retry finds it.
    async fn insert_jobs_postgres(&self, jobs: &[NewJob]) -> Result<Vec<(i64, bool)>> {
        let now = self.now();
        let tenants = super::distinct(jobs.iter().map(|j| j.tenant.as_str()));
        let queues = super::distinct(jobs.iter().map(|j| j.queue.as_str()));
        let (key_tenants, keys): (Vec<String>, Vec<String>) = jobs
            .iter()
            .filter_map(|j| Some((j.tenant.clone(), j.idempotency_key.clone()?)))
            .unzip();
        let task_total: usize = jobs.iter().map(|j| j.tasks.len()).sum();
        // Earlier jobs with the batch's keys: only asked when there are keys
        // (the planner cannot know an empty list is empty).
        let earlier = if keys.is_empty() {
            ""
        } else {
            "UNION ALL SELECT 'job', j.tenant, j.idempotency_key, j.id \
             FROM unnest($5::TEXT[], $6::TEXT[]) AS k(tenant, key) \
             JOIN jobs j ON j.tenant = k.tenant AND j.idempotency_key = k.key "
        };
        let rows = self
            .db()
            .fetch_all_alone(
                Conns::Main,
                &format!(
                    "SELECT 'held' AS what, scope AS a, name AS b, NULL::BIGINT AS id FROM ({HELD}) h \
                     UNION ALL SELECT 'jobs', NULL, NULL, nextval('jobs_id_seq') \
                         FROM generate_series(1, $3::BIGINT) \
                     UNION ALL SELECT 'tasks', NULL, NULL, nextval('tasks_id_seq') \
                         FROM generate_series(1, $4::BIGINT) \
                     {earlier}"
                ),
                if keys.is_empty() {
                    args![queues.clone(), tenants.clone(), jobs.len() as i64, task_total as i64]
                } else {
                    args![
                        queues.clone(),
                        tenants.clone(),
                        jobs.len() as i64,
                        task_total as i64,
                        key_tenants,
                        keys
                    ]
                },
            )
            .await?;
        let mut prepared = Prepared {
            held: BTreeSet::new(),
            existing: HashMap::new(),
            job_ids: Vec::with_capacity(jobs.len()),
            task_ids: Vec::with_capacity(task_total),
        };
        for r in &rows {
            match r.text("what")?.as_str() {
                "held" => {
                    prepared.held.insert((r.text("a")?, r.text("b")?));
                }
                "job" => {
                    prepared
                        .existing
                        .insert((r.text("a")?, r.text("b")?), r.i64("id")?);
                }
                "jobs" => prepared.job_ids.push(r.i64("id")?),
                _ => prepared.task_ids.push(r.i64("id")?),
            }
        }
        prepared.job_ids.sort_unstable();
        prepared.task_ids.sort_unstable();

        let plan = self.plan(jobs, prepared, now);
        if plan.jobs.is_empty() {
            return Ok(plan.outcome);
        }
        // The data-modifying CTEs of one statement (foreign keys are
        // checked at its end); `$1` and `$2` are the tenants and queues,
        // `$3` the time.
        let pg = Backend::Postgres;
        let writes = [
            "INSERT INTO tenants (name, created_at) SELECT unnest($1::TEXT[]), $3 \
             ON CONFLICT (name) DO NOTHING"
                .to_string(),
            "INSERT INTO queues (name, paused, created_at) SELECT unnest($2::TEXT[]), false, $3 \
             ON CONFLICT (name) DO NOTHING"
                .to_string(),
            recordset_insert_sql(pg, "jobs", JOB_COLS, 4),
            recordset_insert_sql(pg, "tasks", TASK_COLS, 5),
            recordset_insert_sql(pg, "job_kinds", KIND_COLS, 6),
            recordset_insert_sql(pg, "task_deps", EDGE_COLS, 7),
            job_text::insert_sql(pg, 8),
            events::pg_insert_sql(9),
        ];
        let (last, ctes) = writes.split_last().expect("writes");
        let ctes: Vec<String> = ctes
            .iter()
            .enumerate()
            .map(|(i, sql)| format!("w{i} AS ({sql})"))
            .collect();
        let json = |rows: String| Arg::from(rows);
        self.db()
            .fetch_all_alone(
                Conns::Main,
                &format!("WITH {} {last}", ctes.join(", ")),
                vec![
                    tenants.into(),
                    queues.into(),
                    now.into(),
                    json(rows_json(&plan.jobs)),
                    json(rows_json(&plan.tasks)),
                    json(rows_json(&plan.kinds)),
                    json(rows_json(&plan.edges)),
                    json(job_text::rows_json(&plan.docs)),
                    json(events::rows_json(&plan.events)),
                ],
            )
            .await?;
        if plan.any_ready {
            self.wake_claimers();
        }
        self.announce_events();
        Ok(plan.outcome)
    }

    /// The rows of the jobs of `jobs` that `prepared` does not know already,
    /// and the answer for every job.
    fn plan<'a>(&self, jobs: &'a [NewJob], prepared: Prepared, now: i64) -> Plan<'a> {
        let Prepared {
            held,
            existing,
            job_ids,
            task_ids,
        } = prepared;
        let is_held =
            |scope: &str, name: &str| held.contains(&(scope.to_string(), name.to_string()));
        let mut plan = Plan {
            jobs: Vec::with_capacity(jobs.len()),
            tasks: Vec::with_capacity(task_ids.len()),
            kinds: Vec::with_capacity(jobs.len()),
            edges: Vec::new(),
            docs: Vec::with_capacity(jobs.len()),
            events: Vec::with_capacity(jobs.len()),
            any_ready: false,
            outcome: Vec::with_capacity(jobs.len()),
        };
        // Jobs created here by idempotency key, for repeats within the batch.
        let mut created: HashMap<(&str, &str), i64> = HashMap::new();
        let mut next_job = job_ids.into_iter();
        let mut next_task = task_ids.into_iter();
        for job in jobs {
            if let Some(key) = job.idempotency_key.as_deref() {
                let earlier = existing
                    .get(&(job.tenant.clone(), key.to_string()))
                    .or_else(|| created.get(&(job.tenant.as_str(), key)));
                if let Some(&id) = earlier {
                    plan.outcome.push((id, false));
                    continue;
                }
            }
            let job_id = next_job.next().expect("an id per job");
            if let Some(key) = job.idempotency_key.as_deref() {
                created.insert((job.tenant.as_str(), key), job_id);
            }
            plan.outcome.push((job_id, true));
            let state = if is_held("queue", &job.queue) || is_held("tenant", &job.tenant) {
                JobState::Blocked
            } else {
                JobState::Queued
            };
            plan.jobs.push(JobRow {
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
                .map(|t| (t.key.as_str(), next_task.next().expect("an id per task")))
                .collect();
            for task in &job.tasks {
                let id = ids[task.key.as_str()];
                let deps: BTreeSet<i64> = task.depends_on.iter().map(|d| ids[d.as_str()]).collect();
                let state = if deps.is_empty() {
                    plan.any_ready = true;
                    TaskState::Ready
                } else {
                    TaskState::Pending
                };
                plan.edges.extend(deps.iter().map(|&d| EdgeRow {
                    task_id: id,
                    depends_on: d,
                }));
                plan.tasks.push(TaskRow {
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
            plan.kinds
                .extend(kinds.into_iter().map(|kind| KindRow { kind, job_id }));
            let payloads = &plan.tasks[plan.tasks.len() - job.tasks.len()..];
            plan.docs.push((
                job_id,
                job_text::document(&job.name, payloads.iter().map(|t| t.payload.as_str())),
            ));
            let mut event = NewEvent::new(now, event_type::JOB_SUBMITTED, Some(&job.tenant));
            event.job(job_id).queue(&job.queue).data(json!({
                "name": job.name,
                "state": state,
                "tasks": job.tasks.len(),
                "priority": job.priority,
            }));
            plan.events.push(event);
        }
        plan
    }
}
