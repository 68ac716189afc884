//! Read and delivery state beyond `markRead`: `POST /channels/{type}/{id}/unread` (`markUnread`),
//! `POST /channels/read` (`markAllRead`), `POST /channels/delivered` (delivery receipts, which
//! the SDK posts on its own because the channel config enables `delivery_events`),
//! `GET /unread` (`getUnreadCount`) and `POST /sync` (what a reconnecting client missed).
//!
//! Who hears what (`stream-event-recipients.md`): `notification.mark_unread` and
//! `notification.mark_read` go to every connection of the reader; `message.read` and
//! `message.delivered` to the channel's watchers. A user who turned `delivery_receipts` off sends
//! no `message.delivered`, as Stream honours the setting.
//!
//! `sync` has no event log to replay: it rebuilds, from each message of the named channels the
//! user may see, a `message.new` if it arrived after `last_sync_at`, a `message.updated` if it was
//! last edited after it and a `message.deleted` if it was deleted after it (oldest first, at most
//! `MAX_SYNC_EVENTS`), which is what a client that missed them needs to catch up.

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::channels::{existing, watch};
use crate::error::ApiError;
use crate::events::{self, channel_base, to_watchers};
use crate::render::{self, ts};
use crate::render_chat;
use crate::req::Req;
use crate::store::{frame, AppData};

/// Entries one `POST /channels/delivered` may carry.
pub(crate) const MAX_DELIVERED_ENTRIES: usize = 100;
/// Channels one `POST /sync` may name (Stream's documented limit).
pub(crate) const MAX_SYNC_CHANNELS: usize = 255;
/// Events one `POST /sync` returns.
pub(crate) const MAX_SYNC_EVENTS: usize = 1_000;

/// `POST /channels/{type}/{id}/unread` → `Response`: `message_id` and everything after it
/// become unread for the caller.
pub(crate) fn mark_unread(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    existing(app, cid)?;
    let user = req.acting_user(None)?;
    if let Some(thread) = req.body.get("thread_id").filter(|v| !v.is_null()) {
        let thread = thread
            .as_str()
            .ok_or_else(|| ApiError::input("thread_id must be a string"))?;
        return crate::thread_marks::mark_unread(app, cid, &user, thread);
    }
    let ch = existing(app, cid)?;
    if !ch.reads.contains_key(&user) {
        return Err(ApiError::input(format!(
            "user {user} is not a member of {cid}"
        )));
    }
    let in_channel: Vec<_> = ch
        .messages
        .iter()
        .filter(|m| m.parent_id.is_none() || m.show_in_channel)
        .collect();
    let first = if let Some(id) = req.body.get("message_id").and_then(Value::as_str) {
        in_channel
            .iter()
            .position(|m| m.id == id)
            .ok_or_else(|| ApiError::not_found(format!("message {id} is not in {cid}")))?
    } else if let Some(t) = req.body.get("message_timestamp").and_then(Value::as_str) {
        let t = OffsetDateTime::parse(t, &Rfc3339)
            .map_err(|_| ApiError::input("message_timestamp must be an RFC 3339 date-time"))?;
        in_channel
            .iter()
            .position(|m| m.created_at >= t)
            .unwrap_or(in_channel.len())
    } else {
        return Err(ApiError::input(
            "message_id or message_timestamp is required",
        ));
    };
    let first_unread = in_channel.get(first).map(|m| m.id.clone());
    let before = first.checked_sub(1).and_then(|i| in_channel.get(i));
    let last_read = before.map_or(ch.created_at, |m| m.created_at);
    let last_read_id = before.map(|m| m.id.clone());
    let unread = u32::try_from(in_channel.len() - first).unwrap_or(u32::MAX);
    if let Some(read) = app
        .channels
        .get_mut(cid)
        .and_then(|ch| ch.reads.get_mut(&user))
    {
        read.last_read = last_read;
        read.last_read_message_id.clone_from(&last_read_id);
        read.unread = unread;
    }
    let now = OffsetDateTime::now_utc();
    let mut ev = channel_base(app, "notification.mark_unread", cid, now);
    ev.insert("user".into(), render::user(app, &user));
    ev.insert("last_read_at".into(), json!(ts(last_read)));
    ev.insert("unread_messages".into(), json!(unread));
    if let Some(id) = &first_unread {
        ev.insert("first_unread_message_id".into(), json!(id));
    }
    if let Some(id) = &last_read_id {
        ev.insert("last_read_message_id".into(), json!(id));
    }
    let c = app.counters(&user);
    ev.insert("unread_count".into(), json!(c.total_unread));
    ev.insert("total_unread_count".into(), json!(c.total_unread));
    ev.insert("unread_channels".into(), json!(c.unread_channels));
    ev.insert("unread_threads".into(), json!(c.unread_threads));
    if let Some(ch) = app.channels.get(cid) {
        ev.insert("channel".into(), render_chat::channel(app, ch));
    }
    app.push_user(&user, &frame(&Value::Object(ev)));
    Ok(json!({}))
}

