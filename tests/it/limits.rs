//! Configured bounds: each answers in the protocol's own form when hit, and is counted.

use hyper::Method;
use stream_edge::config::{IpNet, DEV_API_KEY};

use crate::support::*;

async fn refused_with(gw: &TestGateway, user: &str, code: u16) {
    let url = gw.connect_url(
        &format!(r#"{{"user_id":"{user}"}}"#),
        DEV_API_KEY,
        &gw.token(user, None),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(close_code(&mut ws).await, code);
}

#[tokio::test]
async fn sessions_total_and_per_user() {
    let mut cfg = test_config();
    cfg.limits.max_sessions = 3;
    cfg.limits.max_sessions_per_user = 2;
    let gw = TestGateway::start_with(cfg).await;
    let (_a1, _) = gw.connect("lim-a").await;
    let (_a2, _) = gw.connect("lim-a").await;
    refused_with(&gw, "lim-a", 1013).await;
    assert_eq!(
        gw.metric(
            "stream_edge_limit_hits_total",
            &[("limit", "max_sessions_per_user")]
        )
        .await,
        1.0
    );
    let (_b1, _) = gw.connect("lim-b").await;
    refused_with(&gw, "lim-c", 1013).await;
    assert_eq!(
        gw.metric("stream_edge_limit_hits_total", &[("limit", "max_sessions")])
            .await,
        1.0
    );
    // Long-poll over the limit: HTTP 429 with Stream code 9.
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("json", r#"{"user_id":"lim-d"}"#)
        .finish();
    let tok = gw.token("lim-d", None);
    let (status, body) = http(
        Method::GET,
        &format!("{}/longpoll?{q}", gw.base),
        None,
        &[("authorization", &tok)],
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["code"],
        9
    );
}

#[tokio::test]
async fn upstream_connections_per_app() {
    let mut cfg = test_config();
    cfg.limits.max_upstream_per_app = 1;
    let gw = TestGateway::start_with(cfg).await;
    let (_a, _) = gw.connect("up-a").await;
    let (_a2, _) = gw.connect("up-a").await;
    refused_with(&gw, "up-b", 1013).await;
    assert_eq!(
        gw.metric(
            "stream_edge_limit_hits_total",
            &[("limit", "max_upstream_per_app")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn connect_rate_per_ip_with_trusted_forwarded_for() {
    let mut cfg = test_config();
    cfg.limits.connect_rate_per_ip = 2;
    cfg.limits.trusted_proxies = vec![IpNet::parse("127.0.0.1").unwrap()];
    let gw = TestGateway::start_with(cfg).await;
    let connect = |ip: &'static str| {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("api_key", DEV_API_KEY)
            .append_pair("json", r#"{"user_id":"rate"}"#)
            .finish();
        let url = format!("{}/longpoll?{q}", gw.base);
        let tok = gw.token("rate", None);
        async move {
            http(
                Method::GET,
                &url,
                None,
                &[("authorization", &tok), ("x-forwarded-for", ip)],
            )
            .await
            .0
        }
    };
    // Burst of 2x the rate from one client, then 429; another client is unaffected.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(connect("203.0.113.5").await.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429));
    assert_eq!(connect("203.0.113.6").await, 200);
    assert!(
        gw.metric(
            "stream_edge_limit_hits_total",
            &[("limit", "connect_rate_per_ip")]
        )
        .await
            >= 2.0
    );
    // Once the flood stops, the bucket refills and the same client is admitted again.
    let started = tokio::time::Instant::now();
    eventually("admitted again after the flood", || async {
        connect("203.0.113.5").await == 200
    })
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "refills at the configured rate"
    );
    // Drain the refilled bucket again for the WebSocket check below.
    while connect("203.0.113.5").await == 200 {}
    // The WebSocket path answers a retryable close instead of an error frame.
    let url = gw.connect_url(
        r#"{"user_id":"rate"}"#,
        DEV_API_KEY,
        &gw.token("rate", None),
    );
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.5".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1013);
}

#[tokio::test]
async fn spoofed_forwarded_for_from_untrusted_peer_is_ignored() {
    let mut cfg = test_config();
    cfg.limits.connect_rate_per_ip = 1;
    let gw = TestGateway::start_with(cfg).await;
    let tok = gw.token("spoof", None);
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("json", r#"{"user_id":"spoof"}"#)
        .finish();
    let mut statuses = Vec::new();
    for i in 0..4 {
        let xff = format!("198.51.100.{i}");
        let (s, _) = http(
            Method::GET,
            &format!("{}/longpoll?{q}", gw.base),
            None,
            &[("authorization", &tok), ("x-forwarded-for", &xff)],
        )
        .await;
        statuses.push(s.as_u16());
    }
    // Rotating the header does not buy a fresh bucket: the peer (127.0.0.1) is the client.
    assert_eq!(statuses, vec![200, 200, 429, 429]);
}

#[tokio::test]
async fn body_size_and_slow_headers() {
    let mut cfg = test_config();
    cfg.limits.max_body_bytes = 1024;
    cfg.limits.header_timeout = std::time::Duration::from_millis(300);
    let gw = TestGateway::start_with(cfg).await;
    let big = "x".repeat(4096);
    let (status, body) = http(
        Method::POST,
        &format!("{}/users?api_key={DEV_API_KEY}", gw.base),
        Some(&big),
        &[],
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["code"],
        4
    );
    // Slowloris: a client that never finishes its request head is disconnected, and counted.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.running().addr)
        .await
        .unwrap();
    s.write_all(b"GET /app HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("closed by the gateway")
        .unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    assert_eq!(
        gw.metric(
            "stream_edge_limit_hits_total",
            &[("limit", "header_timeout")]
        )
        .await,
        1.0
    );
}
