//! Threads: replies with `reply_count` and participants, `GET /messages/{id}/replies`,
//! `queryThreads` / `getThread` whose `watch` binds the calling connection to the thread's
//! channel, and `notification.thread_message_new` to participants' connections not watching.

use serde_json::{json, Value};

use super::support::{Client, Harness};

async fn reply(c: &Client, parent: &Value, text: &str) -> Value {
    let body = json!({"message": {"text": text, "parent_id": parent}});
    c.post(
        "/channels/messaging/room/message",
        body,
        "SendMessageResponse",
    )
    .await["message"]
        .clone()
}

fn texts(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|m| m["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn thread_replies_watches_and_notifications() {
    if crate::support::skip_without_openapi(
        "emulator::threads::thread_replies_watches_and_notifications",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut alice_idle = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let mut carol = h.connect("carol").await;
    let (a, b, c) = (h.client("alice"), h.client("bob"), h.client("carol"));
    a.watch_channel(
        "room",
        &alice,
        json!({"members": ["alice", "bob", "carol"]}),
    )
    .await;
    let parent = a.send_message("room", "topic").await["message"]["id"].clone();
    for ws in [&mut alice, &mut alice_idle, &mut bob, &mut carol] {
        ws.drain().await;
    }

    reply(&b, &parent, "first").await;
    let seen = alice.drain().await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["type"], "message.new");
    assert_eq!(seen[0]["message"]["parent_id"], parent);
    // The parent, with its new count, for the watchers' message lists ("1 reply").
    assert_eq!(seen[1]["type"], "message.updated");
    assert_eq!(seen[1]["message"]["id"], parent);
    assert_eq!(seen[1]["message"]["reply_count"], 1);
    // The parent's author takes part: her tab that does not watch hears of the reply.
    let seen = alice_idle.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "notification.thread_message_new");
    assert_eq!(seen[0]["thread_id"], parent);
    assert_eq!(seen[0]["message"]["text"], "first");
    assert!(bob.drain().await.is_empty(), "the sender hears nothing");
    assert!(carol.drain().await.is_empty(), "carol takes no part");

    reply(&a, &parent, "second").await;
    reply(&b, &parent, "third").await;
    let path = format!("/messages/{}/replies", parent.as_str().unwrap_or_default());
    let all = a.get(&path, "GetRepliesResponse").await;
    assert_eq!(texts(&all["messages"]), ["first", "second", "third"]);
    let last_two = a
        .get(&format!("{path}?limit=2"), "GetRepliesResponse")
        .await;
    assert_eq!(texts(&last_two["messages"]), ["second", "third"]);
    let second_id = last_two["messages"][0]["id"].as_str().unwrap_or_default();
    let before = a
        .get(&format!("{path}?id_lt={second_id}"), "GetRepliesResponse")
        .await;
    assert_eq!(texts(&before["messages"]), ["first"]);
    let state = a.query_channel("room", json!({"state": true})).await;
    assert_eq!(
        texts(&state["messages"]),
        ["topic"],
        "replies stay in their thread"
    );
    assert_eq!(state["messages"][0]["reply_count"], 3);
    assert_eq!(
        state["messages"][0]["thread_participants"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    for ws in [&mut alice, &mut alice_idle, &mut bob] {
        ws.drain().await;
    }

    // queryThreads with watch: bob's connection now watches the thread's channel.
    let res = b
        .post_conn(
            "/threads",
            &bob,
            json!({"watch": true, "limit": 10, "reply_limit": 2, "participant_limit": 10}),
            "QueryThreadsResponse",
        )
        .await;
    let threads = res["threads"].as_array().cloned().unwrap_or_default();
    assert_eq!(threads.len(), 1, "{res}");
    assert_eq!(threads[0]["parent_message_id"], parent);
    assert_eq!(threads[0]["reply_count"], 3);
    assert_eq!(threads[0]["participant_count"], 2);
    assert_eq!(texts(&threads[0]["latest_replies"]), ["second", "third"]);
    let seen = alice.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "user.watching.start");
    assert_eq!(seen[0]["user"]["id"], "bob");
    assert_eq!(bob.drain_types().await, ["user.watching.start"]);
    let none = c.post("/threads", json!({}), "QueryThreadsResponse").await;
    assert_eq!(none["threads"], json!([]));

    // getThread with watch: carol's connection watches too.
    let path = format!(
        "/threads/{}?watch=true&reply_limit=1",
        parent.as_str().unwrap_or_default()
    );
    let res = c.get_conn(&path, &carol, "GetThreadResponse").await;
    assert_eq!(texts(&res["thread"]["latest_replies"]), ["third"]);
    reply(&a, &parent, "fourth").await;
    // Bob sees carol start watching, then the reply and its parent as a watcher.
    assert_eq!(
        bob.drain_types().await,
        ["user.watching.start", "message.new", "message.updated"]
    );
    assert_eq!(
        carol.drain_types().await,
        ["user.watching.start", "message.new", "message.updated"]
    );
    assert_eq!(
        alice_idle.drain_types().await,
        Vec::<String>::new(),
        "her own reply"
    );

    // A partial update is a thread.updated to the channel's watchers.
    alice.drain().await;
    let path = format!("/threads/{}", parent.as_str().unwrap_or_default());
    let body = json!({"set": {"title": "Plans", "mood": "calm"}});
    let res = b
        .send("PATCH", &path, body, 200, "UpdateThreadPartialResponse")
        .await;
    assert_eq!(res["thread"]["title"], "Plans");
    assert_eq!(res["thread"]["custom"]["mood"], "calm");
    for ws in [&mut alice, &mut bob, &mut carol] {
        let seen = ws.drain().await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["type"], "thread.updated");
        assert_eq!(seen[0]["thread"]["title"], "Plans");
    }
    assert!(alice_idle.drain().await.is_empty());
    let (status, _) = b
        .raw("PATCH", &path, Some(json!({"set": {"reply_count": 9}})))
        .await;
    assert_eq!(status, 400);

    // A reply needs a top-level parent in the same channel; unknown threads are 404.
    let body = json!({"message": {"text": "x", "parent_id": "nope"}});
    let (status, err) = a
        .raw("POST", "/channels/messaging/room/message", Some(body))
        .await;
    assert_eq!((status, err["code"].clone()), (400, json!(4)));
    let (status, err) = a.raw("GET", "/threads/nope", None).await;
    assert_eq!((status, err["code"].clone()), (404, json!(16)));
    let (status, _) = a
        .raw("POST", "/threads", Some(json!({"filter": {"x": 1}})))
        .await;
    assert_eq!(status, 400);
    for ws in [alice, alice_idle, bob, carol] {
        ws.close().await;
    }
}
