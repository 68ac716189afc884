//! Hide and show: `channel.hidden` / `channel.visible` to every connection of the member (watching
//! or not) and to nobody else; `queryChannels` leaves hidden channels out unless asked with
//! `hidden`; `clear_history`; a new message shows the channel again, silently.

use serde_json::{json, Value};

use super::support::{Client, Harness, WsConn};

async fn cids(c: &Client, filter: Value) -> Vec<String> {
    let body = json!({"filter_conditions": filter, "state": true, "limit": 30});
    let res = c.post("/channels", body, "QueryChannelsResponse").await;
    res["channels"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|c| c["channel"]["cid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn hide(c: &Client, body: Value) {
    c.post("/channels/messaging/room/hide", body, "HideChannelResponse")
        .await;
}

#[tokio::test]
async fn hide_and_show_reach_every_connection_of_the_member() {
    if crate::support::skip_without_openapi(
        "emulator::hiding::hide_and_show_reach_every_connection_of_the_member",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut watching = h.connect("alice").await;
    let mut idle = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let a = h.client("alice");
    let b = h.client("bob");
    let body = json!({"data": {"members": ["alice", "bob"]}, "state": true, "watch": true});
    a.post_conn(
        "/channels/messaging/room/query",
        &watching,
        body,
        "ChannelStateResponse",
    )
    .await;
    b.watch_channel("room", &bob, json!({})).await;
    b.send_message("room", "before").await;
    a.query_channel("other", json!({"data": {"members": ["alice"]}}))
        .await;
    let mine = json!({"members": {"$in": ["alice"]}});
    assert_eq!(cids(&a, mine.clone()).await.len(), 2);
    for ws in [&mut watching, &mut idle, &mut bob] {
        ws.drain().await;
    }

    hide(&a, json!({"clear_history": true})).await;
    for ws in [&mut watching, &mut idle] {
        let seen = ws.drain().await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["type"], "channel.hidden");
        assert_eq!(seen[0]["cid"], "messaging:room");
        assert_eq!(seen[0]["clear_history"], true);
        assert_eq!(seen[0]["user"]["id"], "alice");
    }
    assert!(
        bob.drain().await.is_empty(),
        "hiding is the member's own business"
    );
    // A later connection's `me` lists it.
    let fresh = h.connect("alice").await;
    assert_eq!(
        fresh.hello["me"]["latest_hidden_channels"],
        json!(["messaging:room"])
    );
    fresh.close().await;
    for ws in [&mut watching, &mut idle] {
        ws.drain().await;
    }
    assert_eq!(cids(&a, mine.clone()).await, ["messaging:other"]);
    assert_eq!(
        cids(&b, json!({"members": {"$in": ["bob"]}})).await.len(),
        1
    );
    let hidden = json!({"members": {"$in": ["alice"]}, "hidden": true});
    assert_eq!(cids(&a, hidden).await, ["messaging:room"]);
    // The cleared history is gone for alice only.
    let state = a.query_channel("room", json!({"state": true})).await;
    assert_eq!(state["hidden"], true);
    assert_eq!(state["channel"]["hidden"], true);
    assert_eq!(state["messages"], json!([]));
    assert!(state["hide_messages_before"].is_string());
    let state = b.query_channel("room", json!({"state": true})).await;
    assert_eq!(state["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(state["hidden"], false);

    a.post(
        "/channels/messaging/room/show",
        json!({}),
        "ShowChannelResponse",
    )
    .await;
    for ws in [&mut watching, &mut idle] {
        assert_eq!(ws.drain_types().await, ["channel.visible"]);
    }
    assert!(bob.drain().await.is_empty());
    assert_eq!(cids(&a, mine.clone()).await.len(), 2);

    // A new message shows it again, with no `channel.visible`: the tabs learn from the message.
    hide(&a, json!({})).await;
    drain_all(&mut [&mut watching, &mut idle]).await;
    b.send_message("room", "are you there?").await;
    assert_eq!(watching.drain_types().await, ["message.new"]);
    assert_eq!(idle.drain_types().await, ["notification.message_new"]);
    assert_eq!(cids(&a, mine.clone()).await.len(), 2);
    let state = a.query_channel("room", json!({"state": true})).await;
    let texts: Vec<&str> = state["messages"]
        .as_array()
        .map(|l| l.iter().filter_map(|m| m["text"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        texts,
        ["are you there?"],
        "history cleared before the hide stays cleared"
    );

    // The sender's keep_channel_hidden keeps it hidden for the sender.
    hide(&a, json!({})).await;
    let keep = json!({"message": {"text": "quietly"}, "keep_channel_hidden": true});
    a.post(
        "/channels/messaging/room/message",
        keep,
        "SendMessageResponse",
    )
    .await;
    assert_eq!(cids(&a, mine).await, ["messaging:other"]);

    // Only members hide.
    let (status, err) = h
        .client("carol")
        .raw("POST", "/channels/messaging/room/hide", Some(json!({})))
        .await;
    assert_eq!((status, err["code"].clone()), (403, json!(17)));
    for ws in [watching, idle, bob] {
        ws.close().await;
    }
}

async fn drain_all(conns: &mut [&mut WsConn]) {
    for ws in conns.iter_mut() {
        ws.drain().await;
    }
}
