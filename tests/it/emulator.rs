//! Integration tests of the embedded Stream emulator, run against `serve()`
//! on `127.0.0.1:0`: WebSocket handshake and errors, heartbeat, event
//! routing between watchers, users, REST errors, abrupt drops and shutdown; the
//! submodules cover who receives what per connection (`recipients`, `presence`,
//! `hiding`, `members`, `threads`, `channel_admin`, `reads`, `moderation`, `drafts`,
//! `channel_list`) and devices.
//! Every REST body and every event the tests see is validated against its
//! schema in the Stream OpenAPI spec (`support` below).

#[path = "emulator/banned_users.rs"]
mod banned_users;
#[path = "emulator/blocking.rs"]
mod blocking;
#[path = "emulator/channel_admin.rs"]
mod channel_admin;
#[path = "emulator/channel_list.rs"]
mod channel_list;
#[path = "emulator/control_watchers.rs"]
mod control_watchers;
#[path = "emulator/deletion.rs"]
mod deletion;
#[path = "emulator/devices.rs"]
mod devices;
#[path = "emulator/drafts.rs"]
mod drafts;
#[path = "emulator/hiding.rs"]
mod hiding;
#[path = "emulator/members.rs"]
mod members;
#[path = "emulator/messages.rs"]
mod messages;
#[path = "emulator/metrics.rs"]
mod metrics;
#[path = "emulator/moderation.rs"]
mod moderation;
#[path = "emulator/notices.rs"]
mod notices;
#[path = "emulator/polls.rs"]
mod polls;
#[path = "emulator/presence.rs"]
mod presence;
#[path = "emulator/reactions.rs"]
mod reactions;
#[path = "emulator/reads.rs"]
mod reads;
#[path = "emulator/recipients.rs"]
mod recipients;
#[path = "emulator/reminders.rs"]
mod reminders;
#[path = "emulator/schema.rs"]
pub mod schema;
#[path = "emulator/search.rs"]
mod search;
#[path = "emulator/shadow.rs"]
mod shadow;
#[path = "emulator/support.rs"]
mod support;
#[path = "emulator/thread_reads.rs"]
mod thread_reads;
#[path = "emulator/threads.rs"]
mod threads;
#[path = "emulator/uploads.rs"]
mod uploads;

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use support::{ws_url, Client, Harness, KEY, SECRET_NEW, SECRET_OLD};

#[tokio::test]
async fn connect_sends_health_check_with_full_me() {
    if crate::support::skip_without_openapi("emulator::connect_sends_health_check_with_full_me") {
        return;
    }
    let h = Harness::start().await;
    let details = json!({
        "id": "alice", "name": "Alice", "color": "teal",
        "privacy_settings": {"typing_indicators": {"enabled": false}},
    });
    let ws = h
        .connect_with("alice", &h.token("alice", SECRET_NEW), Some(details))
        .await;
    let hello = ws.hello.clone();
    assert_eq!(hello["type"], "health.check");
    assert_eq!(hello["cid"], "*");
    assert!(hello["connection_id"]
        .as_str()
        .is_some_and(|id| id.len() == 36));
    let me = &hello["me"];
    assert_eq!(me["id"], "alice");
    assert_eq!(me["name"], "Alice");
    assert_eq!(me["color"], "teal");
    assert_eq!(me["online"], true);
    assert_eq!(
        me["privacy_settings"]["typing_indicators"]["enabled"],
        false
    );
    assert_eq!(me["privacy_settings"]["read_receipts"]["enabled"], true);
    for key in ["devices", "mutes", "channel_mutes", "blocked_user_ids"] {
        assert!(me[key].is_array(), "me.{key} must be an array");
    }
    assert_eq!(me["total_unread_count"], 0);
    assert_eq!(h.emu.connections_of(KEY, "alice"), 1);
    assert_eq!(h.emu.connections_total(), 1);

    let counts = h.introspect().await;
    assert_eq!(counts["total"], 1);
    assert_eq!(counts["users"][format!("{KEY}/alice")], 1);
    ws.close().await;
}

