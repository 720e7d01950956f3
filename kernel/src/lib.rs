//! Switchyard's kernel: the JobEngine and what sits on it.
//!
//! It owns the durable state (jobs, tasks, attempts, leases, dead-letter
//! entries, quotas, nodes, the event log) and every transition of it. It
//! knows nothing of HTTP, browsers or Leptos: the server crate hosts it and
//! the console reads it through the server.
//!
//! - [`model`]: the wire types, serde only (also built for wasm, without the
//!   default `storage` feature).
//! - [`Kernel`] (feature `storage`): the engine on SQLite or Postgres.
//! - [`worker`] (feature `storage`): executors for the built-in task kinds
//!   and an in-process worker pool, usable against any lease source.

pub mod model;

#[cfg(feature = "storage")]
pub mod clock;
#[cfg(feature = "storage")]
pub mod db;
#[cfg(feature = "storage")]
mod engine;
#[cfg(feature = "storage")]
pub mod error;
#[cfg(feature = "storage")]
mod sql;
#[cfg(feature = "storage")]
pub mod worker;

#[cfg(feature = "storage")]
pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "storage")]
pub use db::{Backend, Db, DbError, DbOptions};
#[cfg(feature = "storage")]
pub use engine::{
    error_fingerprint, generate_password, validate_job, AttemptOwner, AuditRecord, Background,
    Kernel, KernelConfig, RetentionReport, SessionPolicy, SessionView, MAX_LOG_LINES,
    MAX_LOG_LINE_BYTES, MIN_PASSWORD_LEN,
};
#[cfg(feature = "storage")]
pub use error::{KernelError, Result};
