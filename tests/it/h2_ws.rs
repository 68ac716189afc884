//! WebSockets over HTTP/2 (RFC 8441, `http2.websockets`, issue 19): an h2 client's extended
//! CONNECT on `/connect` is the same session an HTTP/1.1 upgrade gets (first frame, pings, events,
//! refusals as an error frame then close 1000, drain with 1001), counted in
//! `stream_edge_ws_h2_sessions_total` and toward the connection's stream limit; any other
//! CONNECT is refused and counted; without the key the server's SETTINGS do not advertise
//! extended CONNECT, over TLS (ALPN `h2`) or h2c, and a plain CONNECT is refused too. Headless Chromium over TLS:
//! `tests/e2e/h2/websocket.test.mjs`.

use bytes::Bytes;
use futures_util::SinkExt;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use stream_edge::config::DEV_API_KEY;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::support::*;
use crate::tls::Pki;

type H2Ws = WebSocketStream<TokioIo<Upgraded>>;

/// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 section 3).
const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// A cleartext gateway taking h2c, with `http2.websockets` as given.
async fn h2c_gateway(websockets: bool) -> TestGateway {
    let mut cfg = test_config();
    cfg.http2.cleartext = true;
    cfg.http2.websockets = websockets;
    TestGateway::start_with(cfg).await
}

/// An h2c connection to `gw`, after one round trip, so the server's SETTINGS are in effect.
async fn h2c(gw: &TestGateway) -> SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("{}/_emulator", gw.base))
        .body(Empty::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(resp.status(), 404);
    send
}

/// An extended CONNECT to `path` with `:protocol = protocol`: the WebSocket when answered 200,
/// else the status and body.
async fn extended_connect(
    send: &mut SendRequest<Empty<Bytes>>,
    gw: &TestGateway,
    path: &str,
    protocol: Option<&'static str>,
) -> Result<H2Ws, (u16, String)> {
    let mut req = hyper::Request::connect(format!("{}{path}", gw.base))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap();
    if let Some(p) = protocol {
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static(p));
    }
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    if resp.status() != 200 {
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        return Err((status, String::from_utf8_lossy(&body).into_owned()));
    }
    let upgraded = tokio::time::timeout(WAIT, hyper::upgrade::on(resp))
        .await
        .expect("upgraded in time")
        .unwrap();
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
}

/// An accepted extended CONNECT on `path`, past its first frame.
async fn session(send: &mut SendRequest<Empty<Bytes>>, gw: &TestGateway, path: &str) -> H2Ws {
    let mut ws = extended_connect(send, gw, path, Some("websocket"))
        .await
        .expect("accepted");
    assert_eq!(next_json(&mut ws).await["type"], "health.check");
    ws
}

