//! Churn: after thousands of session connects and disconnects over both transports, every table,
//! task and file descriptor the gateway holds returns to its baseline. (The 100,000-session soak
//! with RSS figures is part of the benchmark.)

use hyper::Method;
use stream_edge::config::DEV_API_KEY;

use crate::support::*;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_returns_to_baseline() {
    let gw = TestGateway::start().await;
    let shared = gw.running().shared.clone();
    // Warm up one session so lazily created pools exist in the baseline.
    drop(gw.connect("warm").await);
    eventually("warm-up released", || async {
        shared.hubs.session_count() == 0
    })
    .await;
    eventually("warm-up upstream retired", || async {
        shared.hubs.hub_count() == 0
    })
    .await;
    let fds = open_fds();
    let tasks = shared.tasks.tracker.len();

    for round in 0..40 {
        let conns: Vec<_> = (0..50)
            .map(|i| gw.connect_named(format!("churn-{}", (round * 50 + i) % 300)))
            .collect();
        let sockets = futures_util::future::join_all(conns).await;
        drop(sockets);
    }
    let tok = gw.token("churn-lp", None);
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("json", r#"{"user_id":"churn-lp"}"#)
        .finish();
    for _ in 0..300 {
        let (_, body) = http(
            Method::GET,
            &format!("{}/longpoll?{q}", gw.base),
            None,
            &[("authorization", &tok)],
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = v["event"]["connection_id"].as_str().unwrap();
        let url = format!(
            "{}/longpoll?connection_id={id}&api_key={DEV_API_KEY}&close=true",
            gw.base
        );
        assert_eq!(
            http(Method::GET, &url, None, &[("authorization", &tok)])
                .await
                .0,
            200
        );
    }
    assert!(gw.metric("stream_edge_sessions_opened_total", &[]).await >= 2300.0);

    eventually("sessions released", || async {
        shared.hubs.session_count() == 0 && shared.longpolls.is_empty()
    })
    .await;
    eventually("upstream connections retired after linger", || async {
        shared.hubs.hub_count() == 0
    })
    .await;
    assert_eq!(gw.metric("stream_edge_sessions_open", &[]).await, 0.0);
    assert_eq!(
        gw.metric("stream_edge_upstream_connections_open", &[])
            .await,
        0.0
    );
    assert_eq!(gw.metric("stream_edge_upstream_sessions", &[]).await, 0.0);
    eventually("tasks back to baseline", || async {
        shared.tasks.tracker.len() <= tasks
    })
    .await;
    // Client sockets of this process close too; allow the pooled keep-alive connections.
    eventually("file descriptors back to baseline", || async {
        open_fds() <= fds + 8
    })
    .await;
    // 300 churn users + the warm-up user + the long-poll user: one entry per distinct token.
    assert!(
        shared.auth.cache_len() <= 302,
        "{}",
        shared.auth.cache_len()
    );
}
