//! One WebSocket session after the upgrade: the handshake frame, then a loop that writes the hub's
//! events, answers pings (text pings in any SDK's shape, RFC 6455 pings with a `health.check`
//! too, empty keep-alive frames with nothing), keeps the SDK's watchdog fed, ends the session when
//! its token expires, and closes with a code whose meaning the SDK acts on. Errors and closes are
//! said in the client's [`Dialect`].

use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::connect::Prepared;
use super::dialect::Dialect;
use super::frames;
use super::wire::{Wire, WireError};
use super::wsframe::{self, FrameError, Inbound, Msg};
use crate::config::health_silence;
use crate::error::{close, EdgeError};
use crate::metrics::Limit;
use crate::session::{Attachment, Delivery, Mailbox, SessionEnd, Transport};
use crate::state::Shared;

/// How long the closing frames (Unreal's error frame, the close) may take to write: a client
/// that does not read them is not waited for.
const CLOSE_BUDGET: Duration = Duration::from_secs(1);

/// Events written per wake-up of a session on a boxed stream, so a burst is batched into few
/// flushes without starving reads.
const WRITE_BATCH: usize = 64;

/// What a session task starts from: the upgraded stream and the authenticated connect.
pub(super) struct Pending {
    pub(super) wire: Wire,
    pub(super) prepared: Result<Prepared, EdgeError>,
    pub(super) dialect: Dialect,
}

/// The session task. Memory matters here (15,000 of these are the idle benchmark): the one-off
/// setup runs in its own boxed future, so only the live loop's state stays allocated for the
/// session's lifetime.
pub(super) async fn run(pending: Box<Pending>, shared: Arc<Shared>) {
    let dialect = pending.dialect;
    let Some((mut wire, att, exp)) = Box::pin(open(pending, &shared)).await else {
        return;
    };
    let m = &shared.metrics;
    m.sessions_opened.with_label_values(&["ws"]).inc();
    m.sessions_open.with_label_values(&["ws"]).inc();
    let started = Instant::now();
    let mailbox = att.mailbox.clone();
    // Who the session belongs to, for its closing log line (the hub outlives the attachment).
    let hub = att.hub.clone();
    let (end, echo) = serve(&mut wire, att, exp, dialect, &shared).await;
    // Queued events stop here: only the closing frames follow what was written.
    mailbox.close(end);
    let reason = end.label();
    m.sessions_open.with_label_values(&["ws"]).dec();
    m.sessions_closed.with_label_values(&["ws", reason]).inc();
    tracing::info!(
        app = %hub.app,
        user = %hub.user,
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
            let frame = wsframe::text(end_error(end).as_bytes());
            let _ = tokio::time::timeout(
                CLOSE_BUDGET,
                wire.send(&mailbox, &frame, CLOSE_BUDGET, |_| {}),
            )
            .await;
        }
        wire.close(&mailbox, &wsframe::close(code, end.text()), CLOSE_BUDGET)
            .await;
    } else if let Some(echo) = echo {
        // The client closed: its close is answered with its own code (RFC 6455 5.5.1).
        wire.close(&mailbox, &echo, CLOSE_BUDGET).await;
    }
    mailbox.clear_direct();
}

/// Attaches the session to its hub and sends the `health.check` that opens it; refusals are
/// answered here.
async fn open(
    pending: Box<Pending>,
    shared: &Arc<Shared>,
) -> Option<(Wire, Attachment, Option<u64>)> {
    let Pending {
        mut wire,
        prepared,
        dialect,
    } = *pending;
    let (prepared, att) = match super::connect::open(prepared, Transport::Ws, shared).await {
        Ok(opened) => opened,
        Err(e) => {
            reject(wire, &e, dialect).await;
            return None;
        }
    };
    let first = wsframe::text(frames::connected(&att.id, &att.me()).as_bytes());
    let budget = shared.config.limits.send_timeout;
    if let Err(e) = wire.open(&att.mailbox, &first, budget).await {
        send_failed(shared, &e);
        att.mailbox.clear_direct();
        return None;
    }
    if shared.shutdown.is_cancelled() {
        // Attached after the drain closed every session's mailbox: closed here instead.
        att.mailbox.close(SessionEnd::Draining);
    }
    Some((wire, att, prepared.identity.exp))
}