/// `POST /channels/read` → `MarkReadResponse`: every channel the caller is a member of with
/// unread messages (or those named in `read_by_channel`) is read up to its newest message, each
/// announced as a `markRead` would be.
pub(crate) fn mark_all_read(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let named: Option<Vec<String>> = match req.body.get("read_by_channel") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.keys().cloned().collect()),
        Some(_) => return Err(ApiError::input("read_by_channel must be an object")),
    };
    let mut cids: Vec<String> = app
        .channels
        .values()
        .filter(|ch| {
            ch.reads.get(&user).is_some_and(|r| r.unread > 0)
                || named.as_ref().is_some_and(|n| n.contains(&ch.cid))
        })
        .filter(|ch| ch.reads.contains_key(&user))
        .map(|ch| ch.cid.clone())
        .collect();
    cids.sort();
    let now = OffsetDateTime::now_utc();
    for cid in &cids {
        let Some(ch) = app.channels.get_mut(cid) else {
            continue;
        };
        let last_id = ch
            .messages
            .iter()
            .rev()
            .find(|m| m.parent_id.is_none() || m.show_in_channel)
            .map(|m| m.id.clone());
        if let Some(read) = ch.reads.get_mut(&user) {
            read.last_read = now;
            read.last_read_message_id.clone_from(&last_id);
            read.unread = 0;
        }
        events::read(app, cid, &user, last_id.as_deref(), now);
    }
    Ok(json!({}))
}

/// `POST /channels/delivered` → `MarkDeliveredResponse`: the caller's clients received each
/// channel up to the named message; a `message.delivered` to the channel's watchers.
pub(crate) fn mark_delivered(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let entries = match req.body.get("latest_delivered_messages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= MAX_DELIVERED_ENTRIES => list.clone(),
        Some(_) => {
            return Err(ApiError::input(format!(
                "latest_delivered_messages must be an array of at most {MAX_DELIVERED_ENTRIES}"
            )))
        }
    };
    let announce = render::privacy(app.users.get(&user))["delivery_receipts"]["enabled"]
        .as_bool()
        .unwrap_or(true);
    let now = OffsetDateTime::now_utc();
    for entry in &entries {
        let (Some(cid), Some(id)) = (
            entry.get("cid").and_then(Value::as_str),
            entry.get("id").and_then(Value::as_str),
        ) else {
            return Err(ApiError::input(
                "each delivered entry needs a cid and an id",
            ));
        };
        let ch = existing(app, cid)?;
        if !ch.reads.contains_key(&user) || !ch.messages.iter().any(|m| m.id == id) {
            // Stale entries (a message since deleted, a channel since left) are skipped, as
            // the SDK reports in the background and cannot act on an error.
            continue;
        }
        app.social
            .delivered
            .insert((cid.to_owned(), user.clone()), (now, id.to_owned()));
        if announce {
            let mut ev = channel_base(app, "message.delivered", cid, now);
            ev.insert("user".into(), render::user(app, &user));
            ev.insert("last_delivered_at".into(), json!(ts(now)));
            ev.insert("last_delivered_message_id".into(), json!(id));
            let ev = events::with_channel(app, cid, ev);
            to_watchers(app, cid, &Value::Object(ev));
        }
    }
    Ok(json!({}))
}

