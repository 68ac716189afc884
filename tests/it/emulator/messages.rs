//! Messages after sending: get, update, partial update, pin (`pinned_messages`), soft and hard
//! delete, each a `message.updated` / `message.deleted` to the channel's watchers only; and history
//! pagination of the channel query and of replies, whose scroll-back never returns the newest page
//! again.

use serde_json::{json, Value};

use super::support::{Client, Harness};

fn texts(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|m| m["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn send(c: &Client, text: &str) -> String {
    c.send_message("room", text).await["message"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn update_pin_and_delete_reach_the_watchers() {
    if crate::support::skip_without_openapi(
        "emulator::messages::update_pin_and_delete_reach_the_watchers",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let mut carol = h.connect("carol").await;
    let (a, b) = (h.client("alice"), h.client("bob"));
    a.watch_channel("room", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    b.watch_channel("room", &bob, json!({})).await;
    let id = send(&a, "hello").await;
    for ws in [&mut alice, &mut bob, &mut carol] {
        ws.drain().await;
    }

    let many = b
        .get(
            &format!("/channels/messaging/room/messages?ids={id},unknown"),
            "GetManyMessagesResponse",
        )
        .await;
    assert_eq!(texts(&many["messages"]), ["hello"]);
    let got = b
        .get(&format!("/messages/{id}"), "GetMessageResponse")
        .await;
    assert_eq!(got["message"]["text"], "hello");
    assert_eq!(got["message"]["channel"]["cid"], "messaging:room");

    // A full update replaces text and custom fields; the watchers hear message.updated.
    let body = json!({"message": {"id": id, "text": "hello, edited", "mood": "glad"}});
    let res = a
        .post(&format!("/messages/{id}"), body, "UpdateMessageResponse")
        .await;
    assert_eq!(res["message"]["text"], "hello, edited");
    assert_eq!(res["message"]["mood"], "glad");
    assert!(res["message"]["message_text_updated_at"].is_string());
    for ws in [&mut alice, &mut bob] {
        let seen = ws.drain().await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["type"], "message.updated");
        assert_eq!(seen[0]["message"]["text"], "hello, edited");
        assert_eq!(seen[0]["user"]["id"], "alice");
    }
    assert!(carol.drain().await.is_empty(), "carol does not watch");

    // Only the author changes content; a member may pin.
    let (status, err) = b
        .raw(
            "PUT",
            &format!("/messages/{id}"),
            Some(json!({"set": {"text": "hijacked"}})),
        )
        .await;
    assert_eq!((status, err["code"].clone()), (403, json!(17)));
    let res = b
        .send(
            "PUT",
            &format!("/messages/{id}"),
            // What the SDK's pinMessage sends.
            json!({"set": {"pinned": true, "pinned_at": null, "pin_expires": null}}),
            201,
            "UpdateMessagePartialResponse",
        )
        .await;
    assert_eq!(res["message"]["pinned"], true);
    assert_eq!(res["message"]["pinned_by"]["id"], "bob");
    assert_eq!(alice.drain_types().await, ["message.updated"]);
    let state = a.query_channel("room", json!({"state": true})).await;
    assert_eq!(texts(&state["pinned_messages"]), ["hello, edited"]);
    let pins = a
        .get(
            "/channels/messaging/room/pinned_messages?payload=%7B%22limit%22%3A5%7D",
            "GetPinnedMessagesResponse",
        )
        .await;
    assert_eq!(texts(&pins["messages"]), ["hello, edited"]);
    let res = a
        .send(
            "PUT",
            &format!("/messages/{id}"),
            json!({"set": {"pinned": false}, "unset": ["mood"]}),
            201,
            "UpdateMessagePartialResponse",
        )
        .await;
    assert_eq!(res["message"]["pinned"], false);
    assert!(res["message"].get("mood").is_none(), "{res}");
    let pins = a
        .get(
            "/channels/messaging/room/pinned_messages",
            "GetPinnedMessagesResponse",
        )
        .await;
    assert_eq!(pins["messages"], json!([]));
    let (status, _) = a
        .raw(
            "PUT",
            &format!("/messages/{id}"),
            Some(json!({"set": {"reply_count": 3}})),
        )
        .await;
    assert_eq!(status, 400, "server-owned fields are refused");
    for ws in [&mut alice, &mut bob] {
        ws.drain().await;
    }

    // Soft delete: the message stays as `deleted`; only its author may delete it.
    let (status, _) = b.raw("DELETE", &format!("/messages/{id}"), None).await;
    assert_eq!(status, 403);
    let (status, res) = a.raw("DELETE", &format!("/messages/{id}"), None).await;
    assert_eq!(status, 200, "{res}");
    super::support::validate("DeleteMessageResponse", &res);
    assert_eq!(res["message"]["type"], "deleted");
    for ws in [&mut alice, &mut bob] {
        let seen = ws.drain().await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["type"], "message.deleted");
        assert_eq!(seen[0]["hard_delete"], false);
    }
    let state = a.query_channel("room", json!({"state": true})).await;
    assert_eq!(state["messages"][0]["type"], "deleted");
    let (status, _) = a
        .raw(
            "POST",
            &format!("/messages/{id}"),
            Some(json!({"message": {"text": "back"}})),
        )
        .await;
    assert_eq!(status, 400, "a deleted message cannot be edited");

    // Hard delete: gone from history and from GET.
    let other = send(&a, "second").await;
    for ws in [&mut alice, &mut bob] {
        ws.drain().await;
    }
    let (status, _) = a
        .raw("DELETE", &format!("/messages/{other}?hard=true"), None)
        .await;
    assert_eq!(status, 200);
    let seen = bob.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["hard_delete"], true);
    let (status, err) = a.raw("GET", &format!("/messages/{other}"), None).await;
    assert_eq!((status, err["code"].clone()), (404, json!(16)));
    let state = a.query_channel("room", json!({"state": true})).await;
    assert_eq!(state["messages"].as_array().map(Vec::len), Some(1));
    for ws in [alice, bob, carol] {
        ws.close().await;
    }
}

#[tokio::test]
async fn history_pages_back_without_repeating() {
    if crate::support::skip_without_openapi(
        "emulator::messages::history_pages_back_without_repeating",
    ) {
        return;
    }
    let h = Harness::start().await;
    let a = h.client("alice");
    a.query_channel("room", json!({"data": {"members": ["alice"]}}))
        .await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(send(&a, &format!("m{i}")).await);
    }
    let page = |body: Value| a.query_channel("room", json!({"state": true, "messages": body}));
    let newest = page(json!({"limit": 3})).await;
    assert_eq!(texts(&newest["messages"]), ["m4", "m5", "m6"]);
    let back = page(json!({"limit": 3, "id_lt": ids[4]})).await;
    assert_eq!(texts(&back["messages"]), ["m1", "m2", "m3"]);
    let back = page(json!({"limit": 3, "id_lt": ids[1]})).await;
    assert_eq!(texts(&back["messages"]), ["m0"]);
    let end = page(json!({"limit": 3, "id_lt": ids[0]})).await;
    assert_eq!(end["messages"], json!([]), "the start of history is empty");
    let fwd = page(json!({"limit": 2, "id_gt": ids[2]})).await;
    assert_eq!(texts(&fwd["messages"]), ["m3", "m4"]);
    let around = page(json!({"limit": 3, "id_around": ids[3]})).await;
    assert_eq!(texts(&around["messages"]), ["m2", "m3", "m4"]);
    let at = newest["messages"][0]["created_at"].clone();
    let before = page(json!({"limit": 2, "created_at_before": at})).await;
    assert_eq!(texts(&before["messages"]), ["m2", "m3"]);
    let (status, _) = a
        .raw(
            "POST",
            "/channels/messaging/room/query",
            Some(json!({"messages": {"created_at_before": "soon"}})),
        )
        .await;
    assert_eq!(status, 400);

    // Replies page the same way.
    let parent = &ids[6];
    for i in 0..4 {
        let body = json!({"message": {"text": format!("r{i}"), "parent_id": parent}});
        a.post(
            "/channels/messaging/room/message",
            body,
            "SendMessageResponse",
        )
        .await;
    }
    let path = format!("/messages/{parent}/replies");
    let last = a
        .get(&format!("{path}?limit=2"), "GetRepliesResponse")
        .await;
    assert_eq!(texts(&last["messages"]), ["r2", "r3"]);
    let first_id = last["messages"][0]["id"].as_str().unwrap_or_default();
    let back = a
        .get(
            &format!("{path}?limit=2&id_lt={first_id}"),
            "GetRepliesResponse",
        )
        .await;
    assert_eq!(texts(&back["messages"]), ["r0", "r1"]);
    let oldest = back["messages"][0]["id"].as_str().unwrap_or_default();
    let end = a
        .get(
            &format!("{path}?limit=2&id_lt={oldest}"),
            "GetRepliesResponse",
        )
        .await;
    assert_eq!(end["messages"], json!([]));
}

#[tokio::test]
async fn quotes_and_mentions() {
    if crate::support::skip_without_openapi("emulator::messages::quotes_and_mentions") {
        return;
    }
    let h = Harness::start().await;
    let a = h.client("alice");
    a.query_channel("room", json!({"data": {"members": ["alice", "bob"]}}))
        .await;
    let first = send(&a, "original").await;
    send(&a, "unrelated").await;
    let body = json!({"message": {"text": "replying", "quoted_message_id": first, "mentioned_users": ["bob"]}});
    let res = a
        .post(
            "/channels/messaging/room/message",
            body,
            "SendMessageResponse",
        )
        .await;
    let m = &res["message"];
    assert_eq!(m["quoted_message_id"], first);
    assert_eq!(m["quoted_message"]["text"], "original");
    assert_eq!(m["mentioned_users"][0]["id"], "bob");
    // A quote of a quote carries no further quote.
    let id = m["id"].as_str().unwrap_or_default();
    let body = json!({"message": {"text": "again", "quoted_message_id": id}});
    let res = a
        .post(
            "/channels/messaging/room/message",
            body,
            "SendMessageResponse",
        )
        .await;
    assert_eq!(res["message"]["quoted_message"]["text"], "replying");
    assert!(res["message"]["quoted_message"]
        .get("quoted_message")
        .is_none());
    for bad in [
        json!({"text": "x", "quoted_message_id": "nope"}),
        json!({"text": "x", "mentioned_users": "bob"}),
    ] {
        let (status, _) = a
            .raw(
                "POST",
                "/channels/messaging/room/message",
                Some(json!({"message": bad})),
            )
            .await;
        assert_eq!(status, 400, "{bad}");
    }
}
