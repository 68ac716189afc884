//! The task that owns a hub's upstream WebSocket: connects, relays every frame into the hub's
//! router, pings on the SDK's cadence, applies the same watchdog the SDK applies, and retires the
//! hub when the connection is lost.

use std::sync::Arc;
use tokio::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Message;

use super::hub::{Ready, Status};
use super::{Hub, Hubs};
use crate::upstream::ws::UpstreamSocket;
use crate::upstream::Upstream;

/// The hub's upstream task. It lives as long as the hub, one per user, so the one-off connect
/// (TLS and WebSocket handshakes) runs in its own boxed future: inline, its state would stay part
/// of every hub's memory.
pub(super) async fn run(
    hub: Arc<Hub>,
    hubs: Hubs,
    upstream: Arc<Upstream>,
    details: Box<RawValue>,
) {
    let Some((ws, ping)) = Box::pin(open(&hub, &hubs, &upstream, details)).await else {
        return;
    };
    serve(ws, ping, &hub, &hubs, &upstream).await;
}

async fn open(
    hub: &Arc<Hub>,
    hubs: &Hubs,
    upstream: &Arc<Upstream>,
    details: Box<RawValue>,
) -> Option<(UpstreamSocket, String)> {
    let app = hub.app.clone();
    let m = upstream.metrics.clone();
    let wait = hubs.backoff().wait(&app);
    let connect = async {
        tokio::time::sleep(wait).await;
        let cutoff = hubs.revocations().cutoff(&app, &hub.user);
        upstream.connect_ws(&app, &hub.user, &details, cutoff).await
    };
    let connected = tokio::select! {
        r = connect => r,
        _ = hub.cancel.cancelled() => return None,
    };
    let (ws, handshake) = match connected {
        Ok(ok) => ok,
        Err(e) => {
            m.upstream_connects
                .with_label_values(&[&app, "error"])
                .inc();
            let delay = hubs.backoff().failed(&app);
            tracing::warn!(
                app = %app,
                error = %e,
                backoff_ms = delay.as_millis() as u64,
                "upstream connect failed"
            );
            hubs.fail(hub, &e.to_string());
            return None;
        }
    };
    m.upstream_connects.with_label_values(&[&app, "ok"]).inc();
    hubs.backoff().succeeded(&app);
    m.upstream_open.with_label_values(&[&app]).inc();
    tracing::debug!(app = %app, "upstream connected");
    let ping = format!(
        "[{{\"type\":\"health.check\",\"client_id\":{}}}]",
        serde_json::Value::from(format!("{}--{}", hub.user, handshake.connection_id))
    );
    hubs.privacy()
        .learn_from_user(&app, handshake.me.get())
        .await;
    // Before the sessions waiting for this connection see it ready, so each of them checks its
    // token against the user's current cutoff (see `Hubs::attach`).
    hubs.learn_user(&app, handshake.me.get());
    hub.status.send_replace(Status::Ready(Arc::new(Ready {
        connection_id: handshake.connection_id,
        me: handshake.me,
    })));
    Some((ws, ping))
}

/// Every reason an upstream connection ends (`upstream_disconnects_total{reason}`).
pub const DISCONNECT_REASONS: [&str; 4] = ["retired", "closed_by_upstream", "error", "watchdog"];

/// Relays upstream frames into the hub until the connection ends or the hub retires.
async fn serve(
    mut ws: UpstreamSocket,
    ping: String,
    hub: &Arc<Hub>,
    hubs: &Hubs,
    upstream: &Upstream,
) {
    let app = &hub.app;
    let m = &upstream.metrics;
    let cfg = &upstream.config;
    let mut ticker = tokio::time::interval(cfg.ping_interval);
    ticker.tick().await;
    let mut last_rx = Instant::now();
    // One timer for the watchdog, moved only when it fires: a new timer per frame would cost a
    // timer-wheel insert and removal per upstream event.
    let watchdog = tokio::time::sleep_until(last_rx + cfg.watchdog);
    tokio::pin!(watchdog);
    let reason = loop {
        tokio::select! {
            _ = hub.cancel.cancelled() => {
                let closing = tokio::time::timeout(std::time::Duration::from_secs(1), ws.close(None));
                let _ = Box::pin(closing).await;
                break "retired";
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(frame))) => {
                    last_rx = Instant::now();
                    super::refresh::on_event(hub, hubs, frame.as_str());
                    if let Some(user) = updated_user(frame.as_str()) {
                        hubs.learn_user(app, user.get());
                    }
                    if let Some(next) = hub.route(frame, last_rx, hubs.privacy()).await {
                        hubs.follow_up(hub, next).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None => break "closed_by_upstream",
                Some(Err(_)) => break "error",
                Some(Ok(_)) => last_rx = Instant::now(),
            },
            _ = ticker.tick() => {
                if ws.send(Message::text(ping.clone())).await.is_err() {
                    break "error";
                }
            }
            () = &mut watchdog => {
                let deadline = last_rx + cfg.watchdog;
                if deadline <= Instant::now() {
                    break "watchdog";
                }
                watchdog.as_mut().reset(deadline);
            }
        }
    };
    m.upstream_open.with_label_values(&[app]).dec();
    m.upstream_disconnects
        .with_label_values(&[app, reason])
        .inc();
    if reason != "retired" {
        tracing::info!(app = %app, reason, "upstream connection lost; closing its sessions");
        hubs.fail(hub, reason);
    }
}

/// The user object of a `user.updated` event (which carries the user's
/// `revoke_tokens_issued_before` after `revokeUserToken`). The substring test keeps every other
/// event from being parsed twice.
fn updated_user(frame: &str) -> Option<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Ev {
        #[serde(rename = "type")]
        kind: String,
        user: Option<Box<RawValue>>,
    }
    if !frame.contains("\"user.updated\"") {
        return None;
    }
    let ev: Ev = serde_json::from_str(frame).ok()?;
    (ev.kind == "user.updated").then_some(ev.user).flatten()
}

/// Sends changed `user_details` of a later session upstream as a partial update of `user`, with
/// that user's own authority and only the fields a user may set on itself
/// ([`crate::upstream::calls::update_user`]).
pub(super) fn forward_details(
    upstream: &Arc<Upstream>,
    privacy: &Arc<crate::privacy::Privacy>,
    tasks: &crate::shutdown::Shutdown,
    app: &str,
    user: &str,
    cutoff: Option<i64>,
    details: &RawValue,
) {
    let upstream = upstream.clone();
    let app = app.to_string();
    let user = user.to_string();
    let details = details.get().to_string();
    let privacy = privacy.clone();
    tasks.spawn(async move {
        match crate::upstream::calls::update_user(&upstream, &app, &user, cutoff, &details).await {
            Ok(Some(answer)) => {
                crate::privacy::rewrite::learn_from_response(&answer, &app, &privacy).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(app = %app, error = %e, "forwarding user_details failed");
            }
        }
    });
}
