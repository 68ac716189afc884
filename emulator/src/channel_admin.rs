//! Channel administration: partial update (`PATCH /channels/{type}/{id}`, the SDK's
//! `updatePartial`), delete (`DELETE /channels/{type}/{id}` and `POST /channels/delete`) and
//! truncate (`POST /channels/{type}/{id}/truncate`, with an optional `message` sent after it as a
//! `type: system` message).
//!
//! Who hears what (`stream-event-recipients.md`): `channel.updated`, `channel.deleted` and
//! `channel.truncated` go to the channel's watchers; `notification.channel_deleted` and
//! `notification.channel_truncated` to every member connection that does not watch it (per
//! connection, like every channel notification here). Deleting ends every watch of the channel.

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::channels::{custom_data, existing};
use crate::config::MAX_USER_BYTES;
use crate::error::ApiError;
use crate::events::{channel_base, to_unwatching, to_watchers, with_channel};
use crate::req::{check_id, Req};
use crate::store::AppData;
use crate::{render, render_chat};

/// Channels one `POST /channels/delete` may name.
pub(crate) const MAX_DELETE_CIDS: usize = 100;

/// `PATCH /channels/{type}/{id}` → `UpdateChannelPartialResponse`: `set` merges custom data,
/// `unset` removes keys; a `channel.updated` to the watchers.
pub(crate) fn partial_update(
    app: &mut AppData,
    req: &Req<'_>,
    cid: &str,
) -> Result<Value, ApiError> {
    let ch = existing(app, cid)?;
    let user = req.acting_user(None).ok();
    let set = match req.body.get("set") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(s)) => custom_data(s)?,
        Some(_) => return Err(ApiError::input("set must be an object")),
    };
    let unset: Vec<String> = match req.body.get("unset") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| ApiError::input("unset must be an array of field names"))?,
    };
    let mut data = ch.data.clone();
    for key in &unset {
        data.remove(key);
    }
    data.extend(set);
    if Value::Object(data.clone()).to_string().len() > MAX_USER_BYTES {
        return Err(ApiError::input("channel data would exceed the size limit"));
    }
    let now = OffsetDateTime::now_utc();
    if let Some(ch) = app.channels.get_mut(cid) {
        ch.data = data;
        ch.updated_at = now;
    }
    let mut ev = channel_base(app, "channel.updated", cid, now);
    if let Some(user) = &user {
        ev.insert("user".into(), render::user(app, user));
    }
    to_watchers(app, cid, &Value::Object(with_channel(app, cid, ev)));
    let ch = existing(app, cid)?;
    let members: Vec<Value> = ch
        .members
        .iter()
        .map(|m| render_chat::member(app, m))
        .collect();
    Ok(json!({ "channel": render_chat::channel(app, ch), "members": members }))
}

/// Only a server token or a channel moderator (the creator is one) may delete or truncate.
fn may_administer(app: &AppData, req: &Req<'_>, cid: &str) -> Result<Option<String>, ApiError> {
    let ch = existing(app, cid)?;
    if let crate::auth::Identity::User(user) = req.ident {
        let moderator = ch.members.iter().any(|m| &m.user_id == user && m.moderator);
        if !moderator {
            return Err(ApiError::forbidden(format!(
                "only a moderator of {cid} may delete or truncate it"
            )));
        }
        return Ok(Some(user.clone()));
    }
    Ok(None)
}

/// `DELETE /channels/{type}/{id}` → `DeleteChannelResponse`.
pub(crate) fn delete(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    let user = may_administer(app, req, cid)?;
    let channel = remove(app, cid, user.as_deref(), OffsetDateTime::now_utc());
    Ok(json!({ "channel": channel }))
}

/// `POST /channels/delete` → `DeleteChannelsResponse`: each cid deleted (or why not) in `result`.
pub(crate) fn delete_many(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let cids = req
        .body
        .get("cids")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty() && l.len() <= MAX_DELETE_CIDS)
        .ok_or_else(|| {
            ApiError::input(format!(
                "cids must be an array of 1 to {MAX_DELETE_CIDS} channel ids"
            ))
        })?;
    let mut result = Map::new();
    for cid in cids {
        let cid = cid
            .as_str()
            .ok_or_else(|| ApiError::input("cids must be strings"))?;
        let outcome = parse_cid(cid).and_then(|_| may_administer(app, req, cid));
        let entry = match outcome {
            Ok(user) => {
                remove(app, cid, user.as_deref(), OffsetDateTime::now_utc());
                json!({ "status": "success" })
            }
            Err(e) => json!({ "status": "error", "error": e.message }),
        };
        result.insert(cid.to_owned(), entry);
    }
    Ok(json!({ "result": result, "task_id": uuid::Uuid::new_v4().to_string() }))
}

