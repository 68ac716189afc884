//! System messages (issue 17): the optional `message` of a channel update or truncation is sent
//! after the change as a `type: system` message, to the watchers like any message, and stays in
//! the channel's history (after a truncation, as the first message of what remains).

use serde_json::json;

use super::support::Harness;

#[tokio::test]
async fn update_and_truncate_send_their_system_message() {
    if crate::support::skip_without_openapi(
        "emulator::notices::update_and_truncate_send_their_system_message",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let a = h.client("alice");
    a.watch_channel("room", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    h.client("bob").watch_channel("room", &bob, json!({})).await;
    a.send_message("room", "old news").await;
    for ws in [&mut alice, &mut bob] {
        ws.drain().await;
    }

    let body = json!({"data": {"name": "Lobby"}, "message": {"text": "Alice renamed the room"}});
    a.post("/channels/messaging/room", body, "UpdateChannelResponse")
        .await;
    for ws in [&mut alice, &mut bob] {
        let types = ws.drain_types().await;
        assert_eq!(
            types,
            ["channel.updated", "message.new"],
            "the change, then its notice"
        );
    }

    let body = json!({"message": {"text": "History cleared"}});
    let res = a
        .post(
            "/channels/messaging/room/truncate",
            body,
            "TruncateChannelResponse",
        )
        .await;
    assert_eq!(res["message"]["type"], "system");
    let ev = bob.expect("message.new").await;
    assert_eq!(ev["message"]["type"], "system");
    assert_eq!(ev["message"]["text"], "History cleared");
    let state = h.client("bob").query_channel("room", json!({})).await;
    let texts: Vec<_> = state["messages"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|m| (m["type"].clone(), m["text"].clone()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(texts, [(json!("system"), json!("History cleared"))]);

    let (status, err) = a
        .raw(
            "POST",
            "/channels/messaging/room/truncate",
            Some(json!({"message": "not an object"})),
        )
        .await;
    assert_eq!((status, err["code"].clone()), (400, json!(4)));
    alice.close().await;
    bob.close().await;
}
