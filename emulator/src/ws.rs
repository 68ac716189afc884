//! The WebSocket side: `GET /connect` upgrade, the handshake result as the
//! first frame (`health.check` with `me`, or `{"error":…}` then close 1000 so
//! the SDK does not retry), replies to client pings, periodic health checks,
//! and delivery of queued events until the socket ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::config::{DEFAULT_HEALTH_INTERVAL, OUTBOUND_QUEUE_CAPACITY};
use crate::connect;
use crate::ctx::{json_response, Body, Ctx};
use crate::devices;
use crate::error::ApiError;
use crate::events;
use crate::presence;
use crate::render::{self, ts};
use crate::store::{frame, Conn};
use crate::users;

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// A write that takes longer than this means a dead or stuck peer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Small buffers: idle sockets are the common case (see perf anchors).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * 1024 * 1024)
        .max_message_size(Some(1024 * 1024))
        .max_frame_size(Some(256 * 1024))
}

/// Answers `GET /connect`: always upgrades (an HTTP 401 would make the SDK
/// retry forever) and reports auth failures in the first frame instead.
pub(crate) fn upgrade(
    mut req: Request<Incoming>,
    query: &HashMap<String, String>,
    ctx: &Arc<Ctx>,
) -> Response<Body> {
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| is_ws)
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &ApiError::input("/connect needs a WebSocket upgrade").body(),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    // The token may come as the `Authorization` header instead of the query (the Swift SDK sends
    // it so, and so does the gateway, to keep it out of URLs).
    let header_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let outcome = connect::handshake(ctx, query, header_token.as_deref());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_ctx = ctx.clone();
    ctx.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config()),
                )
                .await;
                session(ws, outcome, &task_ctx).await;
            }
            Err(e) => tracing::debug!(error = %e, "emulator upgrade failed"),
        }
    });
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

fn health(conn_id: &str) -> Utf8Bytes {
    frame(&json!({
        "type": "health.check",
        "connection_id": conn_id,
        "cid": "*",
        "created_at": ts(OffsetDateTime::now_utc()),
        "custom": {},
    }))
}

/// Client pings: `[{"type":"health.check",…}]` (JS) or `{"type":"health.check",…}` (Flutter).
fn is_ping(text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let obj = match &v {
        Value::Array(items) => items.first(),
        other => Some(other),
    };
    obj.and_then(|o| o.get("type")).and_then(Value::as_str) == Some("health.check")
}

async fn send(ws: &mut Ws, text: Utf8Bytes) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, ws.send(Message::Text(text))).await,
        Ok(Ok(()))
    )
}

async fn close(ws: &mut Ws, code: CloseCode, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(Some(frame))).await;
}

async fn session(mut ws: Ws, outcome: Result<connect::Accepted, ApiError>, ctx: &Ctx) {
    let acc = match outcome {
        Ok(acc) => acc,
        Err(e) => {
            if send(&mut ws, frame(&json!({ "error": e.body() }))).await {
                close(&mut ws, CloseCode::Normal, "").await;
            }
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel(OUTBOUND_QUEUE_CAPACITY);
    let abort = CancellationToken::new();
    let overflow = CancellationToken::new();
    let conn_id = uuid::Uuid::new_v4().to_string();
    let hello = {
        let mut store = ctx.emulator.lock();
        let Some(app) = store.apps.get_mut(&acc.api_key) else {
            return;
        };
        let now = OffsetDateTime::now_utc();
        // Before the upsert: connecting with `invisible` can take an online user offline.
        let was_online = app.is_online(&acc.user_id);
        users::apply(app, &acc.user_id, acc.details, false, now);
        if let Some(device) = acc.device {
            devices::register(app, &acc.user_id, device, now);
        }
        if let Some(user) = app.users.get_mut(&acc.user_id) {
            user.last_active = Some(now);
        }
        let conn = Conn {
            user_id: acc.user_id.clone(),
            tx,
            abort: abort.clone(),
            overflow: overflow.clone(),
            watching: Default::default(),
            presence: Default::default(),
        };
        app.register(conn_id.clone(), conn);
        if was_online != app.is_online(&acc.user_id) {
            presence::changed(app, &acc.user_id, now);
        }
        json!({
            "type": "health.check",
            "connection_id": conn_id,
            "cid": "*",
            "created_at": ts(now),
            "custom": {},
            "me": render::own_user(app, &acc.user_id),
        })
    };
    let closed_by_peer = send(&mut ws, frame(&hello)).await
        && run(&mut ws, &conn_id, &mut rx, &abort, &overflow, ctx).await;
    {
        let mut store = ctx.emulator.lock();
        if let Some(app) = store.apps.get_mut(&acc.api_key) {
            events::unregister(app, &conn_id);
        }
    }
    if closed_by_peer {
        // Unregistered first, so a peer that saw its close acknowledged also
        // sees the connection gone from the counts.
        let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.flush()).await;
    }
}

/// The session loop. Returns true when the peer closed and tungstenite's
/// close reply still needs flushing; a close frame is sent only where the
/// cause calls for one.
async fn run(
    ws: &mut Ws,
    conn_id: &str,
    rx: &mut mpsc::Receiver<Utf8Bytes>,
    abort: &CancellationToken,
    overflow: &CancellationToken,
    ctx: &Ctx,
) -> bool {
    let start = tokio::time::Instant::now() + DEFAULT_HEALTH_INTERVAL;
    let mut ticker = tokio::time::interval_at(start, DEFAULT_HEALTH_INTERVAL);
    // After a stall, one catch-up health check is enough.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            // Simulated upstream loss: no close frame at all.
            () = abort.cancelled() => return false,
            () = ctx.shutdown.cancelled() => {
                close(ws, CloseCode::Away, "server shutting down").await;
                return false;
            }
            () = overflow.cancelled() => {
                close(ws, CloseCode::Error, "slow consumer").await;
                return false;
            }
            queued = rx.recv() => match queued {
                Some(text) => if !send(ws, text).await { return false },
                None => return false,
            },
            _ = ticker.tick() => if !send(ws, health(conn_id)).await { return false },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if is_ping(text.as_str()) && !send(ws, health(conn_id)).await {
                        return false;
                    }
                }
                Some(Ok(Message::Close(_))) => return true,
                // Binary frames are ignored; ping/pong are answered by tungstenite.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return false,
            },
        }
    }
}
