//! Unreal (stream-chat-unreal): raw JSON in the request target, the `wss` subprotocol, an empty
//! text frame every 20 s, errors read only from frames without `type`, and no reconnect after a
//! clean close.

use super::scenarios;
use super::wire::{Reaction, Sdk};
use crate::support::eventually;

#[tokio::test]
async fn connects_with_a_raw_json_target_and_stays_up_on_empty_frames_while_busy() {
    scenarios::busy(Sdk::Unreal).await;
}

#[tokio::test]
async fn refreshes_after_code_40() {
    scenarios::refresh(Sdk::Unreal).await;
}

/// Unreal reconnects after every error; the gateway cannot make it stop.
#[tokio::test]
async fn a_bad_signature_is_retried() {
    assert_eq!(
        scenarios::bad_signature(Sdk::Unreal).await,
        Reaction::Reconnect { refresh: false }
    );
}

/// Drain, upstream loss and expiry end with a close Unreal would ignore for 40 s; the untyped
/// error frame before it brings Unreal back at once.
#[tokio::test]
async fn recovers_from_upstream_loss_expiry_and_drain() {
    scenarios::recovery(Sdk::Unreal).await;
}

/// Unreal's lenient target through the real front (plain TCP: the same front as TLS). The raw
/// JSON connect is upgraded; nothing else a raw `"` or `{` could smuggle gets through: other
/// paths keep hyper's 400, a space, CR or NUL inside the target is still refused, and the bytes
/// after the request line are never reinterpreted.
#[tokio::test]
async fn the_lenient_target_opens_no_smuggling_path() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = crate::support::TestGateway::start().await;
    let tok = super::scenarios::token("ue-raw");
    let key = stream_edge::config::DEV_API_KEY;
    let upgrade = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    let answer = |raw: String| {
        let addr = gw.running().addr;
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
            tcp.write_all(raw.as_bytes()).await.expect("write");
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(crate::support::WAIT, tcp.read(&mut buf))
                .await
                .expect("answer in time")
                .unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
    };
    let json = r#"{"user_details":{"id":"ue-raw","name":"A%20B"}}"#;
    let ok = answer(format!(
        "GET /connect?json={json}&api_key={key}&authorization={tok}&stream-auth-type=jwt HTTP/1.1\r\n{upgrade}\r\n"
    ))
    .await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");

    for (what, raw) in [
        (
            "raw quotes on another path",
            format!("GET /channels?x={json} HTTP/1.1\r\nHost: x\r\n\r\n"),
        ),
        (
            "a second request line hidden behind a space",
            format!("GET /connect?json={{\"a\":1}} HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\n{upgrade}\r\n")
                .replacen("{\"a\":1} ", "{\"a\": 1} ", 1),
        ),
        (
            "a bare CR in the target",
            format!("GET /connect?json={{\"a\"}}\rX-Injected: 1 HTTP/1.1\r\n{upgrade}\r\n"),
        ),
        (
            "a NUL in the target",
            format!("GET /connect?json={{\"a\0\"}} HTTP/1.1\r\n{upgrade}\r\n"),
        ),
    ] {
        let got = answer(raw).await;
        assert!(
            got.starts_with("HTTP/1.1 400") || got.is_empty(),
            "{what}: {got}"
        );
    }
}

/// Every close Unreal should come back from has the error frame before it, the idle close
/// (4008) included: with its keep-alives off and nothing read (so its stack cannot answer the
/// gateway's RFC 6455 probe either), the gateway closes it as half-open, and Unreal reconnects at
/// once instead of staying offline.
#[tokio::test]
async fn an_idle_close_brings_it_back_too() {
    use super::wire::units;
    let env = super::scenarios::Env::start_with(|cfg| cfg.ws.client_idle_timeout = units(10)).await;
    let mut c = env
        .connect(Sdk::Unreal, "ue-idle", &scenarios::token("ue-idle"))
        .await
        .expect("connected");
    c.pings = false;
    let idle = || async {
        env.gw
            .metric(
                "stream_edge_sessions_closed_total",
                &[("reason", "client_idle")],
            )
            .await
    };
    eventually("closed as half-open", || async { idle().await == 1.0 }).await;
    assert_eq!(c.reaction().await, Reaction::Reconnect { refresh: false });
}
