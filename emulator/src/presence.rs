//! Presence, per connection: which users a connection follows (`presence: true` on a channel
//! query, `POST /channels` or `GET /users` subscribes the calling connection to the members of the
//! returned channels or to the returned users), `user.presence.changed` when a user comes online
//! (their first connection opens) or goes offline (their last one closes, or they turn invisible),
//! and who hears about another user's `user.updated`: the connections following that user.
//!
//! A user's own connections never get that user's presence events, and get their own
//! `user.updated` once (with privacy fields), never a second copy as a follower. Online and offline
//! flip only when the user's first connection opens or last one closes, when no other connection
//! of theirs exists to follow them, so the rule only has to be spelled out for the invisible
//! toggle; and the SDK keeps its own user from `me` and its own `user.updated`, so a presence echo
//! would tell it nothing.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::config::MAX_PRESENCE_PER_CONNECTION;
use crate::render::{self, ts};
use crate::store::{frame, AppData};

/// Makes connection `conn_id` follow `users`. A connection already following
/// `MAX_PRESENCE_PER_CONNECTION` users follows no more.
pub(crate) fn subscribe<'a>(
    app: &mut AppData,
    conn_id: &str,
    users: impl IntoIterator<Item = &'a str>,
) {
    let Some(conn) = app.conns.get_mut(conn_id) else {
        return;
    };
    for user in users {
        if conn.presence.len() >= MAX_PRESENCE_PER_CONNECTION {
            tracing::debug!(
                conn_id,
                "presence subscriptions of a connection at the limit"
            );
            return;
        }
        conn.presence.insert(user.to_owned());
    }
}

/// Connections of other users that follow `user_id`'s presence.
pub(crate) fn followers<'a>(app: &'a AppData, user_id: &str) -> Vec<&'a String> {
    app.conns
        .iter()
        .filter(|(_, c)| c.user_id != user_id && c.presence.contains(user_id))
        .map(|(id, _)| id)
        .collect()
}

/// `user.presence.changed` to the connections that follow `user_id`.
pub(crate) fn changed(app: &AppData, user_id: &str, now: OffsetDateTime) {
    let ev = json!({
        "type": "user.presence.changed",
        "created_at": ts(now),
        "custom": {},
        "user": render::user(app, user_id),
    });
    let bytes = frame(&ev);
    for conn_id in followers(app, user_id) {
        app.push(conn_id, &bytes);
    }
}

/// `user.updated` to the user's own connections (with their privacy fields) and to the
/// connections following them (without: other users never learn someone's privacy settings,
/// stream-protocol.md 5.1).
pub(crate) fn user_updated(app: &AppData, user_id: &str, now: OffsetDateTime) {
    let mut ev = json!({
        "type": "user.updated",
        "created_at": ts(now),
        "custom": {},
        "user": render::user_with_privacy(app, user_id),
    });
    app.push_user(user_id, &frame(&ev));
    if let Some(u) = ev.get_mut("user").and_then(Value::as_object_mut) {
        u.remove("privacy_settings");
        u.remove("invisible");
    }
    let bytes = frame(&ev);
    for conn_id in followers(app, user_id) {
        app.push(conn_id, &bytes);
    }
}