/// The `/connect` path and query the SDK builds, for `token`.
fn connect_path(gw: &TestGateway, user: &str, token: &str) -> String {
    let url = gw.connect_url(
        &format!(r#"{{"user_id":"{user}","user_details":{{"id":"{user}"}}}}"#),
        DEV_API_KEY,
        token,
    );
    let at = url.find("/connect").unwrap();
    url[at..].to_string()
}

#[tokio::test]
async fn extended_connect_is_the_same_websocket_session() {
    let gw = h2c_gateway(true).await;
    let mut send = h2c(&gw).await;
    let (user, other) = ("h2ws-u", "h2ws-other");
    let path = connect_path(&gw, user, &gw.token(user, None));
    let mut ws = extended_connect(&mut send, &gw, &path, Some("websocket"))
        .await
        .expect("the extended CONNECT is accepted");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "health.check", "{first}");
    assert_eq!(first["me"]["id"], user);
    let id = first["connection_id"].as_str().unwrap().to_string();
    assert_eq!(ping(&mut ws).await["connection_id"], id.as_str());

    // A second session of the user on the same h2 connection: its own id, both live.
    let mut ws2 = extended_connect(&mut send, &gw, &path, Some("websocket"))
        .await
        .expect("a second WebSocket stream");
    let id2 = next_json(&mut ws2).await["connection_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(id, id2);

    // Events arrive over the h2 stream; the client's frames reach the gateway (pings above).
    gw.watch(user, &id, "h2ws-ch", &[user, other]).await;
    gw.send(other, "h2ws-ch", "over h2").await;
    assert_eq!(next_message(&mut ws).await["message"]["text"], "over h2");
    assert_eq!(
        gw.metric("stream_edge_ws_h2_sessions_total", &[]).await,
        2.0
    );

    // Closing one session's stream leaves the other serving on the same connection.
    ws.send(Message::Close(None)).await.unwrap();
    close_code(&mut ws).await;
    // (Events of the user's channel may come first.)
    let mut reply = ping(&mut ws2).await;
    while reply["type"] != "health.check" {
        reply = next_json(&mut ws2).await;
    }
    assert_eq!(reply["connection_id"], id2.as_str());
    gw.running().assert_no_panics();
}

/// A refused connect reaches the client as over HTTP/1.1: the handshake succeeds, then an error
/// frame with the Stream code and close 1000 (an HTTP error would make the SDK retry forever).
#[tokio::test]
async fn a_refused_connect_is_an_error_frame_then_1000() {
    let gw = h2c_gateway(true).await;
    let mut send = h2c(&gw).await;
    let user = "h2ws-refused";
    let bad = sign("not-the-app-secret", user, None);
    let mut ws = extended_connect(
        &mut send,
        &gw,
        &connect_path(&gw, user, &bad),
        Some("websocket"),
    )
    .await
    .expect("the handshake itself succeeds");
    let first = next_json(&mut ws).await;
    assert_eq!(first["error"]["code"], 43, "{first}");
    assert_eq!(close_code(&mut ws).await, 1000);
}

/// The gateway is not a proxy: a CONNECT for another protocol, no protocol, or another path is
/// answered with a Stream error and counted, and the connection keeps serving.
#[tokio::test]
async fn other_connects_are_refused_and_counted() {
    let gw = h2c_gateway(true).await;
    let gw = &gw;
    let mut send = h2c(gw).await;
    let bad = |reason: &'static str| async move {
        gw.metric(
            "stream_edge_bad_input_total",
            &[("transport", "ws"), ("reason", reason)],
        )
        .await
    };
    let Err((status, body)) =
        extended_connect(&mut send, gw, "/connect", Some("connect-udp")).await
    else {
        panic!("refused");
    };
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#""code":4"#), "{body}");
    let Err((status, body)) = extended_connect(&mut send, gw, "/channels", Some("websocket")).await
    else {
        panic!("refused");
    };
    assert_eq!(status, 404, "{body}");
    assert_eq!(bad("h2_connect_protocol").await, 1.0);
    assert_eq!(bad("h2_connect_path").await, 1.0);
    // Still serving: a WebSocket on the same connection.
    let user = "h2ws-after";
    let path = connect_path(gw, user, &gw.token(user, None));
    let mut ws = extended_connect(&mut send, gw, &path, Some("websocket"))
        .await
        .expect("accepted");
    assert_eq!(next_json(&mut ws).await["type"], "health.check");
}

/// Shutdown closes an h2 WebSocket session with 1001 like an HTTP/1.1 one, and the drain (the h2
/// connection's GOAWAY waiting for its streams) finishes before the deadline.
#[tokio::test]
async fn drain_closes_an_h2_websocket_with_1001() {
    let gw = h2c_gateway(true).await;
    let mut send = h2c(&gw).await;
    let user = "h2ws-drain";
    let path = connect_path(&gw, user, &gw.token(user, None));
    let mut ws = extended_connect(&mut send, &gw, &path, Some("websocket"))
        .await
        .expect("accepted");
    assert_eq!(next_json(&mut ws).await["type"], "health.check");
    gw.running().shutdown();
    assert_eq!(close_code(&mut ws).await, 1001);
    drop(ws);
    assert!(gw.stop().await, "drain finished before the deadline");
}

