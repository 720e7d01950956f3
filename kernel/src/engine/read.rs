//! Reads for the API and the console: lists with filters and keyset
//! pagination, details, live figures (queue depth, quota usage).
//!
//! Reads never write and never take row locks; on SQLite they use the
//! read-only pool so they do not queue behind the writer.

use std::collections::{BTreeMap, HashMap};

use crate::error::{KernelError, Result};
use crate::model::{
    Attempt, DeadLetterEntry, DeadLetterFilter, DeadLetterGroup, Job, JobDetail, JobFilter,
    LogLine, Node, Overview, Page, Queue, QueueDepth, Quota, QuotaLimits, QuotaUsage, Task,
    TaskCounts, TaskState,
};
use crate::sql::{args, Arg, Row, Tx};

use super::ops::{dead_letter_conditions, escape_like};
use super::Kernel;

const JOB_COLUMNS: &str = "id, name, tenant, queue, priority, state, idempotency_key, created_at, \
                           started_at, finished_at, updated_at";
const ATTEMPT_COLUMNS: &str =
    "id, task_id, job_id, number, state, node_id, epoch, lease_expires_at, \
                               started_at, heartbeat_at, finished_at, error, lease_token";
const DEAD_LETTER_COLUMNS: &str = "id, job_id, task_id, job_name, task_key, kind, tenant, queue, error, \
                                   fingerprint, payload, attempts, status, reason, created_at, updated_at";

pub(crate) fn job_from_row(r: &Row) -> Result<Job> {
    Ok(Job {
        id: r.i64("id")?,
        name: r.text("name")?,
        tenant: r.text("tenant")?,
        queue: r.text("queue")?,
        priority: r.i64("priority")?,
        state: r.parse("state")?,
        idempotency_key: r.opt_text("idempotency_key")?,
        created_at: r.i64("created_at")?,
        started_at: r.opt_i64("started_at")?,
        finished_at: r.opt_i64("finished_at")?,
        updated_at: r.i64("updated_at")?,
        task_counts: TaskCounts::default(),
    })
}

pub(crate) fn attempt_from_row(r: &Row) -> Result<Attempt> {
    Ok(Attempt {
        id: r.i64("id")?,
        task_id: r.i64("task_id")?,
        job_id: r.i64("job_id")?,
        number: r.i64("number")?,
        state: r.parse("state")?,
        node_id: r.opt_i64("node_id")?,
        epoch: r.i64("epoch")?,
        lease_expires_at: r.i64("lease_expires_at")?,
        started_at: r.i64("started_at")?,
        heartbeat_at: r.opt_i64("heartbeat_at")?,
        finished_at: r.opt_i64("finished_at")?,
        error: r.opt_text("error")?,
        lease_token_prefix: r
            .opt_text("lease_token")?
            .map(|t| t.chars().take(8).collect()),
    })
}

fn dead_letter_from_row(r: &Row) -> Result<DeadLetterEntry> {
    Ok(DeadLetterEntry {
        id: r.i64("id")?,
        job_id: r.i64("job_id")?,
        task_id: r.i64("task_id")?,
        job_name: r.text("job_name")?,
        task_key: r.text("task_key")?,
        kind: r.text("kind")?,
        tenant: r.text("tenant")?,
        queue: r.text("queue")?,
        error: r.text("error")?,
        fingerprint: r.text("fingerprint")?,
        payload: r.json("payload")?,
        attempts: serde_json::from_value(r.json("attempts")?).unwrap_or_default(),
        status: r.parse("status")?,
        reason: r.opt_text("reason")?,
        created_at: r.i64("created_at")?,
        updated_at: r.i64("updated_at")?,
    })
}

fn node_from_row(r: &Row) -> Result<Node> {
    Ok(Node {
        id: r.i64("id")?,
        name: r.text("name")?,
        kinds: serde_json::from_value(r.json("kinds")?).unwrap_or_default(),
        capacity: r.i64("capacity")?,
        labels: serde_json::from_value(r.json("labels")?).unwrap_or_default(),
        file_scopes: serde_json::from_value(r.json("file_scopes")?).unwrap_or_default(),
        status: r.parse("status")?,
        registered_at: r.i64("registered_at")?,
        last_heartbeat_at: r.i64("last_heartbeat_at")?,
        active_leases: r.i64("active_leases")?,
    })
}

