//! The jobs list's free-text search: one document per job (its name and
//! every task's payload, one per line) in a trigram index — SQLite's FTS5
//! `trigram` tokenizer, Postgres's `pg_trgm` — so a substring search reads
//! the index rather than every job's tasks (migration 0008).
//!
//! The kernel keeps the documents in the transactions that change what they
//! hold: written at submit, rewritten when a replay edits a payload,
//! deleted with their job by retention.
//!
//! A search is case-insensitive, like the list's other filters. On SQLite the
//! index serves a `LIKE` without an `ESCAPE` clause only, so a search is two
//! conditions: the pattern as typed (`%` and `_` left as wildcards; the index
//! narrows to a superset) and the escaped pattern that decides.

use serde::Serialize;

use crate::db::Backend;
use crate::error::Result;
use crate::sql::{args, Arg, Tx};

use super::ops::escape_like;
use super::submit::{ids, texts};

/// The column holding the job id.
pub(crate) fn key_column(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "rowid",
        Backend::Postgres => "job_id",
    }
}

/// The document of a job with `name` and its tasks' `payloads`.
pub(crate) fn document<'a>(name: &str, payloads: impl Iterator<Item = &'a str>) -> String {
    let mut body = String::from(name);
    for p in payloads {
        body.push('\n');
        body.push_str(p);
    }
    body
}

#[derive(Serialize)]
struct Doc<'a> {
    job_id: i64,
    body: &'a str,
}

/// The documents of new jobs, `(job id, document)`, as a JSON array of
/// `{job_id, body}`: the rows of [`insert_sql`].
pub(crate) fn rows_json(docs: &[(i64, String)]) -> String {
    let rows: Vec<Doc> = docs
        .iter()
        .map(|(job_id, body)| Doc {
            job_id: *job_id,
            body,
        })
        .collect();
    serde_json::to_string(&rows).expect("rows")
}

/// The documents of new jobs as the two arrays the Postgres [`insert_sql`]
/// reads.
pub(crate) fn columns(docs: &[(i64, String)]) -> Vec<Arg> {
    vec![ids(docs, |d| d.0), texts(docs, |d| &d.1)]
}

/// Inserts the documents of new jobs: on SQLite the JSON array of
/// [`rows_json`] as parameter `$param`; on Postgres their [`columns`] as
/// parameters `$param` and `$param + 1`.
pub(crate) fn insert_sql(backend: Backend, param: usize) -> String {
    match backend {
        Backend::Sqlite => super::submit::sqlite_rows_insert_sql(
            "job_text",
            &[("rowid", "job_id"), ("body", "body")],
            param,
        ),
        Backend::Postgres => super::submit::unnest_insert_sql(
            "job_text",
            &[("job_id", "BIGINT"), ("body", "TEXT")],
            param,
        ),
    }
}

/// Writes a job's document again from its rows (a payload changed).
pub(crate) async fn refresh(tx: &mut Tx, job_id: i64) -> Result<()> {
    let backend = tx.backend();
    let key = key_column(backend);
    let (nl, concat) = match backend {
        Backend::Sqlite => ("char(10)", "group_concat(t.payload, char(10))"),
        Backend::Postgres => ("chr(10)", "string_agg(t.payload, chr(10) ORDER BY t.id)"),
    };
    tx.execute(
        &format!("DELETE FROM job_text WHERE {key} = $1"),
        args![job_id],
    )
    .await?;
    tx.execute(
        &format!(
            "INSERT INTO job_text ({key}, body) SELECT j.id, j.name || {nl} || \
             COALESCE((SELECT {concat} FROM tasks t WHERE t.job_id = j.id), '') FROM jobs j WHERE j.id = $1"
        ),
        args![job_id],
    )
    .await?;
    Ok(())
}

/// Deletes the documents of `job_ids`.
pub(crate) async fn delete(tx: &mut Tx, job_ids: Vec<i64>) -> Result<()> {
    let key = key_column(tx.backend());
    tx.execute(
        &format!("DELETE FROM job_text WHERE {key} @in($1)"),
        args![job_ids],
    )
    .await?;
    Ok(())
}

/// The `LIKE` patterns of a search for `text`: as typed (for the SQLite
/// index) and escaped (exact).
pub(crate) fn patterns(text: &str) -> (String, String) {
    (format!("%{text}%"), format!("%{}%", escape_like(text)))
}
