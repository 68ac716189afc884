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
            app.metrics.bound("presence_per_connection");
            return;
        }
        if conn.presence.insert(user.to_owned()) {
            app.followers
                .entry(user.to_owned())
                .or_default()
                .insert(conn_id.to_owned());
        }
    }
}

/// Connections of other users that follow `user_id`'s presence.
pub(crate) fn followers<'a>(app: &'a AppData, user_id: &str) -> Vec<&'a String> {
    app.followers
        .get(user_id)
        .into_iter()
        .flatten()
        .filter(|c| app.conns.get(*c).is_some_and(|c| c.user_id != user_id))
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::store::Conn;

    fn register(app: &mut AppData, id: &str, user: &str) {
        let (tx, _rx) = mpsc::channel(1);
        let conn = Conn {
            user_id: user.to_owned(),
            tx,
            abort: CancellationToken::new(),
            overflow: CancellationToken::new(),
            watching: HashSet::new(),
            presence: HashSet::new(),
        };
        app.register(id.to_owned(), conn);
    }

    #[test]
    fn the_followers_index_keeps_in_step_and_leaves_out_the_user_s_own_connections() {
        let mut app = AppData::default();
        register(&mut app, "a1", "alice");
        register(&mut app, "b1", "bob");
        subscribe(&mut app, "a1", ["bob", "alice"]);
        subscribe(&mut app, "b1", ["alice"]);
        assert_eq!(followers(&app, "bob"), ["a1"]);
        assert_eq!(followers(&app, "alice"), ["b1"], "not her own connection");
        assert!(app.unregister("a1").is_some());
        assert!(followers(&app, "bob").is_empty());
        assert!(
            !app.followers.contains_key("bob"),
            "emptied sets are dropped"
        );
        subscribe(&mut app, "gone", ["bob"]);
        assert!(
            followers(&app, "bob").is_empty(),
            "an unknown connection follows nobody"
        );
    }

    #[test]
    fn a_connection_follows_at_most_the_limit() {
        let mut app = AppData::default();
        register(&mut app, "a1", "alice");
        let many: Vec<String> = (0..=MAX_PRESENCE_PER_CONNECTION)
            .map(|i| format!("u{i}"))
            .collect();
        subscribe(&mut app, "a1", many.iter().map(String::as_str));
        let count = app.conns.get("a1").map_or(0, |c| c.presence.len());
        assert_eq!(count, MAX_PRESENCE_PER_CONNECTION);
        assert!(followers(&app, &many[MAX_PRESENCE_PER_CONNECTION]).is_empty());
    }
}
