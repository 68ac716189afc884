//! Resource exhaustion by one client (issue 13, section 4), over raw TCP: stalled and dripped
//! request bodies, connections held per address, malformed and oversized chunked bodies. Each is
//! answered in Stream's error shape as the client's error, and counted.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use stream_edge::config::DEV_API_KEY;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Reads one response: status and JSON body (by `content-length`), bounded by [`WAIT`].
async fn read_response(s: &mut TcpStream) -> (u16, Value) {
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let status = head[9..12].parse().unwrap();
                    let body =
                        serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                    return (status, body);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "closed without a response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a response in time")
}

/// Waits for the gateway to close the connection (EOF or reset), bounded by [`WAIT`].
async fn closed(s: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    tokio::time::timeout(WAIT, async {
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .expect("the gateway closes the connection");
}

async fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

async fn limit_hits(gw: &TestGateway, limit: &str) -> f64 {
    gw.metric("stream_edge_limit_hits_total", &[("limit", limit)])
        .await
}

/// A POST with a declared length of 100 and one byte sent: on a route whose body the gateway
/// buffers (`/users`, unauthenticated) and on one it streams to upstream (a message send).
#[tokio::test]
async fn stalled_request_bodies_time_out_with_408_and_are_counted() {
    let mut cfg = test_config();
    cfg.limits.body_timeout = Duration::from_millis(300);
    let gw = TestGateway::start_with(cfg).await;
    let addr = gw.running().addr;
    let tok = gw.token("stall", None);
    let buffered = format!(
        "POST /users?api_key={DEV_API_KEY} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{"
    );
    let streamed = format!(
        "POST /channels/messaging/stall/message?api_key={DEV_API_KEY}&user_id=stall HTTP/1.1\r\n\
         host: x\r\nauthorization: {tok}\r\nstream-auth-type: jwt\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
    );
    for (i, req) in [buffered, streamed].iter().enumerate() {
        let mut s = send(addr, req.as_bytes()).await;
        let (status, body) = read_response(&mut s).await;
        assert_eq!(status, 408, "request {i}: {body}");
        assert_eq!(body["code"], 23, "{body}");
        assert_eq!(body["StatusCode"], 408, "{body}");
        closed(&mut s).await;
        assert_eq!(limit_hits(&gw, "body_timeout").await, (i + 1) as f64);
    }
    // Nothing was blamed on the upstream.
    assert_eq!(
        gw.metric("stream_edge_rest_requests_total", &[("status", "5xx")])
            .await,
        0.0
    );
}

/// A body dripped one byte at a time never goes idle, so the bound is on the whole body.
#[tokio::test]
async fn a_dripped_body_is_bounded_in_total() {
    let mut cfg = test_config();
    cfg.limits.body_timeout = Duration::from_millis(300);
    let gw = TestGateway::start_with(cfg).await;
    let head = format!(
        "POST /users?api_key={DEV_API_KEY} HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n"
    );
    let s = send(gw.running().addr, head.as_bytes()).await;
    let (mut r, mut w) = s.into_split();
    let started = tokio::time::Instant::now();
    let drip = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..1000 {
            tick.tick().await;
            if w.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = r.read(&mut chunk).await.unwrap_or(0);
            assert!(n > 0, "closed without a response");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("answered while the client still drips");
    drip.abort();
    assert!(
        buf.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(limit_hits(&gw, "body_timeout").await, 1.0);
}

/// One address cannot hold more than `limits.max_connections_per_ip` connections: the next one
/// gets 429 with code 9, and a slot frees when a connection closes.
#[tokio::test]
async fn open_connections_per_address_are_capped() {
    let mut cfg = test_config();
    cfg.limits.max_connections_per_ip = 2;
    let gw = TestGateway::start_with(cfg).await;
    let addr = gw.running().addr;
    // Two connections that stall mid-head (held until the header timeout).
    let a = send(addr, b"GET /app HTTP/1.1\r\n").await;
    let _b = send(addr, b"GET /app HTTP/1.1\r\n").await;
    // Accepted in order, so the third is refused; the refusal answers without a request.
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (status, body) = read_response(&mut c).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], 9, "{body}");
    closed(&mut c).await;
    assert_eq!(limit_hits(&gw, "max_connections_per_ip").await, 1.0);
    drop(a);
    eventually("a closed connection frees its slot", || async {
        let mut c = send(addr, b"GET /_unknown_route HTTP/1.1\r\nhost: x\r\n\r\n").await;
        read_response(&mut c).await.0 != 429
    })
    .await;
}

/// A malformed chunked body is the client's error (400, code 4), not an upstream failure (502).
#[tokio::test]
async fn malformed_chunked_body_is_a_400_not_a_502() {
    let gw = TestGateway::start().await;
    let tok = gw.token("chunky", None);
    let req = format!(
        "POST /channels/messaging/chunky/message?api_key={DEV_API_KEY}&user_id=chunky HTTP/1.1\r\n\
         host: x\r\nauthorization: {tok}\r\nstream-auth-type: jwt\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
    );
    let mut s = send(gw.running().addr, req.as_bytes()).await;
    let (status, body) = read_response(&mut s).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 4, "{body}");
    assert_eq!(
        gw.metric("stream_edge_rest_requests_total", &[("status", "5xx")])
            .await,
        0.0
    );
}

/// A chunked body (no declared length) over `limits.max_body_bytes`: 413 with code 4, counted.
#[tokio::test]
async fn oversized_chunked_body_is_a_413() {
    let mut cfg = test_config();
    cfg.limits.max_body_bytes = 1024;
    let gw = TestGateway::start_with(cfg).await;
    let tok = gw.token("big", None);
    let chunk = "x".repeat(800);
    let req = format!(
        "POST /channels/messaging/big/message?api_key={DEV_API_KEY}&user_id=big HTTP/1.1\r\n\
         host: x\r\nauthorization: {tok}\r\nstream-auth-type: jwt\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
         320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    let mut s = send(gw.running().addr, req.as_bytes()).await;
    let (status, body) = read_response(&mut s).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], 4, "{body}");
    assert_eq!(limit_hits(&gw, "max_body_bytes").await, 1.0);
}

