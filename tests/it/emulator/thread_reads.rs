//! Thread unread counts (issue 17): a reply is unread for the thread's other participants;
//! `GET /unread` lists the threads (`total_unread_threads_count`, `threads`), `me` and the
//! `notification.*` counters carry `unread_threads`, a thread's `read` lists each participant;
//! marking the thread read (`thread_id`) sends `message.read` with the `thread` to the watchers and
//! `notification.mark_read` to the reader only; marking it unread brings the count back.

use serde_json::{json, Value};

use super::support::Harness;

#[tokio::test]
async fn thread_replies_count_as_unread_until_the_thread_is_read() {
    if crate::support::skip_without_openapi(
        "emulator::thread_reads::thread_replies_count_as_unread_until_the_thread_is_read",
    ) {
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
    let parent = a.send_message("room", "plans?").await["message"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let reply = json!({"message": {"text": "friday", "parent_id": parent}});
    b.post(
        "/channels/messaging/room/message",
        reply,
        "SendMessageResponse",
    )
    .await;
    for ws in [&mut alice, &mut bob] {
        ws.drain().await;
    }

    let unread = a.get("/unread", "WrappedUnreadCountsResponse").await;
    assert_eq!(unread["total_unread_threads_count"], 1);
    assert_eq!(unread["threads"][0]["parent_message_id"], parent.as_str());
    assert_eq!(unread["threads"][0]["unread_count"], 1);
    assert_eq!(
        unread["total_unread_count"], 0,
        "a thread-only reply is no channel unread"
    );
    let theirs = b.get("/unread", "WrappedUnreadCountsResponse").await;
    assert_eq!(
        theirs["total_unread_threads_count"], 0,
        "the author has read it"
    );
    let later = h.connect("alice").await;
    assert_eq!(later.hello["me"]["unread_threads"], 1);
    later.close().await;
    let thread = a
        .get(&format!("/threads/{parent}"), "GetThreadResponse")
        .await;
    let reads: Vec<(Value, Value)> = thread["thread"]["read"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|r| (r["user"]["id"].clone(), r["unread_messages"].clone()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        reads,
        [(json!("alice"), json!(1)), (json!("bob"), json!(0))]
    );

    let res = a
        .post(
            "/channels/messaging/room/read",
            json!({"thread_id": parent}),
            "MarkReadResponse",
        )
        .await;
    assert_eq!(res["event"]["thread"]["parent_message_id"], parent.as_str());
    let seen = bob.expect("message.read").await;
    assert_eq!(seen["thread"]["parent_message_id"], parent.as_str());
    let note = alice.collect_until("notification.mark_read").await;
    let note = note.last().cloned().unwrap_or_default();
    assert_eq!(note["thread_id"], parent.as_str());
    assert_eq!(note["unread_threads"], 0);
    assert!(
        bob.drain()
            .await
            .iter()
            .all(|e| e["type"] != "notification.mark_read"),
        "the read is the reader's news"
    );
    let unread = a.get("/unread", "WrappedUnreadCountsResponse").await;
    assert_eq!(unread["total_unread_threads_count"], 0);

    a.post(
        "/channels/messaging/room/unread",
        json!({"thread_id": parent}),
        "Response",
    )
    .await;
    let note = alice.expect("notification.mark_unread").await;
    assert_eq!(note["unread_threads"], 1);
    assert_eq!(note["unread_thread_messages"], 1);
    let (status, err) = a
        .raw(
            "POST",
            "/channels/messaging/room/read",
            Some(json!({"thread_id": "no-such-thread"})),
        )
        .await;
    assert_eq!((status, err["code"].clone()), (404, json!(16)));
    alice.close().await;
    bob.close().await;
}
