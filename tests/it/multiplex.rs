//! Multiplexing at the protocol level: one upstream connection per user, routing by watch, linger,
//! upstream loss.

use hyper::Method;
use stream_edge::config::DEV_API_KEY;

use crate::support::*;

#[tokio::test]
async fn sessions_share_one_upstream_and_get_only_watched_channels() {
    let gw = TestGateway::start().await;
    let emu = gw.running().embedded.clone().unwrap();
    let (mut a, ca) = gw.connect("mx-u").await;
    let (mut b, cb) = gw.connect("mx-u").await;
    let (_c, _) = gw.connect("mx-u").await;
    assert_eq!(emu.connections_of(DEV_API_KEY, "mx-u"), 1);
    assert_eq!(
        gw.metric("stream_edge_upstream_connections_open", &[])
            .await,
        1.0
    );
    gw.watch("mx-u", &ca, "mx-1", &["mx-u", "mx-o"]).await;
    gw.watch("mx-u", &cb, "mx-2", &["mx-u", "mx-o"]).await;
    gw.send("mx-o", "mx-1", "to one").await;
    gw.send("mx-o", "mx-2", "to two").await;
    // Per-connection order is preserved, so each socket's first message tells what it was routed.
    assert_eq!(next_message(&mut a).await["message"]["text"], "to one");
    assert_eq!(next_message(&mut b).await["message"]["text"], "to two");
    gw.send("mx-o", "mx-1", "again one").await;
    assert_eq!(next_message(&mut a).await["message"]["text"], "again one");

    // b also watches mx-1; a stops watching: b keeps receiving, a does not.
    gw.watch("mx-u", &cb, "mx-1", &["mx-u", "mx-o"]).await;
    let tok = gw.token("mx-u", None);
    let url = format!("{}/channels/messaging/mx-1/stop-watching?user_id=mx-u&api_key={DEV_API_KEY}&connection_id={ca}", gw.base);
    let (status, _) = http(Method::POST, &url, Some("{}"), &[("authorization", &tok)]).await;
    assert!(status.is_success());
    gw.send("mx-o", "mx-1", "after stop").await;
    gw.send("mx-o", "mx-2", "sentinel").await;
    assert_eq!(next_message(&mut b).await["message"]["text"], "after stop");
    gw.watch("mx-u", &ca, "mx-2", &["mx-u", "mx-o"]).await;
    gw.send("mx-o", "mx-2", "a barrier").await;
    // a's next message is the barrier: "after stop" was not routed to it.
    assert_eq!(next_message(&mut a).await["message"]["text"], "a barrier");
    assert!(
        gw.metric(
            "stream_edge_watch_changes_total",
            &[("action", "unwatch_local")]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn upstream_closes_after_linger_and_loss_closes_sessions() {
    let gw = TestGateway::start().await;
    let emu = gw.running().embedded.clone().unwrap();
    {
        let (_a, _) = gw.connect("ling").await;
        assert_eq!(emu.connections_of(DEV_API_KEY, "ling"), 1);
    }
    eventually("linger closes upstream", || async {
        emu.connections_of(DEV_API_KEY, "ling") == 0
    })
    .await;

    let (mut a, _) = gw.connect("lost").await;
    let (mut b, _) = gw.connect("lost").await;
    assert_eq!(emu.drop_connections_of(DEV_API_KEY, "lost"), 1);
    let lost = stream_edge::error::close::UPSTREAM_LOST;
    assert_eq!(close_code(&mut a).await, lost);
    assert_eq!(close_code(&mut b).await, lost);
    // Reconnecting works and gets a fresh upstream connection.
    let (_c, _) = gw.connect("lost").await;
    assert_eq!(emu.connections_of(DEV_API_KEY, "lost"), 1);
}

#[tokio::test]
async fn slow_consumer_is_closed_without_slowing_others() {
    let mut cfg = test_config();
    cfg.limits.session_queue = 2;
    let gw = TestGateway::start_with(cfg).await;
    // The slow client shrinks its receive buffer so the kernel absorbs little before the gateway's
    // writes stall.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(gw.running().addr).await.unwrap();
    let url = gw.connect_url(
        r#"{"user_id":"slow-u"}"#,
        DEV_API_KEY,
        &gw.token("slow-u", None),
    );
    let (mut slow, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    let cs = next_json(&mut slow).await["connection_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut fast, cf) = gw.connect("slow-u").await;
    gw.watch("slow-u", &cs, "slow-ch", &["slow-u", "slow-o"])
        .await;
    gw.watch("slow-u", &cf, "slow-ch", &["slow-u", "slow-o"])
        .await;
    // The slow socket is never read; the gateway's socket buffers fill, then its queue overflows.
    let big = "y".repeat(4_000);
    let mut n = 0;
    while gw
        .metric(
            "stream_edge_events_dropped_total",
            &[("reason", "slow_consumer")],
        )
        .await
        == 0.0
    {
        gw.send("slow-o", "slow-ch", &big).await;
        assert_eq!(
            next_message(&mut fast).await["message"]["text"]
                .as_str()
                .map(str::len),
            Some(big.len())
        );
        n += 1;
        assert!(n < 5_000, "slow consumer never detected");
    }
    assert!(
        gw.metric(
            "stream_edge_limit_hits_total",
            &[("limit", "session_queue")]
        )
        .await
            >= 1.0
    );
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_and_leaves_keep_one_upstream() {
    let gw = TestGateway::start().await;
    let emu = gw.running().embedded.clone().unwrap();
    for round in 0..3 {
        let joins: Vec<_> = (0..25).map(|_| gw.connect("crowd")).collect();
        let sockets = futures_util::future::join_all(joins).await;
        assert_eq!(emu.connections_of(DEV_API_KEY, "crowd"), 1, "round {round}");
        assert_eq!(gw.running().shared.hubs.session_count(), 25);
        assert_eq!(gw.metric("stream_edge_upstream_sessions", &[]).await, 25.0);
        drop(sockets);
        eventually("sessions detached", || async {
            gw.running().shared.hubs.session_count() == 0
        })
        .await;
    }
    eventually("upstream retired after linger", || async {
        emu.connections_of(DEV_API_KEY, "crowd") == 0 && gw.running().shared.hubs.hub_count() == 0
    })
    .await;
    assert_eq!(
        gw.metric("stream_edge_upstream_connections_open", &[])
            .await,
        0.0
    );
}

#[tokio::test]
async fn later_sessions_user_details_are_forwarded_as_an_update() {
    let gw = TestGateway::start().await;
    let json1 = r#"{"user_id":"det","user_details":{"id":"det","name":"First"}}"#;
    let (mut a, first) = gw
        .ws_raw(&gw.connect_url(json1, DEV_API_KEY, &gw.token("det", None)))
        .await;
    assert_eq!(first["me"]["name"], "First");
    let json2 = r#"{"user_id":"det","user_details":{"id":"det","name":"Second"}}"#;
    let (_b, _) = gw
        .ws_raw(&gw.connect_url(json2, DEV_API_KEY, &gw.token("det", None)))
        .await;
    // The update reaches upstream, which tells the user's connection (so every session) about it.
    loop {
        let ev = next_json(&mut a).await;
        if ev["type"] == "user.updated" {
            assert_eq!(ev["user"]["name"], "Second");
            break;
        }
    }
}

#[tokio::test]
async fn upstream_connect_failures_back_off() {
    let mut cfg = test_config();
    cfg.upstream.target =
        stream_edge::config::UpstreamTarget::Url("http://127.0.0.1:9".parse().unwrap());
    let gw = TestGateway::start_with(cfg).await;
    let url = gw.connect_url(r#"{"user_id":"bo"}"#, DEV_API_KEY, &gw.token("bo", None));
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(
        close_code(&mut ws).await,
        stream_edge::error::close::UPSTREAM_LOST
    );
    let backoff = gw.running().shared.hubs.backoff_wait(DEV_API_KEY);
    assert!(
        backoff > std::time::Duration::ZERO,
        "a failure imposes a delay on the next connect: {backoff:?} {}",
        gw.metric("stream_edge_upstream_connects_total", &[]).await
    );
    assert_eq!(
        gw.metric(
            "stream_edge_upstream_connects_total",
            &[("outcome", "error")]
        )
        .await,
        1.0
    );
}

/// Regression: a later session with fewer details must not reset the user's other fields upstream
/// (privacy settings above all), and other users never see someone's settings.
#[tokio::test]
async fn later_details_merge_and_keep_privacy_settings() {
    let gw = TestGateway::start().await;
    let off = r#"{"typing_indicators":{"enabled":false},"read_receipts":{"enabled":false}}"#;
    let json1 = format!(
        r#"{{"user_id":"mg","user_details":{{"id":"mg","color":"red","privacy_settings":{off}}}}}"#
    );
    let (_t1, _) = gw
        .ws_raw(&gw.connect_url(&json1, DEV_API_KEY, &gw.token("mg", None)))
        .await;
    let (mut other, oc) = gw.connect("mg-other").await;
    // Another user's `user.updated` reaches the sessions that follow their presence.
    gw.watch_with("mg-other", &oc, "mg-ch", &["mg", "mg-other"], true)
        .await;
    // Other users' `user.updated` goes to the connections that follow their presence (as Stream).
    let url = format!(
        "{}/channels/messaging/mg-ch/query?api_key={DEV_API_KEY}&connection_id={oc}",
        gw.base
    );
    let tok = gw.token("mg-other", None);
    let (status, _) = http(
        Method::POST,
        &url,
        Some(r#"{"state":true,"presence":true}"#),
        &[("authorization", &tok)],
    )
    .await;
    assert!(status.is_success());
    let json2 = r#"{"user_id":"mg","user_details":{"id":"mg","name":"Tab Two"}}"#;
    let (_t2, _) = gw
        .ws_raw(&gw.connect_url(json2, DEV_API_KEY, &gw.token("mg", None)))
        .await;
    // The other user sees the update, without the settings.
    loop {
        let ev = next_json(&mut other).await;
        if ev["type"] == "user.updated" && ev["user"]["id"] == "mg" {
            assert_eq!(ev["user"]["name"], "Tab Two");
            assert!(ev["user"].get("privacy_settings").is_none(), "{ev}");
            break;
        }
    }
    let server =
        stream_edge::auth::mint::server_token(stream_edge::config::DEV_API_SECRET).unwrap();
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("payload", r#"{"filter_conditions":{"id":{"$in":["mg"]}}}"#)
        .finish();
    let (_, body) = http(
        Method::GET,
        &format!("{}/users?{q}", gw.embedded_url()),
        None,
        &[("authorization", &server)],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let user = &v["users"][0];
    assert_eq!(
        user["privacy_settings"]["read_receipts"]["enabled"], false,
        "{user}"
    );
    assert_eq!(user["color"], "red", "{user}");
    assert_eq!(user["name"], "Tab Two");
}
