//! The channel list's queries and the app settings (issue 17): the `queryChannels` filters and
//! sorts a channel list uses (`joined`, `pinned`, `archived`, `has_unread`, `member_count`,
//! timestamps with `$gt`/`$lte`, `member.user.name`, `pinned_at` sort), and `GET`/`PATCH /app`
//! with `app.updated` to every connection.

use serde_json::{json, Value};

use super::support::Harness;

fn cids(res: &Value) -> Vec<String> {
    res["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["channel"]["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn channel_list_filters_sorts_and_app_settings() {
    if crate::support::skip_without_openapi(
        "emulator::channel_list::channel_list_filters_sorts_and_app_settings",
    ) {
        return;
    }
    let h = Harness::start().await;
    let a = h.client("alice");
    let b = h.client("bob");
    a.query_channel("one", json!({"data": {"members": ["alice", "bob"]}}))
        .await;
    a.query_channel(
        "two",
        json!({"data": {"members": ["alice", "bob", "carol"]}}),
    )
    .await;
    a.query_channel("three", json!({"data": {"members": ["alice"]}}))
        .await;
    b.query_channel("four", json!({"data": {"members": ["bob", "carol"]}}))
        .await;
    h.server_client()
        .post(
            "/users",
            json!({"users": {"carol": {"id": "carol", "name": "Carol Danvers"}}}),
            "UpdateUsersResponse",
        )
        .await;
    a.send_message("one", "hi").await;
    let after_one = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    b.send_message("two", "hello").await;
    a.send(
        "PATCH",
        "/channels/messaging/three/member",
        json!({"set": {"pinned": true}}),
        200,
        "UpdateMemberPartialResponse",
    )
    .await;
    a.send(
        "PATCH",
        "/channels/messaging/one/member",
        json!({"set": {"archived": true}}),
        200,
        "UpdateMemberPartialResponse",
    )
    .await;

    let q = |filter: Value, sort: Value| {
        let a = &a;
        async move {
            a.post(
                "/channels",
                json!({"filter_conditions": filter, "sort": sort}),
                "QueryChannelsResponse",
            )
            .await
        }
    };
    let res = q(json!({"members": {"$in": ["alice"]}, "joined": true}), json!([{"field": "pinned_at", "direction": -1}, {"field": "last_message_at", "direction": -1}])).await;
    assert_eq!(cids(&res), ["three", "two", "one"]);
    let res = q(
        json!({"members": {"$in": ["alice"]}, "archived": false}),
        json!([]),
    )
    .await;
    assert_eq!(cids(&res), ["two", "three"]);
    let res = q(
        json!({"members": {"$in": ["alice"]}, "has_unread": true}),
        json!([]),
    )
    .await;
    assert_eq!(cids(&res), ["two"]);
    let res = q(json!({"last_message_at": {"$gt": after_one}}), json!([])).await;
    assert_eq!(cids(&res), ["two"]);
    let res = q(
        json!({"member_count": {"$gte": 2}, "members": {"$in": ["alice"]}}),
        json!([{"field": "member_count", "direction": -1}]),
    )
    .await;
    assert_eq!(cids(&res), ["two", "one"]);
    let res = q(
        json!({"member.user.name": {"$autocomplete": "dan"}}),
        json!([{"field": "created_at", "direction": 1}]),
    )
    .await;
    assert_eq!(cids(&res), ["two", "four"]);
    let (status, _) = a
        .raw(
            "POST",
            "/channels",
            Some(json!({"filter_conditions": {"member_count": {"$near": 1}}})),
        )
        .await;
    assert_eq!(status, 400);

    // App settings: a server token changes what clients see, and every connection hears it.
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let s = h.server_client();
    s.send(
        "PATCH",
        "/app",
        json!({"image_upload_config": {"size_limit": 1024, "allowed_mime_types": ["image/png"]}}),
        200,
        "Response",
    )
    .await;
    for ws in [&mut alice, &mut bob] {
        let seen = ws.drain().await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0]["type"], "app.updated");
        assert_eq!(seen[0]["app"]["image_upload_config"]["size_limit"], 1024);
    }
    let res = a.get("/app", "GetApplicationResponse").await;
    assert_eq!(
        res["app"]["image_upload_config"]["allowed_mime_types"],
        json!(["image/png"])
    );
    assert_eq!(res["app"]["file_upload_config"]["size_limit"], 0);
    let (status, _) = a
        .raw(
            "PATCH",
            "/app",
            Some(json!({"auto_translation_enabled": true})),
        )
        .await;
    assert_eq!(status, 403, "a user token cannot change the app");
    let (status, _) = s
        .raw(
            "PATCH",
            "/app",
            Some(json!({"auto_translation_enabled": "yes"})),
        )
        .await;
    assert_eq!(status, 400);
    for ws in [alice, bob] {
        ws.close().await;
    }
}
