//! Twilio-shaped errors: `{"code", "message", "more_info", "status"}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tern_node::EngineError;
use tern_store::StoreError;
use tern_types::ErrorCode;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// An HTTP status other than the code's own (409 for a taken unique name).
    pub status: Option<u16>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        ApiError {
            code,
            message: code.message().to_string(),
            status: None,
        }
    }

    pub fn with(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            status: None,
        }
    }

    /// `409 Conflict` with a 20001 body: a value that must be unique is taken.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError {
            status: Some(409),
            ..ApiError::invalid(message)
        }
    }

    pub fn not_found(path: &str) -> Self {
        ApiError::with(
            ErrorCode::NotFound,
            format!("The requested resource {path} was not found"),
        )
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::with(ErrorCode::InvalidParameter, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => {
                ApiError::with(ErrorCode::InvalidParameter, "The resource already exists.")
            }
            StoreError::NotFound => ApiError::new(ErrorCode::NotFound),
            other => {
                tracing::error!(error = %other, "store error answering a request");
                ApiError::new(ErrorCode::Unavailable)
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Rejected { code, message } => ApiError::with(code, message),
            EngineError::Store(s) => s.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| self.code.http_status());
        let body = serde_json::json!({
            "code": self.code.code(),
            "message": self.message,
            "more_info": self.code.more_info(),
            "status": status,
        });
        let mut resp = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            axum::Json(body),
        )
            .into_response();
        if status == 503 {
            resp.headers_mut()
                .insert("Retry-After", HeaderValue::from_static("5"));
        }
        if status == 401 {
            resp.headers_mut().insert(
                "WWW-Authenticate",
                HeaderValue::from_static("Basic realm=\"Twilio API\""),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
