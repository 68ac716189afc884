//! One WebSocket session after the upgrade: the handshake frame, then a loop that writes the hub's
//! events, answers pings (text pings in any SDK's shape, RFC 6455 pings with a `health.check`
//! too, empty keep-alive frames with nothing), keeps the SDK's watchdog fed, ends the session when
//! its token expires, and closes with a code whose meaning the SDK acts on. Errors and closes are
//! said in the client's [`Dialect`].

use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::connect::Prepared;
use super::dialect::Dialect;
use super::frames;
use crate::error::{close, EdgeError};
use crate::http::BoxIo;
use crate::session::{Attachment, Next, SessionEnd, Transport};
use crate::state::Shared;

type Socket = WebSocketStream<BoxIo>;

/// Socket limits from config: small read buffer, bounded message, frame and write buffer.
pub fn socket_config(shared: &Shared) -> WebSocketConfig {
    let ws = &shared.config.ws;
    WebSocketConfig::default()
        .read_buffer_size(ws.read_buffer_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(ws.max_write_buffer_bytes)
        .max_message_size(Some(ws.max_message_bytes))
        .max_frame_size(Some(ws.max_frame_bytes))
}

/// How long the closing frames (Unreal's error frame, the close) may take to write: a client
/// that does not read them is not waited for.
const CLOSE_BUDGET: Duration = Duration::from_secs(1);

/// Events written per flush, so a burst is batched into few syscalls without starving reads.
const WRITE_BATCH: usize = 64;

/// What a session task starts from: the upgraded stream and the authenticated connect.
pub(super) struct Pending {
    pub(super) io: BoxIo,
    pub(super) prepared: Result<Prepared, EdgeError>,
    pub(super) dialect: Dialect,
}

/// Who a live session belongs to, for its closing log line.
struct Owner {
    app: String,
    user: Arc<str>,
    exp: Option<u64>,
}

/// The session task. Memory matters here (15,000 of these are the idle benchmark): the one-off
/// setup runs in its own boxed future, so only the live loop's state stays allocated for the
/// session's lifetime.
pub(super) async fn run(pending: Box<Pending>, shared: Arc<Shared>) {
    let dialect = pending.dialect;
    let Some((mut ws, att, owner)) = Box::pin(open(pending, &shared)).await else {
        return;
    };
    let m = &shared.metrics;
    m.sessions_opened.with_label_values(&["ws"]).inc();
    m.sessions_open.with_label_values(&["ws"]).inc();
    let started = Instant::now();
    let end = serve(&mut ws, att, owner.exp, dialect, &shared).await;
    let reason = end.label();
    m.sessions_open.with_label_values(&["ws"]).dec();
    m.sessions_closed.with_label_values(&["ws", reason]).inc();
    tracing::info!(
        app = %owner.app,
        user = %owner.user,
        transport = "ws",
        dialect = dialect.label(),
        duration_ms = started.elapsed().as_millis() as u64,
        close_code = end.close_code().unwrap_or(0),
        reason,
        "session closed"
    );
    if let Some(code) = end.close_code() {
        if dialect.error_before_close() {
            // Unreal reconnects on an untyped error frame (refreshing its token on code 40) but
            // not on a clean close. Bounded like the close: a slow consumer may not read it.
            let frame = Message::text(end_error(end));
            let _ = tokio::time::timeout(CLOSE_BUDGET, ws.send(frame)).await;
        }
        Box::pin(close_socket(&mut ws, code, end.text())).await;
    }
}

/// Completes the upgrade, attaches the session to its hub and sends the `health.check` that
/// opens it; refusals are answered here.
async fn open(pending: Box<Pending>, shared: &Arc<Shared>) -> Option<(Socket, Attachment, Owner)> {
    let Pending {
        io,
        prepared,
        dialect,
    } = *pending;
    let config = socket_config(shared);
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (prepared, att) = match super::connect::open(prepared, Transport::Ws, shared).await {
        Ok(opened) => opened,
        Err(e) => {
            reject(ws, &e, dialect).await;
            return None;
        }
    };
    let first = frames::connected(&att.id, &att.me());
    if ws.send(Message::text(first)).await.is_err() {
        return None;
    }
    let owner = Owner {
        app: prepared.request.api_key,
        user: prepared.identity.user_id,
        exp: prepared.identity.exp,
    };
    Some((ws, att, owner))
}

/// Refuses a connect: retryable failures close with a reconnect code and no error frame (the SDK
/// would treat an error frame as final), except for Unreal, which reconnects only on an error
/// frame; everything else gets the error frame in the client's dialect and close 1000.
async fn reject(mut ws: Socket, err: &EdgeError, dialect: Dialect) {
    let class = err.class();
    tracing::debug!(reason = class.label, error = %err, dialect = dialect.label(), "ws connect refused");
    if err.is_retryable() {
        if dialect.error_before_close() {
            let frame = Message::text(frames::error(err));
            let _ = tokio::time::timeout(CLOSE_BUDGET, ws.send(frame)).await;
        }
        close_socket(&mut ws, class.close, class.label).await;
        return;
    }
    if ws
        .send(Message::text(frames::error_in(dialect, "", err)))
        .await
        .is_ok()
    {
        close_socket(&mut ws, close::REJECTED, class.label).await;
    }
}

/// The untyped error frame that makes Unreal reconnect at once when a live session ends: code 40
/// when the token ended it (Unreal then reconnects with a refreshed token), -1 otherwise.
fn end_error(end: SessionEnd) -> String {
    let (code, status) = if end.is_token() {
        (40, http::StatusCode::UNAUTHORIZED)
    } else {
        (-1, http::StatusCode::SERVICE_UNAVAILABLE)
    };
    serde_json::json!({ "error": crate::error::api_error(code, status, end.text()) }).to_string()
}

async fn close_socket(ws: &mut Socket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    };
    let _ = tokio::time::timeout(CLOSE_BUDGET, ws.close(Some(frame))).await;
}

