//! The kernel's one error type.
//!
//! Every failure a caller can act on has its own variant with a stable
//! snake_case [`KernelError::code`] (the server maps codes to HTTP statuses)
//! and a message a person understands; [`KernelError::details`] carries the
//! structured part (e.g. the offending task keys). Database failures are
//! wrapped, never interpreted here as user errors.

use serde_json::{json, Value};

use crate::db::DbError;
use crate::model::ErrorBody;

pub type Result<T, E = KernelError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },

    #[error("{message}")]
    Validation {
        message: String,
        details: Option<Value>,
    },

    #[error("the tasks {} form a dependency cycle", keys.join(" → "))]
    DagCycle { keys: Vec<String> },

    #[error("{}", describe_unknown(missing))]
    UnknownDependency {
        /// (task key, dependency key that no task of the job has)
        missing: Vec<(String, String)>,
    },

    #[error("task keys used more than once: {}", keys.join(", "))]
    DuplicateTaskKey { keys: Vec<String> },

    #[error("payload of task {key:?} is {size} bytes, over the limit of {limit} bytes")]
    PayloadTooLarge {
        key: String,
        size: usize,
        limit: usize,
    },

    /// The (token, epoch) pair does not match the attempt's live lease.
    #[error("stale lease for attempt {attempt_id}: {reason}")]
    StaleLease { attempt_id: i64, reason: String },

    /// The attempt's job was cancelled: the result is not applied.
    #[error("attempt {attempt_id} was cancelled with its job; its result is not recorded")]
    TaskCancelled { attempt_id: i64 },

    /// A guarded transition found the object in another state.
    #[error("{message}")]
    Conflict {
        message: String,
        details: Option<Value>,
    },

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    #[error(transparent)]
    Db(#[from] DbError),
}

fn describe_unknown(missing: &[(String, String)]) -> String {
    let parts: Vec<String> = missing
        .iter()
        .map(|(task, dep)| format!("{task:?} depends on unknown task {dep:?}"))
        .collect();
    parts.join("; ")
}

impl KernelError {
    pub fn not_found(what: &'static str, id: impl ToString) -> KernelError {
        KernelError::NotFound {
            what,
            id: id.to_string(),
        }
    }

    pub fn validation(message: impl Into<String>) -> KernelError {
        KernelError::Validation {
            message: message.into(),
            details: None,
        }
    }

    pub fn conflict(message: impl Into<String>) -> KernelError {
        KernelError::Conflict {
            message: message.into(),
            details: None,
        }
    }

    /// Stable machine-readable name of the failure.
    pub fn code(&self) -> &'static str {
        match self {
            KernelError::NotFound { .. } => "not_found",
            KernelError::Validation { .. } => "validation_failed",
            KernelError::DagCycle { .. } => "dag_cycle",
            KernelError::UnknownDependency { .. } => "unknown_dependency",
            KernelError::DuplicateTaskKey { .. } => "duplicate_task_key",
            KernelError::PayloadTooLarge { .. } => "payload_too_large",
            KernelError::StaleLease { .. } => "stale_lease",
            KernelError::TaskCancelled { .. } => "task_cancelled",
            KernelError::Conflict { .. } => "conflict",
            KernelError::Database(_) | KernelError::Db(_) => "database",
        }
    }

    /// Structured facts about the failure, for the API's `details`.
    pub fn details(&self) -> Option<Value> {
        match self {
            KernelError::NotFound { what, id } => Some(json!({ "what": what, "id": id })),
            KernelError::Validation { details, .. } | KernelError::Conflict { details, .. } => {
                details.clone()
            }
            KernelError::DagCycle { keys } => Some(json!({ "keys": keys })),
            KernelError::UnknownDependency { missing } => Some(json!({
                "missing": missing.iter().map(|(task, dep)| json!({"task": task, "depends_on": dep})).collect::<Vec<_>>(),
                "keys": missing.iter().map(|(_, dep)| dep.clone()).collect::<Vec<_>>(),
            })),
            KernelError::DuplicateTaskKey { keys } => Some(json!({ "keys": keys })),
            KernelError::PayloadTooLarge { key, size, limit } => {
                Some(json!({ "key": key, "size": size, "limit": limit }))
            }
            KernelError::StaleLease { attempt_id, .. }
            | KernelError::TaskCancelled { attempt_id } => {
                Some(json!({ "attempt_id": attempt_id }))
            }
            KernelError::Database(_) | KernelError::Db(_) => None,
        }
    }

    /// True when Postgres failed the statement to break a deadlock
    /// (SQLSTATE `40P01`): its transaction was undone whole, so it can
    /// simply be run again.
    pub fn lost_a_deadlock(&self) -> bool {
        match self {
            KernelError::Database(sqlx::Error::Database(e)) => e.code().as_deref() == Some("40P01"),
            _ => false,
        }
    }

    /// True for failures of the storage itself (the server logs them and
    /// answers without their text).
    pub fn is_internal(&self) -> bool {
        matches!(self, KernelError::Database(_) | KernelError::Db(_))
    }

    /// The wire form. Internal errors get a generic message.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_string(),
            message: if self.is_internal() {
                "internal storage error".to_string()
            } else {
                self.to_string()
            },
            details: self.details(),
        }
    }
}
