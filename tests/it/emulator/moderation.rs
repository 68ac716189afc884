//! Users and moderation (issue 17): user mutes (`notification.mutes_updated` with `me` to every
//! connection of the muting user), blocks (`me.blocked_user_ids`), global, channel and shadow bans
//! (`user.banned` / `unbanned` to the banned user's connections, and a channel ban to the
//! watchers; a ban stops messages, a shadow ban is announced to nobody), flags, guests, and the
//! `queryUsers` filters and sorts.

use serde_json::{json, Value};

use super::support::{enc, Harness, KEY};

fn skip(name: &str) -> bool {
    crate::support::skip_without_openapi(&format!("emulator::moderation::{name}"))
}

#[tokio::test]
async fn mutes_and_blocks_show_in_me_on_every_connection() {
    if skip("mutes_and_blocks_show_in_me_on_every_connection") {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut alice_2 = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let a = h.client("alice");
    let res = a
        .post(
            "/moderation/mute",
            json!({"target_id": "bob", "timeout": 60}),
            "MuteUserResponse",
        )
        .await;
    assert_eq!(res["mute"]["target"]["id"], "bob");
    assert!(res["mute"]["expires"].is_string());
    assert_eq!(res["own_user"]["mutes"][0]["target"]["id"], "bob");
    for ws in [&mut alice, &mut alice_2] {
        let seen = ws.drain().await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["type"], "notification.mutes_updated");
        assert_eq!(seen[0]["me"]["mutes"][0]["target"]["id"], "bob");
    }
    assert!(bob.drain().await.is_empty(), "the muted user is not told");
    let (status, _) = a
        .raw(
            "POST",
            "/moderation/mute",
            Some(json!({"target_id": "alice", "timeout": 0})),
        )
        .await;
    assert_eq!(status, 400, "no self-mute");
    a.post(
        "/moderation/unmute",
        json!({"target_id": "bob"}),
        "UnmuteUserResponse",
    )
    .await;
    let seen = alice_2.drain().await;
    assert_eq!(seen[0]["me"]["mutes"], json!([]));
    alice.drain().await;

    let res = a
        .post(
            "/users/block",
            json!({"blocked_user_id": "bob"}),
            "BlockUsersResponse",
        )
        .await;
    assert_eq!(res["blocked_user_id"], "bob");
    let res = a.get("/users/block", "GetBlockedUsersResponse").await;
    assert_eq!(res["blocks"][0]["blocked_user"]["id"], "bob");
    let alice_3 = h.connect("alice").await;
    assert_eq!(alice_3.hello["me"]["blocked_user_ids"], json!(["bob"]));
    a.post(
        "/users/unblock",
        json!({"blocked_user_id": "bob"}),
        "UnblockUsersResponse",
    )
    .await;
    assert_eq!(
        a.get("/users/block", "GetBlockedUsersResponse").await["blocks"],
        json!([])
    );
    for ws in [alice, alice_2, alice_3, bob] {
        ws.close().await;
    }
}

