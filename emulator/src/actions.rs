//! Channel actions that produce events: send message (`message.new`), send
//! event (typing and custom events), mark read (`message.read` +
//! `notification.mark_read`) and stop watching (`user.watching.stop`).

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::channels::{existing, push_message};
use crate::config::{MAX_MESSAGE_TEXT, MAX_USER_BYTES};
use crate::error::ApiError;
use crate::req::{check_id, Req};
use crate::store::{AppData, Message};
use crate::{events, hiding, message_refs, render, render_chat, threads};

/// Largest stored message (text, attachments and custom fields), serialized.
pub(crate) const MAX_MESSAGE_BYTES: usize = 20 * 1024;
/// Attachments per message.
pub(crate) const MAX_ATTACHMENTS: usize = 30;

/// `MessageResponse` keys the server owns; never taken as custom fields.
pub(crate) const MESSAGE_RESERVED: &[&str] = &[
    "id",
    "text",
    "html",
    "type",
    "user",
    "user_id",
    "cid",
    "created_at",
    "updated_at",
    "attachments",
    "parent_id",
    "show_in_channel",
    "silent",
    "mentioned_users",
    "latest_reactions",
    "own_reactions",
    "reaction_counts",
    "reaction_scores",
    "reaction_groups",
    "reply_count",
    "deleted_reply_count",
    "shadowed",
    "pinned",
    "mentioned_channel",
    "mentioned_here",
    "restricted_visibility",
    "custom",
    "member",
    "quoted_message",
    "quoted_message_id",
    "thread_participants",
    "i18n",
    "deleted_at",
    "poll_id",
    "poll",
];

/// Event keys the server fills in itself.
const EVENT_RESERVED: &[&str] = &[
    "type",
    "user",
    "user_id",
    "cid",
    "channel_id",
    "channel_type",
    "created_at",
    "received_at",
    "custom",
    "parent_id",
    "channel",
    "message",
];

/// Event type prefixes clients may not forge.
const SERVER_EVENT_PREFIXES: &[&str] = &[
    "health.",
    "message.",
    "notification.",
    "user.",
    "channel.",
    "member.",
    "connection.",
    "reaction.",
    "thread.",
    "poll.",
];

/// `POST /channels/{type}/{id}/message` → `SendMessageResponse`.
pub(crate) fn send_message(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    let msg = req
        .body
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::input("message must be an object"))?;
    send(app, req, cid, msg, false)
}

/// The `message` of a channel update or truncation: sent as any message is, but of
/// `type: system` (what the UI kits render as a channel notice rather than a bubble).
pub(crate) fn send_system(
    app: &mut AppData,
    req: &Req<'_>,
    cid: &str,
    msg: &Value,
) -> Result<Value, ApiError> {
    let msg = msg
        .as_object()
        .ok_or_else(|| ApiError::input("message must be an object"))?;
    if msg.get("parent_id").is_some_and(|p| !p.is_null()) {
        return Err(ApiError::input("a system message cannot be a reply"));
    }
    send(app, req, cid, msg, true)
}

