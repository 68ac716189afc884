//! Several replicas (`[cluster]`, issue 18) in one process, sharing one embedded upstream: a call
//! for another replica's session is forwarded to its owner and succeeds; a forged id is refused
//! without forwarding; an owner that is gone gives code 46; a user whose calls arrive forwarded
//! is closed (1001) so it reconnects through the balancer; the peer listener takes only signed
//! calls. The HAProxy-fronted, SDK-driven scenarios are in `replicas`.

use std::time::Duration;

use hyper::Method;
use serde_json::Value;
use stream_edge::config::DEV_API_KEY;

use crate::longpoll::lp_poll;
use crate::support::*;

async fn replica(upstream: std::net::SocketAddr, converge: Duration) -> TestGateway {
    let mut c = upstream_at(upstream);
    c.cluster.peer_listen = Some("127.0.0.1:0".parse().unwrap());
    c.cluster.peers = vec!["127.0.0.1".into()];
    c.cluster.converge_delay = converge;
    c.longpoll.hold = Duration::from_millis(300);
    TestGateway::start_with(c).await
}

const LATER: Duration = Duration::from_secs(3600);

/// A long-poll connect; its session's id.
async fn lp_connect(gw: &TestGateway, user: &str) -> String {
    crate::longpoll::lp_connect(gw, user).await.0
}

fn has_text(poll: &Value, text: &str) -> bool {
    poll["events"]
        .as_array()
        .is_some_and(|es| es.iter().any(|e| e["message"]["text"] == text))
}

#[tokio::test]
async fn rest_calls_and_polls_for_another_replicas_session_are_forwarded() {
    let (emu, _stop) = emulator().await;
    let a = replica(emu, LATER).await;
    let b = replica(emu, LATER).await;

    // A WebSocket session on A, whose REST call lands on B.
    let (mut ws, id) = a.connect("fw-alice").await;
    assert_eq!(id.len(), 34, "{id}");
    b.watch("fw-alice", &id, "fw-room", &["fw-alice", "fw-bob"])
        .await;
    b.send("fw-bob", "fw-room", "over the peer link").await;
    let msg = next_message(&mut ws).await;
    assert_eq!(msg["message"]["text"], "over the peer link", "{msg}");

    // A long-poll session on A, polled through B.
    let lp = lp_connect(&a, "fw-carol").await;
    b.watch("fw-carol", &lp, "fw-room2", &["fw-carol", "fw-bob"])
        .await;
    b.send("fw-bob", "fw-room2", "polled elsewhere").await;
    let mut seen = false;
    for _ in 0..20 {
        let (status, poll) = lp_poll(&b, "fw-carol", &lp).await;
        assert_eq!(status, 200, "{poll}");
        if has_text(&poll, "polled elsewhere") {
            seen = true;
            break;
        }
    }
    assert!(seen, "the forwarded poll delivers the session's events");

    assert!(
        b.metric("stream_edge_forwarded_requests_total", &[("result", "ok")])
            .await
            >= 3.0
    );
    assert!(a.metric("stream_edge_forwarded_received_total", &[]).await >= 3.0);
    // Every session stayed on its owner: B holds no upstream connection of its own for them.
    assert_eq!(
        b.metric("stream_edge_upstream_connections_open", &[]).await,
        0.0
    );
}

#[tokio::test]
async fn forged_or_tampered_ids_are_refused_without_forwarding() {
    let (emu, _stop) = emulator().await;
    let a = replica(emu, LATER).await;
    let b = replica(emu, LATER).await;
    let (_ws, id) = a.connect("fg-alice").await;

    let mut tampered = id.clone().into_bytes();
    // A change inside the owner's address: the MAC no longer verifies.
    tampered[4] = if tampered[4] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered.as_str(),
        "e1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "550e8400-e29b-41d4-a716-446655440000",
    ] {
        let (status, poll) = lp_poll(&b, "fg-alice", bad).await;
        assert_eq!(status, 400, "{poll}");
        assert_eq!(poll["code"], 46, "{poll}");
    }
    assert_eq!(
        b.metric("stream_edge_connection_id_refused_total", &[])
            .await,
        3.0
    );
    assert_eq!(
        b.metric("stream_edge_forwarded_requests_total", &[]).await,
        0.0
    );
    assert_eq!(
        a.metric("stream_edge_forwarded_received_total", &[]).await,
        0.0
    );
}

