//! What the JobEngine console pages read and do beyond the plain API: the
//! jobs search (filters by kind, time, task state and payload text, both
//! orders keyset-paginated on the id), bulk cancel and retry by ids or by
//! filter with a dry-run count and per-item results, queue health and the
//! quota board.
//!
//! A bulk action is one transaction of guarded transitions with their
//! events, like every operator action (`ops`). It never speaks HTTP: tenant
//! grants arrive as a plain list of tenant names.
//!
//! Cost with 1,000,000 jobs: the list walks an id index (or the state,
//! queue, tenant index of the filter) and stops after one page; the task
//! state filter starts from the active-task index; free text reads the
//! trigram index of job documents ([`job_text`]), a task kind the
//! `job_kinds` index (migration 0010).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::json;

use crate::db::Backend;
use crate::error::{KernelError, Result};
use crate::model::{
    event_type, BulkItemResult, BulkItemStatus, BulkJobAction, BulkJobOutcome, Job, JobRow,
    JobSearch, JobSelection, JobSort, JobState, Page, QueueHealth, QueueHealthReport, QuotaBoard,
    QuotaLimits, QuotaScope, QuotaStatus, QuotaUsage, TaskCounts, TaskState,
    SEARCHABLE_TASK_STATES,
};
use crate::sql::{args, Arg};

use super::read::{job_from_row, parse_cursor};
use super::{job_text, Kernel};

/// Most jobs one bulk call acts on.
pub const MAX_BULK_JOBS: i64 = 10_000;
/// Largest page of the jobs search.
pub const MAX_SEARCH_PAGE: i64 = 500;

const HOUR_MS: i64 = 60 * 60 * 1_000;

const COLUMNS: &str = "id, name, tenant, queue, priority, state, idempotency_key, created_at, \
                       started_at, finished_at, updated_at";

/// SQL conditions on `jobs` (aliased as the table itself) and their
/// arguments, numbered from `$1`.
struct Conditions {
    sql: Vec<String>,
    args: Vec<Arg>,
}

impl Conditions {
    fn new() -> Conditions {
        Conditions {
            sql: vec!["1 = 1".into()],
            args: Vec::new(),
        }
    }

    /// Adds `sql`, where each `$?` is replaced by the next argument's number.
    fn push(&mut self, sql: &str, values: Vec<Arg>) {
        let mut out = String::with_capacity(sql.len() + 8);
        let mut values = values.into_iter();
        let mut parts = sql.split("$?");
        out.push_str(parts.next().unwrap_or_default());
        for part in parts {
            self.args.push(values.next().expect("one value per $?"));
            out.push_str(&format!("${}", self.args.len()));
            out.push_str(part);
        }
        self.sql.push(out);
    }

    fn push_raw(&mut self, sql: &str) {
        self.sql.push(sql.to_string());
    }

    fn next_arg(&mut self, value: Arg) -> String {
        self.args.push(value);
        format!("${}", self.args.len())
    }

    fn joined(&self) -> String {
        self.sql.join(" AND ")
    }
}

fn text(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// How a search's free text is matched ([`job_text`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum TextMode {
    /// A condition on `jobs` alone: the job's id, or a document that
    /// contains the text (counts and bulk actions, which read every match).
    Filter,
    /// One page in id order, the id match left to the caller. SQLite: a
    /// condition on `job_text.body`, the query joining `job_text` first so
    /// the index's rowid order drives the page. Postgres: a semi-join the
    /// planner may drive from the trigram index or from the id order.
    Page,
}

/// What a SQLite page walks in job id order, joined before `jobs`: the
/// text index, the kind index, or the jobs themselves. (Postgres's planner
/// chooses its own way through the semi-joins.)
#[derive(Clone, Copy, PartialEq, Eq)]
enum Driver {
    Text,
    Kind,
    Jobs,
}

fn driver(search: &JobSearch, backend: Backend, mode: TextMode) -> Driver {
    if backend != Backend::Sqlite || mode != TextMode::Page {
        Driver::Jobs
    } else if text(&search.q).is_some() {
        Driver::Text
    } else if text(&search.kind).is_some() {
        Driver::Kind
    } else {
        Driver::Jobs
    }
}

