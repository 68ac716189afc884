//! A shadow ban (issue 17): the banned user still posts and is told nothing, but their messages
//! are `shadowed` and theirs alone, as Stream documents: no `message.new`, notification or unread
//! count for anyone else, and absent from the others' channel state.

use serde_json::{json, Value};

use super::support::Harness;

fn texts(state: &Value) -> Vec<String> {
    state["messages"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|m| m["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_shadow_banned_users_messages_are_theirs_alone() {
    if crate::support::skip_without_openapi(
        "emulator::shadow::a_shadow_banned_users_messages_are_theirs_alone",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut alice_away = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let a = h.client("alice");
    let b = h.client("bob");
    a.watch_channel("room", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    b.watch_channel("room", &bob, json!({})).await;
    h.server_client()
        .post(
            "/moderation/ban",
            json!({"target_user_id": "bob", "shadow": true}),
            "Response",
        )
        .await;
    for ws in [&mut alice, &mut alice_away, &mut bob] {
        ws.drain().await;
    }

    let sent = b.send_message("room", "unaware").await;
    assert_eq!(sent["message"]["shadowed"], true);
    let own = bob.expect("message.new").await;
    assert_eq!(own["message"]["shadowed"], true);
    assert!(alice.drain().await.is_empty(), "no message.new for others");
    assert!(
        alice_away.drain().await.is_empty(),
        "no notification.message_new either"
    );
    assert_eq!(
        texts(&a.query_channel("room", json!({})).await),
        Vec::<String>::new()
    );
    assert_eq!(
        texts(&b.query_channel("room", json!({})).await),
        ["unaware"]
    );
    let unread = a.get("/unread", "WrappedUnreadCountsResponse").await;
    assert_eq!(unread["total_unread_count"], 0);

    h.server_client()
        .send(
            "DELETE",
            "/moderation/ban?target_user_id=bob",
            json!({}),
            200,
            "Response",
        )
        .await;
    b.send_message("room", "seen again").await;
    assert_eq!(
        alice.expect("message.new").await["message"]["shadowed"],
        false
    );
    alice.close().await;
    alice_away.close().await;
    bob.close().await;
}
