//! Switchyard's kernel: the JobEngine and what sits on it.
//!
//! It owns the durable state (jobs, tasks, attempts, leases, dead-letter
//! entries, quotas, the event log) and every transition of it. It knows
//! nothing of HTTP, browsers or Leptos: the server crate hosts it and the
//! console reads it through the server. Its wire types are plain serde.

pub mod db;

pub use db::{Backend, Db, DbError};