fn send(
    app: &mut AppData,
    req: &Req<'_>,
    cid: &str,
    msg: &Map<String, Value>,
    system: bool,
) -> Result<Value, ApiError> {
    existing(app, cid)?;
    let user = req.acting_user(sender_hint(msg))?;
    crate::bans::check_can_post(app, cid, &user)?;
    let shadowed = app.social.global_ban(&user).is_some_and(|b| b.shadow)
        || app.social.channel_ban(cid, &user).is_some_and(|b| b.shadow);
    if Value::Object(msg.clone()).to_string().len() > MAX_MESSAGE_BYTES {
        return Err(ApiError::input("message is too large"));
    }
    let text = match msg.get("text") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(t)) if t.chars().count() <= MAX_MESSAGE_TEXT => t.clone(),
        Some(_) => {
            return Err(ApiError::input(format!(
                "text must be a string of at most {MAX_MESSAGE_TEXT} characters"
            )))
        }
    };
    let id = match msg.get("id").and_then(Value::as_str) {
        Some(id) => {
            check_id(id)?;
            let taken = app
                .channels
                .values()
                .any(|c| c.messages.iter().any(|m| m.id == id));
            if taken {
                return Err(ApiError::input(format!(
                    "message with id {id} already exists"
                )));
            }
            id.to_owned()
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let parent_id = msg
        .get("parent_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(parent) = &parent_id {
        threads::check_parent(app, cid, parent)?;
    }
    let mut attachments = Vec::new();
    if let Some(list) = msg.get("attachments").and_then(Value::as_array) {
        for a in list.iter().take(MAX_ATTACHMENTS) {
            if let Value::Object(obj) = a {
                let mut obj = obj.clone();
                obj.entry("custom").or_insert_with(|| json!({}));
                attachments.push(Value::Object(obj));
            }
        }
    }
    let mut custom = render::custom_of(msg, MESSAGE_RESERVED);
    if let Some(Value::Object(extra)) = msg.get("custom") {
        custom.extend(extra.clone());
    }
    // A poll is attached by id; it must exist (see `polls`).
    let poll_id = match msg.get("poll_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if app.polls.contains_key(p) => Some(p.clone()),
        Some(_) => return Err(ApiError::input("poll_id names no poll")),
    };
    let quoted_message_id = message_refs::quoted(app, cid, msg.get("quoted_message_id"))?;
    let mentioned_users = message_refs::mentioned(msg.get("mentioned_users"))?;
    let now = OffsetDateTime::now_utc();
    let message = Message {
        id,
        user_id: user.clone(),
        text,
        show_in_channel: parent_id.is_some()
            && msg.get("show_in_channel") == Some(&Value::Bool(true)),
        parent_id,
        silent: msg.get("silent") == Some(&Value::Bool(true)),
        attachments,
        custom,
        reply_count: 0,
        thread: None,
        created_at: now,
        updated_at: now,
        extra: crate::model::MessageExtra {
            poll_id,
            quoted_message_id,
            mentioned_users,
            system,
            shadowed,
            ..Default::default()
        },
    };
    app.ensure_user(&user, now);
    let rendered = render_chat::message(app, cid, &message);
    let Some(ch) = app.channels.get_mut(cid) else {
        return Err(ApiError::not_found(format!(
            "channel \"{cid}\" does not exist"
        )));
    };
    let in_channel = message.parent_id.is_none() || message.show_in_channel;
    let counted = in_channel && !message.silent && !shadowed;
    let evicted = push_message(ch, message);
    hiding::unhide_on_message(ch, &user, req.flag("keep_channel_hidden"), in_channel);
    if evicted {
        app.metrics.bound("messages_per_channel");
    }
    if counted {
        crate::blocks::uncount_for_blockers(app, cid, &user);
    }
    if let Some(stored) = app.channels.get(cid).and_then(|c| c.messages.back()) {
        events::message_new(app, cid, stored, now);
        threads::parent_updated(app, cid, stored, now);
        threads::reply_notification(app, cid, stored, now);
    }
    Ok(json!({ "message": rendered }))
}

/// Server-token requests may name the sender inside the message.
fn sender_hint(obj: &Map<String, Value>) -> Option<&str> {
    obj.get("user_id").and_then(Value::as_str).or_else(|| {
        obj.get("user")
            .and_then(|u| u.get("id"))
            .and_then(Value::as_str)
    })
}

/// `POST /channels/{type}/{id}/event` → `EventResponse` (HTTP 201). The event
/// goes to every watcher; privacy filtering is left to the gateway.
pub(crate) fn send_event(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    existing(app, cid)?;
    let ev = req
        .body
        .get("event")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::input("event must be an object"))?;
    let kind = ev
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.len() <= 64)
        .ok_or_else(|| ApiError::input("event.type is required"))?;
    let typing = kind == "typing.start" || kind == "typing.stop";
    if !typing && SERVER_EVENT_PREFIXES.iter().any(|p| kind.starts_with(p)) {
        return Err(ApiError::input(format!("event type {kind} is reserved")));
    }
    if Value::Object(ev.clone()).to_string().len() > MAX_USER_BYTES {
        return Err(ApiError::input("event is too large"));
    }
    let user = req.acting_user(sender_hint(ev))?;
    let now = OffsetDateTime::now_utc();
    app.ensure_user(&user, now);
    let mut out = events::channel_base(app, kind, cid, now);
    out.insert("user".into(), render::user(app, &user));
    if let Some(parent) = ev.get("parent_id").and_then(Value::as_str) {
        out.insert("parent_id".into(), json!(parent));
    }
    let custom = render::custom_of(ev, EVENT_RESERVED);
    for (k, v) in &custom {
        out.insert(k.clone(), v.clone());
    }
    out.insert("custom".into(), Value::Object(custom));
    let out = Value::Object(out);
    events::to_watchers(app, cid, &out);
    Ok(json!({ "event": out }))
}

/// `POST /channels/{type}/{id}/read` → `MarkReadResponse`.
pub(crate) fn mark_read(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    existing(app, cid)?;
    let user = req.acting_user(None)?;
    if let Some(thread) = req.body.get("thread_id").filter(|v| !v.is_null()) {
        let thread = thread
            .as_str()
            .ok_or_else(|| ApiError::input("thread_id must be a string"))?;
        let event = crate::thread_marks::mark_read(app, cid, &user, thread)?;
        return Ok(json!({ "event": event }));
    }
    let now = OffsetDateTime::now_utc();
    let Some(ch) = app.channels.get_mut(cid) else {
        return Err(ApiError::not_found(format!(
            "channel \"{cid}\" does not exist"
        )));
    };
    let last_id = ch
        .messages
        .iter()
        .rev()
        .find(|m| m.parent_id.is_none() || m.show_in_channel)
        .map(|m| m.id.clone());
    // Only members have read state; a non-member's read is acknowledged
    // and announced but changes no counters.
    if let Some(read) = ch.reads.get_mut(&user) {
        read.last_read = now;
        read.last_read_message_id.clone_from(&last_id);
        read.unread = 0;
    }
    let event = events::read(app, cid, &user, last_id.as_deref(), now);
    Ok(json!({ "event": event }))
}

/// `POST /channels/{type}/{id}/stop-watching` → `Response`.
pub(crate) fn stop_watching(
    app: &mut AppData,
    req: &Req<'_>,
    cid: &str,
) -> Result<Value, ApiError> {
    existing(app, cid)?;
    let user = req.acting_user(None)?;
    // A stale or foreign connection_id has nothing to unbind; not an error,
    // since the SDK may stop watching right after its socket was replaced.
    let own = req
        .query
        .get("connection_id")
        .filter(|id| app.conns.get(*id).is_some_and(|c| c.user_id == user));
    if let Some(conn) = own.cloned() {
        if app.unbind(&conn, &user, cid) {
            events::watching(app, cid, &user, false, OffsetDateTime::now_utc());
        }
    }
    Ok(json!({}))
}
