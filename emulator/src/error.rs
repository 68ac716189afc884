//! Stream-shaped API errors: the codes and HTTP statuses the real service uses
//! and the OpenAPI `APIError` body the SDK parses (it must always be a JSON
//! object, or the SDK's token-expiry check throws).

use http::StatusCode;
use serde_json::{json, Value};

/// Where Stream points clients for error-code documentation.
const MORE_INFO: &str = "https://getstream.io/chat/docs/api_errors_response";

/// An error answered to a client, as REST body or WS `{"error":…}` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub(crate) struct ApiError {
    /// Stream error code (4 input, 2 api key, 16 not found, 40–43 token, …).
    pub code: u32,
    /// HTTP status; also the body's `StatusCode`.
    pub status: StatusCode,
    /// Human-readable text; the SDK never branches on it.
    pub message: String,
    /// The bound this error reports reaching, if any (counted in the emulator's metrics).
    pub bound: Option<&'static str>,
}

// === impl ApiError ===

impl ApiError {
    pub(crate) fn new(code: u32, status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            status,
            message: message.into(),
            bound: None,
        }
    }

    /// Marks the error as reaching `bound` (see `metrics`).
    pub(crate) fn at_bound(mut self, bound: &'static str) -> Self {
        self.bound = Some(bound);
        self
    }

    /// Code 4: the request is malformed or violates a limit.
    pub(crate) fn input(message: impl Into<String>) -> Self {
        Self::new(4, StatusCode::BAD_REQUEST, message)
    }

    /// Code 2: `api_key` names no configured app.
    pub(crate) fn unknown_api_key() -> Self {
        Self::new(
            2,
            StatusCode::UNAUTHORIZED,
            "api_key not valid, make sure the api_key parameter names an existing app",
        )
    }

    /// Code 16: unknown channel or route.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(16, StatusCode::NOT_FOUND, message)
    }

    /// Code 17: authenticated but not allowed.
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(17, StatusCode::FORBIDDEN, message)
    }

    /// Code 4 with HTTP 413: the request body exceeds the limit.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            4,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit} bytes"),
        )
        .at_bound("request_body_bytes")
    }

    /// The OpenAPI `APIError` object.
    pub(crate) fn body(&self) -> Value {
        json!({
            "code": self.code,
            "message": self.message,
            "StatusCode": self.status.as_u16(),
            "duration": "",
            "more_info": MORE_INFO,
            "details": [],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_every_required_field() {
        let body = ApiError::input("bad").body();
        for key in [
            "code",
            "message",
            "StatusCode",
            "duration",
            "more_info",
            "details",
        ] {
            assert!(body.get(key).is_some(), "missing {key}");
        }
        assert_eq!(body["StatusCode"], 400);
        assert_eq!(body["code"], 4);
    }
}
