//! Reminders falling due (issue 17): the emulator's reminder clock sends
//! `notification.reminder_due` to every connection of the owner when `remind_at` comes, and to
//! nobody else; a reminder moved or deleted before then does not fire. Paused tokio time drives
//! the clock: no test waits for real time to pass.

use std::time::Duration;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::support::Harness;

fn in_secs(secs: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_reminder_falls_due_for_its_owner_only() {
    if crate::support::skip_without_openapi(
        "emulator::reminders::a_reminder_falls_due_for_its_owner_only",
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
    let mut ids = Vec::new();
    for text in ["soon", "moved", "dropped"] {
        let id = a.send_message("room", text).await["message"]["id"].clone();
        ids.push(id.as_str().unwrap_or_default().to_owned());
    }
    let path = |id: &str| format!("/messages/{id}/reminders");
    for id in &ids {
        a.post(
            &path(id),
            json!({"remind_at": in_secs(3600)}),
            "ReminderResponseData",
        )
        .await;
    }
    a.send(
        "PATCH",
        &path(&ids[1]),
        json!({"remind_at": in_secs(3 * 3600)}),
        200,
        "UpdateReminderResponse",
    )
    .await;
    a.send(
        "DELETE",
        &path(&ids[2]),
        json!({}),
        200,
        "DeleteReminderResponse",
    )
    .await;
    for ws in [&mut alice, &mut alice_2, &mut bob] {
        ws.drain().await;
    }

    // Not yet: a minute short of the hour.
    tokio::time::advance(Duration::from_secs(3540)).await;
    assert!(
        !alice
            .drain_types()
            .await
            .contains(&"notification.reminder_due".to_owned()),
        "nothing is due before remind_at"
    );
    tokio::time::advance(Duration::from_secs(120)).await;
    for ws in [&mut alice, &mut alice_2] {
        let due = ws.expect("notification.reminder_due").await;
        assert_eq!(due["message_id"], ids[0].as_str());
        assert_eq!(due["user_id"], "alice");
        assert_eq!(due["cid"], "messaging:room");
        assert_eq!(due["reminder"]["message"]["text"], "soon");
        let rest: Vec<Value> = ws.drain().await;
        assert!(
            rest.iter()
                .all(|e| e["type"] != "notification.reminder_due"),
            "the moved and the deleted reminder stay quiet: {rest:?}"
        );
    }
    assert!(
        bob.drain().await.is_empty(),
        "a reminder is its owner's business"
    );

    // The moved one fires at its new time, once.
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    let due = alice.expect("notification.reminder_due").await;
    assert_eq!(due["message_id"], ids[1].as_str());
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(alice.drain().await.is_empty(), "a reminder fires once");
    for ws in [alice, alice_2, bob] {
        ws.close().await;
    }
}