#[tokio::test]
async fn an_owner_that_is_gone_answers_46() {
    let (emu, _stop) = emulator().await;
    let a = replica(emu, LATER).await;
    let b = replica(emu, LATER).await;
    let lp = lp_connect(&a, "gone-alice").await;
    assert!(a.stop().await, "clean drain");
    let (status, poll) = lp_poll(&b, "gone-alice", &lp).await;
    assert_eq!((status, poll["code"].as_i64()), (400, Some(46)), "{poll}");
    assert_eq!(
        b.metric(
            "stream_edge_forwarded_requests_total",
            &[("result", "owner_gone")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_user_whose_calls_arrive_forwarded_is_moved() {
    let (emu, _stop) = emulator().await;
    let a = replica(emu, Duration::ZERO).await;
    let b = replica(emu, LATER).await;
    let (mut ws, id) = a.connect("mv-alice").await;
    let lp = lp_connect(&a, "mv-alice").await;
    let (mut other, _) = a.connect("mv-bob").await;
    // The balancer now sends alice's calls to B, which forwards them to A.
    b.watch("mv-alice", &id, "mv-room", &["mv-alice"]).await;
    assert_eq!(close_code(&mut ws).await, 1001);
    // Her long-poll tab too: its next poll gets code 46, and the SDK reconnects.
    let (status, poll) = lp_poll(&a, "mv-alice", &lp).await;
    assert_eq!((status, poll["code"].as_i64()), (400, Some(46)), "{poll}");
    eventually("alice's upstream connection on A closes", || async {
        a.metric("stream_edge_convergence_closes_total", &[]).await == 1.0
            && a.metric("stream_edge_upstream_connections_open", &[]).await == 1.0
    })
    .await;
    // Bob, never forwarded, keeps his session.
    let pong = ping(&mut other).await;
    assert_eq!(pong["type"], "health.check", "{pong}");
}

/// One HTTP/2 (prior knowledge) request, as replicas speak to each other's peer listener.
async fn h2c(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let mut req = hyper::Request::builder().uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(WAIT, client.request(req.body(Full::default()).unwrap()))
        .await
        .expect("answer in time")
        .expect("h2c answer");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_peer_listener_takes_only_signed_calls() {
    let (emu, _stop) = emulator().await;
    let a = replica(emu, LATER).await;
    let (_ws, id) = a.connect("pl-alice").await;
    let peer = a.running().peer_addr.expect("peer listener");
    let tok = a.token("pl-alice", None);
    let url =
        format!("http://{peer}/longpoll?user_id=pl-alice&connection_id={id}&api_key={DEV_API_KEY}");
    for sig in [None, Some("1.AAAA"), Some("garbage")] {
        let mut headers = vec![("authorization", tok.as_str())];
        if let Some(s) = sig {
            headers.push(("x-stream-edge-peer", s));
        }
        let (status, body) = h2c(&url, &headers).await;
        // Code 46, which a forwarding replica relays: an SDK reconnects on it, where another
        // error would stop its polling for good.
        assert_eq!((status, body["code"].as_i64()), (400, Some(46)), "{body}");
    }
    assert_eq!(
        a.metric(
            "stream_edge_bad_input_total",
            &[("transport", "peer"), ("reason", "bad_signature")]
        )
        .await,
        3.0
    );
    assert_eq!(
        a.metric("stream_edge_forwarded_received_total", &[]).await,
        0.0
    );
}

#[tokio::test]
async fn one_apps_secret_cannot_vouch_for_anothers_ids() {
    // Several apps share the replicas; each tenant knows its own secret and so could sign an id
    // naming any address. Ids are verified with the keys of the app the call names only.
    let (emu, _stop) = emulator().await;
    let other = stream_edge::config::AppConfig {
        api_key: "tenant2".into(),
        secrets: vec![stream_edge::config::Secret("tenant2-secret".into())],
    };
    let mut c = upstream_at(emu);
    c.apps.push(other.clone());
    c.cluster.peer_listen = Some("127.0.0.1:0".parse().unwrap());
    c.cluster.peers = vec!["127.0.0.1".into()];
    let b = TestGateway::start_with(c).await;
    let admin: std::net::SocketAddr = b.admin.trim_start_matches("http://").parse().unwrap();
    let std::net::SocketAddr::V4(admin) = admin else {
        panic!("IPv4 admin")
    };
    // Tenant 2 signs an id naming the replica's admin port with its own secret.
    let forged = stream_edge::session::id::Ids::new(Some(admin), &[other]).mint("tenant2");
    let (status, poll) = lp_poll(&b, "fg-alice", &forged).await;
    assert_eq!((status, poll["code"].as_i64()), (400, Some(46)), "{poll}");
    assert_eq!(
        b.metric("stream_edge_connection_id_refused_total", &[])
            .await,
        1.0
    );
    assert_eq!(
        b.metric("stream_edge_forwarded_requests_total", &[]).await,
        0.0
    );
}

#[tokio::test]
async fn a_forwarded_call_that_fails_its_checks_moves_nobody() {
    // Convergence learns only from calls the owner served: a forwarded call with someone else's
    // token (or none) must not close the session's user.
    let (emu, _stop) = emulator().await;
    let a = replica(emu, LATER).await;
    let b = replica(emu, LATER).await;
    let lp = lp_connect(&a, "nm-alice").await;
    let (status, poll) = lp_poll(&b, "nm-mallory", &lp).await;
    assert_eq!(status, 403, "{poll}");
    assert_eq!(a.metric("stream_edge_convergence_pending", &[]).await, 0.0);
    // Repeated ids that differ are refused before anything is served or forwarded.
    let tok = a.token("nm-alice", None);
    let url = format!(
        "{}/longpoll?user_id=nm-alice&connection_id={lp}&connection_id=e1x&api_key={DEV_API_KEY}",
        b.base
    );
    let (status, body) = http(
        Method::GET,
        &url,
        None,
        &[("authorization", &tok), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than once"), "{body}");
    assert_eq!(a.metric("stream_edge_convergence_pending", &[]).await, 0.0);
}

#[tokio::test]
async fn a_direct_call_cancels_a_scheduled_move() {
    // A balancer that does not hash consistently sends some of a user's calls each way: the
    // direct ones show the user is still routed here, so the user is not moved back and forth.
    let (emu, _stop) = emulator().await;
    let a = replica(emu, LATER).await;
    let b = replica(emu, LATER).await;
    let (_ws, id) = a.connect("cx-alice").await;
    b.watch("cx-alice", &id, "cx-room", &["cx-alice"]).await;
    assert_eq!(a.metric("stream_edge_convergence_pending", &[]).await, 1.0);
    a.watch("cx-alice", &id, "cx-room", &["cx-alice"]).await;
    assert_eq!(a.metric("stream_edge_convergence_pending", &[]).await, 0.0);

    // The same for a long-poll session whose direct poll goes through the lean front.
    let lp = lp_connect(&a, "cx-carol").await;
    let (status, _) = lp_poll(&b, "cx-carol", &lp).await;
    assert_eq!(status, 200);
    assert_eq!(a.metric("stream_edge_convergence_pending", &[]).await, 1.0);
    let (status, _) = lp_poll(&a, "cx-carol", &lp).await;
    assert_eq!(status, 200);
    assert_eq!(a.metric("stream_edge_convergence_pending", &[]).await, 0.0);
    assert_eq!(
        a.metric("stream_edge_convergence_closes_total", &[]).await,
        0.0
    );
}
