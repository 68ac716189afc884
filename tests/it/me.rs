//! Issue 15, points 4 and 7, through the real gateway and the embedded upstream: every session's
//! first frame carries the user's current `me` (not the one from when the user's upstream
//! connection opened), and a connect payload's `device` is registered upstream with the user's
//! own authority.

use hyper::Method;
use serde_json::{json, Value};
use stream_edge::config::DEV_API_KEY;

use crate::support::*;
use crate::trust::{claims, header, Recorder};

/// Connects a tab of `user` with `json` as the connect payload; returns it and its first frame.
async fn tab(gw: &TestGateway, user: &str, payload: Value) -> (Ws, Value) {
    gw.ws_raw(&gw.connect_url(&payload.to_string(), DEV_API_KEY, &gw.token(user, None)))
        .await
}

async fn plain_tab(gw: &TestGateway, user: &str) -> (Ws, Value) {
    let (ws, first) = tab(gw, user, json!({"user_id": user})).await;
    assert_eq!(first["type"], "health.check", "{first}");
    (ws, first)
}

/// The `me` a connection of its own, straight to the embedded upstream, gets now: the oracle a
/// session's `me` through the gateway must match ([`comparable`]).
async fn direct_me(gw: &TestGateway, user: &str) -> Value {
    let payload = json!({"user_id": user}).to_string();
    let url = gw
        .connect_url(&payload, DEV_API_KEY, &gw.token(user, None))
        .replace(
            &gw.running().addr.to_string(),
            &gw.running().embedded_addr.expect("embedded").to_string(),
        );
    let (_ws, first) = gw.ws_raw(&url).await;
    comparable(&first["me"])
}

/// `me` without what a connect itself changes: when the user was last active, and `updated_at`
/// (a connect is an upsert of the user, so the oracle's own connect moves it).
fn comparable(me: &Value) -> Value {
    let mut me = me.clone();
    let map = me.as_object_mut().expect("me");
    map.remove("last_active");
    map.remove("updated_at");
    me
}

/// The next event of `kind` on `ws`, skipping others.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let ev = next_json(ws).await;
        if ev["type"] == kind {
            return ev;
        }
    }
}

#[tokio::test]
async fn later_tabs_get_the_current_unread_counts() {
    let gw = TestGateway::start().await;
    let (alice, bob) = ("me-alice", "me-bob");
    let (mut tab1, first) = plain_tab(&gw, alice).await;
    assert_eq!(first["me"]["total_unread_count"], 0, "{first}");
    let (_b, bc) = gw.connect(bob).await;
    gw.watch(bob, &bc, "me-ch", &[alice, bob]).await;
    for i in 1..=3 {
        gw.send(bob, "me-ch", &format!("m{i}")).await;
    }
    // Tab 1 watches nothing: the counters rise on its notifications.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = next_of(&mut tab1, "notification.message_new").await;
        seen.push(ev["total_unread_count"].clone());
    }
    assert_eq!(seen, [1, 2, 3]);

    let (_tab2, first) = plain_tab(&gw, alice).await;
    let me = &first["me"];
    assert_eq!(
        me["total_unread_count"], 3,
        "the current count, not 0: {me}"
    );
    assert_eq!(me["unread_count"], 3, "{me}");
    assert_eq!(me["unread_channels"], 1, "{me}");
    assert_eq!(me["id"], alice);

    let url = format!(
        "{}/channels/messaging/me-ch/read?api_key={DEV_API_KEY}&user_id={alice}",
        gw.base
    );
    let tok = gw.token(alice, None);
    let (status, body) = http(Method::POST, &url, Some("{}"), &[("authorization", &tok)]).await;
    assert!(status.is_success(), "{status} {body}");
    let read = next_of(&mut tab1, "notification.mark_read").await;
    assert_eq!(read["total_unread_count"], 0, "{read}");

    let (_tab3, first) = plain_tab(&gw, alice).await;
    assert_eq!(first["me"]["total_unread_count"], 0, "{first}");
    assert_eq!(first["me"]["unread_channels"], 0, "{first}");
    assert_eq!(comparable(&first["me"]), direct_me(&gw, alice).await);
    assert_eq!(
        gw.metric("stream_edge_me_refreshes_total", &[("outcome", "updated")])
            .await,
        2.0,
        "tabs 2 and 3 got a refreshed me"
    );
    assert_eq!(
        gw.metric(
            "stream_edge_me_refreshes_total",
            &[("outcome", "unchanged")]
        )
        .await,
        2.0,
        "the first tabs of alice and bob got the handshake's"
    );
    assert!(
        gw.metric("stream_edge_me_changes_total", &[("change", "counters")])
            .await
            >= 4.0
    );
}

