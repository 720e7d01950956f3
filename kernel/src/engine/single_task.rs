//! Completions of single-task jobs on Postgres, in one statement.
//!
//! A completion in a transaction costs seven round trips (BEGIN, the
//! attempts, the tasks, the outputs, the jobs, the events, COMMIT), and it
//! locks its jobs before it reads their tasks, so that two transactions
//! ending the last two tasks of one job cannot each miss the other's
//! success (see `complete_in_transaction` in `leases.rs`). A job of one task has no
//! such neighbour: its task's success always ends it, with nothing to
//! release downstream. So the completions of such jobs are written as one
//! statement, a transaction of its own, as a claim is (`PG_CLAIM`): the
//! attempts end, their tasks succeed (with their outputs), their jobs
//! succeed, and the events are appended, numbered as `events::insert`
//! numbers them and with the data the transaction gives them. Everything
//! else (tasks of larger jobs, stale or unknown reports, duplicates) goes
//! on to the transaction, which says why.
//!
//! The statement changes rows in the order everything else that ends an
//! attempt does (the transaction, a failure, the sweep, a cancel): the
//! attempts first, then the tasks and the jobs, so they wait for each
//! other instead of deadlocking. A task whose attempt it ended is always leased:
//! everything that moves a leased task elsewhere (cancel, the sweep, a
//! failure, a release) ends its active attempt in the same transaction,
//! and the attempt's row lock orders the two. Should that ever not hold,
//! the statement divides by zero, which undoes it whole, and the
//! transaction takes the reports and refuses them with a conflict.

use std::collections::HashSet;

use serde_json::json;

use crate::error::{KernelError, Result};
use crate::model::{event_type, Completion};
use crate::sql::{Arg, Conns};

use super::leases::task_succeeded_data;
use super::Kernel;

/// `$1` now, `$2`–`$5` the reports (attempt ids, tokens, epochs, outputs
/// or NULL), `$6`/`$7` the event types, `$8`/`$9` their data. Returns the
/// attempts it ended.
const PG_COMPLETE_SINGLE: &str = "\
WITH ended AS (UPDATE attempts a SET state = 'succeeded', finished_at = $1 \
    FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[]) AS p(id, token, epoch, output) \
    WHERE a.id = p.id AND a.lease_token = p.token AND a.epoch = p.epoch AND a.state || '' = 'active' \
      AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.job_id = a.job_id AND o.id <> a.task_id) \
    RETURNING a.id, a.task_id, a.job_id, a.tenant, a.node_id, p.output), \
done AS (UPDATE tasks t SET state = 'succeeded', finished_at = $1, updated_at = $1, \
        output = COALESCE(e.output, t.output) \
    FROM ended e WHERE t.id = e.task_id AND t.state || '' = 'leased' \
    RETURNING t.id, t.job_id), \
finished AS (UPDATE jobs j SET state = 'succeeded', finished_at = $1, updated_at = $1 \
    FROM done d WHERE j.id = d.job_id AND j.state || '' = 'running' \
    RETURNING j.id, j.tenant), \
new_events AS (\
    SELECT 0 AS part, e.id AS ord, $6::TEXT AS type, e.tenant, e.job_id, e.task_id, \
           e.id AS attempt_id, e.node_id, $8::TEXT AS data \
    FROM ended e \
    UNION ALL \
    SELECT 1, f.id, $7::TEXT, f.tenant, f.id, NULL, NULL, NULL, $9::TEXT \
    FROM finished f), \
logged AS (INSERT INTO events (seq, ts, type, tenant, job_id, task_id, attempt_id, node_id, data) \
    SELECT (pg_current_xact_id()::text::bigint << 20) + row_number() OVER (ORDER BY part, ord) - 1, \
           $1, type, tenant, job_id, task_id, attempt_id, node_id, data FROM new_events) \
SELECT e.id FROM ended e \
WHERE 1 / (CASE WHEN (SELECT COUNT(*) FROM done) = (SELECT COUNT(*) FROM ended) THEN 1 ELSE 0 END) = 1";

