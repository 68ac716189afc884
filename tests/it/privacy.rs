//! Privacy filtering at the edge: typing, read and delivery state follow each user's
//! `privacy_settings`, for WebSocket and long-poll receivers, learned from connects, user updates
//! and upstream lookups. The embedded upstream filters nothing, so every drop is the gateway's.

use hyper::Method;
use serde_json::{json, Value};
use stream_edge::config::{DEV_API_KEY, DEV_API_SECRET};

use crate::support::*;

const HIDDEN: &str = r#"{"typing_indicators":{"enabled":false},"read_receipts":{"enabled":false},"delivery_receipts":{"enabled":false}}"#;

async fn connect_with(gw: &TestGateway, user: &str, privacy: &str) -> (Ws, String) {
    let json = format!(
        r#"{{"user_id":"{user}","user_details":{{"id":"{user}","privacy_settings":{privacy}}}}}"#
    );
    let (ws, first) = gw
        .ws_raw(&gw.connect_url(&json, DEV_API_KEY, &gw.token(user, None)))
        .await;
    (ws, first["connection_id"].as_str().unwrap().to_string())
}

async fn post(gw: &TestGateway, path_q: &str, token: &str, body: Value) -> (u16, Value) {
    let (status, text) = http(
        Method::POST,
        &format!("{}{path_q}", gw.base),
        Some(&body.to_string()),
        &[("authorization", token)],
    )
    .await;
    (
        status.as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Acts as `user` with a server token, as a backend would: the gateway's outbound guard does not
/// apply, so the event reaches upstream and comes back to every watcher.
async fn as_server(gw: &TestGateway, ch: &str, action: &str, user: &str, body: Value) -> u16 {
    let server = stream_edge::auth::mint::server_token(DEV_API_SECRET).unwrap();
    let q = format!("/channels/messaging/{ch}/{action}?user_id={user}&api_key={DEV_API_KEY}");
    post(gw, &q, &server, body).await.0
}

/// Collects event types (with their user) until `message.new` with `text` arrives.
async fn until_message(ws: &mut Ws, text: &str) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        let v = next_json(ws).await;
        let kind = v["type"].as_str().unwrap_or("").to_string();
        if kind == "message.new" && v["message"]["text"] == text {
            return seen;
        }
        seen.push((kind, v["user"]["id"].as_str().unwrap_or("").to_string()));
    }
}

fn has(seen: &[(String, String)], kind: &str, user: &str) -> bool {
    seen.iter().any(|(k, u)| k == kind && u == user)
}

