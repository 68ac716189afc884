//! Drafts and reminders (issue 17): create, get, query and delete, with `draft.*` and
//! `reminder.*` to every connection of the owner and to nobody else.

use serde_json::json;

use super::support::Harness;

#[tokio::test]
async fn drafts_and_reminders_reach_only_their_owner() {
    if crate::support::skip_without_openapi(
        "emulator::drafts::drafts_and_reminders_reach_only_their_owner",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut alice_2 = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let a = h.client("alice");
    a.watch_channel("room", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    h.client("bob").watch_channel("room", &bob, json!({})).await;
    let msg = a.send_message("room", "remind me").await["message"]["id"].clone();
    for ws in [&mut alice, &mut alice_2, &mut bob] {
        ws.drain().await;
    }

    let res = a
        .post(
            "/channels/messaging/room/draft",
            json!({"message": {"text": "half a thought"}}),
            "CreateDraftResponse",
        )
        .await;
    assert_eq!(res["draft"]["message"]["text"], "half a thought");
    assert_eq!(res["draft"]["channel_cid"], "messaging:room");
    a.post(
        "/channels/messaging/room/draft",
        json!({"message": {"text": "in a thread", "parent_id": msg}}),
        "CreateDraftResponse",
    )
    .await;
    for ws in [&mut alice, &mut alice_2] {
        assert_eq!(ws.drain_types().await, ["draft.updated", "draft.updated"]);
    }
    assert!(bob.drain().await.is_empty(), "a draft is private");
    let res = a
        .get("/channels/messaging/room/draft", "GetDraftResponse")
        .await;
    assert_eq!(res["draft"]["message"]["text"], "half a thought");
    // The channel state carries the viewer's channel draft, for the composer to restore.
    let state = a.query_channel("room", json!({})).await;
    assert_eq!(state["draft"]["message"]["text"], "half a thought");
    let state = h.client("bob").query_channel("room", json!({})).await;
    assert!(state.get("draft").is_none(), "a draft is private");
    let res = a
        .post(
            "/drafts/query",
            json!({"filter": {"parent_id": {"$exists": true}}}),
            "QueryDraftsResponse",
        )
        .await;
    assert_eq!(res["drafts"].as_array().map(Vec::len), Some(1));
    assert_eq!(res["drafts"][0]["parent_id"], msg);
    let (status, _) = h
        .client("bob")
        .raw("GET", "/channels/messaging/room/draft", None)
        .await;
    assert_eq!(status, 404, "bob has no draft");
    a.send(
        "DELETE",
        "/channels/messaging/room/draft",
        json!({}),
        200,
        "Response",
    )
    .await;
    assert_eq!(alice_2.drain_types().await, ["draft.deleted"]);
    assert_eq!(
        a.post("/drafts/query", json!({}), "QueryDraftsResponse")
            .await["drafts"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    alice.drain().await;

    let res = a
        .post(
            &format!("/messages/{}/reminders", msg.as_str().unwrap_or_default()),
            json!({"remind_at": "2030-01-01T00:00:00Z"}),
            "ReminderResponseData",
        )
        .await;
    assert_eq!(res["reminder"]["message_id"], msg);
    assert_eq!(res["message"]["text"], "remind me");
    let path = format!("/messages/{}/reminders", msg.as_str().unwrap_or_default());
    let (status, _) = a.raw("POST", &path, Some(json!({}))).await;
    assert_eq!(status, 400, "one reminder per message");
    let res = a
        .send(
            "PATCH",
            &path,
            json!({"remind_at": null}),
            200,
            "UpdateReminderResponse",
        )
        .await;
    assert!(res["reminder"].get("remind_at").is_none(), "now a bookmark");
    let res = a
        .post(
            "/reminders/query",
            json!({"filter": {"channel_cid": "messaging:room"}}),
            "QueryRemindersResponse",
        )
        .await;
    assert_eq!(res["reminders"][0]["message_id"], msg);
    a.send("DELETE", &path, json!({}), 200, "DeleteReminderResponse")
        .await;
    for ws in [&mut alice, &mut alice_2] {
        assert_eq!(
            ws.drain_types().await,
            ["reminder.created", "reminder.updated", "reminder.deleted"]
        );
    }
    assert!(bob.drain().await.is_empty(), "a reminder is private");
    for ws in [alice, alice_2, bob] {
        ws.close().await;
    }
}