impl Kernel {
    /// Postgres: completes what it can in one statement (see the module),
    /// then the rest in a transaction. One answer per report, in order.
    pub(super) async fn complete_single_tasks_first(
        &self,
        items: &[&Completion],
    ) -> Result<Vec<Result<()>>> {
        // A failed statement changed nothing: the transaction then takes
        // every report and answers for them, its own failure included.
        // (Said in the log: a statement that always failed would otherwise
        // go unseen, every completion quietly taking the slower way.)
        let done = match self.complete_single_tasks(items).await {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, "single-task completions fell back to a transaction");
                HashSet::new()
            }
        };
        let mut answers: Vec<Option<Result<()>>> = Vec::with_capacity(items.len());
        let (mut rest, mut rest_at) = (Vec::new(), Vec::new());
        let mut answered = HashSet::new();
        for (i, c) in items.iter().enumerate() {
            if !done.contains(&c.attempt_id) {
                answers.push(None);
                rest.push(*c);
                rest_at.push(i);
            } else if answered.insert(c.attempt_id) {
                answers.push(Some(Ok(())));
            } else {
                answers.push(Some(Err(KernelError::StaleLease {
                    attempt_id: c.attempt_id,
                    reason: "completed twice in one batch".into(),
                })));
            }
        }
        if !rest.is_empty() {
            // What was completed above is committed and answered; a
            // failure of the rest is theirs alone, each written alone.
            let more = match self.complete_in_transaction(&rest).await {
                Ok(more) => more,
                Err(e) if rest.len() == 1 => vec![Err(e)],
                Err(_) => {
                    let mut more = Vec::with_capacity(rest.len());
                    for c in &rest {
                        more.push(match self.complete_in_transaction(&[*c]).await {
                            Ok(mut one) => one.pop().expect("one answer"),
                            Err(e) => Err(e),
                        });
                    }
                    more
                }
            };
            for (i, answer) in rest_at.into_iter().zip(more) {
                answers[i] = Some(answer);
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.expect("every report answered"))
            .collect())
    }

    /// The one statement: the attempt ids it ended.
    async fn complete_single_tasks(&self, items: &[&Completion]) -> Result<HashSet<i64>> {
        // A report given twice is written as given first (the statement
        // would pick either); the second is answered as a duplicate.
        let mut seen = HashSet::with_capacity(items.len());
        let mut items: Vec<&Completion> = items
            .iter()
            .copied()
            .filter(|c| seen.insert(c.attempt_id))
            .collect();
        // Bound in attempt-id order, the order a cancel locks attempts in
        // (see `cancel_in`). The answer is a set: the order is not in it.
        items.sort_by_key(|c| c.attempt_id);
        let now = self.now();
        let rows = self
            .db()
            .fetch_all_alone(
                Conns::Main,
                PG_COMPLETE_SINGLE,
                vec![
                    Arg::I64(now),
                    Arg::Ids(items.iter().map(|c| c.attempt_id).collect()),
                    Arg::Texts(items.iter().map(|c| c.proof.lease_token.clone()).collect()),
                    Arg::Ids(items.iter().map(|c| c.proof.epoch).collect()),
                    Arg::OptTexts(
                        items
                            .iter()
                            .map(|c| c.output.as_ref().map(|o| o.to_string()))
                            .collect(),
                    ),
                    Arg::Text(event_type::TASK_STATE_CHANGED.into()),
                    Arg::Text(event_type::JOB_STATE_CHANGED.into()),
                    Arg::Text(task_succeeded_data().to_string()),
                    Arg::Text(json!({ "from": "running", "to": "succeeded" }).to_string()),
                ],
            )
            .await?;
        let done = rows
            .iter()
            .map(|r| r.i64("id"))
            .collect::<std::result::Result<HashSet<_>, _>>()?;
        if !done.is_empty() {
            self.announce_events();
        }
        Ok(done)
    }
}
