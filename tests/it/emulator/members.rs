//! Channel updates (`POST /channels/{type}/{id}`, the SDK's `addMembers`, `removeMembers` and
//! `update`): `member.*` and `channel.updated` to watchers, `notification.added_to_channel` /
//! `removed_from_channel` to the affected user's connections that do not watch.

use serde_json::{json, Value};

use super::support::{Client, Harness};

async fn update(c: &Client, body: Value) -> Value {
    c.post("/channels/messaging/room", body, "UpdateChannelResponse")
        .await
}

fn ids(res: &Value) -> Vec<String> {
    res["members"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|m| m["user_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn member_changes_reach_watchers_and_the_member_s_other_connections() {
    if crate::support::skip_without_openapi(
        "emulator::members::member_changes_reach_watchers_and_the_member_s_other_connections",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut alice_idle = h.connect("alice").await;
    let mut carol_watching = h.connect("carol").await;
    let mut carol_idle = h.connect("carol").await;
    let a = h.client("alice");
    a.watch_channel("room", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    // Carol watches the channel before she is a member of it.
    h.client("carol")
        .watch_channel("room", &carol_watching, json!({}))
        .await;
    for ws in [
        &mut alice,
        &mut alice_idle,
        &mut carol_watching,
        &mut carol_idle,
    ] {
        ws.drain().await;
    }

    let res = update(&a, json!({"add_members": [{"user_id": "carol"}, "bob"]})).await;
    assert_eq!(ids(&res), ["alice", "bob", "carol"]);
    let seen = alice.drain().await;
    assert_eq!(seen.len(), 1, "bob was a member already: {seen:?}");
    assert_eq!(seen[0]["type"], "member.added");
    assert_eq!(seen[0]["member"]["user_id"], "carol");
    assert_eq!(seen[0]["channel_member_count"], 3);
    assert!(alice_idle.drain().await.is_empty());
    assert_eq!(carol_watching.drain_types().await, ["member.added"]);
    let seen = carol_idle.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "notification.added_to_channel");
    assert_eq!(seen[0]["channel"]["cid"], "messaging:room");
    assert_eq!(seen[0]["member"]["user_id"], "carol");
    // Now a member: her idle tab hears of new messages.
    a.send_message("room", "welcome").await;
    assert_eq!(carol_idle.drain_types().await, ["notification.message_new"]);
    assert_eq!(carol_watching.drain_types().await, ["message.new"]);
    alice.drain().await;

    let res = update(&a, json!({"remove_members": ["carol", "nobody"]})).await;
    assert_eq!(ids(&res), ["alice", "bob"]);
    let seen = alice.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "member.removed");
    assert_eq!(seen[0]["channel_member_count"], 2);
    assert!(alice_idle.drain().await.is_empty());
    assert_eq!(carol_watching.drain_types().await, ["member.removed"]);
    assert_eq!(
        carol_idle.drain_types().await,
        ["notification.removed_from_channel"]
    );
    a.send_message("room", "bye").await;
    assert!(carol_idle.drain().await.is_empty(), "no longer a member");

    // A data update is a channel.updated to the watchers.
    let res = update(&a, json!({"data": {"name": "Renamed"}})).await;
    assert_eq!(res["channel"]["name"], "Renamed");
    let seen = alice.drain().await;
    let updated: Vec<&Value> = seen
        .iter()
        .filter(|e| e["type"] == "channel.updated")
        .collect();
    assert_eq!(updated.len(), 1, "{seen:?}");
    assert_eq!(updated[0]["channel"]["name"], "Renamed");
    assert!(alice_idle.drain().await.is_empty());

    let (status, err) = a
        .raw(
            "POST",
            "/channels/messaging/room",
            Some(json!({"remove_members": "x"})),
        )
        .await;
    assert_eq!((status, err["code"].clone()), (400, json!(4)));
    let (status, err) = a
        .raw("POST", "/channels/messaging/ghost", Some(json!({})))
        .await;
    assert_eq!((status, err["code"].clone()), (404, json!(16)));
    for ws in [alice, alice_idle, carol_watching, carol_idle] {
        ws.close().await;
    }
}