#[tokio::test]
async fn connect_errors_come_as_first_frame_then_close_1000() {
    if crate::support::skip_without_openapi(
        "emulator::connect_errors_come_as_first_frame_then_close_1000",
    ) {
        return;
    }
    let h = Harness::start().await;
    let now = support::now();
    let cases = [
        (
            KEY,
            "alice",
            h.token_claims(json!({"user_id": "alice", "exp": now - 60}), SECRET_OLD),
            40,
        ),
        (
            KEY,
            "alice",
            h.token_claims(json!({"user_id": "alice"}), "wrong-secret"),
            43,
        ),
        (KEY, "alice", "not-a-jwt".to_owned(), 43),
        (KEY, "mallory", h.token("alice", SECRET_OLD), 43),
        (
            KEY,
            "alice",
            h.token_claims(json!({"user_id": "alice", "iat": now + 600}), SECRET_OLD),
            42,
        ),
        ("no-such-key", "alice", h.token("alice", SECRET_OLD), 2),
    ];
    for (key, user, token, code) in cases {
        let url = ws_url(h.addr, key, user, &token, None);
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade is always accepted");
        let first = support::next_text(&mut ws).await;
        support::validate("APIError", &first["error"]);
        assert_eq!(first["error"]["code"], code, "case {user}/{code}: {first}");
        assert_eq!(first["error"]["StatusCode"], 401);
        match support::next_frame(&mut ws).await {
            Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected close 1000, got {other:?}"),
        }
    }
    assert_eq!(h.emu.connections_total(), 0);
}

#[tokio::test]
async fn pings_are_answered_in_both_shapes() {
    if crate::support::skip_without_openapi("emulator::pings_are_answered_in_both_shapes") {
        return;
    }
    let h = Harness::start().await;
    let mut ws = h.connect("alice").await;
    let conn_id = ws.conn_id();
    let pings = [
        json!([{"type": "health.check", "client_id": "alice--1"}]),
        json!({"type": "health.check", "connection_id": conn_id}),
    ];
    for ping in pings {
        ws.send_text("not json at all").await;
        ws.send_binary().await;
        ws.send_text(&ping.to_string()).await;
        let reply = ws.next_event().await;
        assert_eq!(reply["type"], "health.check");
        assert_eq!(reply["connection_id"], conn_id.as_str());
        assert_eq!(reply["cid"], "*");
    }
    ws.close().await;
}

