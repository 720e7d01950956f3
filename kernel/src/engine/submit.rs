//! Submitting jobs: validate every job, then write all of them (jobs, tasks,
//! edges, events) in one transaction with a handful of set-based statements,
//! whatever the batch size.
//!
//! Idempotency: a job with an idempotency key that its tenant already used
//! is not created again; the earlier job is returned. Two replicas racing on
//! one key meet the unique index; the loser retries and finds the winner.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::Serialize;
use serde_json::json;

use crate::db::Backend;
use crate::error::{KernelError, Result};
use crate::model::{event_type, Job, JobState, NewJob, Submitted, TaskCounts, TaskState};
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

/// Job and task ids taken from the Postgres sequences ahead of need, so
/// that a submit's one statement can carry them: one statement takes
/// [`ID_BLOCK`] of each (more for a big batch) every so often. Ids stay
/// increasing within a replica; across replicas they interleave, as they
/// would in the order transactions take them. Ids reserved by a replica
/// that stops are never used (sequences have gaps anyway).
#[derive(Default)]
pub(super) struct ReservedIds {
    jobs: VecDeque<i64>,
    tasks: VecDeque<i64>,
}

const ID_BLOCK: usize = 32;

/// A write CTE (`INSERT … SELECT …` whose FROM is the last clause, or an
/// `… ON CONFLICT …` after it) that inserts only when the `gate` CTE is clear.
fn gated(sql: &str) -> String {
    match sql.split_once(" ON CONFLICT ") {
        Some((insert, conflict)) => {
            format!("{insert} WHERE (SELECT clear FROM gate) ON CONFLICT {conflict}")
        }
        None => format!("{sql} WHERE (SELECT clear FROM gate)"),
    }
}

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
    /// What became of each job, in order.
    outcome: Written,
}

/// What became of a batch of jobs.
#[derive(Default)]
struct Written {
    /// `(job id, created)` per job, in order.
    ids: Vec<(i64, bool)>,
    /// The jobs created, as they were written.
    created: Vec<Job>,
}

impl Kernel {
    /// Submits one job (SPEC §9 `POST /api/v1/jobs`).
    pub async fn submit(&self, job: NewJob) -> Result<Submitted> {
        let written = self.write_jobs(vec![job]).await?;
        let (id, created) = written.ids[0];
        Ok(Submitted {
            job: match written.created.into_iter().next() {
                Some(job) => job,
                // An earlier job with the same idempotency key.
                None => self.get_job_summary(id).await?,
            },
            created,
        })
    }

    /// Submits many jobs at once: all are validated first (one bad job
    /// refuses the batch), then written together, atomically, with a
    /// constant number of statements. Returns `(job id, created)` per job,
    /// in order.
    pub async fn submit_many(&self, jobs: Vec<NewJob>) -> Result<Vec<(i64, bool)>> {
        Ok(self.write_jobs(jobs).await?.ids)
    }

