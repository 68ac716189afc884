//! Upstream faults: down at start, stalled, garbage. The gateway stays up, answers retryably, and
//! recovers by itself.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::Method;
use stream_edge::config::{UpstreamTarget, DEV_API_KEY};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

fn pointing_at(addr: std::net::SocketAddr) -> stream_edge::config::Config {
    let mut c = test_config();
    c.upstream.target = UpstreamTarget::Url(format!("http://{addr}").parse().unwrap());
    c.upstream.connect_timeout = Duration::from_millis(500);
    c.upstream.request_timeout = Duration::from_millis(500);
    c.upstream.probe_interval = Duration::from_millis(50);
    c.upstream.backoff_max = Duration::from_millis(100);
    c
}

/// A hand-written upstream on its own port: completes each WebSocket handshake, sends `user`'s
/// hello (a `health.check` with `me`), then hands the socket to `then`.
async fn fake_upstream<F, Fut>(user: &'static str, then: F) -> std::net::SocketAddr
where
    F: Fn(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = up.local_addr().unwrap();
    let then = std::sync::Arc::new(then);
    tokio::spawn(async move {
        while let Ok((s, _)) = up.accept().await {
            let then = then.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                let hello = format!(
                    r#"{{"type":"health.check","connection_id":"up-1","cid":"*","me":{{"id":"{user}","mutes":[],"channel_mutes":[],"blocked_user_ids":[],"devices":[]}}}}"#
                );
                if ws.send(Message::text(hello)).await.is_ok() {
                    then(ws).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn down_at_start_then_recovers_by_itself() {
    // Reserve a port, then close it: nothing listens there yet.
    let port_holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = port_holder.local_addr().unwrap();
    drop(port_holder);
    let gw = TestGateway::start_with(pointing_at(addr)).await;
    let (status, _) = http(Method::GET, &format!("{}/readyz", gw.admin), None, &[]).await;
    assert_eq!(status, 503, "not ready while upstream is down");
    assert_eq!(gw.metric("stream_edge_upstream_up", &[]).await, 0.0);
    let url = gw.connect_url(r#"{"user_id":"rec"}"#, DEV_API_KEY, &gw.token("rec", None));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(
        close_code(&mut ws).await,
        stream_edge::error::close::UPSTREAM_LOST,
        "retryable"
    );

    // Upstream comes up on that address.
    let emu = stream_edge_emulator::Emulator::new(vec![stream_edge_emulator::App {
        api_key: DEV_API_KEY.into(),
        secrets: vec![stream_edge::config::DEV_API_SECRET.into()],
    }]);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(stream_edge_emulator::serve(listener, emu, stop.clone()));
    eventually("ready again", || async {
        http(Method::GET, &format!("{}/readyz", gw.admin), None, &[])
            .await
            .0
            == 200
    })
    .await;
    let mut ok = None;
    for _ in 0..20 {
        let (mut ws, first) = gw.ws_raw(&url).await;
        if first["type"] == "health.check" {
            ok = Some(ws);
            break;
        }
        let _ = close_code(&mut ws).await;
    }
    assert!(ok.is_some(), "sessions connect once upstream is back");
    stop.cancel();
}

#[tokio::test]
async fn stalled_upstream_times_out_retryably() {
    // Accepts TCP connections and never says anything.
    let stall = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = stall.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = stall.accept().await {
            held.push(s);
        }
    });
    let gw = TestGateway::start_with(pointing_at(addr)).await;
    let (status, body) = http(
        Method::GET,
        &format!("{}/app?api_key={DEV_API_KEY}", gw.base),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["code"],
        23
    );
    let url = gw.connect_url(r#"{"user_id":"st"}"#, DEV_API_KEY, &gw.token("st", None));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(
        close_code(&mut ws).await,
        stream_edge::error::close::UPSTREAM_LOST
    );
}

/// A hand-written upstream that completes the handshake and then sends garbage among valid
/// events: garbage is counted and dropped; the session keeps working.
#[tokio::test]
async fn garbage_frames_from_upstream_are_dropped_and_counted() {
    let addr = fake_upstream("gb", |mut ws| async move {
        for f in ["not json", "[1,2]", "{\"no_type\":1}", "\u{0}"] {
            let _ = ws.send(Message::text(f)).await;
        }
        let _ = ws.send(Message::binary(vec![0xff, 0x00])).await;
        let _ = ws
            .send(Message::text(
                r#"{"type":"notification.ok","created_at":"2026-01-01T00:00:00Z"}"#,
            ))
            .await;
        while ws.next().await.is_some() {}
    })
    .await;
    let gw = TestGateway::start_with(pointing_at(addr)).await;
    let (mut ws, _) = gw.connect("gb").await;
    let ev = next_json(&mut ws).await;
    assert_eq!(
        ev["type"], "notification.ok",
        "only the valid event reaches the client"
    );
    assert_eq!(
        gw.metric(
            "stream_edge_events_dropped_total",
            &[("reason", "unparseable")]
        )
        .await,
        4.0
    );
    assert_eq!(ping(&mut ws).await["type"], "health.check");
}

#[tokio::test]
async fn non_websocket_upstream_is_a_retryable_failure() {
    // Answers every request with a plain HTTP 200 that is not a WebSocket upgrade.
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = up.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = up.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\ngarbage")
                    .await;
            });
        }
    });
    let gw = TestGateway::start_with(pointing_at(addr)).await;
    let url = gw.connect_url(r#"{"user_id":"nw"}"#, DEV_API_KEY, &gw.token("nw", None));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(
        close_code(&mut ws).await,
        stream_edge::error::close::UPSTREAM_LOST
    );
    // REST passes the (garbage) upstream answer through unchanged: it is upstream's to give.
    let (status, body) = http(
        Method::GET,
        &format!("{}/app?api_key={DEV_API_KEY}", gw.base),
        None,
        &[],
    )
    .await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "garbage"));
    gw.running().assert_no_panics();
}

/// An upstream that goes silent after its hello (it still reads, so TCP looks healthy) is
/// declared dead by the watchdog, as the SDK would: frames that keep arriving hold the watchdog
/// off, silence ends the connection, counted as `watchdog`, and its sessions are closed so their
/// SDKs reconnect.
#[tokio::test]
async fn a_silent_upstream_is_ended_by_the_watchdog() {
    let addr = fake_upstream("hush", |mut ws| async move {
        // Events for a while (each within the watchdog of the last), then silence.
        for _ in 0..6 {
            let ev = r#"{"type":"notification.ok","created_at":"2026-01-01T00:00:00Z"}"#;
            if ws.send(Message::text(ev)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while ws.next().await.is_some() {}
    })
    .await;
    let mut cfg = pointing_at(addr);
    cfg.upstream.watchdog = Duration::from_millis(300);
    let gw = TestGateway::start_with(cfg).await;
    let (mut ws, _) = gw.connect("hush").await;
    for _ in 0..6 {
        assert_eq!(next_json(&mut ws).await["type"], "notification.ok");
    }
    // 600 ms of frames outlived a 300 ms watchdog; the silence after them does not.
    assert_eq!(close_code(&mut ws).await, 1011);
    let lost = gw
        .metric(
            "stream_edge_upstream_disconnects_total",
            &[("reason", "watchdog")],
        )
        .await;
    assert_eq!(lost, 1.0);
}
