//! `GET /query_banned_users` (issue 17, the SDK's `queryBannedUsers`): the bans in force, global
//! and per channel, filtered and newest first, for whoever may ban; gone once lifted.

use serde_json::json;

use super::support::{enc, Harness};

fn path(payload: serde_json::Value) -> String {
    format!("/query_banned_users?payload={}", enc(&payload.to_string()))
}

#[tokio::test]
async fn banned_users_are_listed_for_moderators() {
    if crate::support::skip_without_openapi(
        "emulator::banned_users::banned_users_are_listed_for_moderators",
    ) {
        return;
    }
    let h = Harness::start().await;
    let a = h.client("alice");
    a.query_channel(
        "room",
        json!({"data": {"members": ["alice", "bob", "carol"]}}),
    )
    .await;
    let server = h.server_client();
    server
        .post(
            "/moderation/ban",
            json!({"target_user_id": "bob", "reason": "spam", "timeout": 60}),
            "Response",
        )
        .await;
    a.post(
        "/moderation/ban",
        json!({"target_user_id": "carol", "type": "messaging", "id": "room"}),
        "Response",
    )
    .await;

    let all = server
        .get(
            &path(json!({"filter_conditions": {}})),
            "QueryBannedUsersResponse",
        )
        .await;
    let users: Vec<_> = all["bans"]
        .as_array()
        .map(|l| l.iter().map(|b| b["user"]["id"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(users, [json!("carol"), json!("bob")], "newest first");
    let global = &all["bans"][1];
    assert_eq!(global["reason"], "spam");
    assert!(global["expires"].is_string());
    assert!(global.get("channel").is_none());

    // The channel's creator moderates it and may list its bans.
    let room = a
        .get(
            &path(json!({"filter_conditions": {"channel_cid": "messaging:room"}})),
            "QueryBannedUsersResponse",
        )
        .await;
    assert_eq!(room["bans"].as_array().map(Vec::len), Some(1));
    assert_eq!(room["bans"][0]["channel"]["cid"], "messaging:room");
    assert_eq!(room["bans"][0]["banned_by"]["id"], "alice");
    let (status, _) = h
        .client("dave")
        .raw("GET", &path(json!({"filter_conditions": {}})), None)
        .await;
    assert_eq!(status, 403, "only who may ban may list bans");

    server
        .send(
            "DELETE",
            "/moderation/ban?target_user_id=bob",
            json!({}),
            200,
            "Response",
        )
        .await;
    let left = server
        .get(
            &path(json!({"filter_conditions": {"user_id": "bob"}})),
            "QueryBannedUsersResponse",
        )
        .await;
    assert_eq!(left["bans"], json!([]));
}
