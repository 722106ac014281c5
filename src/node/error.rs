//! The Kubo-shaped RPC error: every failed call answers `{"Message","Code","Type":"error"}`,
//! HTTP 400 with Code 1 for a bad or missing argument (Kubo's client error) and HTTP 500 with
//! Code 0 for anything the node could not do. Each handler module converts its own error
//! type into this one, deciding there which failures are the caller's fault.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A missing or malformed argument.
    #[error("{0}")]
    BadArgument(String),
    /// The request was well formed but the node could not carry it out.
    #[error("{0}")]
    Failed(String),
    /// An RPC path was called with something other than POST.
    #[error("405 - Method Not Allowed")]
    MethodNotAllowed,
}

impl ApiError {
    pub fn bad_argument(message: impl Into<String>) -> Self {
        ApiError::BadArgument(message.into())
    }

    pub fn failed(message: impl std::fmt::Display) -> Self {
        ApiError::Failed(message.to_string())
    }

    fn status_and_code(&self) -> (StatusCode, u8) {
        match self {
            ApiError::BadArgument(_) => (StatusCode::BAD_REQUEST, 1),
            ApiError::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, 0),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, 0),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KuboError {
    message: String,
    code: u8,
    #[serde(rename = "Type")]
    kind: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::info!(error = %self, "rpc call failed");
        } else {
            tracing::debug!(error = %self, "rpc call rejected");
        }
        let body = KuboError {
            message: self.to_string(),
            code,
            kind: "error",
        };
        (status, Json(body)).into_response()
    }
}