/// Refuses a connect: retryable failures close with a reconnect code and no error frame (the SDK
/// would treat an error frame as final), except for Unreal, which reconnects only on an error
/// frame; everything else gets the error frame in the client's dialect and close 1000.
async fn reject(mut wire: Wire, err: &EdgeError, dialect: Dialect) {
    let class = err.class();
    tracing::debug!(reason = class.label, error = %err, dialect = dialect.label(), "ws connect refused");
    // A mailbox of its own, unattached: the socket's writes go through one, whatever the stream.
    let mailbox = Mailbox::new(1);
    let (first, code) = if err.is_retryable() {
        let first = dialect.error_before_close().then(|| frames::error(err));
        (first, class.close)
    } else {
        (Some(frames::error_in(dialect, "", err)), close::REJECTED)
    };
    let first = first
        .map(|f| wsframe::text(f.as_bytes()))
        .unwrap_or_default();
    if tokio::time::timeout(CLOSE_BUDGET, wire.open(&mailbox, &first, CLOSE_BUDGET))
        .await
        .is_ok_and(|r| r.is_ok())
    {
        wire.close(&mailbox, &wsframe::close(code, class.label), CLOSE_BUDGET)
            .await;
    }
    mailbox.clear_direct();
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

fn send_failed(shared: &Shared, e: &WireError) {
    if matches!(e, WireError::SendTimeout) {
        shared.metrics.limit_hit(Limit::SendTimeout);
    }
}

/// A session's clocks, kept as deadlines and checked when its one timer fires (a timer reset on
/// every write would cost a timer-wheel update per delivery).
struct Clocks {
    /// When a `health.check` was last written.
    health: Instant,
    /// When the client's bytes last arrived.
    heard: Instant,
    /// Whether an RFC 6455 ping went out since then (one per silence, halfway to the idle close).
    probed: bool,
    /// When the session's token expires.
    expiry: Option<Instant>,
}

/// The live loop, until the session ends; with the client's close frame to echo, when it sent
/// one.
async fn serve(
    wire: &mut Wire,
    mut att: Attachment,
    exp: Option<u64>,
    dialect: Dialect,
    shared: &Shared,
) -> (SessionEnd, Option<Vec<u8>>) {
    let m = &shared.metrics;
    let cfg = &shared.config.ws;
    let budget = shared.config.limits.send_timeout;
    let now = Instant::now();
    let mut clocks = Clocks {
        health: now,
        heard: now,
        probed: false,
        expiry: exp.map(|e| now + until_exp(Some(e), shared.config.auth.leeway)),
    };
    // The last event written (by this task or by the hub directly), which feeds most SDKs'
    // watchdogs; Unity's counts only health checks.
    let mut last_event = now;
    let idle = cfg.client_idle_timeout;
    let quiet_for = if dialect.steady_health() {
        cfg.health_interval
    } else {
        health_silence(cfg.health_interval)
    };
    let due = |c: &Clocks, last_event: Instant| {
        let quiet = if dialect.steady_health() {
            c.health
        } else {
            c.health.max(last_event)
        };
        let mut at = (quiet + quiet_for).min(c.heard + idle);
        if !c.probed {
            at = at.min(c.heard + idle / 2);
        }
        if let Some(e) = c.expiry {
            at = at.min(e);
        }
        at
    };
    let timer = tokio::time::sleep_until(due(&clocks, last_event));
    tokio::pin!(timer);
    let delivery = &m.event_delivery_seconds;
    let bytes_out = &m.ws_bytes_out;
    let mut sent = |d: &Delivery| {
        bytes_out.inc_by(d.frame.len() as u64);
        delivery.observe(d.received.elapsed().as_secs_f64());
    };
    let mut inbound = Inbound::new(cfg.max_frame_bytes, cfg.max_message_bytes);
    let mut msgs = Vec::new();
    loop {
        tokio::select! {
            _ = &mut timer => {
                let now = Instant::now();
                if clocks.expiry.is_some_and(|e| e <= now) {
                    att.end_for_token(SessionEnd::TokenExpired);
                    return (SessionEnd::TokenExpired, None);
                }
                if clocks.heard + idle <= now {
                    return (SessionEnd::ClientIdle, None);
                }
                if !clocks.probed && clocks.heard + idle / 2 <= now {
                    // Silent for half the idle timeout: a live client's stack answers this ping.
                    if let Err(e) = wire.send(&att.mailbox, &wsframe::ping(), budget, &mut sent).await {
                        send_failed(shared, &e);
                        return (SessionEnd::WriteError, None);
                    }
                    clocks.probed = true;
                }
                if let Some(t) = att.mailbox.last_event() {
                    last_event = last_event.max(t);
                }
                if due(&clocks, last_event) <= now {
                    let frame = wsframe::text(frames::health_check(&att.id).as_bytes());
                    if let Err(e) = wire.send(&att.mailbox, &frame, budget, &mut sent).await {
                        send_failed(shared, &e);
                        return (SessionEnd::WriteError, None);
                    }
                    clocks.health = Instant::now();
                }
                timer.as_mut().reset(due(&clocks, last_event));
            }
            ready = att.mailbox.ready() => {
                if let Err(end) = ready {
                    if end.is_token() {
                        // Revoked: ends as an expired token does.
                        att.end_for_token(end);
                    }
                    return (end, None);
                }
                if let Err(e) = wire.deliver(&att.mailbox, budget, &mut sent, WRITE_BATCH).await {
                    send_failed(shared, &e);
                    return (SessionEnd::WriteError, None);
                }
            }
            read = wire.read(&mut inbound, &mut msgs) => {
                clocks.heard = Instant::now();
                clocks.probed = false;
                match read {
                    Ok(true) => {}
                    Ok(false) => return (SessionEnd::ClientClosed, None),
                    Err(WireError::Frame(FrameError::TooLarge)) => {
                        m.bad_input.with_label_values(&["ws", "frame_too_large"]).inc();
                        return (SessionEnd::FrameTooLarge, None);
                    }
                    Err(WireError::Frame(FrameError::Protocol(_))) => {
                        m.bad_input.with_label_values(&["ws", "protocol_violation"]).inc();
                        return (SessionEnd::ProtocolViolation, None);
                    }
                    Err(_) => return (SessionEnd::ReadError, None),
                }
                for msg in std::mem::take(&mut msgs) {
                    let (reply, health) = match answer(msg, &att, m) {
                        Answer::Nothing => continue,
                        Answer::Closed(echo) => return (SessionEnd::ClientClosed, Some(echo)),
                        Answer::Frames(f, health) => (f, health),
                    };
                    if let Err(e) = wire.send(&att.mailbox, &reply, budget, &mut sent).await {
                        send_failed(shared, &e);
                        return (SessionEnd::WriteError, None);
                    }
                    if health {
                        // A ping answered: the client's own cadence is the heartbeat. Moving the
                        // timer now (once per ping) spares the task a wake-up that would find
                        // nothing due.
                        clocks.health = Instant::now();
                        timer.as_mut().reset(due(&clocks, last_event));
                    }
                }
            }
        }
    }
}

/// What a client's message calls for.
enum Answer {
    Nothing,
    /// Frames to write, and whether they include a `health.check`.
    Frames(Vec<u8>, bool),
    /// The client closed; the close frame that answers it.
    Closed(Vec<u8>),
}

fn answer(msg: Msg, att: &Attachment, m: &crate::metrics::Metrics) -> Answer {
    let health = || wsframe::text(frames::health_check(&att.id).as_bytes());
    match msg {
        Msg::Close(code) => Answer::Closed(wsframe::close(wsframe::echo_code(code), "")),
        Msg::Text(t) => {
            m.ws_bytes_in.inc_by(t.len() as u64);
            if t.is_empty() {
                // Unreal's keep-alive (every 20 s): it needs no answer, and an error frame would
                // make it reconnect.
                return Answer::Nothing;
            }
            match frames::is_ping(&t) {
                Ok(true) => Answer::Frames(health(), true),
                Ok(false) => {
                    // Clients send nothing but pings (stream-protocol.md 5.2); ignore other JSON,
                    // but count it.
                    m.bad_input
                        .with_label_values(&["ws", "unexpected_event"])
                        .inc();
                    Answer::Nothing
                }
                Err(_) => {
                    m.bad_input.with_label_values(&["ws", "not_json"]).inc();
                    let err = EdgeError::BadInput("frames must be JSON".into());
                    Answer::Frames(wsframe::text(frames::error(&err).as_bytes()), false)
                }
            }
        }
        Msg::Binary => {
            m.bad_input.with_label_values(&["ws", "binary_frame"]).inc();
            let err = EdgeError::BadInput("binary frames are not supported".into());
            Answer::Frames(wsframe::text(frames::error(&err).as_bytes()), false)
        }
        Msg::Ping(payload) => {
            // Swift pings with RFC 6455 pings and counts only a `health.check` as the answer;
            // the pong goes first, in the same write.
            let mut out = wsframe::pong(&payload);
            out.extend_from_slice(&health());
            Answer::Frames(out, true)
        }
        Msg::Pong => Answer::Nothing,
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
