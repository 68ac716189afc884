//! Unity (stream-chat-unity): `Uri.EscapeDataString` payload, no headers, `{"Type":"health.check"}`
//! every 29 s, a watchdog that counts only health checks (30 s), errors only logged, and an empty
//! `connection_id=` on REST before its first connect.

use serde_json::json;
use stream_edge::config::DEV_API_KEY;

use super::scenarios::{self, Env};
use super::wire::units;
use super::wire::{Reaction, Sdk};

/// The watchdog counts only health checks: they keep coming while events flow.
#[tokio::test]
async fn connects_pings_in_pascal_case_and_stays_up_while_busy() {
    scenarios::busy(Sdk::Unity).await;
}

/// Every Unity reconnect asks its token provider again.
#[tokio::test]
async fn refreshes_after_code_40() {
    scenarios::refresh(Sdk::Unity).await;
}

/// Unity only logs errors and reconnects after any close: nothing is final for it.
#[tokio::test]
async fn a_bad_signature_is_retried_with_a_fresh_token() {
    assert_eq!(
        scenarios::bad_signature(Sdk::Unity).await,
        Reaction::Reconnect { refresh: true }
    );
}

#[tokio::test]
async fn recovers_from_upstream_loss_expiry_and_drain() {
    scenarios::recovery(Sdk::Unity).await;
}

/// Before its first connect Unity sends `connection_id=` (empty) on every REST call.
#[tokio::test]
async fn an_empty_connection_id_on_rest_is_absent() {
    let env = Env::start().await;
    let tok = scenarios::token("unity-rest");
    let target = format!("/channels?user_id=unity-rest&api_key={DEV_API_KEY}&connection_id=");
    let body = json!({"filter_conditions": {"members": {"$in": ["unity-rest"]}}, "state": true});
    let (status, v) = env.https("POST", &target, &tok, Some(body)).await;
    assert!((200..300).contains(&status), "{status} {v}");
    assert!(v["channels"].is_array(), "{v}");
}

/// Between Unity's own pings, the gateway's health checks keep coming every health interval
/// however busy the session is: with its pings off, the 30 s watchdog (health checks only)
/// still never fires while another user posts every 2 s, for 50 s.
#[tokio::test]
async fn health_checks_keep_coming_while_events_flow() {
    // A client silent this long would be closed as idle: not what is measured here.
    let env = Env::start_with(|cfg| cfg.ws.client_idle_timeout = units(400)).await;
    let (user, sender) = ("unity-steady", "unity-steady-s");
    let mut c = env
        .connect(Sdk::Unity, user, &scenarios::token(user))
        .await
        .expect("connected");
    c.pings = false;
    env.watch(&c, user, "steady", &[user, sender]).await;
    let mut messages = 0;
    for i in 0..25 {
        let text = format!("s{i}");
        assert_eq!(env.post(sender, "steady", &text).await, 201);
        let events = c
            .run(units(2), |_| false)
            .await
            .unwrap_or_else(|r| panic!("left after {i} messages: {r:?}"));
        messages += events.len();
    }
    assert!(messages >= 20, "{messages}");
    // 50 SDK seconds of traffic at a 25 s health interval.
    assert!(c.health_checks >= 2, "{}", c.health_checks);
}
