//! Deleting for oneself and undeleting (issue 17): `DELETE /messages/{id}?delete_for_me=true`
//! hides a message from the caller only (their connections get `message.deleted` with
//! `deleted_for_me`, nobody else hears of it, everyone else keeps reading it), and `POST
//! /messages/{id}/undelete` (server token) brings a soft-deleted message back with
//! `message.undeleted` to the watchers.

use serde_json::{json, Value};

use super::support::{validate, Harness};

fn message<'a>(state: &'a Value, id: &str) -> &'a Value {
    state["messages"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["id"] == id))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn delete_for_me_hides_a_message_from_the_caller_only() {
    if crate::support::skip_without_openapi(
        "emulator::deletion::delete_for_me_hides_a_message_from_the_caller_only",
    ) {
        return;
    }
    let h = Harness::start().await;
    let mut alice = h.connect("alice").await;
    let mut bob = h.connect("bob").await;
    let mut bob_away = h.connect("bob").await;
    let a = h.client("alice");
    let b = h.client("bob");
    a.watch_channel("room", &alice, json!({"members": ["alice", "bob"]}))
        .await;
    b.watch_channel("room", &bob, json!({})).await;
    let id = a.send_message("room", "hello").await["message"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for ws in [&mut alice, &mut bob, &mut bob_away] {
        ws.drain().await;
    }

    let path = format!("/messages/{id}?delete_for_me=true");
    let (status, res) = b.raw("DELETE", &path, None).await;
    assert_eq!(status, 200, "{res}");
    validate("DeleteMessageResponse", &res);
    assert_eq!(res["message"]["type"], "deleted");
    assert_eq!(res["message"]["deleted_for_me"], true);

    let ev = bob.expect("message.deleted").await;
    assert_eq!(ev["deleted_for_me"], true);
    assert_eq!(ev["message"]["id"], id.as_str());
    assert!(alice.drain().await.is_empty(), "the others hear nothing");
    assert!(
        bob_away.drain().await.is_empty(),
        "a connection of bob that does not watch the channel has nothing to update"
    );

    let for_bob = b.query_channel("room", json!({})).await;
    assert_eq!(message(&for_bob, &id)["type"], "deleted");
    let for_alice = a.query_channel("room", json!({})).await;
    assert_eq!(message(&for_alice, &id)["type"], "regular");
    assert_eq!(message(&for_alice, &id)["text"], "hello");

    let both = format!("/messages/{id}?delete_for_me=true&hard=true");
    let (status, err) = b.raw("DELETE", &both, None).await;
    assert_eq!((status, err["code"].clone()), (400, json!(4)));
    let (status, _) = h.client("carol").raw("DELETE", &path, None).await;
    assert_eq!(status, 403, "only a member deletes for themselves");
    for ws in [alice, bob, bob_away] {
        ws.close().await;
    }
}

#[tokio::test]
async fn undelete_brings_a_soft_deleted_message_back_to_the_watchers() {
    if crate::support::skip_without_openapi(
        "emulator::deletion::undelete_brings_a_soft_deleted_message_back_to_the_watchers",
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
    let id = a.send_message("room", "oops").await["message"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let path = format!("/messages/{id}/undelete");
    let server = h.server_client();
    let (status, err) = server
        .raw("POST", &path, Some(json!({"undeleted_by": "alice"})))
        .await;
    assert_eq!(
        (status, err["code"].clone()),
        (400, json!(4)),
        "not deleted"
    );

    let (status, _) = a.raw("DELETE", &format!("/messages/{id}"), None).await;
    assert_eq!(status, 200);
    for ws in [&mut alice, &mut bob] {
        ws.drain().await;
    }
    let (status, _) = a
        .raw("POST", &path, Some(json!({"undeleted_by": "alice"})))
        .await;
    assert_eq!(status, 403, "a user token may not undelete");
    let res = server
        .post(
            &path,
            json!({"undeleted_by": "alice"}),
            "UpdateMessageResponse",
        )
        .await;
    assert_eq!(res["message"]["type"], "regular");
    assert_eq!(res["message"]["text"], "oops");
    for ws in [&mut alice, &mut bob] {
        let ev = ws.expect("message.undeleted").await;
        assert_eq!(ev["message"]["id"], id.as_str());
        assert!(ev["message"].get("deleted_at").is_none());
    }
    let state = h.client("bob").query_channel("room", json!({})).await;
    assert_eq!(message(&state, &id)["text"], "oops");
    alice.close().await;
    bob.close().await;
}
