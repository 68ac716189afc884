//! The edge's error model: every failure a client can see is an [`EdgeError`], and [`EdgeError::class`]
//! is the one place that maps it to an HTTP status, a Stream error code, a WebSocket close code, a
//! metric label and a log level.

use http::StatusCode;
use tracing::Level;

use crate::auth::AuthError;

/// WebSocket close codes the gateway uses, chosen for the SDK's reaction (stream-protocol.md 1.5):
/// 1000 makes the SDK give up, every other code makes it reconnect with backoff.
pub mod close {
    /// After an error frame during the handshake: the SDK surfaces the error and does not retry.
    pub const REJECTED: u16 = 1000;
    /// Gateway draining: reconnect now (to another replica).
    pub const GOING_AWAY: u16 = 1001;
    /// Client broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Client sent a frame larger than allowed.
    pub const TOO_BIG: u16 = 1009;
    /// Upstream connection lost or unavailable: reconnect, then `recoverState` re-watches channels.
    pub const UPSTREAM_LOST: u16 = 1011;
    /// Slow consumer or over a limit: reconnect later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The session's token expired: reconnect; the handshake then answers code 40 and a
    /// provider-based SDK refreshes its token.
    pub const TOKEN_EXPIRED: u16 = 4040;
    /// Client stopped pinging (half-open socket).
    pub const IDLE: u16 = 4008;
}

/// A failure visible to a client.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("connection_id {0} does not belong to this user")]
    ForeignConnection(String),
    #[error("connection_id not found")]
    ConnectionNotFound,
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("{0}")]
    RateLimited(String),
    /// The client did not send its request body within `limits.body_timeout_seconds`.
    #[error("request body not received within {0} s (limits.body_timeout_seconds)")]
    BodyTimeout(u64),
    #[error("gateway is shutting down")]
    Draining,
    #[error("route not found")]
    NotFound,
    /// A response the gateway must filter (other users' read, delivery or typing state) that it
    /// cannot read: compressed, oversized or malformed. Refused, never passed on.
    #[error("upstream response cannot be filtered: {0}")]
    Unfilterable(String),
}

/// How one error shows up on each surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    pub status: StatusCode,
    /// Stream API error code (stream-protocol.md 2.2).
    pub code: i32,
    /// WebSocket close code if this error ends a live session.
    pub close: u16,
    /// Bounded metric label.
    pub label: &'static str,
    pub level: Level,
}

impl EdgeError {
    /// Every label [`EdgeError::class`] gives besides the credential's ([`AuthError::LABELS`]), so
    /// each can be pre-created at 0.
    pub const LABELS: [&'static str; 11] = [
        "bad_input",
        "too_large",
        "foreign_connection",
        "connection_not_found",
        "upstream_unavailable",
        "upstream_timeout",
        "rate_limited",
        "body_timeout",
        "draining",
        "not_found",
        "unfilterable_response",
    ];