/// Keyset cursor: the last id of the previous page, as text.
pub(crate) fn parse_cursor(cursor: Option<&str>) -> Result<Option<i64>> {
    match cursor.map(str::trim).filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => crate::model::cursor_id(c).map(Some).ok_or_else(|| {
            KernelError::validation(format!(
                "invalid cursor {c:?}: pass back a next_cursor value"
            ))
        }),
    }
}

impl Tx {
    /// Attempts of `task_ids`, by task then number.
    pub(crate) async fn attempts_of(&mut self, task_ids: &[i64]) -> Result<Vec<Attempt>> {
        let rows = self
            .fetch_all(
                &format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id @in($1) ORDER BY task_id, number"),
                args![task_ids.to_vec()],
            )
            .await?;
        rows.iter().map(attempt_from_row).collect()
    }
}

impl Kernel {
    pub(crate) async fn attempts_of(&self, tx: &mut Tx, task_ids: &[i64]) -> Result<Vec<Attempt>> {
        tx.attempts_of(task_ids).await
    }

    async fn fill_counts(&self, jobs: &mut [Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
        let rows = self
            .db()
            .read_all(
                "SELECT job_id, state, COUNT(*) AS n FROM tasks WHERE job_id @in($1) GROUP BY job_id, state",
                args![ids],
            )
            .await?;
        let mut counts: HashMap<i64, TaskCounts> = HashMap::new();
        for r in rows {
            let state: TaskState = r.parse("state")?;
            counts
                .entry(r.i64("job_id")?)
                .or_default()
                .add(state, r.i64("n")?);
        }
        for j in jobs {
            j.task_counts = counts.remove(&j.id).unwrap_or_default();
        }
        Ok(())
    }

    /// A job with its task counts, without tasks.
    pub async fn get_job_summary(&self, id: i64) -> Result<Job> {
        let row = self
            .db()
            .read_optional(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
                args![id],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("job", id))?;
        let mut job = [job_from_row(&row)?];
        self.fill_counts(&mut job).await?;
        let [job] = job;
        Ok(job)
    }

    /// A job with its tasks (dependency keys included) and every attempt.
    pub async fn get_job(&self, id: i64) -> Result<JobDetail> {
        let job = self.get_job_summary(id).await?;
        let task_rows = self
            .db()
            .read_all(
                "SELECT id, job_id, key, kind, state, queue, priority, payload, max_attempts, attempts_used, epoch, \
                        timeout_s, not_before, last_error, output, created_at, updated_at, finished_at \
                 FROM tasks WHERE job_id = $1 ORDER BY id",
                args![id],
            )
            .await?;
        let edges = self
            .db()
            .read_all(
                "SELECT d.task_id, u.key FROM task_deps d JOIN tasks t ON t.id = d.task_id \
                 JOIN tasks u ON u.id = d.depends_on WHERE t.job_id = $1 ORDER BY d.task_id, u.id",
                args![id],
            )
            .await?;
        let mut deps: HashMap<i64, Vec<String>> = HashMap::new();
        for e in edges {
            deps.entry(e.i64("task_id")?)
                .or_default()
                .push(e.text("key")?);
        }
        let attempt_rows = self
            .db()
            .read_all(
                &format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id IN (SELECT id FROM tasks WHERE job_id = $1) \
                     ORDER BY task_id, number"
                ),
                args![id],
            )
            .await?;
        let mut attempts: HashMap<i64, Vec<Attempt>> = HashMap::new();
        for r in &attempt_rows {
            let a = attempt_from_row(r)?;
            attempts.entry(a.task_id).or_default().push(a);
        }
        let mut tasks = Vec::with_capacity(task_rows.len());
        for r in &task_rows {
            let tid = r.i64("id")?;
            tasks.push(Task {
                id: tid,
                job_id: r.i64("job_id")?,
                key: r.text("key")?,
                kind: r.text("kind")?,
                state: r.parse("state")?,
                queue: r.text("queue")?,
                priority: r.i64("priority")?,
                payload: r.json("payload")?,
                depends_on: deps.remove(&tid).unwrap_or_default(),
                max_attempts: r.i64("max_attempts")?,
                attempts_used: r.i64("attempts_used")?,
                epoch: r.i64("epoch")?,
                timeout_s: r.opt_i64("timeout_s")?,
                not_before: r.i64("not_before")?,
                last_error: r.opt_text("last_error")?,
                output: r.opt_json("output")?,
                created_at: r.i64("created_at")?,
                updated_at: r.i64("updated_at")?,
                finished_at: r.opt_i64("finished_at")?,
                attempts: attempts.remove(&tid).unwrap_or_default(),
            });
        }
        Ok(JobDetail { job, tasks })
    }

