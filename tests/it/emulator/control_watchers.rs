//! `GET /_emulator/watchers`: who watches which channel upstream, per user with their connection
//! count (the differential harness waits on it and compares it between its two runs).

use serde_json::{json, Value};

use super::support::{request, Harness, KEY};

async fn watchers(h: &Harness, query: &str) -> (u16, Value) {
    let (status, body, _) = request(
        h.addr,
        "GET",
        &format!("/_emulator/watchers?{query}"),
        None,
        Vec::new(),
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn watchers_lists_users_and_connections_per_channel() {
    if crate::support::skip_without_openapi(
        "emulator::control_watchers::watchers_lists_users_and_connections_per_channel",
    ) {
        return;
    }
    let h = Harness::start().await;
    let tab1 = h.connect("alice").await;
    let tab2 = h.connect("alice").await;
    let bob = h.connect("bob").await;
    let (a, b) = (h.client("alice"), h.client("bob"));
    let members = json!({"members": ["alice", "bob"]});
    a.watch_channel("room-x", &tab1, members.clone()).await;
    a.watch_channel("room-x", &tab2, members.clone()).await;
    b.watch_channel("room-x", &bob, members.clone()).await;
    b.watch_channel("other", &bob, members).await;

    let (status, body) = watchers(&h, &format!("api_key={KEY}&cid_contains=room")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"channels": {"messaging:room-x": {"alice": 2, "bob": 1}}, "truncated": false})
    );
    // A stop-watching counts at once; a channel nobody watches is left out.
    a.stop_watching("room-x", &tab1).await;
    b.stop_watching("other", &bob).await;
    let (_, body) = watchers(&h, &format!("api_key={KEY}")).await;
    assert_eq!(
        body["channels"],
        json!({"messaging:room-x": {"alice": 1, "bob": 1}})
    );

    assert_eq!(watchers(&h, "").await.0, 400, "api_key is required");
    assert_eq!(watchers(&h, "api_key=nope").await.0, 404);
}
