//! The API's one error type: every non-2xx answer is
//! `{"code": "snake_case", "message": "...", "details": {...}}` (SPEC §9).
//!
//! Kernel failures keep their code; the status follows from it. Storage
//! failures are logged here and answered without their text.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kernel::model::ErrorBody;
use kernel::KernelError;
use serde_json::Value;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_string(),
                message: message.into(),
                details: None,
            },
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.body.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A query parameter out of its range or not understood (as axum's own
    /// query rejections are answered).
    pub fn invalid_query(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// `429 rate_limited`: `what` failed too often lately; try again in
    /// `wait_s` seconds (also said in `Retry-After`).
    pub fn rate_limited(what: &str, wait_s: u64) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many {what}; try again in {wait_s} s"),
        )
        .with_details(serde_json::json!({ "retry_after_s": wait_s }))
    }

    /// A body field out of its range (as the kernel's validations are
    /// answered).
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }
}

/// The HTTP status for a kernel error code.
pub fn status_for(code: &str) -> StatusCode {
    match code {
        "not_found" => StatusCode::NOT_FOUND,
        "validation_failed" | "dag_cycle" | "unknown_dependency" | "duplicate_task_key" => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "stale_lease" | "task_cancelled" | "conflict" => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<KernelError> for ApiError {
    fn from(err: KernelError) -> ApiError {
        if err.is_internal() {
            tracing::error!(error = %err, "kernel storage error");
        }
        ApiError {
            status: status_for(err.code()),
            body: err.to_body(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return too_large();
        }
        let code = match rejection {
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            JsonRejection::JsonDataError(_) => "invalid_body",
            _ => "invalid_json",
        };
        ApiError::new(status, code, rejection.body_text())
    }
}

/// A request body over [`super::MAX_BODY_BYTES`].
fn too_large() -> ApiError {
    let limit = super::MAX_BODY_BYTES;
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the request body is larger than the {} MiB the API reads",
            limit >> 20
        ),
    )
    .with_details(serde_json::json!({ "limit_bytes": limit }))
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return too_large();
        }
        ApiError::new(rejection.status(), "invalid_body", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            rejection.body_text(),
        )
    }
}

impl IntoResponse for ApiError {
    /// The typed body; an error that says how long to wait
    /// (`details.retry_after_s`) says it in `Retry-After` too.
    fn into_response(self) -> Response {
        let wait = self
            .body
            .details
            .as_ref()
            .and_then(|d| d.get("retry_after_s"))
            .and_then(|w| w.as_u64());
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(wait) = wait {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, wait.into());
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