    /// Jobs, newest first, filtered; `limit` 1–500; `cursor` from the
    /// previous page's `next_cursor`.
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Page<Job>> {
        let limit = limit.clamp(1, 500);
        let mut cond = vec!["1 = 1".to_string()];
        let mut args: Vec<Arg> = Vec::new();
        // Each `$?` of `sql` in turn becomes the parameter of its value.
        let mut push = |sql: &str, values: Vec<Arg>| {
            let mut sql = sql.to_string();
            for v in values {
                args.push(v);
                sql = sql.replacen("$?", &format!("${}", args.len()), 1);
            }
            cond.push(sql);
        };
        if let Some(s) = filter.state {
            push("state = $?", vec![s.as_str().into()]);
        }
        if let Some(q) = &filter.queue {
            push("queue = $?", vec![q.into()]);
        }
        if let Some(t) = &filter.tenant {
            push("tenant = $?", vec![t.into()]);
        }
        if let Some(tenants) = &filter.tenants {
            push("tenant @in($?)", vec![tenants.clone().into()]);
        }
        if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            // Digits name a job by id and are also looked for in names
            // ("2024" finds job 2024 and "release-2024").
            let pattern = format!("%{}%", escape_like(&q.to_lowercase()));
            match q.parse::<i64>() {
                Ok(id) => push(
                    "(id = $? OR LOWER(name) LIKE $? ESCAPE '\\')",
                    vec![id.into(), pattern.into()],
                ),
                Err(_) => push("LOWER(name) LIKE $? ESCAPE '\\'", vec![pattern.into()]),
            }
        }
        if let Some(c) = parse_cursor(cursor)? {
            push("id < $?", vec![c.into()]);
        }
        args.push((limit + 1).into());
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE {} ORDER BY id DESC LIMIT ${}",
            cond.join(" AND "),
            args.len()
        );
        let rows = self.db().read_all(&sql, args).await?;
        let mut items = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|j| j.id.to_string())
        } else {
            None
        };
        self.fill_counts(&mut items).await?;
        Ok(Page { items, next_cursor })
    }

    /// Dead-letter entries, newest first.
    pub async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Page<DeadLetterEntry>> {
        let limit = limit.clamp(1, 500);
        let (mut cond, mut args) = dead_letter_conditions(filter);
        if let Some(c) = parse_cursor(cursor)? {
            args.push(c.into());
            cond.push_str(&format!(" AND id < ${}", args.len()));
        }
        args.push((limit + 1).into());
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE {cond} ORDER BY id DESC LIMIT ${}",
            args.len()
        );
        let rows = self.db().read_all(&sql, args).await?;
        let mut items = rows
            .iter()
            .map(dead_letter_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|e| e.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub async fn get_dead_letter(&self, id: i64) -> Result<DeadLetterEntry> {
        let row = self
            .db()
            .read_optional(
                &format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = $1"),
                args![id],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("dead-letter entry", id))?;
        dead_letter_from_row(&row)
    }

    /// Open entries grouped by error fingerprint, largest group first.
    pub async fn dead_letter_groups(
        &self,
        tenants: Option<&[String]>,
    ) -> Result<Vec<DeadLetterGroup>> {
        let (only, tenant_arg): (&str, Arg) = match tenants {
            Some(t) => ("tenant @in($1)", t.to_vec().into()),
            None => ("$1 IS NULL", Option::<String>::None.into()),
        };
        let rows = self
            .db()
            .read_all(
                &format!(
                    "SELECT fingerprint, MIN(error) AS error, COUNT(*) AS n, MIN(created_at) AS first_at, \
                            MAX(created_at) AS last_at \
                     FROM dead_letters WHERE status = 'open' AND {only} \
                     GROUP BY fingerprint ORDER BY n DESC, fingerprint"
                ),
                vec![tenant_arg.clone()],
            )
            .await?;
        let queue_rows = self
            .db()
            .read_all(
                &format!(
                    "SELECT DISTINCT fingerprint, queue FROM dead_letters WHERE status = 'open' AND {only} \
                     ORDER BY fingerprint, queue"
                ),
                vec![tenant_arg],
            )
            .await?;
        let mut queues: HashMap<String, Vec<String>> = HashMap::new();
        for r in queue_rows {
            queues
                .entry(r.text("fingerprint")?)
                .or_default()
                .push(r.text("queue")?);
        }
        rows.iter()
            .map(|r| {
                let fingerprint = r.text("fingerprint")?;
                Ok(DeadLetterGroup {
                    queues: queues.remove(&fingerprint).unwrap_or_default(),
                    fingerprint,
                    error: r.text("error")?,
                    count: r.i64("n")?,
                    first_at: r.i64("first_at")?,
                    last_at: r.i64("last_at")?,
                })
            })
            .collect()
    }

    pub async fn list_nodes(&self) -> Result<Vec<Node>> {
        let rows = self
            .db()
            .read_all(
                "SELECT n.*, (SELECT COUNT(*) FROM attempts a WHERE a.node_id = n.id AND a.state = 'active') AS active_leases \
                 FROM nodes n ORDER BY n.name",
                args![],
            )
            .await?;
        rows.iter().map(node_from_row).collect()
    }

    pub async fn get_node(&self, id: i64) -> Result<Node> {
        let row = self
            .db()
            .read_optional(
                "SELECT n.*, (SELECT COUNT(*) FROM attempts a WHERE a.node_id = n.id AND a.state = 'active') AS active_leases \
                 FROM nodes n WHERE n.id = $1",
                args![id],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("node", id))?;
        node_from_row(&row)
    }

    /// Every queue with its depth figures.
    /// Every queue `tenants` have had work in (`None`: every queue), its
    /// depth counting their tasks and dead-letter entries only. A queue is
    /// shared; what waits in it is each tenant's own, and one only other
    /// tenants use is theirs to know of.
    pub async fn list_queues(&self, tenants: Option<&[String]>) -> Result<Vec<Queue>> {
        self.queues(None, tenants).await
    }

    /// One queue, its depth as [`Kernel::list_queues`] counts it.
    pub async fn get_queue(&self, name: &str, tenants: Option<&[String]>) -> Result<Queue> {
        self.queues(Some(name), tenants)
            .await?
            .pop()
            .ok_or_else(|| KernelError::not_found("queue", name))
    }

    async fn queues(&self, only: Option<&str>, tenants: Option<&[String]>) -> Result<Vec<Queue>> {
        let (filter, a) = match only {
            Some(n) => ("WHERE name = $1", args![n]),
            None => ("", args![]),
        };
        let used = self.queues_used_by(tenants).await?;
        let mut rows = self
            .db()
            .read_all(
                &format!("SELECT name, paused, paused_at FROM queues {filter} ORDER BY name"),
                a.clone(),
            )
            .await?;
        if let Some(used) = &used {
            let mut kept = Vec::with_capacity(rows.len());
            for r in rows {
                if used.contains(&r.text("name")?) {
                    kept.push(r);
                }
            }
            rows = kept;
        }
        let mut qfilter = if only.is_some() {
            "AND queue = $1".to_string()
        } else {
            String::new()
        };
        let mut a = a;
        if let Some(tenants) = tenants {
            a.push(crate::sql::Arg::Texts(tenants.to_vec()));
            qfilter.push_str(&format!(" AND tenant @in(${})", a.len()));
        }
        let depth_rows = self
            .db()
            .read_all(
                &format!(
                    "SELECT queue, state, COUNT(*) AS n, MIN(created_at) AS oldest FROM tasks \
                     WHERE state IN ('pending', 'ready', 'leased') {qfilter} GROUP BY queue, state"
                ),
                a.clone(),
            )
            .await?;
        let dl_rows = self
            .db()
            .read_all(
                &format!(
                    "SELECT queue, COUNT(*) AS n FROM dead_letters WHERE status = 'open' {qfilter} GROUP BY queue"
                ),
                a,
            )
            .await?;
        let mut depth: HashMap<String, (QueueDepth, Option<i64>)> = HashMap::new();
        for r in depth_rows {
            let entry = depth.entry(r.text("queue")?).or_default();
            let n = r.i64("n")?;
            match r.parse::<TaskState>("state")? {
                TaskState::Pending => entry.0.pending = n,
                TaskState::Ready => {
                    entry.0.ready = n;
                    entry.1 = r.opt_i64("oldest")?;
                }
                TaskState::Leased => entry.0.leased = n,
                _ => {}
            }
        }
        for r in dl_rows {
            depth
                .entry(r.text("queue")?)
                .or_default()
                .0
                .dead_letter_open = r.i64("n")?;
        }
        rows.iter()
            .map(|r| {
                let name = r.text("name")?;
                let (d, oldest) = depth.remove(&name).unwrap_or_default();
                Ok(Queue {
                    name,
                    paused: r.bool("paused")?,
                    paused_at: r.opt_i64("paused_at")?,
                    depth: d,
                    oldest_ready_at: oldest,
                })
            })
            .collect()
    }

    /// Every quota with its live usage.
    pub async fn list_quotas(&self) -> Result<Vec<Quota>> {
        let now = self.now();
        let rows = self
            .db()
            .read_all(
                "SELECT scope, name, max_concurrent, max_starts_per_minute, updated_at FROM quotas ORDER BY scope, name",
                args![],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let scope = r.parse("scope")?;
            let name = r.text("name")?;
            let column = match scope {
                crate::model::QuotaScope::Tenant => "tenant",
                crate::model::QuotaScope::Queue => "queue",
            };
            let usage = self
                .db()
                .read_one(
                    &format!(
                        "SELECT (SELECT COUNT(*) FROM attempts WHERE state = 'active' AND {column} = $1) AS concurrent, \
                                (SELECT COUNT(*) FROM quota_starts WHERE scope = $3 AND name = $1 AND started_at > $2) AS starts"
                    ),
                    args![name.as_str(), now - 60_000, column],
                )
                .await?;
            out.push(Quota {
                scope,
                name,
                limits: QuotaLimits {
                    max_concurrent: r.opt_i64("max_concurrent")?,
                    max_starts_per_minute: r.opt_i64("max_starts_per_minute")?,
                },
                usage: QuotaUsage {
                    concurrent: usage.i64("concurrent")?,
                    starts_last_minute: usage.i64("starts")?,
                },
                updated_at: r.i64("updated_at")?,
            });
        }
        Ok(out)
    }

    /// Lines of an attempt's log with `id > after`, oldest first.
    pub async fn attempt_log(
        &self,
        attempt_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>> {
        let limit = limit.clamp(1, 10_000);
        let rows = self
            .db()
            .read_all(
                "SELECT id, attempt_id, stream, line, ts FROM attempt_logs \
                 WHERE attempt_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                args![attempt_id, after, limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LogLine {
                    id: r.i64("id")?,
                    attempt_id: r.i64("attempt_id")?,
                    stream: r.parse("stream")?,
                    line: r.text("line")?,
                    ts: r.i64("ts")?,
                })
            })
            .collect()
    }

    /// Figures for the operator snapshot, counting only `tenants`' jobs,
    /// leases and dead-letter entries (`None`: every tenant). Nodes are
    /// shared by every tenant and always counted.
    pub async fn overview(&self, tenants: Option<&[String]>) -> Result<Overview> {
        let now = self.now();
        let mut o = Overview::default();
        // `$1` is the tenant list, or unused when every tenant counts.
        let (only, tenant_arg): (&str, Arg) = match tenants {
            Some(t) => ("tenant @in($1)", t.to_vec().into()),
            None => ("$1 IS NULL", Option::<String>::None.into()),
        };
        let counts = super::counts::JOB_COUNTS.source(self.backend());
        for r in self
            .db()
            .read_all(
                &format!(
                    "SELECT state, CAST(SUM(n) AS BIGINT) AS n FROM {counts} WHERE {only} \
                     GROUP BY state HAVING SUM(n) <> 0"
                ),
                vec![tenant_arg.clone()],
            )
            .await?
        {
            o.jobs_by_state.insert(r.text("state")?, r.i64("n")?);
        }
        let mut nodes = BTreeMap::new();
        for r in self
            .db()
            .read_all(
                "SELECT status, COUNT(*) AS n FROM nodes GROUP BY status",
                args![],
            )
            .await?
        {
            nodes.insert(r.text("status")?, r.i64("n")?);
        }
        o.nodes_by_status = nodes;
        let r = self
            .db()
            .read_one(
                &format!(
                    "SELECT (SELECT COUNT(*) FROM attempts WHERE state = 'active' AND {only}) AS active, \
                            (SELECT COUNT(*) FROM attempts WHERE state = 'active' AND lease_expires_at < $2 AND {only}) AS stale, \
                            (SELECT COUNT(*) FROM dead_letters WHERE status = 'open' AND {only}) AS dlq"
                ),
                vec![tenant_arg, now.into()],
            )
            .await?;
        o.active_leases = r.i64("active")?;
        o.stale_leases = r.i64("stale")?;
        o.dead_letter_open = r.i64("dlq")?;
        o.last_event_seq = self.last_event_seq().await?;
        Ok(o)
    }
}
