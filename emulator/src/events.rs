//! Server→client events: their JSON shapes (per the OpenAPI event schemas)
//! and who receives them. Channel events go to every connection watching the
//! cid (the sender's included); channel `notification.*` to the member's connections that do not
//! watch it; `notification.mark_read` to all of the user's connections.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::presence;
use crate::render::{self, ts};
use crate::render_chat;
use crate::store::{frame, AppData, Conn, Message};

/// The fields every channel event carries; `custom` is required by the spec.
pub(crate) fn channel_base(
    app: &AppData,
    kind: &str,
    cid: &str,
    now: OffsetDateTime,
) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("type".into(), json!(kind));
    map.insert("cid".into(), json!(cid));
    if let Some(ch) = app.channels.get(cid) {
        map.insert("channel_type".into(), json!(ch.kind));
        map.insert("channel_id".into(), json!(ch.id));
    }
    map.insert("created_at".into(), json!(ts(now)));
    map.insert("custom".into(), json!({}));
    map
}

/// Distinct users watching `cid` (Stream counts users, not connections).
fn watcher_count(app: &AppData, cid: &str) -> usize {
    app.watcher_users(cid).len()
}

/// Sends one event to every connection watching `cid`, except to a user who blocked its `user`
/// in a one-to-one channel ([`blocked_in`]).
pub(crate) fn to_watchers(app: &AppData, cid: &str, event: &Value) {
    let bytes = frame(event);
    let actor = event["user"]["id"].as_str();
    if let Some(ch) = app.channels.get(cid) {
        for conn_id in &ch.watchers {
            let recipient = app.conns.get(conn_id).map(|c| c.user_id.as_str());
            if recipient.is_some_and(|r| blocked_in(app, cid, r, actor)) {
                continue;
            }
            app.push(conn_id, &bytes);
        }
    }
}

/// Whether `recipient` blocked `actor` and `cid` is a one-to-one channel: Stream's block hides the
/// blocked user's events in one-to-one channels from the blocker; group channels are unaffected.
pub(crate) fn blocked_in(app: &AppData, cid: &str, recipient: &str, actor: Option<&str>) -> bool {
    let Some(actor) = actor.filter(|a| *a != recipient) else {
        return false;
    };
    app.channels
        .get(cid)
        .is_some_and(|ch| ch.members.len() == 2)
        && app
            .social
            .users
            .get(recipient)
            .is_some_and(|u| u.blocked.iter().any(|(id, _)| id == actor))
}

/// Removes a connection from the store and sends `user.watching.stop` for every channel its user
/// no longer watches through any connection, and `user.presence.changed` if it was the user's
/// last. `None` if it was already gone.
pub(crate) fn unregister(app: &mut AppData, conn_id: &str) -> Option<Conn> {
    let was_online = app
        .conns
        .get(conn_id)
        .is_some_and(|c| app.is_online(&c.user_id));
    let gone = app.unregister(conn_id)?;
    for cid in &gone.stopped_watching {
        watching(app, cid, &gone.conn.user_id, false, gone.at);
    }
    if was_online && !app.is_online(&gone.conn.user_id) {
        presence::changed(app, &gone.conn.user_id, gone.at);
    }
    Some(gone.conn)
}

/// `user.watching.start` / `user.watching.stop` to the channel's watchers.
pub(crate) fn watching(app: &AppData, cid: &str, user_id: &str, start: bool, now: OffsetDateTime) {
    let kind = if start {
        "user.watching.start"
    } else {
        "user.watching.stop"
    };
    let mut ev = channel_base(app, kind, cid, now);
    ev.insert("user".into(), render::user(app, user_id));
    ev.insert("watcher_count".into(), json!(watcher_count(app, cid)));
    to_watchers(app, cid, &Value::Object(ev));
}