/// An h2 WebSocket holds its stream for the session's life, so it counts toward the
/// connection's `http2.max_concurrent_streams` (the limit hit when a session fills it), and a
/// closed session frees its stream.
#[tokio::test]
async fn h2_websockets_count_toward_the_stream_limit() {
    let mut cfg = test_config();
    cfg.http2.cleartext = true;
    cfg.http2.websockets = true;
    cfg.http2.max_concurrent_streams = 2;
    let gw = TestGateway::start_with(cfg).await;
    let hits = || {
        gw.metric(
            "stream_edge_limit_hits_total",
            &[("limit", "h2_max_concurrent_streams")],
        )
    };
    let mut send = h2c(&gw).await;
    let user = "h2ws-streams";
    let path = connect_path(&gw, user, &gw.token(user, None));
    let mut first = session(&mut send, &gw, &path).await;
    assert_eq!(hits().await, 0.0, "one stream of two");
    let _second = session(&mut send, &gw, &path).await;
    assert_eq!(
        hits().await,
        1.0,
        "the second session filled the connection"
    );
    first.send(Message::Close(None)).await.unwrap();
    close_code(&mut first).await;
    drop(first);
    // The freed stream takes a third session; the limit is hit again only when it fills.
    let _third = session(&mut send, &gw, &path).await;
    assert_eq!(hits().await, 2.0);
}

/// The server's first SETTINGS frame, as (identifier, value) pairs.
async fn server_settings<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> Vec<(u16, u32)> {
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(WAIT, s.read_exact(&mut head))
        .await
        .expect("SETTINGS in time")
        .unwrap();
    assert_eq!(head[3], 0x4, "the server's first frame is SETTINGS");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    payload
        .chunks_exact(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect()
}

fn advertises_extended_connect(settings: &[(u16, u32)]) -> bool {
    settings.contains(&(ENABLE_CONNECT_PROTOCOL, 1))
}

/// Browsers do not fall back once extended CONNECT is advertised, so by default it never is:
/// not over TLS with `http2.tls`, not over h2c; only with `http2.websockets`.
#[tokio::test]
async fn extended_connect_is_advertised_only_with_the_key() {
    let pki = Pki::new();
    let tls_gw = crate::h2::gateway(&pki, "h2ws-off", true).await;
    let (s, chosen) = crate::h2::tls(&tls_gw, &pki, &[b"h2"]).await;
    assert_eq!(chosen.as_deref(), Some(&b"h2"[..]));
    let settings = server_settings(s).await;
    assert!(!advertises_extended_connect(&settings), "{settings:?}");

    for (websockets, want) in [(false, false), (true, true)] {
        let gw = h2c_gateway(websockets).await;
        let tcp = tokio::net::TcpStream::connect(gw.running().addr)
            .await
            .unwrap();
        let settings = server_settings(tcp).await;
        assert_eq!(advertises_extended_connect(&settings), want, "{settings:?}");
    }

    // Off, an extended CONNECT is refused by the h2 layer and no session starts.
    let gw = h2c_gateway(false).await;
    let mut send = h2c(&gw).await;
    let user = "h2ws-off";
    let path = connect_path(&gw, user, &gw.token(user, None));
    let req = {
        let mut r = hyper::Request::connect(format!("{}{path}", gw.base))
            .header("sec-websocket-version", "13")
            .body(Empty::new())
            .unwrap();
        r.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        r
    };
    let refused = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .expect("answered in time");
    assert!(refused.is_err(), "the stream is reset: {refused:?}");
    assert_eq!(
        gw.metric("stream_edge_ws_h2_sessions_total", &[]).await,
        0.0
    );
}

/// The real SDK in headless Chromium over `wss:` to a TLS gateway with `http2.tls` and
/// `http2.websockets` (`tests/e2e/h2/websocket.test.mjs`): with an open credentialed h2
/// connection its WebSocket is an extended CONNECT carrying frames both ways, and a bad token is
/// refused as over HTTP/1.1 (code 43, no retry); without one, Chromium uses HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sdk_websocket_over_h2() {
    let out = crate::h2::browser_scenario(
        "h2/websocket.test.mjs",
        "h2-ws-browser",
        |h| {
            h.tls = true;
            h.websockets = true;
        },
        &[("H2_WS", "1")],
    )
    .await;
    assert!(out.contains("# pass 3"), "every scenario ran");
}
