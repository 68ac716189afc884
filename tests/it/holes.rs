//! Smaller trust-boundary holes (issue 13, section 5): the embedded upstream's control routes,
//! long-poll sessions bound to (app, user), and `X-Forwarded-For` from a proxy that is not
//! trusted.

use std::time::Duration;

use hyper::Method;
use serde_json::Value;
use stream_edge::config::{AppConfig, IpNet, Secret, DEV_API_KEY};

use crate::support::*;

/// Through the gateway's client port, `/_emulator/*` is an unknown route (404, code 16), even
/// when the embedded upstream serves its control routes: nobody can list or drop sessions.
#[tokio::test]
async fn the_gateway_never_proxies_emulator_routes() {
    let gw = TestGateway::start().await;
    let control = gw.emulator_control_url();
    let (_ws, _) = gw.connect("victim").await;
    let emu = gw.running().embedded.clone().expect("embedded upstream");
    assert_eq!(emu.connections_of(DEV_API_KEY, "victim"), 1);
    let drop_q = format!("api_key={DEV_API_KEY}&user_id=victim");
    for (method, path) in [
        (Method::GET, "/_emulator/connections".to_string()),
        (Method::GET, "//_emulator/connections".to_string()),
        (Method::POST, format!("/_emulator/drop?{drop_q}")),
        (
            Method::POST,
            "/_emulator/faults?fail_user_queries=true".to_string(),
        ),
    ] {
        let (status, body) = http(method.clone(), &format!("{}{path}", gw.base), None, &[]).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], 16, "{body}");
    }
    assert_eq!(emu.connections_of(DEV_API_KEY, "victim"), 1, "not dropped");
    // The opt-in itself works where tests use it: directly on the upstream's port.
    let (status, _) = http(
        Method::GET,
        &format!("{control}/_emulator/connections"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
}

/// The control routes are off unless a test opts in, even for a peer on loopback (behind the
/// gateway every request comes from loopback).
#[tokio::test]
async fn emulator_control_routes_are_off_by_default_even_from_loopback() {
    let gw = TestGateway::start().await;
    for (method, path) in [
        (Method::GET, "/_emulator/connections"),
        (Method::POST, "/_emulator/drop?api_key=x&user_id=y"),
    ] {
        let (status, body) = http(method, &format!("{}{path}", gw.embedded_url()), None, &[]).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
}

const APP_B: &str = "tenant-b";
const SECRET_B: &str = "tenant-b-secret-value";

async fn longpoll(gw: &TestGateway, query: &[(&str, &str)], token: &str) -> (u16, Value) {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let (status, body) = http(
        Method::GET,
        &format!("{}/longpoll?{q}", gw.base),
        None,
        &[("authorization", token), ("stream-auth-type", "jwt")],
    )
    .await;
    (
        status.as_u16(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// A user of app A cannot poll or close the same-named user's long-poll session in app B.
#[tokio::test]
async fn longpoll_sessions_are_bound_to_their_app() {
    let mut cfg = test_config();
    cfg.longpoll.hold = Duration::from_millis(300);
    cfg.apps.push(AppConfig {
        api_key: APP_B.into(),
        secrets: vec![Secret(SECRET_B.into())],
    });
    let gw = TestGateway::start_with(cfg).await;
    let token_b = sign(SECRET_B, "alice", None);
    let token_a = gw.token("alice", None);
    let json = r#"{"user_id":"alice","user_details":{"id":"alice"}}"#;
    let (status, v) = longpoll(
        &gw,
        &[("user_id", "alice"), ("api_key", APP_B), ("json", json)],
        &token_b,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let id_b = v["event"]["connection_id"].as_str().unwrap().to_string();

    // alice of app A, with a valid app-A token, names app B's session.
    for close in [None, Some("true")] {
        let mut q = vec![
            ("user_id", "alice"),
            ("api_key", DEV_API_KEY),
            ("connection_id", id_b.as_str()),
        ];
        if let Some(c) = close {
            q.push(("close", c));
        }
        let (status, v) = longpoll(&gw, &q, &token_a).await;
        assert_eq!(status, 403, "close={close:?}: {v}");
        assert_eq!(v["code"], 17, "{v}");
    }
    // Untouched: app B's alice still polls her session.
    let (status, v) = longpoll(
        &gw,
        &[
            ("user_id", "alice"),
            ("api_key", APP_B),
            ("connection_id", &id_b),
        ],
        &token_b,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["events"].is_array(), "{v}");
}

async fn warnings(gw: &TestGateway) -> f64 {
    gw.metric(
        "stream_edge_config_warnings_total",
        &[("warning", "untrusted_forwarded_for")],
    )
    .await
}

/// A per-IP limit on, no trusted proxy, and `X-Forwarded-For` arriving (on REST and on the lean
/// long-poll front): warned once, and counted once.
#[tokio::test]
async fn forwarded_for_without_trusted_proxies_warns_once() {
    let mut cfg = test_config();
    cfg.limits.max_connections_per_ip = 1000;
    let gw = TestGateway::start_with(cfg).await;
    assert_eq!(warnings(&gw).await, 0.0, "nothing forwarded yet");
    let app = format!("{}/app?api_key={DEV_API_KEY}", gw.base);
    http(Method::GET, &app, None, &[]).await;
    assert_eq!(warnings(&gw).await, 0.0, "no header, no warning");
    for _ in 0..3 {
        http(
            Method::GET,
            &app,
            None,
            &[("x-forwarded-for", "203.0.113.1")],
        )
        .await;
    }
    let poll = format!(
        "{}/longpoll?api_key={DEV_API_KEY}&connection_id=none",
        gw.base
    );
    http(
        Method::GET,
        &poll,
        None,
        &[("x-forwarded-for", "203.0.113.1")],
    )
    .await;
    assert_eq!(warnings(&gw).await, 1.0);

    // With the proxy trusted, or with no per-IP limit, there is nothing to warn about.
    for trusted in [true, false] {
        let mut cfg = test_config();
        if trusted {
            cfg.limits.max_connections_per_ip = 1000;
            cfg.limits.trusted_proxies = vec![IpNet::parse("127.0.0.1").unwrap()];
        }
        let gw = TestGateway::start_with(cfg).await;
        let app = format!("{}/app?api_key={DEV_API_KEY}", gw.base);
        http(
            Method::GET,
            &app,
            None,
            &[("x-forwarded-for", "203.0.113.1")],
        )
        .await;
        assert_eq!(warnings(&gw).await, 0.0, "trusted={trusted}");
    }
}
