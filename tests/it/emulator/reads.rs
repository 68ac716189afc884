//! Read and delivery state (issue 17): `markUnread` (`notification.mark_unread` to every
//! connection of the reader), `markAllRead`, delivery receipts (`message.delivered` to watchers),
//! `GET /unread` and `POST /sync` (missed messages, edits and deletions, inaccessible cids,
//! optional watch).

use serde_json::json;

use super::support::Harness;

#[tokio::test]
async fn unread_all_read_delivered_counts_and_sync() {
    if crate::support::skip_without_openapi(
        "emulator::reads::unread_all_read_delivered_counts_and_sync",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let mut bob_idle = h.connect("bob").await;
    let a = h.client("alice");
    let b = h.client("bob");
    a.watch_channel("room", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    b.watch_channel("room", &bob, json!({})).await;
    let before = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let first = a.send_message("room", "one").await["message"]["id"].clone();
    let second = a.send_message("room", "two").await["message"]["id"].clone();
    b.mark_read("room").await;
    for ws in [&mut alice, &mut bob, &mut bob_idle] {
        ws.drain().await;
    }

    let res = b
        .post(
            "/channels/messaging/room/unread",
            json!({"message_id": second}),
            "Response",
        )
        .await;
    assert_eq!(res, json!({"duration": res["duration"]}));
    for ws in [&mut bob, &mut bob_idle] {
        let seen = ws.drain().await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["type"], "notification.mark_unread");
        assert_eq!(seen[0]["unread_messages"], 1);
        assert_eq!(seen[0]["first_unread_message_id"], second);
        assert_eq!(seen[0]["last_read_message_id"], first);
        assert_eq!(seen[0]["total_unread_count"], 1);
    }
    assert!(alice.drain().await.is_empty(), "only the reader hears it");
    let counts = b.get("/unread", "WrappedUnreadCountsResponse").await;
    assert_eq!(counts["total_unread_count"], 1);
    assert_eq!(counts["channels"][0]["channel_id"], "messaging:room");
    assert_eq!(counts["channel_type"][0]["unread_count"], 1);

    b.post("/channels/read", json!({}), "MarkReadResponse")
        .await;
    assert_eq!(
        b.get("/unread", "WrappedUnreadCountsResponse").await["total_unread_count"],
        0
    );
    let types = bob_idle.drain_types().await;
    assert_eq!(types, ["notification.mark_read"]);
    assert_eq!(alice.drain_types().await, ["message.read"]);
    bob.drain().await;

    b.post(
        "/channels/delivered",
        json!({"latest_delivered_messages": [{"cid": "messaging:room", "id": second}]}),
        "MarkDeliveredResponse",
    )
    .await;
    let seen = alice.drain().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "message.delivered");
    assert_eq!(seen[0]["last_delivered_message_id"], second);
    assert!(
        bob_idle.drain().await.is_empty(),
        "message.delivered is for watchers"
    );
    bob.drain().await;

    let res = b
        .post(
            "/sync",
            json!({"channel_cids": ["messaging:room", "messaging:ghost"], "last_sync_at": before}),
            "SyncResponse",
        )
        .await;
    let ids: Vec<&serde_json::Value> = res["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["message"]["id"])
        .collect();
    assert_eq!(ids, [&first, &second]);
    assert_eq!(res["inaccessible_cids"], json!(["messaging:ghost"]));
    let (status, _) = b
        .raw("POST", "/sync", Some(json!({"channel_cids": []})))
        .await;
    assert_eq!(status, 400);
    // `watch: true` makes the calling connection a watcher of the accessible channels.
    b.post_conn(
        "/sync",
        &bob_idle,
        json!({"channel_cids": ["messaging:room"], "last_sync_at": before, "watch": true}),
        "SyncResponse",
    )
    .await;
    a.send_message("room", "three").await;
    // Bob watched through his other connection already: no user.watching.start, and now the
    // channel event instead of notification.message_new.
    assert_eq!(bob_idle.drain_types().await, ["message.new"]);
    for ws in [alice, bob, bob_idle] {
        ws.close().await;
    }
}

#[tokio::test]
async fn sync_replays_edits_and_deletions_too() {
    if crate::support::skip_without_openapi("emulator::reads::sync_replays_edits_and_deletions_too")
    {
        return;
    }
    let h = Harness::start().await;
    let a = h.client("alice");
    let b = h.client("bob");
    a.query_channel("room", json!({"data": {"members": ["alice", "bob"]}}))
        .await;
    let before = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let first = a.send_message("room", "one").await["message"]["id"].clone();
    let second = a.send_message("room", "two").await["message"]["id"].clone();
    let first_id = first.as_str().unwrap_or_default();
    a.post(
        &format!("/messages/{first_id}"),
        json!({"message": {"text": "one, edited"}}),
        "UpdateMessageResponse",
    )
    .await;
    let (status, _) = a
        .raw(
            "DELETE",
            &format!("/messages/{}", second.as_str().unwrap_or_default()),
            None,
        )
        .await;
    assert_eq!(status, 200);

    let res = b
        .post(
            "/sync",
            json!({"channel_cids": ["messaging:room"], "last_sync_at": before}),
            "SyncResponse",
        )
        .await;
    let seen: Vec<(serde_json::Value, serde_json::Value)> = res["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["type"].clone(), e["message"]["id"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (json!("message.new"), first.clone()),
            (json!("message.new"), second.clone()),
            (json!("message.updated"), first.clone()),
            (json!("message.deleted"), second.clone()),
        ]
    );
    assert_eq!(res["events"][2]["message"]["text"], "one, edited");
}
