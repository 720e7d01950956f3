//! A thin layer that lets the engine write each statement once for both
//! backends.
//!
//! Statements use `$1`-style parameters (SQLite accepts them too) and a few
//! dialect markers that [`dialect`] rewrites per backend:
//!
//! | marker | SQLite | Postgres |
//! |---|---|---|
//! | `@in($n)` (a list parameter) | `IN (SELECT value FROM json_each($n))` | `= ANY($n)` |
//! | `@skip_locked` | (nothing: one writer) | `FOR UPDATE SKIP LOCKED` |
//! | `@lock` | (nothing) | `FOR UPDATE` |
//! | `@obj(` | `json_object(` | `json_build_object(` |
//! | `@token` | 128 random bits, hex | 128 random bits, hex |
//!
//! Rows come back as [`Row`], read by column name. This module knows nothing
//! of jobs or tasks; it must never grow business rules.

use std::borrow::Cow;

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Postgres, Row as _, Sqlite, Transaction};

use crate::db::{Backend, Db, Pools};

/// A bound parameter.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    I64(i64),
    OptI64(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Bool(bool),
    /// A list for `@in($n)`: a JSON array on SQLite, an array on Postgres.
    Ids(Vec<i64>),
    Texts(Vec<String>),
    /// A list with gaps (`NULL`s): a JSON array on SQLite, an array on Postgres.
    OptTexts(Vec<Option<String>>),
    /// Numbers with gaps (`NULL`s): a JSON array on SQLite, an array on Postgres.
    OptIds(Vec<Option<i64>>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::I64(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptI64(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_string())
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::OptText(v.map(str::to_string))
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}
impl From<Vec<i64>> for Arg {
    fn from(v: Vec<i64>) -> Self {
        Arg::Ids(v)
    }
}
impl From<&[i64]> for Arg {
    fn from(v: &[i64]) -> Self {
        Arg::Ids(v.to_vec())
    }
}
impl From<Vec<String>> for Arg {
    fn from(v: Vec<String>) -> Self {
        Arg::Texts(v)
    }
}

/// `args![a, b, c]`: a parameter list.
macro_rules! args {
    () => { Vec::<$crate::sql::Arg>::new() };
    ($($x:expr),+ $(,)?) => { vec![$($crate::sql::Arg::from($x)),+] };
}
pub(crate) use args;

/// Rewrites the dialect markers of `sql` for `backend`.
pub(crate) fn dialect(sql: &str, backend: Backend) -> Cow<'_, str> {
    if !sql.contains('@') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("@in(") {
            let close = after.find(')').expect("@in( without )");
            let param = &after[..close];
            match backend {
                Backend::Sqlite => {
                    out.push_str("IN (SELECT value FROM json_each(");
                    out.push_str(param);
                    out.push_str("))");
                }
                Backend::Postgres => {
                    out.push_str("= ANY(");
                    out.push_str(param);
                    out.push(')');
                }
            }
            rest = &after[close + 1..];
        } else if let Some(after) = tail.strip_prefix("@skip_locked") {
            if backend == Backend::Postgres {
                out.push_str("FOR UPDATE SKIP LOCKED");
            }
            rest = after;
        } else if let Some(after) = tail.strip_prefix("@lock") {
            if backend == Backend::Postgres {
                out.push_str("FOR UPDATE");
            }
            rest = after;
        } else if let Some(after) = tail.strip_prefix("@obj(") {
            out.push_str(match backend {
                Backend::Sqlite => "json_object(",
                Backend::Postgres => "json_build_object(",
            });
            rest = after;
        } else if let Some(after) = tail.strip_prefix("@token") {
            out.push_str(match backend {
                Backend::Sqlite => "lower(hex(randomblob(16)))",
                Backend::Postgres => "replace(gen_random_uuid()::text, '-', '')",
            });
            rest = after;
        } else {
            out.push('@');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn bind_sqlite<'q>(
    mut q: Query<'q, Sqlite, SqliteArguments<'q>>,
    args: Vec<Arg>,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    for a in args {
        q = match a {
            Arg::I64(v) => q.bind(v),
            Arg::OptI64(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Ids(v) => q.bind(serde_json::to_string(&v).expect("ids serialise")),
            Arg::Texts(v) => q.bind(serde_json::to_string(&v).expect("texts serialise")),
            Arg::OptTexts(v) => q.bind(serde_json::to_string(&v).expect("texts serialise")),
            Arg::OptIds(v) => q.bind(serde_json::to_string(&v).expect("ids serialise")),
        };
    }
    q
}

fn bind_pg(
    mut q: Query<'_, Postgres, PgArguments>,
    args: Vec<Arg>,
) -> Query<'_, Postgres, PgArguments> {
    for a in args {
        q = match a {
            Arg::I64(v) => q.bind(v),
            Arg::OptI64(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Ids(v) => q.bind(v),
            Arg::Texts(v) => q.bind(v),
            Arg::OptTexts(v) => q.bind(v),
            Arg::OptIds(v) => q.bind(v),
        };
    }
    q
}

/// A result row of either backend, read by column name.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Pg(PgRow),
}

impl Row {
    pub fn i64(&self, col: &str) -> Result<i64, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(col),
            Row::Pg(r) => r.try_get(col),
        }
    }
    pub fn opt_i64(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(col),
            Row::Pg(r) => r.try_get(col),
        }
    }
    pub fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(col),
            Row::Pg(r) => r.try_get(col),
        }
    }
    pub fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(col),
            Row::Pg(r) => r.try_get(col),
        }
    }
    pub fn bool(&self, col: &str) -> Result<bool, sqlx::Error> {
        match self {
            Row::Sqlite(r) => r.try_get(col),
            Row::Pg(r) => r.try_get(col),
        }
    }
    /// A column holding one of the model's named enums.
    pub fn parse<T>(&self, col: &str) -> Result<T, sqlx::Error>
    where
        T: std::str::FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let text = self.text(col)?;
        text.parse().map_err(|e| sqlx::Error::ColumnDecode {
            index: col.to_string(),
            source: Box::new(e),
        })
    }
    /// A TEXT column holding JSON.
    pub fn json(&self, col: &str) -> Result<serde_json::Value, sqlx::Error> {
        let text = self.text(col)?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
            index: col.to_string(),
            source: Box::new(e),
        })
    }
    pub fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>, sqlx::Error> {
        match self.opt_text(col)? {
            None => Ok(None),
            Some(text) => {
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| sqlx::Error::ColumnDecode {
                        index: col.to_string(),
                        source: Box::new(e),
                    })
            }
        }
    }
}