/// The conditions of `search`, with `tenants` (the caller's grant) applied.
fn search_conditions(
    search: &JobSearch,
    tenants: Option<&[String]>,
    backend: Backend,
    mode: TextMode,
) -> Result<Conditions> {
    let mut c = Conditions::new();
    if let Some(s) = search.state {
        // A literal from a closed set: partial indexes on a state apply.
        c.push_raw(&format!("state = '{}'", s.as_str()));
    }
    if let Some(t) = text(&search.tenant) {
        c.push("tenant = $?", vec![t.into()]);
    }
    if let Some(t) = tenants.or(search.tenants.as_deref()) {
        c.push("tenant @in($?)", vec![t.to_vec().into()]);
    }
    match (search.task_state, text(&search.queue)) {
        (Some(ts), queue) => {
            if !SEARCHABLE_TASK_STATES.contains(&ts) {
                return Err(KernelError::validation(format!(
                    "task_state must be pending, ready or leased, not {ts}"
                )));
            }
            // The state is a literal from a closed set, so both planners
            // can use the partial index on active tasks.
            let state = ts.as_str();
            match queue {
                Some(q) => c.push(
                    &format!(
                        "id IN (SELECT job_id FROM tasks WHERE state IN ('pending', 'ready', 'leased') \
                         AND state = '{state}' AND queue = $?)"
                    ),
                    vec![q.into()],
                ),
                None => c.push_raw(&format!(
                    "id IN (SELECT job_id FROM tasks WHERE state IN ('pending', 'ready', 'leased') \
                     AND state = '{state}')"
                )),
            }
        }
        (None, Some(q)) => c.push("queue = $?", vec![q.into()]),
        (None, None) => {}
    }
    if let Some(k) = text(&search.kind) {
        let sql = match (driver(search, backend, mode), backend) {
            (Driver::Kind, _) => "job_kinds.kind = $?",
            (_, Backend::Postgres) if mode == TextMode::Page => {
                "EXISTS (SELECT 1 FROM job_kinds k WHERE k.job_id = jobs.id AND k.kind = $?)"
            }
            _ => "id IN (SELECT job_id FROM job_kinds WHERE kind = $?)",
        };
        c.push(sql, vec![k.into()]);
    }
    if let Some(from) = search.created_from {
        c.push("created_at >= $?", vec![from.into()]);
    }
    if let Some(to) = search.created_to {
        c.push("created_at < $?", vec![to.into()]);
    }
    if let Some(from) = search.finished_from {
        c.push("finished_at >= $?", vec![from.into()]);
    }
    if let Some(q) = text(&search.q) {
        let (raw, escaped) = job_text::patterns(q);
        let matches = |c: &mut Conditions, column: &str| match backend {
            Backend::Sqlite => {
                let raw = c.next_arg(raw.clone().into());
                let escaped = c.next_arg(escaped.clone().into());
                format!("{column} LIKE {raw} AND {column} LIKE {escaped} ESCAPE '\\'")
            }
            Backend::Postgres => {
                let escaped = c.next_arg(escaped.clone().into());
                format!("{column} ILIKE {escaped}")
            }
        };
        match (mode, backend) {
            (TextMode::Filter, _) => {
                let id = c.next_arg(q.parse::<i64>().ok().into());
                let key = job_text::key_column(backend);
                let m = matches(&mut c, "body");
                c.push_raw(&format!(
                    "(id = {id} OR id IN (SELECT {key} FROM job_text WHERE {m}))"
                ));
            }
            (TextMode::Page, Backend::Sqlite) => {
                let m = matches(&mut c, "job_text.body");
                c.push_raw(&m);
            }
            (TextMode::Page, Backend::Postgres) => {
                let m = matches(&mut c, "x.body");
                c.push_raw(&format!(
                    "EXISTS (SELECT 1 FROM job_text x WHERE x.job_id = jobs.id AND {m})"
                ));
            }
        }
    }
    Ok(c)
}