/// An event no tab gets (dropped as not watched, or a notification) still changes the counters.
#[tokio::test]
async fn counters_change_even_when_no_tab_gets_the_event() {
    let gw = TestGateway::start().await;
    let (alice, bob) = ("me-frank", "me-grace");
    let (_tab1, _) = plain_tab(&gw, alice).await;
    let (tab2, c2) = gw.connect(alice).await;
    let (_b, bc) = gw.connect(bob).await;
    gw.watch(alice, &c2, "me-ch2", &[alice, bob]).await;
    // Bob watches too, so his own copy is a delivered message.new, never counted below.
    gw.watch(bob, &bc, "me-ch2", &[alice, bob]).await;
    drop(tab2);
    let hubs = gw.running().shared.hubs.clone();
    eventually("tab 2 left its hub", || {
        std::future::ready(hubs.session_count() == 2)
    })
    .await;
    let before = events_for_alice_now(&gw).await;
    gw.send(bob, "me-ch2", "while nobody looks").await;
    // Today the upstream connection still watches the channel and its message.new is dropped as
    // not watched; once a closed tab's watches are released, a notification comes instead.
    eventually("the event reached alice's hub", || async {
        events_for_alice_now(&gw).await > before
    })
    .await;
    let (_tab3, first) = plain_tab(&gw, alice).await;
    assert_eq!(first["me"]["total_unread_count"], 1, "{first}");
    assert_eq!(first["me"]["unread_channels"], 1, "{first}");
}

/// Frames of the kinds alice's hub can get for bob's message: dropped `message.new` or
/// delivered `notification.message_new`.
async fn events_for_alice_now(gw: &TestGateway) -> f64 {
    let dropped = gw
        .metric(
            "stream_edge_events_dropped_total",
            &[("reason", "not_watched"), ("type", "message.new")],
        )
        .await;
    let notified = gw
        .metric(
            "stream_edge_events_delivered_total",
            &[("type", "notification.message_new")],
        )
        .await;
    dropped + notified
}

#[tokio::test]
async fn a_profile_change_shows_in_later_tabs() {
    let gw = TestGateway::start().await;
    let user = "me-carol";
    let (mut tab1, first) = tab(
        &gw,
        user,
        json!({"user_id": user, "user_details": {"id": user, "name": "First", "color": "red"}}),
    )
    .await;
    assert_eq!(first["me"]["name"], "First");
    let (_tab2, _) = tab(
        &gw,
        user,
        json!({"user_id": user, "user_details": {"id": user, "name": "Second"}}),
    )
    .await;
    // Upstream tells the user's connection; from then on the live me has it.
    let ev = next_of(&mut tab1, "user.updated").await;
    assert_eq!(ev["user"]["name"], "Second", "{ev}");
    let (_tab3, first) = plain_tab(&gw, user).await;
    assert_eq!(first["me"]["name"], "Second", "{first}");
    assert_eq!(
        first["me"]["color"], "red",
        "a partial update keeps the rest"
    );
    assert!(
        first["me"]["mutes"].is_array(),
        "own-only fields stay: {first}"
    );
    assert_eq!(comparable(&first["me"]), direct_me(&gw, user).await);
}