/// One write transaction on either backend.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Pg(Transaction<'static, Postgres>),
}

impl Tx {
    pub async fn begin(db: &Db) -> Result<Tx, sqlx::Error> {
        Tx::begin_on(db, Conns::Main).await
    }

    /// A transaction on the writer (SQLite) or on the Postgres connections
    /// `conns` names.
    pub async fn begin_on(db: &Db, conns: Conns) -> Result<Tx, sqlx::Error> {
        Ok(match &db.pools {
            Pools::Sqlite { write, .. } => Tx::Sqlite(write.begin().await?),
            Pools::Postgres { .. } => Tx::Pg(db.pools.postgres(conns).begin().await?),
        })
    }

    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Pg(_) => Backend::Postgres,
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Pg(tx) => tx.commit().await,
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        let sql = dialect(sql, self.backend());
        Ok(match self {
            Tx::Sqlite(tx) => bind_sqlite(sqlx::query(&sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Tx::Pg(tx) => bind_pg(sqlx::query(&sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    pub async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, sqlx::Error> {
        let sql = dialect(sql, self.backend());
        Ok(match self {
            Tx::Sqlite(tx) => bind_sqlite(sqlx::query(&sql), args)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Tx::Pg(tx) => bind_pg(sqlx::query(&sql), args)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Pg)
                .collect(),
        })
    }

    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<Row>, sqlx::Error> {
        let sql = dialect(sql, self.backend());
        Ok(match self {
            Tx::Sqlite(tx) => bind_sqlite(sqlx::query(&sql), args)
                .fetch_optional(&mut **tx)
                .await?
                .map(Row::Sqlite),
            Tx::Pg(tx) => bind_pg(sqlx::query(&sql), args)
                .fetch_optional(&mut **tx)
                .await?
                .map(Row::Pg),
        })
    }

    pub async fn fetch_one(&mut self, sql: &str, args: Vec<Arg>) -> Result<Row, sqlx::Error> {
        self.fetch_optional(sql, args)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// The Postgres connections a statement runs on (see `Db::open_with`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Conns {
    /// Everything else's.
    Main,
    /// The claims' own.
    Lease,
    /// The submits' own.
    Submit,
}

/// Read-only queries outside a write transaction (SQLite: the read pool).
impl Db {
    /// Runs one statement as a transaction of its own, on the writer
    /// (SQLite) or on the Postgres connections `conns` names.
    pub(crate) async fn fetch_all_alone(
        &self,
        conns: Conns,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<Row>, sqlx::Error> {
        let sql = dialect(sql, self.backend());
        Ok(match &self.pools {
            Pools::Sqlite { write, .. } => bind_sqlite(sqlx::query(&sql), args)
                .fetch_all(write)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Pools::Postgres { .. } => bind_pg(sqlx::query(&sql), args)
                .fetch_all(self.pools.postgres(conns))
                .await?
                .into_iter()
                .map(Row::Pg)
                .collect(),
        })
    }

    pub(crate) async fn read_all(
        &self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<Row>, sqlx::Error> {
        let sql = dialect(sql, self.backend());
        Ok(match &self.pools {
            Pools::Sqlite { read, .. } => bind_sqlite(sqlx::query(&sql), args)
                .fetch_all(read)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Pools::Postgres { pool, .. } => bind_pg(sqlx::query(&sql), args)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(Row::Pg)
                .collect(),
        })
    }

    pub(crate) async fn read_optional(
        &self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<Row>, sqlx::Error> {
        let sql = dialect(sql, self.backend());
        Ok(match &self.pools {
            Pools::Sqlite { read, .. } => bind_sqlite(sqlx::query(&sql), args)
                .fetch_optional(read)
                .await?
                .map(Row::Sqlite),
            Pools::Postgres { pool, .. } => bind_pg(sqlx::query(&sql), args)
                .fetch_optional(pool)
                .await?
                .map(Row::Pg),
        })
    }

    pub(crate) async fn read_one(&self, sql: &str, args: Vec<Arg>) -> Result<Row, sqlx::Error> {
        self.read_optional(sql, args)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_rewritten_per_backend() {
        let sql = "SELECT id FROM t WHERE id @in($1) ORDER BY id @skip_locked";
        assert_eq!(
            dialect(sql, Backend::Sqlite),
            "SELECT id FROM t WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id "
        );
        assert_eq!(
            dialect(sql, Backend::Postgres),
            "SELECT id FROM t WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED"
        );
        assert_eq!(
            dialect("@obj('a', 1)", Backend::Postgres),
            "json_build_object('a', 1)"
        );
    }
}
