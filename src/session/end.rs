//! How a session ends, in one vocabulary for both transports: [`SessionEnd`] carries the
//! WebSocket close code, the metric label (`sessions_closed_total{reason}`, and for long-poll
//! `longpoll_expired_total{reason}`), and the text for the close frame and the log line. A
//! long-poll session that ended answers its next poll with code 46 whatever the reason; the
//! reason is what is counted and logged.

use crate::error::close;

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client closed it (a close frame or EOF on WebSocket, `close=true` on long-poll).
    ClientClosed,
    /// The client went quiet: no frame for `ws.client_idle_timeout`, or no poll for
    /// `longpoll.session_timeout`.
    ClientIdle,
    /// The client did not keep up with its events (its queue filled): reconnect later.
    SlowConsumer,
    /// The user's upstream connection was lost: reconnect, then `recoverState`.
    UpstreamLost,
    /// The session's token passed `exp` (plus leeway).
    TokenExpired,
    /// The session's token was revoked (`revokeUserToken`, `revokeTokens`).
    TokenRevoked,
    /// The gateway is draining.
    Draining,
    /// The load balancer now routes this user to another replica (`[cluster]` convergence): the
    /// client reconnects there, then `recoverState`.
    Moved,
    /// The client sent a frame over `ws.max_message_bytes`.
    FrameTooLarge,
    /// The client broke the WebSocket protocol.
    ProtocolViolation,
    /// Reading from the client failed (reset, TLS error).
    ReadError,
    /// Writing to the client failed or timed out.
    WriteError,
}

impl SessionEnd {
    /// Every value, so each label can be pre-created at 0.
    pub const ALL: [SessionEnd; 12] = [
        SessionEnd::ClientClosed,
        SessionEnd::ClientIdle,
        SessionEnd::SlowConsumer,
        SessionEnd::UpstreamLost,
        SessionEnd::TokenExpired,
        SessionEnd::TokenRevoked,
        SessionEnd::Draining,
        SessionEnd::Moved,
        SessionEnd::FrameTooLarge,
        SessionEnd::ProtocolViolation,
        SessionEnd::ReadError,
        SessionEnd::WriteError,
    ];

    /// The WebSocket close code to send; `None` when the socket is already gone.
    pub fn close_code(self) -> Option<u16> {
        match self {
            SessionEnd::ClientClosed | SessionEnd::ReadError | SessionEnd::WriteError => None,
            SessionEnd::ClientIdle => Some(close::IDLE),
            SessionEnd::SlowConsumer => Some(close::TRY_AGAIN_LATER),
            SessionEnd::UpstreamLost => Some(close::UPSTREAM_LOST),
            SessionEnd::TokenExpired | SessionEnd::TokenRevoked => Some(close::TOKEN_EXPIRED),
            // Every SDK reconnects on 1001, as after a drain.
            SessionEnd::Draining | SessionEnd::Moved => Some(close::GOING_AWAY),
            SessionEnd::FrameTooLarge => Some(close::TOO_BIG),
            SessionEnd::ProtocolViolation => Some(close::PROTOCOL_ERROR),
        }
    }

    /// The bounded metric label, also the log line's `reason`.
    pub fn label(self) -> &'static str {
        match self {
            SessionEnd::ClientClosed => "client_closed",
            SessionEnd::ClientIdle => "client_idle",
            SessionEnd::SlowConsumer => "slow_consumer",
            SessionEnd::UpstreamLost => "upstream_lost",
            SessionEnd::TokenExpired => "token_expired",
            SessionEnd::TokenRevoked => "token_revoked",
            SessionEnd::Draining => "draining",
            SessionEnd::Moved => "moved",
            SessionEnd::FrameTooLarge => "frame_too_large",
            SessionEnd::ProtocolViolation => "protocol_violation",
            SessionEnd::ReadError => "read_error",
            SessionEnd::WriteError => "write_error",
        }
    }

    /// The close frame's reason text (what an SDK logs).
    pub fn text(self) -> &'static str {
        match self {
            SessionEnd::ClientClosed => "client closed",
            SessionEnd::ClientIdle => "client idle",
            SessionEnd::SlowConsumer => "slow consumer",
            SessionEnd::UpstreamLost => "upstream connection lost",
            SessionEnd::TokenExpired => "token expired",
            SessionEnd::TokenRevoked => "token revoked",
            SessionEnd::Draining => "gateway draining",
            SessionEnd::Moved => "user moved to another replica",
            SessionEnd::FrameTooLarge => "frame too large",
            SessionEnd::ProtocolViolation => "protocol violation",
            SessionEnd::ReadError => "read error",
            SessionEnd::WriteError => "write error",
        }
    }

    /// A long-poll session that ends this way expired on the gateway's side (counted in
    /// `longpoll_expired_total`), rather than being closed by its client or the drain.
    pub fn expires_longpoll(self) -> bool {
        matches!(
            self,
            SessionEnd::ClientIdle | SessionEnd::SlowConsumer | SessionEnd::UpstreamLost
        )
    }

    /// The session ended because of its token: its id stays bound to the user's upstream
    /// connection for `auth.ended_session_grace_seconds`.
    pub fn is_token(self) -> bool {
        matches!(self, SessionEnd::TokenExpired | SessionEnd::TokenRevoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_codes_reconnect_except_none() {
        let mut labels: Vec<_> = SessionEnd::ALL.iter().map(|e| e.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), SessionEnd::ALL.len());
        // 1000 makes the SDK give up; a session end must never send it.
        for e in SessionEnd::ALL {
            assert_ne!(e.close_code(), Some(close::REJECTED), "{e:?}");
        }
    }
}