/// The condition on `state` that selects the jobs `action` applies to.
fn applicable_sql(action: BulkJobAction) -> &'static str {
    match action {
        BulkJobAction::Cancel => "state IN ('queued', 'running', 'blocked')",
        BulkJobAction::Retry => "state = 'failed'",
    }
}

impl Kernel {
    /// The jobs `search` selects, in `sort` order, `limit` (1–500) per page;
    /// `cursor` is the previous page's `next_cursor`. Each row carries its
    /// task counts and its number of attempts.
    pub async fn search_jobs(
        &self,
        search: &JobSearch,
        sort: JobSort,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Page<JobRow>> {
        let limit = limit.clamp(1, MAX_SEARCH_PAGE);
        let backend = self.backend();
        let cursor = parse_cursor(cursor)?;
        let (after, order) = match sort {
            JobSort::Newest => ("<", "DESC"),
            JobSort::Oldest => (">", "ASC"),
        };
        let q = text(&search.q);
        let (from, key) = match driver(search, backend, TextMode::Page) {
            Driver::Text => (
                "job_text CROSS JOIN jobs ON jobs.id = job_text.rowid",
                "job_text.rowid",
            ),
            Driver::Kind => (
                "job_kinds CROSS JOIN jobs ON jobs.id = job_kinds.job_id",
                "job_kinds.job_id",
            ),
            Driver::Jobs => ("jobs", "jobs.id"),
        };
        let mut c = search_conditions(search, None, backend, TextMode::Page)?;
        if let Some(id) = cursor {
            c.push(&format!("{key} {after} $?"), vec![id.into()]);
        }
        let limit_arg = c.next_arg((limit + 1).into());
        let sql = format!(
            "SELECT {COLUMNS} FROM {from} WHERE {} ORDER BY {key} {order} LIMIT {limit_arg}",
            c.joined()
        );
        let rows = self.db().read_all(&sql, c.args).await?;
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        // The text may also be a job's id: that job joins the page in order.
        if let Some(id) = q.and_then(|q| q.parse::<i64>().ok()) {
            let in_range = cursor.is_none_or(|c| match sort {
                JobSort::Newest => id < c,
                JobSort::Oldest => id > c,
            });
            if in_range && !jobs.iter().any(|j| j.id == id) {
                let plain = JobSearch {
                    q: None,
                    ..search.clone()
                };
                let mut c = search_conditions(&plain, None, backend, TextMode::Filter)?;
                c.push("id = $?", vec![id.into()]);
                let sql = format!("SELECT {COLUMNS} FROM jobs WHERE {}", c.joined());
                if let Some(row) = self.db().read_optional(&sql, c.args).await? {
                    jobs.push(job_from_row(&row)?);
                    match sort {
                        JobSort::Newest => jobs.sort_by_key(|j| std::cmp::Reverse(j.id)),
                        JobSort::Oldest => jobs.sort_by_key(|j| j.id),
                    }
                    jobs.truncate(limit as usize + 1);
                }
            }
        }
        let next_cursor = if jobs.len() as i64 > limit {
            jobs.truncate(limit as usize);
            jobs.last().map(|j| j.id.to_string())
        } else {
            None
        };
        let items = self.job_rows(jobs).await?;
        Ok(Page { items, next_cursor })
    }

    /// Task counts and attempt totals for a page of jobs: two indexed reads.
    async fn job_rows(&self, jobs: Vec<Job>) -> Result<Vec<JobRow>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
        let mut counts: HashMap<i64, TaskCounts> = HashMap::new();
        for r in self
            .db()
            .read_all(
                "SELECT job_id, state, COUNT(*) AS n FROM tasks WHERE job_id @in($1) GROUP BY job_id, state",
                args![ids.clone()],
            )
            .await?
        {
            let state: TaskState = r.parse("state")?;
            counts
                .entry(r.i64("job_id")?)
                .or_default()
                .add(state, r.i64("n")?);
        }
        let mut attempts: HashMap<i64, i64> = HashMap::new();
        for r in self
            .db()
            .read_all(
                "SELECT t.job_id, COUNT(a.id) AS n FROM tasks t JOIN attempts a ON a.task_id = t.id \
                 WHERE t.job_id @in($1) GROUP BY t.job_id",
                args![ids],
            )
            .await?
        {
            attempts.insert(r.i64("job_id")?, r.i64("n")?);
        }
        Ok(jobs
            .into_iter()
            .map(|mut job| {
                job.task_counts = counts.remove(&job.id).unwrap_or_default();
                JobRow {
                    attempts: attempts.get(&job.id).copied().unwrap_or(0),
                    job,
                }
            })
            .collect())
    }