/// A client that asks for a large response and never reads it is disconnected after
/// `limits.send_timeout_seconds`, instead of holding its connection (and the response) forever.
#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let mut cfg = test_config();
    cfg.limits.send_timeout = Duration::from_millis(300);
    let gw = TestGateway::start_with(cfg).await;
    // A channel whose state is about 6 MB: more than the kernel buffers of both ends take.
    let tok = gw.token("reader", None);
    let auth = [("authorization", tok.as_str()), ("stream-auth-type", "jwt")];
    let channel = format!("{}/channels/messaging/big-state", gw.embedded_url());
    let create = format!("{channel}/query?api_key={DEV_API_KEY}&user_id=reader");
    let (status, text) = http(
        hyper::Method::POST,
        &create,
        Some(r#"{"data":{"members":["reader"]}}"#),
        &auth,
    )
    .await;
    assert!(status.is_success(), "{status} {text}");
    let filler = "f".repeat(19 * 1024);
    let url = format!("{channel}/message?api_key={DEV_API_KEY}&user_id=reader");
    for _ in 0..300 {
        let body =
            serde_json::json!({"message": {"attachments": [{"type": "file", "title": filler}]}})
                .to_string();
        let (status, text) = http(hyper::Method::POST, &url, Some(&body), &auth).await;
        assert!(status.is_success(), "{status} {text}");
    }
    // A client with a small receive buffer that sends its request and reads nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(gw.running().addr).await.unwrap();
    let body = r#"{"state":true,"messages":{"limit":300}}"#;
    let req = format!(
        "POST /channels/messaging/big-state/query?api_key={DEV_API_KEY}&user_id=reader HTTP/1.1\r\n\
         host: x\r\nauthorization: {tok}\r\nstream-auth-type: jwt\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    eventually("the stalled write is cut off", || async {
        limit_hits(&gw, "send_timeout").await == 1.0
    })
    .await;
    // What reaches the client now is a truncated response and the end of the connection.
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 65536];
        while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the connection ends");
    assert!(
        got.starts_with(b"HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&got[..got.len().min(64)])
    );
    assert!(
        got.len() < 6 * 1024 * 1024,
        "truncated: {} bytes",
        got.len()
    );
}

/// Buffered request bodies share one budget: a client that declares a large body and stalls
/// holds it only until its body times out, and meanwhile others get 429 with code 9, not an
/// ever-growing gateway.
#[tokio::test]
async fn buffered_request_bodies_share_one_budget() {
    let mut cfg = test_config();
    cfg.limits.rest_max_buffered_body = 64 * 1024;
    cfg.limits.rest_buffered_total = 64 * 1024;
    cfg.limits.body_timeout = Duration::from_millis(500);
    let gw = TestGateway::start_with(cfg).await;
    let addr = gw.running().addr;
    let users = format!("{}/users?api_key={DEV_API_KEY}", gw.base);
    let stalled = format!(
        "POST /users?api_key={DEV_API_KEY} HTTP/1.1\r\nhost: x\r\ncontent-length: 65536\r\n\r\n{{"
    );
    let mut hog = send(addr, stalled.as_bytes()).await;
    eventually("the stalled body holds the whole budget", || async {
        let (status, body) = http(hyper::Method::POST, &users, Some("{}"), &[]).await;
        status == 429 && body.contains("\"code\":9")
    })
    .await;
    assert!(limit_hits(&gw, "rest_buffered_total_bytes").await >= 1.0);
    let (status, body) = read_response(&mut hog).await;
    assert_eq!(status, 408, "{body}");
    // Its reservation is returned with the request: others are buffered again.
    let (status, body) = http(hyper::Method::POST, &users, Some("{}"), &[]).await;
    assert_ne!(status, 429, "{body}");
}

/// A keep-alive connection that served a request through hyper and then idles is closed after the
/// header timeout: an idle connection holds no slot forever.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let mut cfg = test_config();
    cfg.limits.header_timeout = Duration::from_millis(300);
    let gw = TestGateway::start_with(cfg).await;
    let mut s = send(
        gw.running().addr,
        format!("GET /app?api_key={DEV_API_KEY} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
    )
    .await;
    let (status, _) = read_response(&mut s).await;
    assert_ne!(status, 0);
    let started = tokio::time::Instant::now();
    closed(&mut s).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
