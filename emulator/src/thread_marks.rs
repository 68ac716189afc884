//! Marking one thread read or unread: `POST /channels/{type}/{id}/read` and `…/unread` with a
//! `thread_id` (the SDK's `thread.markAsRead`, `channel.markRead({thread_id})` and
//! `channel.markUnread({thread_id})`). The state is `thread_reads`'.
//!
//! Who hears what: a thread read is a `message.read` carrying the `thread` (the SDK's channel
//! ignores it, its thread object applies it) to the channel's watchers, and
//! `notification.mark_read` with `thread_id` and the thread counters to the reader's connections;
//! a thread unread is a `notification.mark_unread` with `thread_id` to the user's connections.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::events::{channel_base, to_watchers};
use crate::render;
use crate::store::{frame, AppData, ReadState};
use crate::threads::thread_response;

/// The thread `parent` of `cid`, or code 16.
fn check(app: &AppData, cid: &str, parent: &str) -> Result<(), ApiError> {
    let found = app
        .channels
        .get(cid)
        .and_then(|ch| ch.messages.iter().find(|m| m.id == parent))
        .is_some_and(|p| p.thread.is_some());
    if found {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "thread {parent} does not exist in {cid}"
        )))
    }
}

/// Unread replies of `user` over every thread, for `unread_thread_messages`.
fn unread_replies(app: &AppData, user: &str) -> u32 {
    app.channels
        .values()
        .flat_map(|ch| ch.thread_reads.iter())
        .filter(|((u, _), _)| u == user)
        .fold(0u32, |n, (_, r)| n.saturating_add(r.unread))
}

fn with_thread_counters(app: &AppData, ev: &mut Map<String, Value>, user: &str, thread: &str) {
    let c = app.counters(user);
    ev.insert("thread_id".into(), json!(thread));
    ev.insert("unread_count".into(), json!(c.total_unread));
    ev.insert("total_unread_count".into(), json!(c.total_unread));
    ev.insert("unread_channels".into(), json!(c.unread_channels));
    ev.insert("unread_threads".into(), json!(c.unread_threads));
    ev.insert(
        "unread_thread_messages".into(),
        json!(unread_replies(app, user)),
    );
}

/// Reads thread `parent` of `cid` up to its newest reply; the `message.read` for the response.
pub(crate) fn mark_read(
    app: &mut AppData,
    cid: &str,
    user: &str,
    parent: &str,
) -> Result<Value, ApiError> {
    check(app, cid, parent)?;
    let now = OffsetDateTime::now_utc();
    let Some(ch) = app.channels.get_mut(cid) else {
        return Err(ApiError::not_found(format!("channel {cid} does not exist")));
    };
    let last = ch
        .messages
        .iter()
        .rev()
        .find(|m| m.parent_id.as_deref() == Some(parent))
        .map(|m| m.id.clone());
    ch.thread_reads.insert(
        (user.to_owned(), parent.to_owned()),
        ReadState {
            last_read: now,
            last_read_message_id: last.clone(),
            unread: 0,
        },
    );
    let Some((ch, p)) = app
        .channels
        .get(cid)
        .and_then(|ch| ch.messages.iter().find(|m| m.id == parent).map(|p| (ch, p)))
    else {
        return Err(ApiError::not_found(format!("thread {parent} is gone")));
    };
    let mut ev = channel_base(app, "message.read", cid, now);
    ev.insert("user".into(), render::user(app, user));
    ev.insert("thread".into(), thread_response(app, ch, p));
    if let Some(id) = &last {
        ev.insert("last_read_message_id".into(), json!(id));
    }
    let read = Value::Object(ev.clone());
    to_watchers(app, cid, &read);
    ev.insert("type".into(), json!("notification.mark_read"));
    ev.remove("thread");
    with_thread_counters(app, &mut ev, user, parent);
    app.push_user(user, &frame(&Value::Object(ev)));
    Ok(read)
}

/// Makes every reply of thread `parent` that `user` did not write unread again.
pub(crate) fn mark_unread(
    app: &mut AppData,
    cid: &str,
    user: &str,
    parent: &str,
) -> Result<Value, ApiError> {
    check(app, cid, parent)?;
    let Some(ch) = app.channels.get_mut(cid) else {
        return Err(ApiError::not_found(format!("channel {cid} does not exist")));
    };
    let others = ch
        .messages
        .iter()
        .filter(|m| m.parent_id.as_deref() == Some(parent) && m.user_id != user)
        .count();
    let unread = u32::try_from(others).unwrap_or(u32::MAX);
    let started = ch
        .messages
        .iter()
        .find(|m| m.id == parent)
        .map_or(ch.created_at, |p| p.created_at);
    ch.thread_reads.insert(
        (user.to_owned(), parent.to_owned()),
        ReadState {
            last_read: started,
            last_read_message_id: None,
            unread,
        },
    );
    let now = OffsetDateTime::now_utc();
    let mut ev = channel_base(app, "notification.mark_unread", cid, now);
    ev.insert("user".into(), render::user(app, user));
    ev.insert("last_read_at".into(), json!(render::ts(started)));
    with_thread_counters(app, &mut ev, user, parent);
    app.push_user(user, &frame(&Value::Object(ev)));
    Ok(json!({}))
}