#[tokio::test]
async fn bans_reach_the_banned_user_and_the_channel_and_stop_messages() {
    if skip("bans_reach_the_banned_user_and_the_channel_and_stop_messages") {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let mut bob_idle = h.connect("bob").await;
    let mut carol = h.connect("carol").await;
    let a = h.client("alice");
    let b = h.client("bob");
    a.watch_channel(
        "room",
        &alice,
        json!({"members": ["alice", "bob", "carol"]}),
    )
    .await;
    b.watch_channel("room", &bob, json!({})).await;
    for ws in [&mut alice, &mut bob, &mut bob_idle, &mut carol] {
        ws.drain().await;
    }
    // Bob is no moderator of anything.
    let (status, _) = b
        .raw(
            "POST",
            "/moderation/ban",
            Some(json!({"target_user_id": "carol"})),
        )
        .await;
    assert_eq!(status, 403);

    // The creator moderates the channel: a channel ban.
    a.post(
        "/moderation/ban",
        json!({"target_user_id": "bob", "type": "messaging", "id": "room", "reason": "spam"}),
        "Response",
    )
    .await;
    let seen = alice.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "user.banned");
    assert_eq!(seen[0]["cid"], "messaging:room");
    assert_eq!(bob.drain_types().await, ["user.banned"]);
    assert_eq!(bob_idle.drain_types().await, ["user.banned"]);
    assert!(carol.drain().await.is_empty());
    let state = a.query_channel("room", json!({})).await;
    let bob_m = state["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["user_id"] == "bob")
        .cloned()
        .unwrap_or_default();
    assert_eq!(bob_m["banned"], true, "{bob_m}");
    let payload = json!({"type": "messaging", "id": "room", "filter_conditions": {"banned": true}});
    let res = a
        .get(
            &format!("/members?payload={}", enc(&payload.to_string())),
            "MembersResponse",
        )
        .await;
    assert_eq!(res["members"].as_array().map(Vec::len), Some(1));
    let (status, err) = b
        .raw(
            "POST",
            "/channels/messaging/room/message",
            Some(json!({"message": {"text": "hi"}})),
        )
        .await;
    assert_eq!((status, err["code"].clone()), (403, json!(17)));
    let path = format!("/moderation/ban?target_user_id=bob&type=messaging&id=room&api_key={KEY}");
    a.send("DELETE", &path, json!({}), 200, "Response").await;
    assert_eq!(bob_idle.drain_types().await, ["user.unbanned"]);
    b.send_message("room", "back").await;
    for ws in [&mut alice, &mut bob, &mut bob_idle, &mut carol] {
        ws.drain().await;
    }

    // A global shadow ban by the server: nobody is told, messages still go through.
    let s = h.server_client();
    s.post(
        "/moderation/ban",
        json!({"target_user_id": "carol", "shadow": true}),
        "Response",
    )
    .await;
    assert!(carol.drain().await.is_empty());
    h.client("carol").send_message("room", "shadowed").await;
    bob_idle.drain().await;
    // A global ban: the user's connections hear it and the user is `banned`.
    s.post(
        "/moderation/ban",
        json!({"target_user_id": "bob", "timeout": 5}),
        "Response",
    )
    .await;
    let seen = bob_idle.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "user.banned");
    assert!(seen[0]["expiration"].is_string());
    assert!(seen[0].get("cid").is_none());
    let payload = json!({"filter_conditions": {"banned": true}});
    let res = s
        .get(
            &format!("/users?payload={}", enc(&payload.to_string())),
            "QueryUsersResponse",
        )
        .await;
    let ids: Vec<&Value> = res["users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| &u["id"])
        .collect();
    assert_eq!(ids, [&json!("bob")]);

    let msg = a.send_message("room", "flag me").await["message"]["id"].clone();
    let res = h
        .client("carol")
        .post(
            "/moderation/flag",
            json!({"target_message_id": msg, "reason": "rude"}),
            "FlagMessageResponse",
        )
        .await;
    assert_eq!(res["flag"]["target_message_id"], msg);
    let (status, _) = h
        .client("carol")
        .raw(
            "POST",
            "/moderation/flag",
            Some(json!({"target_message_id": "ghost"})),
        )
        .await;
    assert_eq!(status, 404);
    for ws in [alice, bob, bob_idle, carol] {
        ws.close().await;
    }
}

#[tokio::test]
async fn query_users_filters_sorts_and_guests() {
    if skip("query_users_filters_sorts_and_guests") {
        return;
    }
    let h = Harness::start().await;
    let s = h.server_client();
    s.post(
        "/users",
        json!({"users": {
            "ada": {"id": "ada", "name": "Ada Lovelace", "teams": ["red"]},
            "alan": {"id": "alan", "name": "Alan Turing", "level": 3},
            "grace": {"id": "grace", "name": "Grace Hopper", "level": 5},
        }}),
        "UpdateUsersResponse",
    )
    .await;
    let q = |filter: Value, sort: Value| {
        let payload = json!({"filter_conditions": filter, "sort": sort});
        format!("/users?payload={}", enc(&payload.to_string()))
    };
    let ids = |res: &Value| -> Vec<String> {
        res["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["id"].as_str().map(str::to_owned))
            .collect()
    };
    let res = s
        .get(
            &q(json!({"name": {"$autocomplete": "tur"}}), json!([])),
            "QueryUsersResponse",
        )
        .await;
    assert_eq!(ids(&res), ["alan"]);
    let res = s
        .get(
            &q(
                json!({"id": {"$autocomplete": "a"}}),
                json!([{"field": "name", "direction": -1}]),
            ),
            "QueryUsersResponse",
        )
        .await;
    assert_eq!(ids(&res), ["alan", "ada"]);
    let res = s
        .get(
            &q(
                json!({"$or": [{"level": {"$gte": 4}}, {"teams": {"$contains": "red"}}]}),
                json!([]),
            ),
            "QueryUsersResponse",
        )
        .await;
    assert_eq!(ids(&res), ["ada", "grace"]);
    let res = s
        .get(
            &q(
                json!({"id": {"$nin": ["ada"]}, "role": "user"}),
                json!([{"field": "created_at", "direction": 1}]),
            ),
            "QueryUsersResponse",
        )
        .await;
    assert_eq!(ids(&res).len(), 2);
    let (status, _) = s
        .raw("GET", &q(json!({"id": {"$regex": "x"}}), json!([])), None)
        .await;
    assert_eq!(status, 400);

    // A guest: no token needed, and the token it gets connects.
    let (status, body, _) = super::support::request(
        h.addr,
        "POST",
        &format!("/guest?api_key={KEY}"),
        None,
        json!({"user": {"id": "visitor", "name": "Visitor"}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    super::support::validate("CreateGuestResponse", &body);
    assert_eq!(body["user"]["role"], "guest");
    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
    let ws = h.connect_with("visitor", &token, None).await;
    assert_eq!(ws.hello["me"]["role"], "guest");
    ws.close().await;
}

#[tokio::test]
async fn deactivate_reactivate_and_delete_reach_the_user_and_refuse_their_tokens() {
    if skip("deactivate_reactivate_and_delete_reach_the_user_and_refuse_their_tokens") {
        return;
    }
    let h = Harness::start().await;
    let mut dave = h.connect("dave").await;
    let mut dave_2 = h.connect("dave").await;
    let d = h.client("dave");
    let s = h.server_client();
    let (status, _) = d
        .raw("POST", "/users/dave/deactivate", Some(json!({})))
        .await;
    assert_eq!(status, 403, "server side only");

    let (status, res) = s
        .raw("POST", "/users/dave/deactivate", Some(json!({})))
        .await;
    assert_eq!(status, 201, "{res}");
    super::support::validate("UserResponse", &res["user"]);
    assert!(res["user"]["deactivated_at"].is_string());
    for ws in [&mut dave, &mut dave_2] {
        assert_eq!(ws.drain_types().await, ["user.deactivated"]);
    }
    let (status, err) = d.raw("GET", "/users/block", None).await;
    assert_eq!((status, err["code"].clone()), (403, json!(17)));
    let url = super::support::ws_url(
        h.addr,
        KEY,
        "dave",
        &h.token("dave", super::support::SECRET_OLD),
        None,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let first = super::support::next_text(&mut ws).await;
    assert_eq!(
        first["error"]["code"], 17,
        "a deactivated user cannot connect: {first}"
    );

    let (status, _) = s
        .raw("POST", "/users/dave/reactivate", Some(json!({})))
        .await;
    assert_eq!(status, 201);
    for ws in [&mut dave, &mut dave_2] {
        assert_eq!(ws.drain_types().await, ["user.reactivated"]);
    }
    d.get("/users/block", "GetBlockedUsersResponse").await;

    let (status, res) = s.raw("DELETE", "/users/dave?hard_delete=true", None).await;
    assert_eq!(status, 200, "{res}");
    let seen = dave_2.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "user.deleted");
    assert_eq!(seen[0]["hard_delete"], true);
    let (status, _) = d.raw("GET", "/users/block", None).await;
    assert_eq!(status, 403);
    let (status, _) = s.raw("DELETE", "/users/ghost", None).await;
    assert_eq!(status, 404);
    for ws in [dave, dave_2] {
        ws.close().await;
    }
}