    async fn write_jobs(&self, jobs: Vec<NewJob>) -> Result<Written> {
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
    async fn insert_jobs_sqlite(&self, jobs: &[NewJob]) -> Result<Written> {
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
        let insert = |table, cols| recordset_insert_sql(Backend::Sqlite, table, cols, 1);
        let inserts = [
            with_rows(insert("jobs", JOB_COLS), &plan.jobs),
            with_rows(insert("tasks", TASK_COLS), &plan.tasks),
            with_rows(insert("job_kinds", KIND_COLS), &plan.kinds),
            with_rows(insert("task_deps", EDGE_COLS), &plan.edges),
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

    /// Postgres: one statement, a transaction of its own (no BEGIN or
    /// COMMIT round trip), with ids reserved ahead (see [`ReservedIds`]).
    /// It writes only when no queue or tenant of the batch is held and no
    /// idempotency key of it was used before, which is the common case.
    /// Otherwise it writes nothing, and a first statement reads the holds
    /// and the earlier jobs for a second to write. A concurrent submit of
    /// the same idempotency key between the read and the write makes the
    /// write fail on the unique index, and the retry finds it.
    async fn insert_jobs_postgres(&self, jobs: &[NewJob]) -> Result<Written> {
        let now = self.now();
        let tenants = super::distinct(jobs.iter().map(|j| j.tenant.as_str()));
        let queues = super::distinct(jobs.iter().map(|j| j.queue.as_str()));
        let (key_tenants, keys): (Vec<String>, Vec<String>) = jobs
            .iter()
            .filter_map(|j| Some((j.tenant.clone(), j.idempotency_key.clone()?)))
            .unzip();
        let task_total: usize = jobs.iter().map(|j| j.tasks.len()).sum();
        let (job_ids, task_ids) = self.reserve_ids(jobs.len(), task_total).await?;
        // `$1` queues, `$2` tenants, `$3` key tenants, `$4` keys.
        // With one generic plan (see `Db::open_with`): a lookup per key.
        let earlier = "SELECT k.tenant, k.key, j.id \
             FROM unnest($3::TEXT[], $4::TEXT[]) AS k(tenant, key) \
             CROSS JOIN LATERAL (SELECT id FROM jobs \
                 WHERE tenant = k.tenant AND idempotency_key = k.key) j";
        let has_keys = !keys.is_empty();
        let mut reads = args![queues.clone(), tenants.clone()];
        if has_keys {
            reads.extend(args![key_tenants, keys]);
        }

        let clear = Prepared {
            held: BTreeSet::new(),
            existing: HashMap::new(),
            job_ids: job_ids.clone(),
            task_ids: task_ids.clone(),
        };
        // Only asks about earlier keys when there are keys (the planner
        // cannot know an empty list is empty).
        let gate = format!(
            "SELECT NOT EXISTS ({HELD}){} AS clear",
            if !has_keys {
                String::new()
            } else {
                format!(" AND NOT EXISTS ({earlier})")
            }
        );
        if let Some(outcome) = self
            .write_jobs_postgres(jobs, clear, now, Some((gate, reads.clone())))
            .await?
        {
            return Ok(outcome);
        }

        let held_or_earlier = format!(
            "SELECT 'held' AS what, scope AS a, name AS b, NULL::BIGINT AS id FROM ({HELD}) h{}",
            if has_keys {
                format!(" UNION ALL SELECT 'job', e.* FROM ({earlier}) e")
            } else {
                String::new()
            }
        );
        let mut prepared = Prepared {
            held: BTreeSet::new(),
            existing: HashMap::new(),
            job_ids,
            task_ids,
        };
        for r in self
            .db()
            .fetch_all_alone(Conns::Submit, &held_or_earlier, reads)
            .await?
        {
            if r.text("what")? == "held" {
                prepared.held.insert((r.text("a")?, r.text("b")?));
            } else {
                prepared
                    .existing
                    .insert((r.text("a")?, r.text("b")?), r.i64("id")?);
            }
        }
        Ok(self
            .write_jobs_postgres(jobs, prepared, now, None)
            .await?
            .expect("an ungated write writes"))
    }

    /// Writes the jobs `plan` makes of `prepared`, in one statement of
    /// data-modifying CTEs (foreign keys are checked at its end). With a
    /// `gate` (a `SELECT … AS clear` and its arguments, which come first),
    /// writes only when the gate is clear, and returns `None` when not.
    async fn write_jobs_postgres(
        &self,
        jobs: &[NewJob],
        prepared: Prepared,
        now: i64,
        gate: Option<(String, Vec<Arg>)>,
    ) -> Result<Option<Written>> {
        let plan = self.plan(jobs, prepared, now);
        if plan.jobs.is_empty() {
            return Ok(Some(plan.outcome));
        }
        let tenants = super::distinct(plan.jobs.iter().map(|j| j.tenant));
        let queues = super::distinct(plan.jobs.iter().map(|j| j.queue));
        let (gate_sql, mut all) = gate.unwrap_or_else(|| ("SELECT true AS clear".into(), args![]));
        let p = |i: usize| all.len() + i;
        let pg = Backend::Postgres;
        let writes = [
            format!(
                "INSERT INTO tenants (name, created_at) SELECT unnest(${}::TEXT[]), ${} \
                 ON CONFLICT (name) DO NOTHING",
                p(1),
                p(3)
            ),
            format!(
                "INSERT INTO queues (name, paused, created_at) SELECT unnest(${}::TEXT[]), false, ${} \
                 ON CONFLICT (name) DO NOTHING",
                p(2),
                p(3)
            ),
            recordset_insert_sql(pg, "jobs", JOB_COLS, p(4)),
            recordset_insert_sql(pg, "tasks", TASK_COLS, p(5)),
            recordset_insert_sql(pg, "job_kinds", KIND_COLS, p(6)),
            recordset_insert_sql(pg, "task_deps", EDGE_COLS, p(7)),
            job_text::insert_sql(pg, p(8)),
            events::pg_insert_sql(p(9)),
        ];
        // Every write reads its rows through the gate.
        let ctes: Vec<String> = writes
            .iter()
            .enumerate()
            .map(|(i, sql)| format!("w{i} AS ({})", gated(sql)))
            .collect();
        let json = |rows: String| Arg::from(rows);
        all.extend([
            tenants.into(),
            queues.into(),
            now.into(),
            json(rows_json(&plan.jobs)),
            json(rows_json(&plan.tasks)),
            json(rows_json(&plan.kinds)),
            json(rows_json(&plan.edges)),
            json(job_text::rows_json(&plan.docs)),
            json(events::rows_json(&plan.events)),
        ]);
        let rows = self
            .db()
            .fetch_all_alone(
                Conns::Submit,
                &format!(
                    "WITH gate AS MATERIALIZED ({gate_sql}), {} SELECT clear FROM gate",
                    ctes.join(", ")
                ),
                all,
            )
            .await?;
        if !rows
            .first()
            .map(|r| r.bool("clear"))
            .transpose()?
            .unwrap_or(false)
        {
            return Ok(None);
        }
        if plan.any_ready {
            self.wake_claimers();
        }
        self.announce_events();
        Ok(Some(plan.outcome))
    }

    /// `jobs` fresh job ids and `tasks` fresh task ids, each increasing,
    /// from the reserve; refilled from the sequences in one statement when
    /// short.
    async fn reserve_ids(&self, jobs: usize, tasks: usize) -> Result<(Vec<i64>, Vec<i64>)> {
        let mut reserve = self.inner.reserved_ids.lock().await;
        if reserve.jobs.len() < jobs || reserve.tasks.len() < tasks {
            let more = |have: usize, want: usize| (want.saturating_sub(have) + ID_BLOCK) as i64;
            let rows = self
                .db()
                .fetch_all_alone(
                    Conns::Submit,
                    "SELECT 'jobs' AS seq, nextval('jobs_id_seq') AS id FROM generate_series(1, $1::BIGINT) \
                     UNION ALL \
                     SELECT 'tasks', nextval('tasks_id_seq') FROM generate_series(1, $2::BIGINT)",
                    args![
                        more(reserve.jobs.len(), jobs),
                        more(reserve.tasks.len(), tasks)
                    ],
                )
                .await?;
            let (mut new_jobs, mut new_tasks) = (Vec::new(), Vec::new());
            for r in &rows {
                match r.text("seq")?.as_str() {
                    "jobs" => new_jobs.push(r.i64("id")?),
                    _ => new_tasks.push(r.i64("id")?),
                }
            }
            new_jobs.sort_unstable();
            new_tasks.sort_unstable();
            reserve.jobs.extend(new_jobs);
            reserve.tasks.extend(new_tasks);
        }
        Ok((
            reserve.jobs.drain(..jobs).collect(),
            reserve.tasks.drain(..tasks).collect(),
        ))
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
            outcome: Written {
                ids: Vec::with_capacity(jobs.len()),
                created: Vec::with_capacity(jobs.len()),
            },
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
                    plan.outcome.ids.push((id, false));
                    continue;
                }
            }
            let job_id = next_job.next().expect("an id per job");
            if let Some(key) = job.idempotency_key.as_deref() {
                created.insert((job.tenant.as_str(), key), job_id);
            }
            plan.outcome.ids.push((job_id, true));
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
            let mut task_counts = TaskCounts::default();
            for task in &job.tasks {
                let id = ids[task.key.as_str()];
                let deps: BTreeSet<i64> = task.depends_on.iter().map(|d| ids[d.as_str()]).collect();
                let state = if deps.is_empty() {
                    plan.any_ready = true;
                    TaskState::Ready
                } else {
                    TaskState::Pending
                };
                task_counts.add(state, 1);
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
            plan.outcome.created.push(Job {
                id: job_id,
                name: job.name.clone(),
                tenant: job.tenant.clone(),
                queue: job.queue.clone(),
                priority: job.priority,
                state,
                idempotency_key: job.idempotency_key.clone(),
                created_at: now,
                started_at: None,
                finished_at: None,
                updated_at: now,
                task_counts,
            });
        }
        plan
    }
}
