//! What a block does (issue 17; Stream's "Block User" docs): in a one-to-one channel the blocker
//! gets no events from the blocked user, and the channel leaves the blocker's channel list unless
//! hidden channels are asked for; in a group channel nothing changes; unblocking restores both.

use serde_json::{json, Value};

use super::support::Harness;

fn cids(res: &Value) -> Vec<String> {
    res["channels"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|c| c["channel"]["cid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_block_silences_the_blocked_user_in_one_to_one_channels_only() {
    if crate::support::skip_without_openapi(
        "emulator::blocking::a_block_silences_the_blocked_user_in_one_to_one_channels_only",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let a = h.client("alice");
    let b = h.client("bob");
    a.watch_channel("dm", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    a.watch_channel(
        "group",
        &alice,
        json!({"members": ["alice", "bob", "carol"]}),
    )
    .await;
    b.watch_channel("dm", &bob, json!({})).await;
    b.watch_channel("group", &bob, json!({})).await;
    for ws in [&mut alice, &mut bob] {
        ws.drain().await;
    }

    a.post(
        "/users/block",
        json!({"blocked_user_id": "bob"}),
        "BlockUsersResponse",
    )
    .await;
    b.send_message("dm", "psst").await;
    b.send_message("group", "hi all").await;
    let seen = alice.drain().await;
    let texts: Vec<_> = seen
        .iter()
        .filter(|e| e["type"] == "message.new")
        .map(|e| e["message"]["text"].clone())
        .collect();
    assert_eq!(texts, [json!("hi all")], "only the group message: {seen:?}");
    b.event("dm", json!({"type": "typing.start"}), "TypingStartEvent")
        .await;
    assert!(
        alice.drain().await.is_empty(),
        "no typing from bob in the DM"
    );
    assert_eq!(
        bob.drain()
            .await
            .iter()
            .filter(|e| e["type"] == "message.new")
            .count(),
        2,
        "the blocked user is not told"
    );

    let unread = a.get("/unread", "WrappedUnreadCountsResponse").await;
    assert_eq!(
        unread["total_unread_count"], 1,
        "the group message counts, the blocked user's DM does not: {unread}"
    );

    let list = json!({"filter_conditions": {"members": {"$in": ["alice"]}}});
    let res = a.post("/channels", list, "QueryChannelsResponse").await;
    assert_eq!(cids(&res), ["messaging:group"]);
    let hidden = json!({"filter_conditions": {"members": {"$in": ["alice"]}, "hidden": true}});
    let res = a.post("/channels", hidden, "QueryChannelsResponse").await;
    assert_eq!(cids(&res), ["messaging:dm"]);
    assert_eq!(res["channels"][0]["channel"]["blocked"], true);

    a.post(
        "/users/unblock",
        json!({"blocked_user_id": "bob"}),
        "UnblockUsersResponse",
    )
    .await;
    b.send_message("dm", "again").await;
    assert_eq!(
        alice.expect("message.new").await["message"]["text"],
        "again"
    );
    alice.close().await;
    bob.close().await;
}