fn parse_cid(cid: &str) -> Result<(), ApiError> {
    let (kind, id) = cid
        .split_once(':')
        .ok_or_else(|| ApiError::input(format!("invalid cid {cid:?}")))?;
    check_id(kind)?;
    check_id(id)
}

/// Announces the deletion, then forgets the channel and every watch of it. Returns the channel
/// as it was, with `deleted_at`.
fn remove(app: &mut AppData, cid: &str, user: Option<&str>, now: OffsetDateTime) -> Value {
    let Some(ch) = app.channels.get(cid) else {
        return Value::Null;
    };
    let mut channel = render_chat::channel(app, ch);
    if let Some(obj) = channel.as_object_mut() {
        obj.insert("deleted_at".into(), json!(render::ts(now)));
    }
    let members: Vec<String> = ch.members.iter().map(|m| m.user_id.clone()).collect();
    let mut ev = channel_base(app, "channel.deleted", cid, now);
    if let Some(user) = user {
        ev.insert("user".into(), render::user(app, user));
    }
    let mut ev = with_channel(app, cid, ev);
    ev.insert("channel".into(), channel.clone());
    to_watchers(app, cid, &Value::Object(ev.clone()));
    ev.insert("type".into(), json!("notification.channel_deleted"));
    ev.remove("user");
    for m in &members {
        to_unwatching(app, m, cid, &Value::Object(ev.clone()));
    }
    if let Some(ch) = app.channels.remove(cid) {
        for conn in &ch.watchers {
            if let Some(c) = app.conns.get_mut(conn) {
                c.watching.remove(cid);
            }
        }
    }
    app.social.forget_channel(cid);
    channel
}

/// `POST /channels/{type}/{id}/truncate` → `TruncateChannelResponse`: forgets the messages
/// created up to `truncated_at` (default now), resets unread counts, and announces it.
pub(crate) fn truncate(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    let user = may_administer(app, req, cid)?;
    let notice = req.body.get("message").filter(|m| !m.is_null());
    if notice.is_some_and(|m| !m.is_object()) {
        return Err(ApiError::input("message must be an object"));
    }
    let now = OffsetDateTime::now_utc();
    let until = match req.body.get("truncated_at") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|_| ApiError::input("truncated_at must be an RFC 3339 date-time"))?,
        Some(_) => return Err(ApiError::input("truncated_at must be a date-time string")),
    };
    if let Some(ch) = app.channels.get_mut(cid) {
        ch.messages.retain(|m| m.created_at > until);
        crate::thread_reads::forget_gone(ch);
        ch.last_message_at = ch.messages.back().map(|m| m.created_at);
        ch.updated_at = now;
        for read in ch.reads.values_mut() {
            read.unread = 0;
            read.last_read = now;
        }
    }
    app.social
        .truncated_at
        .insert(cid.to_owned(), (until, user.clone()));
    let ch = existing(app, cid)?;
    let members: Vec<String> = ch.members.iter().map(|m| m.user_id.clone()).collect();
    let mut ev = channel_base(app, "channel.truncated", cid, now);
    if let Some(user) = &user {
        ev.insert("user".into(), render::user(app, user));
    }
    let mut ev = with_channel(app, cid, ev);
    to_watchers(app, cid, &Value::Object(ev.clone()));
    ev.insert("type".into(), json!("notification.channel_truncated"));
    ev.remove("user");
    for m in &members {
        let c = app.counters(m);
        let mut personal = ev.clone();
        personal.insert("unread_count".into(), json!(c.total_unread));
        personal.insert("total_unread_count".into(), json!(c.total_unread));
        personal.insert("unread_channels".into(), json!(c.unread_channels));
        to_unwatching(app, m, cid, &Value::Object(personal));
    }
    // The notice comes after the truncation, so it is the first message of what remains.
    let sent = match notice {
        Some(notice) => Some(crate::actions::send_system(app, req, cid, notice)?),
        None => None,
    };
    let ch = existing(app, cid)?;
    let mut out = json!({ "channel": render_chat::channel(app, ch) });
    if let (Some(sent), Some(obj)) = (sent, out.as_object_mut()) {
        obj.insert("message".into(), sent["message"].clone());
    }
    Ok(out)
}
