//! `/longpoll`: connect, held polls, buffering between polls, preemption, expiry (code 46),
//! overflow, close, and sharing the user's upstream connection with WebSocket sessions.

use std::time::Duration;

use hyper::Method;
use serde_json::Value;
use stream_edge::config::DEV_API_KEY;

use crate::support::*;

fn lp_config() -> stream_edge::config::Config {
    let mut c = test_config();
    c.longpoll.hold = Duration::from_millis(400);
    c
}

/// The path and query of a long-poll connect, as the SDK sends it.
pub fn connect_path(user: &str) -> String {
    let json = format!(r#"{{"user_id":"{user}","user_details":{{"id":"{user}"}}}}"#);
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("user_id", user)
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("json", &json)
        .finish();
    format!("/longpoll?{q}")
}

pub(crate) async fn lp_connect(gw: &TestGateway, user: &str) -> (String, Value) {
    let tok = gw.token(user, None);
    let (status, body) = http(
        Method::GET,
        &format!("{}{}", gw.base, connect_path(user)),
        None,
        &[("authorization", &tok), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let id = v["event"]["connection_id"].as_str().unwrap().to_string();
    (id, v)
}

pub(crate) async fn lp_poll(gw: &TestGateway, user: &str, conn: &str) -> (u16, Value) {
    let tok = gw.token(user, None);
    let url = format!(
        "{}/longpoll?user_id={user}&connection_id={conn}&api_key={DEV_API_KEY}",
        gw.base
    );
    let (status, body) = http(
        Method::GET,
        &url,
        None,
        &[("authorization", &tok), ("stream-auth-type", "jwt")],
    )
    .await;
    (status.as_u16(), serde_json::from_str(&body).unwrap())
}

/// A poll in a task of its own, for a test that acts while it is held.
fn spawn_poll(
    gw: &TestGateway,
    user: &str,
    id: &str,
) -> tokio::task::JoinHandle<(hyper::StatusCode, String)> {
    let url = format!(
        "{}/longpoll?user_id={user}&connection_id={id}&api_key={DEV_API_KEY}",
        gw.base
    );
    let tok = gw.token(user, None);
    tokio::spawn(async move { http(Method::GET, &url, None, &[("authorization", &tok)]).await })
}

/// Connects `user` and holds a poll in a task of its own: the session's id and the poll.
async fn connect_and_hold(
    gw: &TestGateway,
    user: &str,
) -> (String, tokio::task::JoinHandle<(hyper::StatusCode, String)>) {
    let (id, _) = lp_connect(gw, user).await;
    let held = spawn_poll(gw, user, &id);
    eventually("poll held", || async {
        gw.metric("stream_edge_longpoll_held_requests", &[]).await == 1.0
    })
    .await;
    (id, held)
}

fn texts(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message.new")
        .map(|e| e["message"]["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn connect_poll_and_buffer_between_polls() {
    let gw = TestGateway::start_with(lp_config()).await;
    let (id, first) = lp_connect(&gw, "lp-a").await;
    assert_eq!(first["event"]["type"], "health.check");
    assert_eq!(first["event"]["me"]["id"], "lp-a");
    assert!(first["event"]["me"]["channel_mutes"].is_array());
    gw.watch("lp-a", &id, "lp-ch", &["lp-a", "lp-b"]).await;
    // Sent while no poll is held: buffered, and answered at once by the next poll.
    gw.send("lp-b", "lp-ch", "between polls").await;
    gw.send("lp-b", "lp-ch", "second").await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let (status, v) = lp_poll(&gw, "lp-a", &id).await;
        assert_eq!(status, 200);
        got.extend(texts(&v));
    }
    assert_eq!(got, vec!["between polls", "second"]);
    // Nothing queued: held for the hold time, then an empty list.
    let (status, v) = lp_poll(&gw, "lp-a", &id).await;
    assert_eq!(status, 200);
    assert!(texts(&v).is_empty());
    assert_eq!(
        gw.metric("stream_edge_sessions_open", &[("transport", "longpoll")])
            .await,
        1.0
    );
}

#[tokio::test]
async fn held_poll_answers_promptly_when_an_event_arrives() {
    let mut cfg = lp_config();
    cfg.longpoll.hold = Duration::from_secs(20);
    let gw = TestGateway::start_with(cfg).await;
    let (id, _) = lp_connect(&gw, "lp-h").await;
    gw.watch("lp-h", &id, "lp-hch", &["lp-h", "lp-o"]).await;
    // Drain what the watch itself produced.
    let poll = tokio::spawn({
        let base = gw.base.clone();
        let tok = gw.token("lp-h", None);
        let id = id.clone();
        async move {
            let url =
                format!("{base}/longpoll?user_id=lp-h&connection_id={id}&api_key={DEV_API_KEY}");
            let mut all = Vec::new();
            let started = tokio::time::Instant::now();
            while !all.iter().any(|t: &String| t == "wake") {
                let (_, body) = http(Method::GET, &url, None, &[("authorization", &tok)]).await;
                all.extend(texts(&serde_json::from_str(&body).unwrap()));
            }
            started.elapsed()
        }
    });
    eventually("poll is held", || async {
        gw.metric("stream_edge_longpoll_held_requests", &[]).await == 1.0
    })
    .await;
    gw.send("lp-o", "lp-hch", "wake").await;
    let waited = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
    assert!(
        waited < Duration::from_secs(15),
        "answered on the event, not at the hold time"
    );
}

#[tokio::test]
async fn second_poll_answers_the_first() {
    let mut cfg = lp_config();
    cfg.longpoll.hold = Duration::from_secs(20);
    let gw = TestGateway::start_with(cfg).await;
    let (id, first) = connect_and_hold(&gw, "lp-c").await;
    let second = spawn_poll(&gw, "lp-c", &id);
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("first answered")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["events"],
        serde_json::json!([])
    );
    assert_eq!(
        gw.metric(
            "stream_edge_longpoll_polls_total",
            &[("outcome", "preempted")]
        )
        .await,
        1.0
    );
    second.abort();
}

#[tokio::test]
async fn unknown_foreign_closed_and_expired_ids() {
    let mut cfg = lp_config();
    cfg.longpoll.hold = Duration::from_millis(100);
    cfg.longpoll.session_timeout = Duration::from_millis(300);
    let gw = TestGateway::start_with(cfg).await;
    let (status, v) = lp_poll(&gw, "lp-x", "no-such-id").await;
    assert_eq!((status, v["code"].as_i64()), (400, Some(46)));

    let (id, _) = lp_connect(&gw, "lp-owner").await;
    let (status, v) = lp_poll(&gw, "lp-thief", &id).await;
    assert_eq!((status, v["code"].as_i64()), (403, Some(17)));

    let tok = gw.token("lp-owner", None);
    let url = format!(
        "{}/longpoll?connection_id={id}&api_key={DEV_API_KEY}&close=true",
        gw.base
    );
    let (status, _) = http(Method::GET, &url, None, &[("authorization", &tok)]).await;
    assert_eq!(status, 200);
    let (status, v) = lp_poll(&gw, "lp-owner", &id).await;
    assert_eq!((status, v["code"].as_i64()), (400, Some(46)));

    // Not polled for longer than the session timeout: expired, code 46, counted.
    let (id, _) = lp_connect(&gw, "lp-idle").await;
    eventually("idle expiry", || async {
        gw.metric(
            "stream_edge_longpoll_expired_total",
            &[("reason", "client_idle")],
        )
        .await
            == 1.0
    })
    .await;
    let (status, v) = lp_poll(&gw, "lp-idle", &id).await;
    assert_eq!((status, v["code"].as_i64()), (400, Some(46)));
    eventually("sessions released", || async {
        gw.running().shared.hubs.session_count() == 0
    })
    .await;
}

#[tokio::test]
async fn overflow_expires_the_session() {
    let mut cfg = lp_config();
    cfg.longpoll.queue_capacity = 2;
    let gw = TestGateway::start_with(cfg).await;
    let (id, _) = lp_connect(&gw, "lp-of").await;
    gw.watch("lp-of", &id, "lp-ofch", &["lp-of", "lp-o2"]).await;
    for i in 0..5 {
        gw.send("lp-o2", "lp-ofch", &format!("m{i}")).await;
    }
    eventually("overflow expiry", || async {
        gw.metric(
            "stream_edge_longpoll_expired_total",
            &[("reason", "slow_consumer")],
        )
        .await
            == 1.0
    })
    .await;
    let (status, v) = lp_poll(&gw, "lp-of", &id).await;
    assert_eq!((status, v["code"].as_i64()), (400, Some(46)));
}

#[tokio::test]
async fn longpoll_and_ws_sessions_share_one_upstream() {
    let gw = TestGateway::start_with(lp_config()).await;
    let emu = gw.running().embedded.clone().unwrap();
    let (mut ws, ws_id) = gw.connect("lp-mix").await;
    let (lp_id, _) = lp_connect(&gw, "lp-mix").await;
    assert_eq!(emu.connections_of(DEV_API_KEY, "lp-mix"), 1);
    gw.watch("lp-mix", &ws_id, "lp-mixch", &["lp-mix", "lp-mo"])
        .await;
    gw.watch("lp-mix", &lp_id, "lp-mixch", &["lp-mix", "lp-mo"])
        .await;
    gw.send("lp-mo", "lp-mixch", "both").await;
    loop {
        let v = next_json(&mut ws).await;
        if v["type"] == "message.new" {
            assert_eq!(v["message"]["text"], "both");
            break;
        }
    }
    let mut got = Vec::new();
    while got.is_empty() {
        got = texts(&lp_poll(&gw, "lp-mix", &lp_id).await.1);
    }
    assert_eq!(got, vec!["both"]);
    // Upstream loss: the WS session is closed with a reconnect code, the long-poll one gets 46.
    assert_eq!(emu.drop_connections_of(DEV_API_KEY, "lp-mix"), 1);
    assert_eq!(
        close_code(&mut ws).await,
        stream_edge::error::close::UPSTREAM_LOST
    );
    let mut code = None;
    while code.is_none() {
        let (_, v) = lp_poll(&gw, "lp-mix", &lp_id).await;
        code = v["code"].as_i64();
    }
    assert_eq!(code, Some(46));
}

#[tokio::test]
async fn websocket_can_be_disabled_for_fallback() {
    let mut cfg = lp_config();
    cfg.ws.enabled = false;
    let gw = TestGateway::start_with(cfg).await;
    let url = gw.connect_url(
        r#"{"user_id":"nows"}"#,
        DEV_API_KEY,
        &gw.token("nows", None),
    );
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let (id, _) = lp_connect(&gw, "nows").await;
    assert!(!id.is_empty());
}

/// A held poll has no timer or watch of its own for the drain: the sweeper ends its session, and
/// that must answer the poll at once (code 46), not when its 20 s hold passes.
#[tokio::test]
async fn a_drain_answers_a_held_poll_at_once() {
    let mut cfg = lp_config();
    cfg.longpoll.hold = Duration::from_secs(20);
    let gw = TestGateway::start_with(cfg).await;
    let (_, held) = connect_and_hold(&gw, "lp-drain").await;
    gw.running().shutdown();
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("the drain answers the held poll")
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], 46, "{status} {body}");
    assert!(gw.stop().await, "drain finished before the deadline");
}