/// `GET /unread` → `WrappedUnreadCountsResponse`.
pub(crate) fn unread_counts(app: &AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let mut channels: Vec<(String, Value)> = Vec::new();
    let mut by_type: Map<String, Value> = Map::new();
    let mut total: u64 = 0;
    for ch in app.channels.values() {
        let Some(read) = ch.reads.get(&user) else {
            continue;
        };
        total += u64::from(read.unread);
        let entry = by_type.entry(ch.kind.clone()).or_insert_with(
            || json!({"channel_type": ch.kind, "channel_count": 0, "unread_count": 0}),
        );
        if read.unread > 0 {
            entry["channel_count"] = json!(entry["channel_count"].as_u64().unwrap_or(0) + 1);
            entry["unread_count"] =
                json!(entry["unread_count"].as_u64().unwrap_or(0) + u64::from(read.unread));
            channels.push((
                ch.cid.clone(),
                json!({
                    "channel_id": ch.cid,
                    "last_read": ts(read.last_read),
                    "unread_count": read.unread,
                }),
            ));
        }
    }
    let mut threads: Vec<(String, Value)> = Vec::new();
    for ch in app.channels.values() {
        for ((u, parent), r) in &ch.thread_reads {
            if *u == user && r.unread > 0 {
                threads.push((
                    parent.clone(),
                    json!({
                        "parent_message_id": parent,
                        "last_read": ts(r.last_read),
                        "last_read_message_id": r.last_read_message_id.clone().unwrap_or_default(),
                        "unread_count": r.unread,
                    }),
                ));
            }
        }
    }
    threads.sort_by(|a, b| a.0.cmp(&b.0));
    let threads: Vec<Value> = threads.into_iter().map(|(_, v)| v).collect();
    channels.sort_by(|a, b| a.0.cmp(&b.0));
    let channels: Vec<Value> = channels.into_iter().map(|(_, v)| v).collect();
    let types: Vec<Value> = by_type.into_iter().map(|(_, v)| v).collect();
    Ok(json!({
        "total_unread_count": total,
        "total_unread_threads_count": threads.len(),
        "channels": channels,
        "channel_type": types,
        "threads": threads,
    }))
}

/// `POST /sync` → `SyncResponse`.
pub(crate) fn sync(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let cids: Vec<String> = req
        .body
        .get("channel_cids")
        .and_then(Value::as_array)
        .filter(|l| l.len() <= MAX_SYNC_CHANNELS)
        .ok_or_else(|| {
            ApiError::input(format!(
                "channel_cids must be an array of at most {MAX_SYNC_CHANNELS} cids"
            ))
        })?
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let since = req
        .body
        .get("last_sync_at")
        .and_then(Value::as_str)
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .ok_or_else(|| ApiError::input("last_sync_at must be an RFC 3339 date-time"))?;
    let (accessible, inaccessible): (Vec<String>, Vec<String>) =
        cids.into_iter().partition(|cid| {
            app.channels
                .get(cid)
                .is_some_and(|ch| ch.reads.contains_key(&user))
        });
    let now = OffsetDateTime::now_utc();
    if let Some(conn) = req.watch_target(app, &user)? {
        for cid in &accessible {
            watch(app, &conn, cid, &user, now);
        }
    }
    let mut found: Vec<(OffsetDateTime, Value)> = Vec::new();
    for cid in &accessible {
        let Some(ch) = app.channels.get(cid) else {
            continue;
        };
        // What a watcher would have heard since then, per message: its arrival, its last edit
        // and its deletion (a message's history is not kept, so one of each at most).
        for m in ch.messages.iter().filter(|m| m.visible_to(Some(&user))) {
            let deleted = m.extra.deleted_at.filter(|t| *t > since);
            let edited = (m.updated_at > since && m.updated_at > m.created_at && deleted.is_none())
                .then_some(m.updated_at);
            let new = (m.created_at > since).then_some(m.created_at);
            for (kind, at) in [
                ("message.new", new),
                ("message.updated", edited),
                ("message.deleted", deleted),
            ] {
                let Some(at) = at else { continue };
                let mut ev = channel_base(app, kind, cid, at);
                ev.insert("message_id".into(), json!(m.id));
                ev.insert("message".into(), render_chat::message(app, cid, m));
                ev.insert("user".into(), render::user(app, &m.user_id));
                if kind == "message.new" {
                    ev.insert("watcher_count".into(), json!(app.watcher_users(cid).len()));
                }
                if kind == "message.deleted" {
                    ev.insert("hard_delete".into(), json!(false));
                }
                found.push((at, Value::Object(ev)));
            }
        }
    }
    found.sort_by_key(|(t, _)| *t);
    let skip = found.len().saturating_sub(MAX_SYNC_EVENTS);
    if skip > 0 {
        app.metrics.bound("sync_events");
    }
    let events: Vec<Value> = found.into_iter().skip(skip).map(|(_, e)| e).collect();
    Ok(json!({ "events": events, "inaccessible_cids": inaccessible }))
}
