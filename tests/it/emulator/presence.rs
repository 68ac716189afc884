//! Presence per connection: `presence: true` on a channel query or `GET /users` makes the calling
//! connection follow those users; `user.presence.changed` (first connection opens, last closes,
//! invisible toggled) and other users' `user.updated` reach only the followers.

use serde_json::json;

use super::support::{self, Harness};

#[tokio::test]
async fn presence_events_go_to_the_connections_that_subscribed() {
    if crate::support::skip_without_openapi(
        "emulator::presence::presence_events_go_to_the_connections_that_subscribed",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut follows = h.connect("alice").await;
    let mut other_tab = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let a = h.client("alice");
    let body =
        json!({"data": {"members": ["alice", "bob", "carol"]}, "state": true, "presence": true});
    a.post_conn(
        "/channels/messaging/room/query",
        &follows,
        body,
        "ChannelStateResponse",
    )
    .await;
    // Bob watches the channel but never asked for presence.
    let watch = json!({"state": true, "watch": true, "presence": false});
    h.client("bob")
        .post_conn(
            "/channels/messaging/room/query",
            &bob,
            watch,
            "ChannelStateResponse",
        )
        .await;
    for ws in [&mut follows, &mut other_tab, &mut bob] {
        ws.drain().await;
    }

    // Carol's first connection: online, to the follower only.
    let carol = h.connect("carol").await;
    let seen = follows.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "user.presence.changed");
    assert_eq!(seen[0]["user"]["id"], "carol");
    assert_eq!(seen[0]["user"]["online"], true);
    assert!(other_tab.drain().await.is_empty());
    assert!(bob.drain().await.is_empty());
    // A second connection changes nothing; the last one closing is offline.
    let carol_two = h.connect("carol").await;
    carol.close().await;
    assert!(follows.drain().await.is_empty());
    carol_two.close().await;
    let seen = follows.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "user.presence.changed");
    assert_eq!(seen[0]["user"]["online"], false);
    assert!(seen[0]["user"]["last_active"].is_string());

    // Another user's update goes to followers (without privacy fields), not to every watcher.
    let mut carol = h.connect("carol").await;
    follows.drain().await;
    let server = h.server_client();
    let upsert = json!({"users": {"carol": {"id": "carol", "name": "Caroline"}}});
    server.post("/users", upsert, "UpdateUsersResponse").await;
    let seen = follows.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "user.updated");
    assert_eq!(seen[0]["user"]["name"], "Caroline");
    assert!(seen[0]["user"].get("privacy_settings").is_none());
    assert!(other_tab.drain().await.is_empty());
    assert!(bob.drain().await.is_empty());
    // Her own connections get it with her privacy fields.
    let own = carol.drain().await;
    assert_eq!(own.len(), 1, "{own:?}");
    assert!(own[0]["user"]["privacy_settings"].is_object());

    // Turning invisible takes her offline for her followers (and tells her own tabs nothing but
    // the update).
    let patch = json!({"users": [{"id": "carol", "set": {"invisible": true}}]});
    server
        .send("PATCH", "/users", patch, 200, "UpdateUsersResponse")
        .await;
    let seen = follows.drain().await;
    let kinds: Vec<&str> = seen.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["user.updated", "user.presence.changed"]);
    assert_eq!(seen[1]["user"]["online"], false);
    assert_eq!(carol.drain_types().await, ["user.updated"]);

    // `GET /users` with presence subscribes the calling connection to the returned users.
    let payload = json!({"filter_conditions": {"id": {"$in": ["dave"]}}, "presence": true});
    server
        .post(
            "/users",
            json!({"users": {"dave": {"id": "dave"}}}),
            "UpdateUsersResponse",
        )
        .await;
    let path = format!("/users?payload={}", support::enc(&payload.to_string()));
    let res = a.get_conn(&path, &other_tab, "QueryUsersResponse").await;
    assert_eq!(res["users"][0]["id"], "dave");
    let dave = h.connect("dave").await;
    let seen = other_tab.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "user.presence.changed");
    assert_eq!(seen[0]["user"]["id"], "dave");
    assert!(follows.drain().await.is_empty());

    // A user's own connections never get their own presence: alice follows herself (a member of
    // the room), yet her going invisible reaches her tabs only as `user.updated`.
    let patch = json!({"users": [{"id": "alice", "set": {"invisible": true}}]});
    server
        .send("PATCH", "/users", patch, 200, "UpdateUsersResponse")
        .await;
    assert_eq!(follows.drain_types().await, ["user.updated"]);
    assert_eq!(other_tab.drain_types().await, ["user.updated"]);
    // `POST /channels` with presence: bob's connection follows the members of what it returned.
    let body = json!({"filter_conditions": {"members": {"$in": ["bob"]}}, "presence": true});
    h.client("bob")
        .post_conn("/channels", &bob, body, "QueryChannelsResponse")
        .await;
    bob.drain().await;
    let patch = json!({"users": [{"id": "carol", "set": {"invisible": false}}]});
    server
        .send("PATCH", "/users", patch, 200, "UpdateUsersResponse")
        .await;
    assert_eq!(
        bob.drain_types().await,
        ["user.updated", "user.presence.changed"]
    );
    // A connection_id that is not the caller's is refused, as for watches.
    let bad = json!({"state": true, "presence": true});
    let (status, err) = a
        .raw(
            "POST",
            &format!(
                "/channels/messaging/room/query?connection_id={}",
                bob.conn_id()
            ),
            Some(bad),
        )
        .await;
    assert_eq!((status, err["code"].clone()), (400, json!(4)));
    for ws in [follows, other_tab, bob, carol, dave] {
        ws.close().await;
    }
}