#[tokio::test]
async fn channel_events_reach_watchers_only() {
    if crate::support::skip_without_openapi("emulator::channel_events_reach_watchers_only") {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let a = h.client("alice");
    let b = h.client("bob");

    let created = a
        .watch_channel(
            "general",
            &alice,
            json!({"members": ["alice", "bob"], "name": "General"}),
        )
        .await;
    assert_eq!(created["channel"]["cid"], "messaging:general");
    assert_eq!(created["channel"]["name"], "General");
    assert_eq!(created["members"].as_array().map(Vec::len), Some(2));
    alice.expect("user.watching.start").await;

    b.watch_channel("general", &bob, json!({})).await;
    let start = alice.expect("user.watching.start").await;
    assert_eq!(start["user"]["id"], "bob");
    assert_eq!(start["watcher_count"], 2);
    bob.expect("user.watching.start").await;

    let sent = a.send_message("general", "hello bob").await;
    let msg_id = sent["message"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for ws in [&mut alice, &mut bob] {
        let ev = ws.expect("message.new").await;
        assert_eq!(ev["message"]["text"], "hello bob");
        assert_eq!(ev["cid"], "messaging:general");
    }

    b.event(
        "general",
        json!({"type": "typing.start"}),
        "TypingStartEvent",
    )
    .await;
    let typing = alice.expect("typing.start").await;
    assert_eq!(typing["user"]["id"], "bob");
    bob.expect("typing.start").await;

    let read = b.mark_read("general").await;
    assert_eq!(read["event"]["last_read_message_id"], msg_id.as_str());
    let seen = alice.expect("message.read").await;
    assert_eq!(seen["user"]["id"], "bob");
    let own = bob.expect("message.read").await;
    assert_eq!(own["user"]["id"], "bob");
    let note = bob.expect("notification.mark_read").await;
    assert_eq!(note["unread_channels"], 0);
    assert_eq!(note["total_unread_count"], 0);

    // Frames arrive in order: anything alice got before this marker would
    // have been seen by `expect`, so notification.mark_read never reached her.
    b.event("general", json!({"type": "typing.stop"}), "TypingStopEvent")
        .await;
    let before = alice.collect_until("typing.stop").await;
    assert!(
        before.iter().all(|e| e["type"] != "notification.mark_read"),
        "{before:?}"
    );

    // A custom event carries its custom fields.
    a.event(
        "general",
        json!({"type": "poke", "strength": 3}),
        "CustomEvent",
    )
    .await;
    let poke = bob.expect("poke").await;
    assert_eq!(poke["strength"], 3);

    // Unread counters: bob's state shows alice's next message as unread.
    a.send_message("general", "are you there?").await;
    let ev = bob.expect("message.new").await;
    assert_eq!(ev["unread_count"], 1);
    let state = b.query_channel("general", json!({"state": true})).await;
    let reads = state["read"].as_array().cloned().unwrap_or_default();
    let mine = reads
        .iter()
        .find(|r| r["user"]["id"] == "bob")
        .cloned()
        .unwrap_or_default();
    assert_eq!(mine["unread_messages"], 1);
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn stop_watching_stops_delivery() {
    if crate::support::skip_without_openapi("emulator::stop_watching_stops_delivery") {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let a = h.client("alice");
    let b = h.client("bob");
    a.watch_channel("room", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    b.watch_channel("room", &bob, json!({})).await;
    alice.expect("user.watching.start").await;
    alice.expect("user.watching.start").await;

    b.stop_watching("room", &bob).await;
    let stop = alice.expect("user.watching.stop").await;
    assert_eq!(stop["user"]["id"], "bob");
    assert_eq!(stop["watcher_count"], 1);

    a.send_message("room", "still there?").await;
    alice.expect("message.new").await;
    // Bob is a member who watches the channel nowhere: he gets the
    // notification, never the channel event.
    let seen = bob.collect_until("notification.message_new").await;
    assert!(seen.iter().all(|e| e["type"] != "message.new"), "{seen:?}");
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn query_channels_filters_sorts_and_watches() {
    if crate::support::skip_without_openapi("emulator::query_channels_filters_sorts_and_watches") {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let a = h.client("alice");
    let c = h.client("carol");
    a.query_channel("one", json!({"data": {"members": ["alice", "carol"]}}))
        .await;
    a.query_channel("two", json!({"data": {"members": ["alice"]}}))
        .await;
    c.query_channel("three", json!({"data": {"members": ["carol"]}}))
        .await;
    a.send_message("one", "first").await;
    a.send_message("two", "second").await;

    let body = json!({
        "filter_conditions": {"members": {"$in": ["alice"]}},
        "sort": [{"field": "last_message_at", "direction": -1}],
        "state": true, "watch": true, "presence": true, "limit": 30,
    });
    let res = a
        .post_conn("/channels", &alice, body, "QueryChannelsResponse")
        .await;
    let cids: Vec<&str> = res["channels"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|c| c["channel"]["cid"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(cids, ["messaging:two", "messaging:one"]);

    let by_cid = json!({"filter_conditions": {"cid": {"$in": ["messaging:three"]}}});
    let res = a.post("/channels", by_cid, "QueryChannelsResponse").await;
    assert_eq!(res["channels"].as_array().map(Vec::len), Some(1));

    let bad = json!({"filter_conditions": {"cid": {"$regex": "x"}}});
    let (status, err) = a.raw("POST", "/channels", Some(bad)).await;
    assert_eq!((status, err["code"].clone()), (400, json!(4)));

    // The watch bound both channels to alice's connection.
    alice.expect("user.watching.start").await;
    alice.expect("user.watching.start").await;
    c.query_channel("one", json!({})).await;
    c.send_message("one", "from carol").await;
    let ev = alice.expect("message.new").await;
    assert_eq!(ev["message"]["user"]["id"], "carol");
    alice.close().await;
}

#[tokio::test]
async fn users_upsert_patch_and_query() {
    if crate::support::skip_without_openapi("emulator::users_upsert_patch_and_query") {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let a = h.client("alice");
    a.watch_channel("dm", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    h.client("bob").watch_channel("dm", &bob, json!({})).await;
    alice.expect("user.watching.start").await;
    alice.expect("user.watching.start").await;

    let server = h.server_client();
    let upsert = json!({"users": {"bob": {"id": "bob", "name": "Bobby", "favorite": "tea"}}});
    let res = server.post("/users", upsert, "UpdateUsersResponse").await;
    assert_eq!(res["users"]["bob"]["name"], "Bobby");
    let ev = bob.expect("user.updated").await;
    assert_eq!(ev["user"]["favorite"], "tea");
    // Alice watches a channel bob is a member of.
    assert_eq!(alice.expect("user.updated").await["user"]["id"], "bob");

    let patch = json!({"users": [{"id": "bob", "set": {"privacy_settings": {"read_receipts": {"enabled": false}}}, "unset": ["favorite"]}]});
    let res = server
        .send("PATCH", "/users", patch, 200, "UpdateUsersResponse")
        .await;
    assert_eq!(
        res["users"]["bob"]["privacy_settings"]["read_receipts"]["enabled"],
        false
    );
    assert!(res["users"]["bob"].get("favorite").is_none());
    bob.expect("user.updated").await;

    let payload = json!({"filter_conditions": {"id": {"$in": ["alice", "bob"]}}});
    let path = format!("/users?payload={}", support::enc(&payload.to_string()));
    let res = server.get(&path, "QueryUsersResponse").await;
    let users = res["users"].as_array().cloned().unwrap_or_default();
    assert_eq!(users.len(), 2);
    let bob_row = users
        .iter()
        .find(|u| u["id"] == "bob")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        bob_row["privacy_settings"]["read_receipts"]["enabled"],
        false
    );
    assert_eq!(bob_row["online"], true);

    // A user token sees only its own privacy settings.
    let res = a.get(&path, "QueryUsersResponse").await;
    let users = res["users"].as_array().cloned().unwrap_or_default();
    for u in &users {
        assert_eq!(
            u.get("privacy_settings").is_some(),
            u["id"] == "alice",
            "{u}"
        );
    }
    // …and may not edit other users.
    let (status, err) = a
        .raw(
            "POST",
            "/users",
            Some(json!({"users": {"bob": {"id": "bob"}}})),
        )
        .await;
    assert_eq!((status, err["code"].clone()), (403, json!(17)));
    let huge = json!({"users": {"alice": {"id": "alice", "bio": "x".repeat(6000)}}});
    let (status, err) = a.raw("POST", "/users", Some(huge)).await;
    assert_eq!((status, err["code"].clone()), (400, json!(4)));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn rest_errors_are_stream_shaped() {
    if crate::support::skip_without_openapi("emulator::rest_errors_are_stream_shaped") {
        return;
    }
    let h = Harness::start().await;
    let a = h.client("alice");
    let (status, err) = a.raw("GET", "/nope", None).await;
    assert_eq!((status, err["code"].clone()), (404, json!(16)));
    let (status, err) = a
        .raw(
            "POST",
            "/channels/messaging/ghost/message",
            Some(json!({"message": {"text": "x"}})),
        )
        .await;
    assert_eq!((status, err["code"].clone()), (404, json!(16)));
    let expired = h.token_claims(
        json!({"user_id": "alice", "exp": support::now() - 60}),
        SECRET_OLD,
    );
    let (status, err) = Client::new(h.addr, KEY, &expired)
        .raw("POST", "/channels", None)
        .await;
    assert_eq!((status, err["code"].clone()), (401, json!(40)));
    let (status, err) = Client::new(h.addr, "bad-key", &h.token("alice", SECRET_OLD))
        .raw("POST", "/channels", None)
        .await;
    assert_eq!((status, err["code"].clone()), (401, json!(2)));
    let (status, err) = a
        .raw_bytes("POST", "/channels", b"{not json".to_vec())
        .await;
    assert_eq!((status, err["code"].clone()), (400, json!(4)));
    let (status, err) = a
        .raw_bytes("POST", "/channels", vec![b' '; 2 * 1024 * 1024])
        .await;
    assert_eq!(status, 413);
    assert_eq!(err["code"], 4);
    // Clients cannot forge server events.
    a.query_channel("general", json!({})).await;
    let forged = json!({"event": {"type": "message.new"}});
    let (status, err) = a
        .raw("POST", "/channels/messaging/general/event", Some(forged))
        .await;
    assert_eq!((status, err["code"].clone()), (400, json!(4)));

    let (status, headers) = a.preflight("/channels").await;
    assert_eq!(status, 204);
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(&b"*"[..])
    );
}

#[tokio::test]
async fn drop_connections_closes_sockets_without_close_frame() {
    if crate::support::skip_without_openapi(
        "emulator::drop_connections_closes_sockets_without_close_frame",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut one = h.connect("alice").await;
    let mut two = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    assert_eq!(h.emu.connections_of(KEY, "alice"), 2);
    assert_eq!(h.emu.drop_connections_of(KEY, "alice"), 2);
    assert_eq!(h.emu.connections_of(KEY, "alice"), 0);
    for ws in [&mut one, &mut two] {
        ws.expect_abrupt_end().await;
    }
    // Other users are untouched; the HTTP route does the same.
    assert_eq!(h.emu.connections_of(KEY, "bob"), 1);
    let res = h.drop_via_http("bob").await;
    assert_eq!(res["dropped"], 1);
    bob.expect_abrupt_end().await;
    assert_eq!(h.emu.connections_total(), 0);
}

#[tokio::test]
async fn client_close_unregisters_and_shutdown_closes_with_1001() {
    if crate::support::skip_without_openapi(
        "emulator::client_close_unregisters_and_shutdown_closes_with_1001",
    ) {
        return;
    }
    let h = Harness::start().await;
    let ws = h.connect("alice").await;
    ws.close().await;
    assert_eq!(h.emu.connections_of(KEY, "alice"), 0);

    let mut ws = h.connect("bob").await;
    h.shutdown.cancel();
    match support::next_frame(&mut ws.inner).await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected close 1001, got {other:?}"),
    }
    let joined = tokio::time::timeout(Duration::from_secs(10), h.task).await;
    assert!(
        matches!(joined, Ok(Ok(Ok(())))),
        "serve must return after shutdown"
    );
}

#[tokio::test]
async fn secret_rotation_and_server_token_rules() {
    if crate::support::skip_without_openapi("emulator::secret_rotation_and_server_token_rules") {
        return;
    }
    let h = Harness::start().await;
    let old = h
        .connect_with("alice", &h.token("alice", SECRET_OLD), None)
        .await;
    let new = h
        .connect_with("alice", &h.token("alice", SECRET_NEW), None)
        .await;
    assert_eq!(h.emu.connections_of(KEY, "alice"), 2);
    old.close().await;
    new.close().await;
    let url = ws_url(
        h.addr,
        KEY,
        "alice",
        &h.token_claims(json!({"server": true}), SECRET_OLD),
        None,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let first = support::next_text(&mut ws).await;
    assert_eq!(first["error"]["code"], 43);

    // A server token acts for the user named in the request.
    let alice = h.connect("alice").await;
    let server = h.server_client();
    h.client("alice")
        .query_channel("ops", json!({"data": {"members": ["alice"]}}))
        .await;
    let body = json!({"message": {"text": "deploy done", "user_id": "alice"}});
    let res = server
        .post(
            "/channels/messaging/ops/message",
            body,
            "SendMessageResponse",
        )
        .await;
    assert_eq!(res["message"]["user"]["id"], "alice");
    let (status, err) = server
        .raw("POST", "/channels/messaging/ops/read", Some(json!({})))
        .await;
    assert_eq!(
        (status, err["code"].clone()),
        (400, json!(4)),
        "a server token must name the user"
    );
    alice.close().await;
}

#[tokio::test]
async fn token_revocation_and_app_settings_match_the_spec() {
    if crate::support::skip_without_openapi(
        "emulator::token_revocation_and_app_settings_match_the_spec",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let server = h.server_client();
    let app = server.get("/app", "GetApplicationResponse").await;
    assert!(app["app"].get("revoke_tokens_issued_before").is_none());

    // revokeUserToken: a PATCH /users with a server token; the user's own connections see it in
    // `user.updated`, and the user object carries it.
    let patch = json!({"users": [{"id": "alice", "set": {"revoke_tokens_issued_before": "2020-01-01T00:00:00Z"}}]});
    let res = server
        .send("PATCH", "/users", patch, 200, "UpdateUsersResponse")
        .await;
    let cutoff = res["users"]["alice"]["revoke_tokens_issued_before"].clone();
    assert!(cutoff.is_string(), "{res}");
    assert_eq!(
        alice.expect("user.updated").await["user"]["revoke_tokens_issued_before"],
        cutoff
    );

    // revokeTokens: PATCH /app, then GET /app shows it.
    let (status, _) = server
        .raw(
            "PATCH",
            "/app",
            Some(json!({"revoke_tokens_issued_before": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 200);
    let app = server.get("/app", "GetApplicationResponse").await;
    assert!(
        app["app"]["revoke_tokens_issued_before"].is_string(),
        "{app}"
    );
    // A token without iat is revoked; one issued after the cutoff is not.
    let (status, err) = h.client("bob").raw("GET", "/app", None).await;
    assert_eq!((status, err["code"].clone()), (401, json!(40)), "{err}");
    let fresh = h.token_claims(json!({"user_id": "bob", "iat": support::now()}), SECRET_NEW);
    let (status, _) = Client::new(h.addr, KEY, &fresh)
        .raw("GET", "/app", None)
        .await;
    assert_eq!(status, 200);
    alice.close().await;
}
