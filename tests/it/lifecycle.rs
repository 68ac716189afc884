//! Start-up and graceful shutdown: readiness, draining, close codes, deadline.

use hyper::Method;

use crate::support::*;

#[tokio::test]
async fn drain_closes_sessions_with_1001_and_flips_readiness() {
    let gw = TestGateway::start().await;
    let (status, _) = http(Method::GET, &format!("{}/readyz", gw.admin), None, &[]).await;
    assert_eq!(status, 200);
    let (status, _) = http(Method::GET, &format!("{}/healthz", gw.admin), None, &[]).await;
    assert_eq!(status, 200);
    let (mut a, _) = gw.connect("drain-a").await;
    let (mut b, _) = gw.connect("drain-b").await;
    let admin = gw.admin.clone();
    gw.running().shutdown();
    assert_eq!(close_code(&mut a).await, 1001);
    assert_eq!(close_code(&mut b).await, 1001);
    // The admin listener outlives the drain only until it completes; while it runs, not ready.
    let ready = tokio::time::timeout(WAIT, async {
        let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        client
            .get(format!("{admin}/readyz").parse().unwrap())
            .await
            .map(|r| r.status())
    })
    .await
    .unwrap();
    if let Ok(status) = ready {
        assert_eq!(status, 503);
    }
    assert!(gw.stop().await, "drain finished before the deadline");
}

#[tokio::test]
async fn new_connections_are_refused_after_drain() {
    let gw = TestGateway::start().await;
    let addr = gw.running().addr;
    assert!(gw.stop().await);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn metrics_endpoint_exports_core_series() {
    let gw = TestGateway::start().await;
    let (_ws, _) = gw.connect("metrics-u").await;
    let (status, text) = http(Method::GET, &format!("{}/metrics", gw.admin), None, &[]).await;
    assert_eq!(status, 200);
    for name in [
        "stream_edge_sessions_open",
        "stream_edge_upstream_connections_open",
        "stream_edge_jwt_validations_total",
        "stream_edge_ready",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    assert_eq!(
        metric_value(&text, "stream_edge_sessions_open", &[("transport", "ws")]),
        1.0
    );
    assert!(
        !text.contains("metrics-u"),
        "user ids never appear in metrics"
    );
}