/// The live loop, until the session ends.
async fn serve(
    ws: &mut Socket,
    mut att: Attachment,
    exp: Option<u64>,
    dialect: Dialect,
    shared: &Shared,
) -> SessionEnd {
    let m = &shared.metrics;
    let cfg = &shared.config.ws;
    let health = tokio::time::sleep(cfg.health_interval);
    let idle = tokio::time::sleep(cfg.client_idle_timeout);
    let expiry = tokio::time::sleep(until_exp(exp, shared.config.auth.leeway));
    tokio::pin!(health, idle, expiry);
    let delivery = &m.event_delivery_seconds;
    // Label lookups hash and lock; take the per-delivery counter handles once per session.
    let bytes_out = m.bytes.with_label_values(&["out", "ws"]);
    let bytes_in = m.bytes.with_label_values(&["in", "ws"]);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return SessionEnd::Draining,
            _ = &mut expiry, if exp.is_some() => {
                att.end_for_token(SessionEnd::TokenExpired);
                return SessionEnd::TokenExpired;
            }
            _ = &mut idle => return SessionEnd::ClientIdle,
            next = att.mailbox.next() => {
                let first = match next {
                    Next::Event(d) => d,
                    Next::Closed(end) => {
                        if end.is_token() {
                            // Revoked: ends as an expired token does.
                            att.end_for_token(end);
                        }
                        return end;
                    }
                };
                let mut batch = Some(first);
                let mut n = 0;
                while let Some(d) = batch.take() {
                    bytes_out.inc_by(d.frame.len() as u64);
                    if ws.feed(Message::Text(d.frame)).await.is_err() {
                        return SessionEnd::WriteError;
                    }
                    delivery.observe(d.received.elapsed().as_secs_f64());
                    n += 1;
                    if n < WRITE_BATCH {
                        batch = att.mailbox.try_next();
                    }
                }
                if ws.flush().await.is_err() {
                    return SessionEnd::WriteError;
                }
                // Events feed most SDKs' watchdogs; Unity's counts only health checks, so its
                // clock keeps running however busy the session is.
                if !dialect.steady_health() {
                    health.as_mut().reset(tokio::time::Instant::now() + cfg.health_interval);
                }
            }
            _ = &mut health => {
                if ws.send(Message::text(frames::health_check(&att.id))).await.is_err() {
                    return SessionEnd::WriteError;
                }
                health.as_mut().reset(tokio::time::Instant::now() + cfg.health_interval);
            }
            msg = ws.next() => {
                idle.as_mut().reset(tokio::time::Instant::now() + cfg.client_idle_timeout);
                match msg {
                    None | Some(Ok(Message::Close(_))) => return SessionEnd::ClientClosed,
                    Some(Err(WsError::Capacity(_))) => {
                        m.bad_input.with_label_values(&["ws", "frame_too_large"]).inc();
                        return SessionEnd::FrameTooLarge;
                    }
                    Some(Err(WsError::Protocol(_))) => {
                        m.bad_input.with_label_values(&["ws", "protocol_violation"]).inc();
                        return SessionEnd::ProtocolViolation;
                    }
                    Some(Err(_)) => return SessionEnd::ReadError,
                    Some(Ok(Message::Text(t))) => {
                        bytes_in.inc_by(t.len() as u64);
                        if t.is_empty() {
                            // Unreal's keep-alive (every 20 s): it needs no answer, and an error
                            // frame would make it reconnect.
                            continue;
                        }
                        let reply = match frames::is_ping(t.as_str()) {
                            Ok(true) => frames::health_check(&att.id),
                            Ok(false) => {
                                // Clients send nothing but pings (stream-protocol.md 5.2); ignore
                                // other JSON, but count it.
                                m.bad_input.with_label_values(&["ws", "unexpected_event"]).inc();
                                continue;
                            }
                            Err(_) => {
                                m.bad_input.with_label_values(&["ws", "not_json"]).inc();
                                frames::error(&EdgeError::BadInput("frames must be JSON".into()))
                            }
                        };
                        if ws.send(Message::text(reply)).await.is_err() {
                            return SessionEnd::WriteError;
                        }
                        health.as_mut().reset(tokio::time::Instant::now() + cfg.health_interval);
                    }
                    Some(Ok(Message::Binary(_))) => {
                        m.bad_input.with_label_values(&["ws", "binary_frame"]).inc();
                        let err = EdgeError::BadInput("binary frames are not supported".into());
                        if ws.send(Message::text(frames::error(&err))).await.is_err() {
                            return SessionEnd::WriteError;
                        }
                    }
                    Some(Ok(Message::Ping(_))) => {
                        // Swift pings with RFC 6455 pings and counts only a `health.check` as
                        // the answer (tungstenite queues the pong, flushed with this write).
                        if ws.send(Message::text(frames::health_check(&att.id))).await.is_err() {
                            return SessionEnd::WriteError;
                        }
                        health.as_mut().reset(tokio::time::Instant::now() + cfg.health_interval);
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}

fn until_exp(exp: Option<u64>, leeway: Duration) -> Duration {
    let Some(exp) = exp else {
        return Duration::from_secs(86400 * 365);
    };
    let now = crate::auth::now_secs().max(0) as u64;
    // A session ends just after `exp` plus the leeway, so the reconnect's validation sees it
    // expired and answers code 40 (which makes a provider-based SDK refresh).
    Duration::from_secs(exp.saturating_sub(now) + 1) + leeway
}
