//! Who receives what, per connection (`stream-event-recipients.md`): `notification.message_new`
//! to each connection of a member that does not watch the channel (never the sender's, never for
//! a thread-only reply), `user.watching.*` per user (first and last connection), and a closed or
//! dropped connection releasing its watches.

use serde_json::{json, Value};

use super::support::{Client, Harness, WsConn, KEY};

/// Watches `messaging:{id}` from `ws` without presence (the SDK's `channel.watch()` default).
async fn watch(c: &Client, id: &str, ws: &WsConn, members: &[&str]) -> Value {
    let body =
        json!({"data": {"members": members}, "state": true, "watch": true, "presence": false});
    c.post_conn(
        &format!("/channels/messaging/{id}/query"),
        ws,
        body,
        "ChannelStateResponse",
    )
    .await
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[tokio::test]
async fn notification_message_new_goes_to_each_connection_that_does_not_watch() {
    if crate::support::skip_without_openapi(
        "emulator::recipients::notification_message_new_goes_to_each_connection_that_does_not_watch",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut watching = h.connect("alice").await;
    let mut idle = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let mut carol = h.connect("carol").await;
    let a = h.client("alice");
    let c = h.client("carol");
    watch(&a, "room", &watching, &["alice", "bob", "carol"]).await;
    for ws in [&mut watching, &mut idle, &mut bob, &mut carol] {
        ws.drain().await;
    }

    let sent = c.send_message("room", "hello").await;
    let id = sent["message"]["id"].clone();
    let w = watching.drain().await;
    assert_eq!(of_type(&w, "message.new").len(), 1, "{w:?}");
    assert!(of_type(&w, "notification.message_new").is_empty(), "{w:?}");
    // Alice's other tab does not watch: it gets the notification, although her first tab watches.
    let i = idle.drain().await;
    let n = of_type(&i, "notification.message_new");
    assert_eq!(n.len(), 1, "{i:?}");
    assert_eq!(n[0]["message"]["id"], id);
    assert_eq!(n[0]["cid"], "messaging:room");
    assert_eq!(n[0]["unread_count"], 1);
    assert!(of_type(&i, "message.new").is_empty(), "{i:?}");
    assert_eq!(bob.drain_types().await, ["notification.message_new"]);
    // The sender watches nowhere, and still hears nothing of her own message.
    assert!(carol.drain().await.is_empty());

    // A thread-only reply reaches the watchers as `message.new` and nobody as a notification.
    let reply = json!({"message": {"text": "in thread", "parent_id": id}});
    c.post(
        "/channels/messaging/room/message",
        reply,
        "SendMessageResponse",
    )
    .await;
    let w = watching.drain().await;
    assert_eq!(of_type(&w, "message.new").len(), 1, "{w:?}");
    assert_eq!(of_type(&w, "message.new")[0]["message"]["parent_id"], id);
    assert!(idle.drain().await.is_empty());
    assert!(bob.drain().await.is_empty());
    // Shown in the channel too, it is channel news again.
    let shown = json!({"message": {"text": "also here", "parent_id": id, "show_in_channel": true}});
    c.post(
        "/channels/messaging/room/message",
        shown,
        "SendMessageResponse",
    )
    .await;
    assert_eq!(idle.drain_types().await, ["notification.message_new"]);
    for ws in [watching, idle, bob, carol] {
        ws.close().await;
    }
}

#[tokio::test]
async fn watching_start_and_stop_are_per_user_and_closing_releases_watches() {
    if crate::support::skip_without_openapi(
        "emulator::recipients::watching_start_and_stop_are_per_user_and_closing_releases_watches",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut bob = h.connect("bob").await;
    let a = h.client("alice");
    let b = h.client("bob");
    watch(&b, "room", &bob, &["alice", "bob"]).await;
    assert_eq!(bob.drain_types().await, ["user.watching.start"]);

    let one = h.connect("alice").await;
    let two = h.connect("alice").await;
    let state = watch(&a, "room", &one, &[]).await;
    assert_eq!(state["watcher_count"], 2);
    let seen = bob.drain().await;
    let starts = of_type(&seen, "user.watching.start");
    assert_eq!(starts.len(), 1, "{seen:?}");
    assert_eq!(starts[0]["user"]["id"], "alice");
    assert_eq!(starts[0]["watcher_count"], 2);
    // Her second connection is not a second watcher.
    let state = watch(&a, "room", &two, &[]).await;
    assert_eq!(
        state["watcher_count"], 2,
        "users are counted, not connections"
    );
    assert!(bob.drain().await.is_empty());

    // Closing one of two watching connections changes nothing for others…
    one.close().await;
    assert!(bob.drain().await.is_empty());
    // …and the last watching connection's stop is a stop.
    a.stop_watching("room", &two).await;
    let seen = bob.drain().await;
    let stops = of_type(&seen, "user.watching.stop");
    assert_eq!(stops.len(), 1, "{seen:?}");
    assert_eq!(stops[0]["watcher_count"], 1);

    // A watching connection that closes releases its watch: stop, and the count drops.
    let three = h.connect("alice").await;
    watch(&a, "room", &three, &[]).await;
    assert_eq!(bob.drain_types().await, ["user.watching.start"]);
    three.close().await;
    let seen = bob.drain().await;
    assert_eq!(of_type(&seen, "user.watching.stop").len(), 1, "{seen:?}");
    let state = watch(&b, "room", &bob, &[]).await;
    assert_eq!(state["watcher_count"], 1, "{state}");
    // So does one that is dropped without a close frame.
    let mut four = h.connect("alice").await;
    watch(&a, "room", &four, &[]).await;
    bob.drain().await;
    assert_eq!(h.emu.drop_connections_of(KEY, "alice"), 2);
    four.expect_abrupt_end().await;
    let seen = bob.drain().await;
    let stops = of_type(&seen, "user.watching.stop");
    assert_eq!(stops.len(), 1, "{seen:?}");
    assert_eq!(stops[0]["watcher_count"], 1);
    two.close().await;
    bob.close().await;
}