    /// How many jobs `search` selects.
    pub async fn count_jobs(&self, search: &JobSearch) -> Result<i64> {
        let c = search_conditions(search, None, self.backend(), TextMode::Filter)?;
        let sql = format!("SELECT COUNT(*) AS n FROM jobs WHERE {}", c.joined());
        Ok(self.db().read_one(&sql, c.args).await?.i64("n")?)
    }

    /// Cancels or retries the selected jobs, or with `dry_run` only counts
    /// them. `tenants` is the caller's grant (`None`: every tenant): a job
    /// of another tenant named by id is answered `not_found`, a filter is
    /// narrowed to the grant. A filter selecting more than
    /// [`MAX_BULK_JOBS`] applicable jobs acts on the newest that many.
    pub async fn bulk_jobs(
        &self,
        action: BulkJobAction,
        selection: &JobSelection,
        tenants: Option<&[String]>,
        dry_run: bool,
    ) -> Result<BulkJobOutcome> {
        super::again_on_deadlock("bulk job action", || {
            self.bulk_jobs_once(action, selection, tenants, dry_run)
        })
        .await
    }

    async fn bulk_jobs_once(
        &self,
        action: BulkJobAction,
        selection: &JobSelection,
        tenants: Option<&[String]>,
        dry_run: bool,
    ) -> Result<BulkJobOutcome> {
        let mut outcome = BulkJobOutcome {
            action,
            dry_run,
            matched: 0,
            applicable: 0,
            limit: MAX_BULK_JOBS,
            truncated: false,
            results: Vec::new(),
        };
        let mut w = self.begin().await?;
        // A cancel locks its rows in the order reports do (see
        // `cancel_in`), so it reads its targets without a lock; a retry
        // locks the failed jobs it reads.
        let lock = match action {
            BulkJobAction::Cancel => "",
            BulkJobAction::Retry => "@lock",
        };
        // (id, state, tenant) of the jobs to act on, newest first.
        let mut targets: Vec<(i64, JobState, String)> = Vec::new();
        match selection {
            JobSelection::Ids(ids) => {
                let mut ids = ids.clone();
                ids.sort_unstable_by_key(|id| std::cmp::Reverse(*id));
                ids.dedup();
                if ids.is_empty() {
                    return Err(KernelError::validation("select at least one job"));
                }
                if ids.len() as i64 > MAX_BULK_JOBS {
                    return Err(KernelError::validation(format!(
                        "select at most {MAX_BULK_JOBS} jobs by id, or select by filter"
                    )));
                }
                let rows =
                    w.tx.fetch_all(
                        &format!("SELECT id, state, tenant FROM jobs WHERE id @in($1) ORDER BY id DESC {lock}"),
                        args![ids.clone()],
                    )
                    .await?;
                let mut found: BTreeMap<i64, (JobState, String)> = BTreeMap::new();
                for r in rows {
                    let tenant = r.text("tenant")?;
                    if tenants.is_none_or(|t| t.contains(&tenant)) {
                        found.insert(r.i64("id")?, (r.parse("state")?, tenant));
                    }
                }
                for id in ids {
                    match found.remove(&id) {
                        None => outcome.results.push(BulkItemResult {
                            job_id: id,
                            status: BulkItemStatus::NotFound,
                            from: None,
                            message: format!("job {id} does not exist"),
                        }),
                        Some((state, tenant)) => {
                            outcome.matched += 1;
                            if action.applies_to(state) {
                                outcome.applicable += 1;
                                targets.push((id, state, tenant));
                            } else {
                                outcome.results.push(BulkItemResult {
                                    job_id: id,
                                    status: BulkItemStatus::Skipped,
                                    from: Some(state),
                                    message: skip_reason(action, state),
                                });
                            }
                        }
                    }
                }
            }
            JobSelection::Filter(search) => {
                let c = search_conditions(search, tenants, w.tx.backend(), TextMode::Filter)?;
                let row =
                    w.tx.fetch_one(
                        &format!(
                            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0) AS a \
                             FROM jobs WHERE {}",
                            applicable_sql(action),
                            c.joined()
                        ),
                        c.args.clone(),
                    )
                    .await?;
                outcome.matched = row.i64("n")?;
                outcome.applicable = row.i64("a")?;
                outcome.truncated = outcome.applicable > MAX_BULK_JOBS;
                if !dry_run {
                    let mut c = c;
                    let limit = c.next_arg(MAX_BULK_JOBS.into());
                    for r in w
                        .tx
                        .fetch_all(
                            &format!(
                                "SELECT id, state, tenant FROM jobs WHERE {} AND {} ORDER BY id DESC LIMIT {limit} {lock}",
                                c.joined(),
                                applicable_sql(action)
                            ),
                            c.args,
                        )
                        .await?
                    {
                        targets.push((r.i64("id")?, r.parse("state")?, r.text("tenant")?));
                    }
                }
            }
        }
        if dry_run {
            outcome.results.clear();
            return Ok(outcome);
        }
        // Each job acted on, with the state it left.
        let changed: HashMap<i64, JobState> = match action {
            BulkJobAction::Cancel => self
                .cancel_in(&mut w, &targets)
                .await?
                .into_iter()
                .collect(),
            BulkJobAction::Retry => self
                .retry_in(&mut w, &targets)
                .await?
                .into_iter()
                .map(|id| (id, JobState::Failed))
                .collect(),
        };
        self.finish(w).await?;
        let mut acted: Vec<BulkItemResult> = targets
            .iter()
            .map(|(id, from, _)| {
                if let Some(from) = changed.get(id) {
                    BulkItemResult {
                        job_id: *id,
                        status: BulkItemStatus::Changed,
                        from: Some(*from),
                        message: match action {
                            BulkJobAction::Cancel => "cancelled".into(),
                            BulkJobAction::Retry => {
                                "retried: its failed tasks are ready again".into()
                            }
                        },
                    }
                } else {
                    BulkItemResult {
                        job_id: *id,
                        status: BulkItemStatus::Skipped,
                        from: Some(*from),
                        message: "the job changed state concurrently".into(),
                    }
                }
            })
            .collect();
        acted.append(&mut outcome.results);
        acted.sort_by_key(|r| std::cmp::Reverse(r.job_id));
        outcome.results = acted;
        Ok(outcome)
    }

    /// Cancels `targets` (unfinished jobs as last read, not locked)
    /// set-wise: their active attempts, then their unfinished tasks, then
    /// the jobs still unfinished, each by a guarded update from the state
    /// read under the job's lock. Answers the jobs cancelled, each with the
    /// state it was cancelled from.
    ///
    /// Rows are taken in the order every report and claim takes them:
    /// attempts (in id order), then tasks, then jobs. A completion holding
    /// an attempt of a target job is waited for before any of its tasks or
    /// its job is touched, so the two cannot deadlock; a claim holding a
    /// ready task is waited for at the tasks, and the attempt it opened is
    /// ended after them.
    pub(super) async fn cancel_in(
        &self,
        w: &mut super::Work,
        targets: &[(i64, JobState, String)],
    ) -> Result<Vec<(i64, JobState)>> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let now = w.now;
        let mut ids: Vec<i64> = targets.iter().map(|t| t.0).collect();
        ids.sort_unstable();
        let tenant_of: HashMap<i64, &str> = targets.iter().map(|t| (t.0, t.2.as_str())).collect();
        self.end_attempts_of(w, &ids, &tenant_of).await?;
        let tasks = w
            .tx
            .fetch_all(
                "SELECT id, job_id, state FROM tasks \
                 WHERE job_id @in($1) AND state IN ('pending', 'ready', 'leased') ORDER BY id @lock",
                args![ids.clone()],
            )
            .await?;
        let task_ids = tasks
            .iter()
            .map(|t| t.i64("id"))
            .collect::<Result<Vec<_>, _>>()?;
        w.tx.execute(
            "UPDATE tasks SET state = 'cancelled', finished_at = $1, updated_at = $1 WHERE id @in($2)",
            args![now, task_ids],
        )
        .await?;
        for t in &tasks {
            let job = t.i64("job_id")?;
            let from: TaskState = t.parse("state")?;
            w.event(event_type::TASK_STATE_CHANGED, tenant_of.get(&job).copied())
                .job(job)
                .task(t.i64("id")?)
                .data(json!({ "from": from, "to": "cancelled" }));
        }
        // A claim that leased a task of these jobs after the attempts
        // above ended committed before its task was cancelled: its attempt
        // ends too.
        self.end_attempts_of(w, &ids, &tenant_of).await?;
        let mut by_state: BTreeMap<JobState, Vec<i64>> = BTreeMap::new();
        for r in
            w.tx.fetch_all(
                "SELECT id, state FROM jobs WHERE id @in($1) ORDER BY id @lock",
                args![ids],
            )
            .await?
        {
            let state: JobState = r.parse("state")?;
            if !state.is_terminal() {
                by_state.entry(state).or_default().push(r.i64("id")?);
            }
        }
        let mut changed = Vec::new();
        for (from, ids) in by_state {
            for r in
                w.tx.fetch_all(
                    "UPDATE jobs SET state = 'cancelled', finished_at = $1, updated_at = $1 \
                     WHERE id @in($2) AND state || '' = $3 RETURNING id",
                    args![now, ids, from.as_str()],
                )
                .await?
            {
                let id = r.i64("id")?;
                w.event(event_type::JOB_STATE_CHANGED, tenant_of.get(&id).copied())
                    .job(id)
                    .data(json!({ "from": from, "to": "cancelled" }));
                changed.push((id, from));
            }
        }
        Ok(changed)
    }

    /// Ends the active attempts of jobs `ids` (sorted) as cancelled,
    /// taking them in id order, with their events.
    async fn end_attempts_of(
        &self,
        w: &mut super::Work,
        ids: &[i64],
        tenant_of: &HashMap<i64, &str>,
    ) -> Result<()> {
        for a in w
            .tx
            .fetch_all(
                "UPDATE attempts SET state = 'cancelled', finished_at = $1, error = 'job cancelled' \
                 WHERE id IN (SELECT id FROM attempts WHERE job_id @in($2) AND state = 'active' ORDER BY id @lock) \
                   AND state = 'active' RETURNING id, task_id, job_id, node_id",
                args![w.now, ids.to_vec()],
            )
            .await?
        {
            let job = a.i64("job_id")?;
            w.event(event_type::LEASE_RELEASED, tenant_of.get(&job).copied())
                .job(job)
                .task(a.i64("task_id")?)
                .attempt(a.i64("id")?)
                .node(a.opt_i64("node_id")?)
                .data(json!({ "reason": "job cancelled", "attempt_state": "cancelled" }));
        }
        Ok(())
    }

    /// Retries `targets` (failed jobs, locked) as `retry_job` does, each:
    /// open dead-letter entries of its failed tasks are marked replayed,
    /// the tasks get a fresh budget, skipped tasks downstream wait again.
    async fn retry_in(
        &self,
        w: &mut super::Work,
        targets: &[(i64, JobState, String)],
    ) -> Result<Vec<i64>> {
        let mut changed = Vec::new();
        for (job_id, _, tenant) in targets {
            if !self.retry_failed_tasks_of(w, *job_id, tenant).await? {
                continue;
            }
            changed.push(*job_id);
        }
        self.derive_jobs(w, &changed).await?;
        Ok(changed)
    }

    /// Queue health: per queue its task depth (ready, leased, pending), the
    /// jobs that failed in the last hour, the oldest ready task and whether
    /// it is paused. With `tenants`, only those tenants' tasks and jobs are
    /// counted (queues themselves are shared).
    pub async fn queue_health(&self, tenants: Option<&[String]>) -> Result<QueueHealthReport> {
        let now = self.now();
        let used = self.queues_used_by(tenants).await?;
        let mut queues: BTreeMap<String, QueueHealth> = BTreeMap::new();
        let blank = |name: String| QueueHealth {
            name,
            paused: false,
            paused_at: None,
            ready: 0,
            leased: 0,
            pending: 0,
            failed_last_hour: 0,
            oldest_ready_at: None,
        };
        for r in self
            .db()
            .read_all("SELECT name, paused, paused_at FROM queues", args![])
            .await?
        {
            let name = r.text("name")?;
            if !used.as_ref().is_none_or(|u| u.contains(&name)) {
                continue;
            }
            let mut q = blank(name.clone());
            q.paused = r.bool("paused")?;
            q.paused_at = r.opt_i64("paused_at")?;
            queues.insert(name, q);
        }
        let (only, tenant_arg): (&str, Arg) = match tenants {
            Some(t) => ("tenant @in($1)", t.to_vec().into()),
            None => ("$1 IS NULL", Option::<String>::None.into()),
        };
        let counts = super::counts::TASK_COUNTS.source(self.backend());
        for r in self
            .db()
            .read_all(
                &format!(
                    "SELECT queue, state, CAST(SUM(n) AS BIGINT) AS n FROM {counts} \
                     WHERE {only} GROUP BY queue, state HAVING SUM(n) <> 0"
                ),
                vec![tenant_arg.clone()],
            )
            .await?
        {
            let name = r.text("queue")?;
            let q = queues.entry(name.clone()).or_insert_with(|| blank(name));
            let n = r.i64("n")?;
            match r.parse::<TaskState>("state")? {
                TaskState::Pending => q.pending = n,
                TaskState::Ready => q.ready = n,
                TaskState::Leased => q.leased = n,
                _ => {}
            }
        }
        // The oldest ready task of each queue that has one: the first
        // entry of the queue's ready range in `tasks_queue_active`. SQLite
        // uses a partial index only when the query repeats its condition
        // (else it walks every ready task of `tasks_claim` and sorts).
        for q in queues.values_mut().filter(|q| q.ready > 0) {
            q.oldest_ready_at = self
                .db()
                .read_optional(
                    &format!(
                        "SELECT created_at FROM tasks WHERE queue = $2 AND state = 'ready' \
                         AND state IN ('pending', 'ready', 'leased') AND {only} \
                         ORDER BY created_at LIMIT 1"
                    ),
                    vec![tenant_arg.clone(), q.name.clone().into()],
                )
                .await?
                .map(|r| r.i64("created_at"))
                .transpose()?;
        }
        for r in self
            .db()
            .read_all(
                &format!(
                    "SELECT queue, COUNT(*) AS n FROM jobs WHERE finished_at >= $2 AND state = 'failed' \
                     AND {only} GROUP BY queue"
                ),
                vec![tenant_arg, (now - HOUR_MS).into()],
            )
            .await?
        {
            let name = r.text("queue")?;
            queues
                .entry(name.clone())
                .or_insert_with(|| blank(name))
                .failed_last_hour = r.i64("n")?;
        }
        Ok(QueueHealthReport {
            measured_at: now,
            tenants: tenants.map(<[String]>::to_vec),
            queues: queues.into_values().collect(),
        })
    }

    /// The queues `tenants` have had work in (`None` for every tenant:
    /// every queue). A queue is shared, but one only other tenants use is
    /// theirs to know of. The kept counts hold a row per queue, tenant and
    /// state once a task of that tenant has been active in that queue.
    pub(super) async fn queues_used_by(
        &self,
        tenants: Option<&[String]>,
    ) -> Result<Option<BTreeSet<String>>> {
        let Some(tenants) = tenants else {
            return Ok(None);
        };
        let counts = super::counts::TASK_COUNTS.source(self.backend());
        let rows = self
            .db()
            .read_all(
                &format!("SELECT DISTINCT queue FROM {counts} WHERE tenant @in($1)"),
                args![tenants.to_vec()],
            )
            .await?;
        let mut used = BTreeSet::new();
        for r in rows {
            used.insert(r.text("queue")?);
        }
        Ok(Some(used))
    }

    /// Every tenant (of `tenants`, when given) and every queue with its
    /// quota, if any, and live usage: active leases now, and starts in the
    /// last minute where a starts limit makes the kernel count them.
    pub async fn quota_board(&self, tenants: Option<&[String]>) -> Result<QuotaBoard> {
        let now = self.now();
        let mut items: BTreeMap<(QuotaScope, String), QuotaStatus> = BTreeMap::new();
        let blank = |scope: QuotaScope, name: String| QuotaStatus {
            scope,
            name,
            configured: false,
            limits: QuotaLimits::default(),
            usage: QuotaUsage::default(),
            starts_tracked: false,
            exhausted: false,
            updated_at: None,
        };
        let used = self.queues_used_by(tenants).await?;
        let visible = |scope: QuotaScope, name: &str| match scope {
            QuotaScope::Queue => used.as_ref().is_none_or(|u| u.contains(name)),
            QuotaScope::Tenant => tenants.is_none_or(|t| t.iter().any(|x| x == name)),
        };
        for (scope, table) in [
            (QuotaScope::Tenant, "tenants"),
            (QuotaScope::Queue, "queues"),
        ] {
            for r in self
                .db()
                .read_all(&format!("SELECT name FROM {table}"), args![])
                .await?
            {
                let name = r.text("name")?;
                if visible(scope, &name) {
                    items.insert((scope, name.clone()), blank(scope, name));
                }
            }
        }
        for r in self
            .db()
            .read_all(
                "SELECT scope, name, max_concurrent, max_starts_per_minute, exhausted, updated_at FROM quotas",
                args![],
            )
            .await?
        {
            let scope: QuotaScope = r.parse("scope")?;
            let name = r.text("name")?;
            if !visible(scope, &name) {
                continue;
            }
            let q = items
                .entry((scope, name.clone()))
                .or_insert_with(|| blank(scope, name));
            q.configured = true;
            q.limits = QuotaLimits {
                max_concurrent: r.opt_i64("max_concurrent")?,
                max_starts_per_minute: r.opt_i64("max_starts_per_minute")?,
            };
            q.starts_tracked = q.limits.max_starts_per_minute.is_some();
            q.exhausted = r.bool("exhausted")?;
            q.updated_at = Some(r.i64("updated_at")?);
        }
        for (scope, column) in [(QuotaScope::Tenant, "tenant"), (QuotaScope::Queue, "queue")] {
            for r in self
                .db()
                .read_all(
                    &format!(
                        "SELECT {column} AS name, COUNT(*) AS n FROM attempts WHERE state = 'active' GROUP BY {column}"
                    ),
                    args![],
                )
                .await?
            {
                if let Some(q) = items.get_mut(&(scope, r.text("name")?)) {
                    q.usage.concurrent = r.i64("n")?;
                }
            }
        }
        for r in self
            .db()
            .read_all(
                "SELECT scope, name, COUNT(*) AS n FROM quota_starts WHERE started_at > $1 GROUP BY scope, name",
                args![now - 60_000],
            )
            .await?
        {
            let key = (r.parse::<QuotaScope>("scope")?, r.text("name")?);
            if let Some(q) = items.get_mut(&key) {
                if q.starts_tracked {
                    q.usage.starts_last_minute = r.i64("n")?;
                }
            }
        }
        Ok(QuotaBoard {
            measured_at: now,
            items: items.into_values().collect(),
        })
    }
}

fn skip_reason(action: BulkJobAction, state: JobState) -> String {
    match action {
        BulkJobAction::Cancel => format!("already {state}: only unfinished jobs can be cancelled"),
        BulkJobAction::Retry => format!("{state}: only failed jobs can be retried"),
    }
}