#[tokio::test]
async fn hidden_typing_and_reads_never_reach_others_but_own_tabs_keep_them() {
    let gw = TestGateway::start().await;
    let (mut alice1, a1) = connect_with(&gw, "pv-alice", HIDDEN).await;
    let (mut alice2, a2) = connect_with(&gw, "pv-alice", HIDDEN).await;
    let (mut bob, b) = gw.connect("pv-bob").await;
    let members = ["pv-alice", "pv-bob"];
    gw.watch("pv-alice", &a1, "pv-ch", &members).await;
    gw.watch("pv-alice", &a2, "pv-ch", &members).await;
    gw.watch("pv-bob", &b, "pv-ch", &members).await;

    // Outbound: Alice's own client sending typing is answered by the gateway, never forwarded.
    let tok_a = gw.token("pv-alice", None);
    let q = format!(
        "/channels/messaging/pv-ch/event?user_id=pv-alice&api_key={DEV_API_KEY}&connection_id={a1}"
    );
    let (status, ack) = post(&gw, &q, &tok_a, json!({"event":{"type":"typing.start"}})).await;
    assert_eq!(status, 201);
    assert_eq!(ack["event"]["type"], "typing.start");
    // Inbound: typing and read from Alice that do reach upstream are dropped for Bob.
    assert_eq!(
        as_server(
            &gw,
            "pv-ch",
            "event",
            "pv-alice",
            json!({"event":{"type":"typing.start"}})
        )
        .await,
        201
    );
    assert_eq!(
        as_server(&gw, "pv-ch", "read", "pv-alice", json!({})).await,
        201
    );
    // Bob's own events flow to Alice.
    assert_eq!(
        as_server(
            &gw,
            "pv-ch",
            "event",
            "pv-bob",
            json!({"event":{"type":"typing.start"}})
        )
        .await,
        201
    );
    assert_eq!(
        as_server(&gw, "pv-ch", "read", "pv-bob", json!({})).await,
        201
    );
    gw.send("pv-bob", "pv-ch", "barrier").await;

    let bob_saw = until_message(&mut bob, "barrier").await;
    assert!(!has(&bob_saw, "typing.start", "pv-alice"), "{bob_saw:?}");
    assert!(!has(&bob_saw, "message.read", "pv-alice"), "{bob_saw:?}");
    assert!(
        has(&bob_saw, "typing.start", "pv-bob"),
        "own events are never filtered: {bob_saw:?}"
    );
    let alice_saw = until_message(&mut alice1, "barrier").await;
    assert!(has(&alice_saw, "typing.start", "pv-bob"), "{alice_saw:?}");
    assert!(has(&alice_saw, "message.read", "pv-bob"), "{alice_saw:?}");
    // Alice's second tab keeps her own read event and notification (unread sync across tabs).
    let tab2 = until_message(&mut alice2, "barrier").await;
    assert!(has(&tab2, "message.read", "pv-alice"), "{tab2:?}");
    assert!(
        tab2.iter().any(|(k, _)| k == "notification.mark_read"),
        "{tab2:?}"
    );

    // Read state in query responses: Bob sees no entry for Alice; Alice sees her own.
    let bob_view = gw.watch("pv-bob", &b, "pv-ch", &members).await;
    let readers = |v: &Value| -> Vec<String> {
        v["read"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["user"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        !readers(&bob_view).contains(&"pv-alice".to_string()),
        "{}",
        bob_view["read"]
    );
    assert!(readers(&bob_view).contains(&"pv-bob".to_string()));
    let alice_view = gw.watch("pv-alice", &a1, "pv-ch", &members).await;
    assert!(readers(&alice_view).contains(&"pv-alice".to_string()));
    assert!(
        gw.metric("stream_edge_events_dropped_total", &[("reason", "privacy")])
            .await
            >= 2.0
    );
    assert!(
        gw.metric(
            "stream_edge_events_dropped_total",
            &[("reason", "privacy_outbound")]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn settings_change_live_through_user_updates() {
    let gw = TestGateway::start().await;
    let (_alice, a) = connect_with(&gw, "pv-live-a", HIDDEN).await;
    let (mut bob, b) = gw.connect("pv-live-b").await;
    let members = ["pv-live-a", "pv-live-b"];
    gw.watch("pv-live-a", &a, "pv-live", &members).await;
    gw.watch("pv-live-b", &b, "pv-live", &members).await;
    // Alice turns typing on with upsertUser through the gateway.
    let tok = gw.token("pv-live-a", None);
    let body = json!({"users":{"pv-live-a":{"id":"pv-live-a","privacy_settings":{"typing_indicators":{"enabled":true},"read_receipts":{"enabled":false}}}}});
    let (status, _) = post(&gw, &format!("/users?api_key={DEV_API_KEY}"), &tok, body).await;
    assert!(status < 300);
    let q = format!("/channels/messaging/pv-live/event?user_id=pv-live-a&api_key={DEV_API_KEY}&connection_id={a}");
    let (status, ack) = post(&gw, &q, &tok, json!({"event":{"type":"typing.start"}})).await;
    assert_eq!(status, 201, "{ack}");
    gw.send("pv-live-b", "pv-live", "after").await;
    let seen = until_message(&mut bob, "after").await;
    assert!(
        has(&seen, "typing.start", "pv-live-a"),
        "typing on now: {seen:?}"
    );
}

#[tokio::test]
async fn unknown_users_are_looked_up_upstream_and_failures_follow_policy() {
    let gw = TestGateway::start().await;
    // Carol's settings exist only upstream: set directly on the embedded upstream, bypassing the
    // gateway, so the gateway must look them up.
    let server = stream_edge::auth::mint::server_token(DEV_API_SECRET).unwrap();
    let body = json!({"users":{"pv-carol":{"id":"pv-carol","privacy_settings":{"typing_indicators":{"enabled":false}}}}});
    let (status, _) = http(
        Method::POST,
        &format!("{}/users?api_key={DEV_API_KEY}", gw.embedded_url()),
        Some(&body.to_string()),
        &[("authorization", &server)],
    )
    .await;
    assert!(status.is_success());
    let (mut bob, b) = gw.connect("pv-look-b").await;
    gw.watch(
        "pv-look-b",
        &b,
        "pv-look",
        &["pv-look-b", "pv-carol", "pv-dave"],
    )
    .await;
    assert_eq!(
        as_server(
            &gw,
            "pv-look",
            "event",
            "pv-carol",
            json!({"event":{"type":"typing.start"}})
        )
        .await,
        201
    );
    // Dave has default settings upstream: looked up, then delivered.
    assert_eq!(
        as_server(
            &gw,
            "pv-look",
            "event",
            "pv-dave",
            json!({"event":{"type":"typing.start"}})
        )
        .await,
        201
    );
    gw.send("pv-look-b", "pv-look", "done").await;
    let seen = until_message(&mut bob, "done").await;
    assert!(!has(&seen, "typing.start", "pv-carol"), "{seen:?}");
    assert!(has(&seen, "typing.start", "pv-dave"), "{seen:?}");
    // One batched lookup (for the read state of the watch response) taught both users' settings.
    assert!(
        gw.metric("stream_edge_privacy_lookups_total", &[("outcome", "ok")])
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn lookup_failure_drops_by_default() {
    let gw = TestGateway::start().await;
    // Upstream answers every user lookup with a 500.
    let emu = gw.running().embedded.clone().unwrap();
    emu.set_faults(stream_edge_emulator::Faults {
        fail_user_queries: true,
    });

    let (mut bob, b) = gw.connect("pv-f-b").await;
    gw.watch("pv-f-b", &b, "pv-f", &["pv-f-b", "pv-f-x"]).await;
    assert_eq!(
        as_server(
            &gw,
            "pv-f",
            "event",
            "pv-f-x",
            json!({"event":{"type":"typing.start"}})
        )
        .await,
        201
    );
    gw.send("pv-f-b", "pv-f", "end").await;
    let seen = until_message(&mut bob, "end").await;
    assert!(!has(&seen, "typing.start", "pv-f-x"), "{seen:?}");
    assert!(
        gw.metric(
            "stream_edge_events_dropped_total",
            &[("reason", "privacy_lookup_failed")]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn longpoll_receivers_are_filtered_too() {
    let gw = TestGateway::start().await;
    let (_alice, a) = connect_with(&gw, "pv-lp-a", HIDDEN).await;
    let json_payload = r#"{"user_id":"pv-lp-b","user_details":{"id":"pv-lp-b"}}"#;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("json", json_payload)
        .finish();
    let tok_b = gw.token("pv-lp-b", None);
    let (_, body) = http(
        Method::GET,
        &format!("{}/longpoll?{q}", gw.base),
        None,
        &[("authorization", &tok_b)],
    )
    .await;
    let b: Value = serde_json::from_str(&body).unwrap();
    let b = b["event"]["connection_id"].as_str().unwrap().to_string();
    let members = ["pv-lp-a", "pv-lp-b"];
    gw.watch("pv-lp-a", &a, "pv-lp", &members).await;
    gw.watch("pv-lp-b", &b, "pv-lp", &members).await;
    assert_eq!(
        as_server(
            &gw,
            "pv-lp",
            "event",
            "pv-lp-a",
            json!({"event":{"type":"typing.start"}})
        )
        .await,
        201
    );
    assert_eq!(
        as_server(&gw, "pv-lp", "read", "pv-lp-a", json!({})).await,
        201
    );
    gw.send("pv-lp-a", "pv-lp", "lp-barrier").await;
    let mut seen: Vec<Value> = Vec::new();
    while !seen.iter().any(|e| e["message"]["text"] == "lp-barrier") {
        let url = format!(
            "{}/longpoll?user_id=pv-lp-b&connection_id={b}&api_key={DEV_API_KEY}",
            gw.base
        );
        let (_, body) = http(Method::GET, &url, None, &[("authorization", &tok_b)]).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        seen.extend(v["events"].as_array().unwrap().iter().cloned());
    }
    assert!(
        !seen.iter().any(|e| e["user"]["id"] == "pv-lp-a"
            && (e["type"] == "typing.start" || e["type"] == "message.read")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_for_one_user_are_coalesced() {
    let gw = TestGateway::start().await;
    let server = stream_edge::auth::mint::server_token(DEV_API_SECRET).unwrap();
    let body = json!({"users":{"pv-co":{"id":"pv-co","privacy_settings":{"read_receipts":{"enabled":false}}}}});
    let url = format!("{}/users?api_key={DEV_API_KEY}", gw.embedded_url());
    let (status, _) = http(
        Method::POST,
        &url,
        Some(&body.to_string()),
        &[("authorization", &server)],
    )
    .await;
    assert!(status.is_success());
    let privacy = gw.running().shared.privacy.clone();
    let gets: Vec<_> = (0..20).map(|_| privacy.get(DEV_API_KEY, "pv-co")).collect();
    let results = futures_util::future::join_all(gets).await;
    assert!(results
        .iter()
        .all(|r| r.as_ref().is_ok_and(|s| !s.read && s.typing)));
    assert_eq!(
        gw.metric("stream_edge_privacy_lookups_total", &[]).await,
        1.0,
        "one upstream lookup for 20 callers"
    );
}