/// `message.new` to watchers, each user with their own unread counters, and
/// `notification.message_new` to every connection of a member (the sender excepted) that does
/// not watch the channel: Stream documents these notifications per client, so a member's tab
/// that does not watch gets one even while another of their tabs watches.
pub(crate) fn message_new(app: &AppData, cid: &str, msg: &Message, now: OffsetDateTime) {
    let Some(ch) = app.channels.get(cid) else {
        return;
    };
    let message = render_chat::message(app, cid, msg);
    let mut base = channel_base(app, "message.new", cid, now);
    base.insert("message_id".into(), json!(msg.id));
    base.insert("message".into(), message);
    base.insert("user".into(), render::user(app, &msg.user_id));
    base.insert("watcher_count".into(), json!(watcher_count(app, cid)));
    base.insert("channel_member_count".into(), json!(ch.members.len()));
    base.insert("channel_message_count".into(), json!(ch.message_count));

    let watchers = app.watcher_users(cid);
    for (user_id, conns) in &watchers {
        if blocked_in(app, cid, user_id, Some(&msg.user_id)) || !msg.visible_to(Some(user_id)) {
            continue;
        }
        let ev = with_counters(app, base.clone(), user_id);
        let bytes = frame(&ev);
        for conn_id in conns {
            app.push(conn_id, &bytes);
        }
    }
    // A thread-only reply is no news for a channel list (Stream announces it to thread
    // participants instead), and the sender never hears of their own message.
    if (msg.parent_id.is_some() && !msg.show_in_channel) || msg.extra.shadowed {
        return;
    }
    let channel = render_chat::channel(app, ch);
    for m in ch.members.iter().filter(|m| m.user_id != msg.user_id) {
        if !app.user_conns.contains_key(&m.user_id) {
            continue;
        }
        let mut ev = base.clone();
        ev.insert("type".into(), json!("notification.message_new"));
        ev.insert("channel".into(), channel.clone());
        to_unwatching(app, &m.user_id, cid, &with_counters(app, ev, &m.user_id));
    }
}

/// Sends a channel `notification.*` to the connections of `user_id` that do not watch `cid`:
/// Stream documents these per client, so a tab that does not watch gets one even while another
/// tab of the same user watches (and gets the channel event instead).
pub(crate) fn to_unwatching(app: &AppData, user_id: &str, cid: &str, event: &Value) {
    let Some(conns) = app.user_conns.get(user_id) else {
        return;
    };
    if blocked_in(app, cid, user_id, event["user"]["id"].as_str()) {
        return;
    }
    let watchers = app.channels.get(cid).map(|ch| &ch.watchers);
    let bytes = frame(event);
    for conn_id in conns {
        if !watchers.is_some_and(|w| w.contains(conn_id)) {
            app.push(conn_id, &bytes);
        }
    }
}

fn with_counters(app: &AppData, mut ev: Map<String, Value>, user_id: &str) -> Value {
    let c = app.counters(user_id);
    ev.insert("unread_count".into(), json!(c.total_unread));
    ev.insert("total_unread_count".into(), json!(c.total_unread));
    ev.insert("unread_channels".into(), json!(c.unread_channels));
    Value::Object(ev)
}

/// `message.read` to the channel's watchers (the reader's own connections
/// included) and `notification.mark_read` to the reader's connections only.
/// Returns the `message.read` event for the REST response.
pub(crate) fn read(
    app: &AppData,
    cid: &str,
    user_id: &str,
    last_id: Option<&str>,
    now: OffsetDateTime,
) -> Value {
    let mut ev = channel_base(app, "message.read", cid, now);
    ev.insert("user".into(), render::user(app, user_id));
    if let Some(id) = last_id {
        ev.insert("last_read_message_id".into(), json!(id));
    }
    let read = Value::Object(ev.clone());
    to_watchers(app, cid, &read);

    ev.insert("type".into(), json!("notification.mark_read"));
    let c = app.counters(user_id);
    ev.insert("unread_count".into(), json!(c.total_unread));
    ev.insert("total_unread_count".into(), json!(c.total_unread));
    ev.insert("unread_channels".into(), json!(c.unread_channels));
    ev.insert("unread_threads".into(), json!(c.unread_threads));
    if let Some(ch) = app.channels.get(cid) {
        ev.insert("channel".into(), render_chat::channel(app, ch));
    }
    app.push_user(user_id, &frame(&Value::Object(ev)));
    read
}

/// The channel and its counts, added to a channel event.
pub(crate) fn with_channel(
    app: &AppData,
    cid: &str,
    mut ev: Map<String, Value>,
) -> Map<String, Value> {
    if let Some(ch) = app.channels.get(cid) {
        ev.insert("channel".into(), render_chat::channel(app, ch));
        ev.insert("channel_member_count".into(), json!(ch.members.len()));
        ev.insert("channel_message_count".into(), json!(ch.message_count));
    }
    ev
}

/// `user_id`'s membership of `cid`, rendered.
pub(crate) fn rendered(app: &AppData, cid: &str, user_id: &str) -> Option<Value> {
    app.channels
        .get(cid)
        .and_then(|ch| ch.members.iter().find(|m| m.user_id == user_id))
        .map(|m| render_chat::member(app, m))
}
