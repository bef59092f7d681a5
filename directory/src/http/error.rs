//! The one error type of the HTTP API: a status, a stable code and a message, rendered as
//! the API crate's [`ErrorBody`] (`{"error":{"code":"...","message":"..."}}`).

use axum::Json;
use axum::extract::rejection::{BytesRejection, RawPathParamsRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use directory_api::{ErrorBody, ErrorCode, ErrorDetail};

use crate::acl::Denied;
use crate::registry::{HeartbeatError, NotDurable, RegisterError, ValidationError};

/// An API error. Handlers return `Result<_, ApiError>` and use `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: impl Into<ErrorCode>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 400 `invalid_json`.
    pub fn invalid_json(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
            format!("invalid JSON body: {message}"),
        )
    }

    /// 400 `invalid_query`.
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidQuery, message)
    }

    /// 404 `not_found` for unknown routes.
    pub fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such endpoint; see GET /openapi.json",
        )
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "method not allowed on this endpoint; see GET /openapi.json",
        )
    }

    /// 404 `instance_not_found`.
    pub fn instance_not_found(service: &str, instance: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::InstanceNotFound,
            format!("instance {instance} of service {service} is not registered"),
        )
    }

    /// 500 `internal`; the detail is logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::internal_unlogged()
    }

    /// The 500 `internal` answer itself (what [`Self::internal`] and a caught panic send).
    pub(super) fn internal_unlogged() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal server error",
        )
    }

    /// 413 `payload_too_large`: the body is over the node's limit (`--body-limit`).
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "request body exceeds the size limit",
        )
    }

    /// 503 `request_timeout`: an ordinary request took longer than `limit`.
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RequestTimeout,
            format!("the request took longer than {limit:?}"),
        )
    }

    /// 503 `internal` for a change applied in memory but not written to the data directory.
    pub(super) fn not_durable(e: &NotDurable) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            format!("the change was applied in memory but is not on disk: {e}; retry it"),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> &str {
        self.code.as_str()
    }

    /// The JSON body this error is sent as.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.clone(),
                message: self.message.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
    }
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::CapacityFull { .. } => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::CapacityFull,
                e.to_string(),
            ),
            RegisterError::BytesFull { .. } => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::RegistryBytesFull,
                e.to_string(),
            ),
        }
    }
}

impl From<NotDurable> for ApiError {
    fn from(e: NotDurable) -> Self {
        tracing::error!(error = %e, "a write was answered before reaching the data directory");
        Self::not_durable(&e)
    }
}

impl From<HeartbeatError> for ApiError {
    fn from(e: HeartbeatError) -> Self {
        match e {
            HeartbeatError::NotFound { .. } => Self::new(
                StatusCode::NOT_FOUND,
                ErrorCode::InstanceNotFound,
                e.to_string(),
            ),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(e: Denied) -> Self {
        match e {
            Denied::Forbidden { .. } => {
                Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, e.to_string())
            }
            Denied::TokenRequired(_) | Denied::UnknownToken | Denied::Malformed(_) => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                e.to_string(),
            ),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::payload_too_large()
        } else {
            Self::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                r.body_text(),
            )
        }
    }
}

impl From<RawPathParamsRejection> for ApiError {
    fn from(r: RawPathParamsRejection) -> Self {
        if r.status().is_server_error() {
            return Self::internal(r.body_text());
        }
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidPath,
            r.body_text(),
        )
    }
}
