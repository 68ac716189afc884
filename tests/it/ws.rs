//! `/connect`: handshake, pings, and every kind of bad input, each answered in the protocol's own
//! form and counted, without disturbing other sessions.

use futures_util::SinkExt;
use stream_edge::config::DEV_API_KEY;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test]
async fn handshake_frame_and_both_ping_shapes() {
    let gw = TestGateway::start().await;
    let json = r#"{"user_id":"hs-user","user_details":{"id":"hs-user","name":"H"},"client_request_id":"r"}"#;
    let (mut ws, first) = gw
        .ws_raw(&gw.connect_url(json, DEV_API_KEY, &gw.token("hs-user", Some(600))))
        .await;
    assert_eq!(first["type"], "health.check");
    let id = first["connection_id"].as_str().unwrap().to_string();
    assert!(!id.is_empty() && id.len() <= 36);
    let me = &first["me"];
    assert_eq!(me["id"], "hs-user");
    for key in ["mutes", "channel_mutes", "blocked_user_ids", "devices"] {
        assert!(me[key].is_array(), "me.{key} must be an array: {me}");
    }
    let reply = ping(&mut ws).await;
    assert_eq!(reply["type"], "health.check");
    assert_eq!(reply["connection_id"], id.as_str());
    ws.send(Message::text(
        r#"{"type":"health.check","connection_id":"x"}"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["connection_id"], id.as_str());
    // A second session of the same user gets its own id.
    let (_ws2, id2) = gw.connect("hs-user").await;
    assert_ne!(id, id2);
}

/// Each refusal: an `{"error":…}` first frame with the Stream code, then close 1000.
#[tokio::test]
async fn refusals_are_error_frames_then_1000() {
    let gw = TestGateway::start().await;
    let ok_json = r#"{"user_id":"rf","user_details":{"id":"rf"}}"#;
    let good = gw.token("rf", None);
    let big = format!(
        r#"{{"user_id":"rf","user_details":{{"id":"rf","bio":"{}"}}}}"#,
        "x".repeat(6000)
    );
    let wrong = sign("not-the-app-secret", "rf", None);
    let expired = gw.token("rf", Some(-10));
    let other_user = gw.token("someone-else", None);
    let cases: Vec<(String, i64, &str)> = vec![
        (
            gw.connect_url(ok_json, "no-such-key", &good),
            2,
            "unknown_api_key",
        ),
        (
            gw.connect_url("{not json", DEV_API_KEY, &good),
            4,
            "bad_input",
        ),
        (
            gw.connect_url(r#"{"user_id":"a b!"}"#, DEV_API_KEY, &good),
            4,
            "bad_input",
        ),
        (gw.connect_url(&big, DEV_API_KEY, &good), 4, "too_large"),
        (
            gw.connect_url(ok_json, DEV_API_KEY, &wrong),
            43,
            "token_bad_signature",
        ),
        (
            gw.connect_url(ok_json, DEV_API_KEY, &expired),
            40,
            "token_expired",
        ),
        (
            gw.connect_url(ok_json, DEV_API_KEY, &other_user),
            43,
            "token_user_mismatch",
        ),
        (
            gw.connect_url(ok_json, DEV_API_KEY, "a.b.c"),
            43,
            "token_malformed",
        ),
        (
            format!("ws://{}/connect?api_key={DEV_API_KEY}", gw.running().addr),
            4,
            "bad_input",
        ),
    ];
    for (url, code, label) in cases {
        let (mut ws, first) = gw.ws_raw(&url).await;
        assert_eq!(first["error"]["code"], code, "{label}: {first}");
        assert!(first["error"]["message"].is_string());
        assert!(first["error"]["StatusCode"].is_number());
        assert_eq!(close_code(&mut ws).await, 1000, "{label}");
        let n = gw
            .metric(
                "stream_edge_connect_rejected_total",
                &[("transport", "ws"), ("reason", label)],
            )
            .await;
        assert!(n >= 1.0, "{label} counted");
    }
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_session_survives() {
    let gw = TestGateway::start().await;
    let (mut bystander, _) = gw.connect("bystander").await;
    let (mut ws, id) = gw.connect("sender").await;
    ws.send(Message::text("this is not json")).await.unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!(e["error"]["code"], 4, "{e}");
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!(e["error"]["code"], 4, "{e}");
    // Still alive and still answering.
    assert_eq!(ping(&mut ws).await["connection_id"], id.as_str());
    assert_eq!(
        gw.metric("stream_edge_bad_input_total", &[("reason", "not_json")])
            .await,
        1.0
    );
    assert_eq!(
        gw.metric("stream_edge_bad_input_total", &[("reason", "binary_frame")])
            .await,
        1.0
    );

    // Oversized message: closed with 1009, counted; the bystander is unaffected.
    ws.send(Message::text("x".repeat(200 * 1024))).await.ok();
    assert_eq!(close_code(&mut ws).await, 1009);
    assert_eq!(ping(&mut bystander).await["type"], "health.check");
    assert_eq!(
        gw.metric(
            "stream_edge_bad_input_total",
            &[("reason", "frame_too_large")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn half_open_client_is_probed_then_closed_after_idle_timeout() {
    use tokio::io::AsyncReadExt;
    let mut cfg = test_config();
    cfg.ws.client_idle_timeout = std::time::Duration::from_millis(300);
    let gw = TestGateway::start_with(cfg).await;
    let (mut ws, _) = gw.connect("silent").await;
    // A half-open client: its bytes are read raw, so nothing answers the gateway's ping.
    let raw = match ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
        _ => panic!("plain TCP"),
    };
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, raw.read_to_end(&mut got))
        .await
        .expect("the gateway gives up on a silent client by itself")
        .expect("read");
    // An RFC 6455 ping (FIN, opcode 9, no payload) halfway, then the idle close.
    assert_eq!(got.get(..2), Some(&[0x89, 0x00][..]), "{got:?}");
    let code = stream_edge::error::close::IDLE.to_be_bytes();
    assert_eq!(got.get(2), Some(&0x88), "{got:?}");
    assert_eq!(got.get(4..6), Some(&code[..]), "{got:?}");
    eventually("idle close counted", || async {
        gw.metric(
            "stream_edge_sessions_closed_total",
            &[("reason", "client_idle")],
        )
        .await
            == 1.0
    })
    .await;
}

/// A client that never pings on its own (the JS SDK whose ping timer a `health.check` keeps
/// rescheduling, or a quiet library) but whose WebSocket stack answers pings is alive: it stays
/// past many idle timeouts.
#[tokio::test]
async fn a_silent_client_that_answers_pings_is_not_idle() {
    use futures_util::StreamExt;
    let mut cfg = test_config();
    cfg.ws.client_idle_timeout = std::time::Duration::from_millis(200);
    let gw = TestGateway::start_with(cfg).await;
    let (mut ws, _) = gw.connect("answers").await;
    let mut pings = 0;
    // tungstenite answers each ping with a pong as it reads it.
    while pings < 8 {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Ping(p))) => {
                assert!(p.is_empty());
                pings += 1;
            }
            Some(Ok(Message::Text(_))) => {}
            other => panic!("the session ended after {pings} pings: {other:?}"),
        }
    }
    // Eight probes, each half an idle timeout after the last pong: four timeouts' worth of silence.
    let idle = gw
        .metric(
            "stream_edge_sessions_closed_total",
            &[("reason", "client_idle")],
        )
        .await;
    assert_eq!(idle, 0.0);
}

#[tokio::test]
async fn server_sends_health_checks_when_silent() {
    let mut cfg = test_config();
    cfg.ws.health_interval = std::time::Duration::from_millis(200);
    let gw = TestGateway::start_with(cfg).await;
    let (mut ws, id) = gw.connect("quiet").await;
    let hc = next_json(&mut ws).await;
    assert_eq!(hc["type"], "health.check");
    assert_eq!(hc["connection_id"], id.as_str());
}

#[tokio::test]
async fn non_upgrade_request_to_connect_is_a_json_error() {
    let gw = TestGateway::start().await;
    let (status, body) = http(
        hyper::Method::GET,
        &format!("{}/connect", gw.base),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], 4);
}

#[tokio::test]
async fn token_expiry_ends_a_live_session_with_a_reconnect_code() {
    let gw = TestGateway::start().await;
    let json = r#"{"user_id":"exp-user"}"#;
    let (mut short, _) = gw
        .ws_raw(&gw.connect_url(json, DEV_API_KEY, &gw.token("exp-user", Some(1))))
        .await;
    let (mut other, _) = gw.connect("exp-user").await;
    assert_eq!(
        close_code(&mut short).await,
        stream_edge::error::close::TOKEN_EXPIRED
    );
    // The user's other session is untouched.
    assert_eq!(ping(&mut other).await["type"], "health.check");
    // Reconnecting with the same token now gets code 40, which makes a provider SDK refresh.
    let (_, first) = gw
        .ws_raw(&gw.connect_url(json, DEV_API_KEY, &gw.token("exp-user", Some(-1))))
        .await;
    assert_eq!(first["error"]["code"], 40);
}