    /// The single classification table.
    pub fn class(&self) -> Class {
        use StatusCode as S;
        let (status, code, close_code, label, level) = match self {
            EdgeError::Auth(a) => {
                let code = a.code();
                let status = if code == 2 || code >= 40 {
                    S::UNAUTHORIZED
                } else if code == 17 {
                    S::FORBIDDEN
                } else {
                    S::BAD_REQUEST
                };
                (status, code, close::REJECTED, a.label(), Level::DEBUG)
            }
            EdgeError::BadInput(_) => (
                S::BAD_REQUEST,
                4,
                close::REJECTED,
                "bad_input",
                Level::DEBUG,
            ),
            EdgeError::PayloadTooLarge(_) => (
                S::PAYLOAD_TOO_LARGE,
                4,
                close::TOO_BIG,
                "too_large",
                Level::DEBUG,
            ),
            EdgeError::ForeignConnection(_) => (
                S::FORBIDDEN,
                17,
                close::REJECTED,
                "foreign_connection",
                Level::INFO,
            ),
            EdgeError::ConnectionNotFound => (
                S::BAD_REQUEST,
                46,
                close::REJECTED,
                "connection_not_found",
                Level::DEBUG,
            ),
            EdgeError::UpstreamUnavailable(_) => (
                S::BAD_GATEWAY,
                -1,
                close::UPSTREAM_LOST,
                "upstream_unavailable",
                Level::WARN,
            ),
            EdgeError::UpstreamTimeout => (
                S::GATEWAY_TIMEOUT,
                23,
                close::UPSTREAM_LOST,
                "upstream_timeout",
                Level::WARN,
            ),
            EdgeError::RateLimited(_) => (
                S::TOO_MANY_REQUESTS,
                9,
                close::TRY_AGAIN_LATER,
                "rate_limited",
                Level::DEBUG,
            ),
            EdgeError::BodyTimeout(_) => (
                S::REQUEST_TIMEOUT,
                23,
                close::REJECTED,
                "body_timeout",
                Level::DEBUG,
            ),
            EdgeError::Draining => (
                S::SERVICE_UNAVAILABLE,
                -1,
                close::GOING_AWAY,
                "draining",
                Level::DEBUG,
            ),
            EdgeError::NotFound => (S::NOT_FOUND, 16, close::REJECTED, "not_found", Level::DEBUG),
            EdgeError::Unfilterable(_) => (
                S::BAD_GATEWAY,
                -1,
                close::UPSTREAM_LOST,
                "unfilterable_response",
                Level::WARN,
            ),
        };
        Class {
            status,
            code,
            close: close_code,
            label,
            level,
        }
    }

    /// Stream's `APIError` object (the body of a REST error, wrapped in `{"error":…}` on WS).
    pub fn api_error(&self) -> serde_json::Value {
        let class = self.class();
        api_error(class.code, class.status, &self.to_string())
    }

    /// True when the SDK should retry by itself (network-like failure): on WS these close the
    /// socket with a non-1000 code instead of sending an error frame.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EdgeError::UpstreamUnavailable(_)
                | EdgeError::UpstreamTimeout
                | EdgeError::Draining
                | EdgeError::RateLimited(_)
        )
    }
}

/// Builds an `APIError` body in Stream's shape.
pub fn api_error(code: i32, status: StatusCode, message: &str) -> serde_json::Value {
    serde_json::json!({
        "code": code,
        "message": message,
        "StatusCode": status.as_u16(),
        "duration": "",
        "more_info": "https://getstream.io/chat/docs/api_errors_response",
        "details": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_is_listed() {
        let all = [
            EdgeError::BadInput(String::new()),
            EdgeError::PayloadTooLarge(String::new()),
            EdgeError::ForeignConnection(String::new()),
            EdgeError::ConnectionNotFound,
            EdgeError::UpstreamUnavailable(String::new()),
            EdgeError::UpstreamTimeout,
            EdgeError::RateLimited(String::new()),
            EdgeError::BodyTimeout(0),
            EdgeError::Draining,
            EdgeError::NotFound,
            EdgeError::Unfilterable(String::new()),
        ];
        for e in &all {
            assert!(EdgeError::LABELS.contains(&e.class().label), "{e:?}");
        }
        assert_eq!(all.len(), EdgeError::LABELS.len());
        for a in [
            AuthError::UnknownApiKey,
            AuthError::Expired,
            AuthError::Revoked,
            AuthError::NotYetValid,
            AuthError::IssuedInFuture,
            AuthError::BadSignature,
            AuthError::Malformed,
            AuthError::Algorithm,
            AuthError::TooLarge,
            AuthError::UserMismatch,
            AuthError::ServerToken,
            AuthError::DevTokenDisabled,
            AuthError::AnonymousDisabled,
            AuthError::Missing,
        ] {
            assert!(AuthError::LABELS.contains(&a.label()), "{a:?}");
        }
    }
}
