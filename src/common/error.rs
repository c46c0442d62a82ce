//! One error type that knows its HTTP face.
//!
//! Every failure a client can see has a stable `code` and a status, and is rendered as
//! `{"error": {"code", "message", "details"}}`. Internal causes (database errors, bugs) are logged
//! once, in [`ApiError::into_response`], inside the request span, and never sent to the client.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A failure with its HTTP status and stable code (boxed: errors travel through many
/// `Result`s and should cost one pointer there).
#[derive(Debug)]
pub struct ApiError(Box<ErrorInner>);

/// The parts of an [`ApiError`].
#[derive(Debug)]
pub struct ErrorInner {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    pub details: Option<Value>,
    /// The internal cause, logged but not shown.
    pub source: Option<anyhow::Error>,
    /// Seconds to send as `Retry-After` (429 `rate_limited`).
    pub retry_after: Option<u64>,
}

/// Result type of handlers and domain functions that can fail in a client-visible way.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self(Box::new(ErrorInner {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            source: None,
            retry_after: None,
        }))
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.0.details = Some(details);
        self
    }

    /// 400 `invalid_request`: malformed JSON, unknown fields, wrong types.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 422 `validation_failed` naming the field whose value is wrong.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field}: {message}"),
        )
        .with_details(json!({ "field": field }))
    }

    /// 404 `not_found` for an id that does not exist in the caller's tenant.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409 with a specific conflict code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422 `invalid_text`: a string field or parameter holds a character that neither back end
    /// stores (NUL, U+0000). `field` is the JSON path of the body field or the parameter name.
    pub fn invalid_text(field: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text",
            format!("{field}: text must not contain NUL (U+0000)"),
        )
        .with_details(json!({ "field": field }))
    }

    /// 429 `rate_limited` with `Retry-After` (whole seconds, at least 1).
    pub fn rate_limited(limit: &'static str, retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let seconds = seconds.max(1);
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests ({limit}); retry in {seconds} s"),
        )
        .with_details(json!({ "limit": limit, "retry_after_secs": seconds }));
        error.0.retry_after = Some(seconds);
        error
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit_bytes} bytes"),
        )
        .with_details(json!({ "limit_bytes": limit_bytes }))
    }

    /// 500 `internal`: the cause is logged, the client sees a generic message.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self(Box::new(ErrorInner {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: Cow::Borrowed("internal"),
            message: "internal error; it has been logged".into(),
            details: None,
            source: Some(cause.into()),
            retry_after: None,
        }))
    }

    /// 503 when the service cannot take more work right now (queues full, shutting down).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn body(&self) -> Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details,
            }
        })
    }
}

impl std::ops::Deref for ApiError {
    type Target = ErrorInner;

    fn deref(&self) -> &ErrorInner {
        &self.0
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )?;
        if let Some(source) = &self.source {
            write!(f, " ({source:#})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = %self.code, error = %self, "request failed");
        } else {
            tracing::debug!(code = %self.code, message = %self.message, "client error");
        }
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::PoolTimedOut = error {
            return ApiError::unavailable("database is busy; retry shortly");
        }
        ApiError::internal(error)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast::<ApiError>() {
            Ok(api) => api,
            Err(other) => match other.downcast::<sqlx::Error>() {
                Ok(db) => ApiError::from(db),
                Err(other) => ApiError::internal(other),
            },
        }
    }
}

/// True when a database error is a unique-constraint violation, on either back end.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = ApiError::internal(anyhow::anyhow!("password=hunter2"));
        let body = error.body().to_string();
        assert!(!body.contains("hunter2"));
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn validation_errors_name_the_field() {
        let error = ApiError::validation("phone", "must be E.164");
        assert_eq!(error.body()["error"]["details"]["field"], "phone");
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