#[tokio::test]
async fn the_connect_device_is_registered_with_the_users_own_token() {
    let (emu, stop) = emulator().await;
    let rec = Recorder::start(emu).await;
    let gw = TestGateway::start_with(upstream_at(rec.addr)).await;
    let user = "me-dave";
    let device = json!({"id": "push-token-1", "push_provider": "firebase",
                        "push_provider_name": "prod"});
    let (_tab1, first) = tab(
        &gw,
        user,
        json!({"user_id": user, "user_details": {"id": user}, "device": device,
               "client_request_id": "r1"}),
    )
    .await;
    assert_eq!(first["type"], "health.check", "{first}");

    let mut found = None;
    eventually("the device goes upstream", || {
        found = rec.request("POST /devices");
        std::future::ready(found.is_some())
    })
    .await;
    let (head, body) = found.unwrap();
    let c = claims(header(&head, "authorization").expect("signed"));
    assert_eq!(c["user_id"], user, "the user's own authority: {c}");
    assert!(c.get("server").is_none(), "never a server token: {c}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, device, "only the device's fields");

    assert_eq!(
        gw.metric(
            "stream_edge_device_registrations_total",
            &[("outcome", "ok")]
        )
        .await,
        1.0
    );
    let (_tab2, second) = tab(
        &gw,
        user,
        json!({"user_id": user, "device": {"id": "push-token-1", "push_provider": "firebase"}}),
    )
    .await;
    let devices = second["me"]["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        devices.len(),
        1,
        "a later tab's me lists the device: {second}"
    );
    assert_eq!(devices[0]["id"], "push-token-1");
    assert_eq!(devices[0]["user_id"], user);
    assert_eq!(
        gw.metric(
            "stream_edge_device_registrations_total",
            &[("outcome", "known")]
        )
        .await,
        1.0,
        "the same device from a later tab is not sent again"
    );
    let sent = String::from_utf8_lossy(&rec.sent.lock().unwrap()).into_owned();
    assert_eq!(sent.matches("POST /devices").count(), 1);
    stop.cancel();
}

/// Devices added and removed through the REST proxy show in later tabs' `me`, as in a connection
/// of their own.
#[tokio::test]
async fn devices_changed_through_rest_show_in_later_tabs() {
    let gw = TestGateway::start().await;
    let user = "me-heidi";
    let (_tab1, _) = plain_tab(&gw, user).await;
    let tok = gw.token(user, None);
    let url = format!("{}/devices?api_key={DEV_API_KEY}", gw.base);
    let body = r#"{"id":"rest-dev","push_provider":"apn","push_provider_name":"ios"}"#;
    let (status, text) = http(Method::POST, &url, Some(body), &[("authorization", &tok)]).await;
    assert!(status.is_success(), "{status} {text}");
    let ids = |me: &Value| -> Vec<Value> {
        me["devices"]
            .as_array()
            .map(|l| l.iter().map(|d| d["id"].clone()).collect())
            .unwrap_or_default()
    };
    let (_tab2, first) = plain_tab(&gw, user).await;
    assert_eq!(ids(&first["me"]), [json!("rest-dev")], "{first}");
    assert_eq!(first["me"]["devices"][0]["push_provider_name"], "ios");
    assert_eq!(ids(&first["me"]), ids(&direct_me(&gw, user).await));

    let del = format!("{}/devices?api_key={DEV_API_KEY}&id=rest-dev", gw.base);
    let (status, text) = http(Method::DELETE, &del, None, &[("authorization", &tok)]).await;
    assert!(status.is_success(), "{status} {text}");
    let (_tab3, first) = plain_tab(&gw, user).await;
    assert!(ids(&first["me"]).is_empty(), "{first}");
    assert!(ids(&direct_me(&gw, user).await).is_empty());
    assert_eq!(
        gw.metric("stream_edge_me_changes_total", &[("change", "devices")])
            .await,
        2.0
    );
}

#[tokio::test]
async fn a_malformed_device_is_refused_in_the_connects_own_form() {
    let gw = TestGateway::start().await;
    for device in [
        json!({"id": "t", "push_provider": "pigeon"}),
        json!({"push_provider": "apn"}),
        json!("t"),
    ] {
        let (_ws, first) = tab(
            &gw,
            "me-erin",
            json!({"user_id": "me-erin", "device": device}),
        )
        .await;
        assert_eq!(first["error"]["code"], 4, "{device}: {first}");
        assert!(
            first["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("device")),
            "{first}"
        );
    }
    let refused = [("transport", "ws"), ("reason", "bad_input")];
    assert_eq!(
        gw.metric("stream_edge_connect_rejected_total", &refused)
            .await,
        3.0,
        "each refusal is counted"
    );
}

/// A change that would make the live `me` larger than `limits.max_me_bytes` is not kept: later
/// tabs get the last good `me`, and the hit is counted.
#[tokio::test]
async fn an_oversized_me_keeps_the_last_good_one() {
    let mut cfg = test_config();
    cfg.limits.max_me_bytes = 2048;
    let gw = TestGateway::start_with(cfg).await;
    let user = "me-ivan";
    let (mut tab1, first) = tab(
        &gw,
        user,
        json!({"user_id": user, "user_details": {"id": user, "name": "Small"}}),
    )
    .await;
    assert!(first["me"].to_string().len() < 2048, "{first}");
    let big = "x".repeat(3000);
    let (_tab2, _) = tab(
        &gw,
        user,
        json!({"user_id": user, "user_details": {"id": user, "name": big}}),
    )
    .await;
    let ev = next_of(&mut tab1, "user.updated").await;
    assert_eq!(ev["user"]["name"], big.as_str(), "the event itself passes");
    let (_tab3, first) = plain_tab(&gw, user).await;
    assert_eq!(first["me"]["name"], "Small", "{first}");
    let hit = [("limit", "max_me_bytes")];
    assert_eq!(gw.metric("stream_edge_limit_hits_total", &hit).await, 1.0);
    assert_eq!(
        gw.metric("stream_edge_me_changes_total", &[("change", "too_large")])
            .await,
        1.0
    );
}
