//! JSON shapes of channels (`ChannelResponse` with its config and
//! capabilities), members, messages and read state, per the OpenAPI schemas.

use serde_json::{json, Map, Value};

use crate::render::{flatten, ts, user};
use crate::store::{AppData, Channel, Member, Message, ReadState};

/// What a channel member may do; the SDK gates typing and read on these.
const OWN_CAPABILITIES: &[&str] = &[
    "connect-events",
    "create-attachment",
    "delete-own-message",
    "delivery-events",
    "flag-message",
    "join-channel",
    "leave-channel",
    "mute-channel",
    "pin-message",
    "quote-message",
    "read-events",
    "search-messages",
    "send-custom-events",
    "send-links",
    "send-message",
    "send-reaction",
    "send-reply",
    "send-typing-events",
    "typing-events",
    "update-own-message",
    "upload-file",
    // Polls (stream-chat-react gates its poll UI on these).
    "send-poll",
    "cast-poll-vote",
    "query-poll-votes",
];

/// `ChannelResponse`, including the `config` and `own_capabilities` the SDK
/// needs before it will send typing events or mark read.
pub(crate) fn channel(app: &AppData, ch: &Channel) -> Value {
    let created = ts(ch.created_at);
    let mut map = Map::new();
    map.insert("id".into(), json!(ch.id));
    map.insert("type".into(), json!(ch.kind));
    map.insert("cid".into(), json!(ch.cid));
    map.insert("created_at".into(), json!(created));
    map.insert("updated_at".into(), json!(ts(ch.updated_at)));
    map.insert("frozen".into(), json!(false));
    map.insert("disabled".into(), json!(false));
    map.insert("hidden".into(), json!(false));
    map.insert("muted".into(), json!(false));
    map.insert("member_count".into(), json!(ch.members.len()));
    map.insert("message_count".into(), json!(ch.message_count));
    map.insert("created_by".into(), user(app, &ch.created_by));
    if let Some(t) = ch.last_message_at {
        map.insert("last_message_at".into(), json!(ts(t)));
    }
    map.insert("config".into(), config(&ch.kind, &created));
    map.insert("own_capabilities".into(), json!(OWN_CAPABILITIES));
    if let Some((t, by)) = app.social.truncated_at.get(&ch.cid) {
        map.insert("truncated_at".into(), json!(ts(*t)));
        if let Some(by) = by {
            map.insert("truncated_by".into(), user(app, by));
        }
    }
    flatten(&mut map, &ch.data);
    map.insert("custom".into(), Value::Object(ch.data.clone()));
    Value::Object(map)
}

/// `ChannelConfigWithInfo` for every channel type: everything the SDK gates
/// on (typing, read, connect events) is enabled.
pub(crate) fn config(kind: &str, created: &str) -> Value {
    json!({
        "name": kind, "created_at": created, "updated_at": created,
        "typing_events": true, "read_events": true, "connect_events": true,
        "delivery_events": true, "search": true, "reactions": true, "replies": true,
        "quotes": true, "mutes": true, "uploads": true, "url_enrichment": false,
        "custom_events": true, "push_notifications": true, "reminders": true,
        "mark_messages_pending": false, "polls": true, "user_message_reminders": true,
        "shared_locations": false, "count_messages": true, "message_retention": "infinite",
        "max_message_length": crate::config::MAX_MESSAGE_TEXT, "automod": "disabled",
        "automod_behavior": "flag", "skip_last_msg_update_for_system_msgs": false,
        "commands": [],
    })
}

/// `ChannelMemberResponse`.
pub(crate) fn member(app: &AppData, m: &Member) -> Value {
    let role = if m.is_creator {
        "owner"
    } else if m.moderator {
        "moderator"
    } else {
        "member"
    };
    let mut v = json!({
        "user_id": m.user_id, "user": user(app, &m.user_id),
        "created_at": ts(m.created_at), "updated_at": ts(m.updated_at),
        "banned": false, "shadow_banned": false, "notifications_muted": false,
        "channel_role": if m.moderator { "channel_moderator" } else { "channel_member" },
        "is_moderator": m.moderator,
        "role": role,
        "custom": {},
    });
    let Some(obj) = v.as_object_mut() else {
        return v;
    };
    let optional = [
        ("pinned_at", m.pinned_at),
        ("archived_at", m.archived_at),
        ("invite_accepted_at", m.invite_accepted_at),
        ("invite_rejected_at", m.invite_rejected_at),
    ];
    for (key, at) in optional {
        if let Some(t) = at {
            obj.insert(key.into(), json!(ts(t)));
        }
    }
    if m.invited {
        obj.insert("invited".into(), json!(true));
    }
    v
}

/// `MessageResponse` as every watcher sees it (events): no `own_reactions`.
pub(crate) fn message(app: &AppData, cid: &str, m: &Message) -> Value {
    message_for(app, cid, m, None)
}

/// `MessageResponse` as `viewer` sees it: with their `own_reactions`.
pub(crate) fn message_for(app: &AppData, cid: &str, m: &Message, viewer: Option<&str>) -> Value {
    let mut map = message_map(app, cid, m, viewer);
    // The quoted message comes without its own quote, as Stream sends it (and so no chain of quotes
    // is ever rendered).
    if let Some(q) = crate::render_extra::quoted(app, cid, m) {
        map.insert("quoted_message_id".into(), json!(q.id));
        let quoted = Value::Object(message_map(app, cid, q, viewer));
        map.insert("quoted_message".into(), quoted);
    }
    Value::Object(map)
}

fn message_map(app: &AppData, cid: &str, m: &Message, viewer: Option<&str>) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("id".into(), json!(m.id));
    map.insert("text".into(), json!(m.text));
    map.insert("html".into(), json!(html(&m.text)));
    let kind = if m.extra.system {
        "system"
    } else if m.parent_id.is_some() {
        "reply"
    } else {
        "regular"
    };
    map.insert("type".into(), json!(kind));
    map.insert("user".into(), user(app, &m.user_id));
    map.insert("cid".into(), json!(cid));
    map.insert("created_at".into(), json!(ts(m.created_at)));
    map.insert("updated_at".into(), json!(ts(m.updated_at)));
    map.insert("attachments".into(), Value::Array(m.attachments.clone()));
    for key in ["mentioned_users", "restricted_visibility"] {
        map.insert(key.into(), json!([]));
    }
    map.insert("reply_count".into(), json!(m.reply_count));
    map.insert("deleted_reply_count".into(), json!(0));
    for key in ["mentioned_channel", "mentioned_here"] {
        map.insert(key.into(), json!(false));
    }
    map.insert("shadowed".into(), json!(m.extra.shadowed));
    crate::render_extra::add(app, &mut map, m, viewer);
    map.insert("silent".into(), json!(m.silent));
    if let Some(parent) = &m.parent_id {
        map.insert("parent_id".into(), json!(parent));
        map.insert("show_in_channel".into(), json!(m.show_in_channel));
    }
    if let Some(t) = &m.thread {
        let users: Vec<Value> = t.participants.iter().map(|(id, _)| user(app, id)).collect();
        map.insert("thread_participants".into(), Value::Array(users));
    }
    flatten(&mut map, &m.custom);
    map.insert("custom".into(), Value::Object(m.custom.clone()));
    map
}

/// Minimal HTML rendering of message text (Stream renders markdown; plain
/// escaped paragraphs are a faithful subset).
fn html(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;");
    format!("<p>{escaped}</p>\n")
}

/// `ReadStateResponse`.
pub(crate) fn read(app: &AppData, user_id: &str, r: &ReadState) -> Value {
    let mut v = json!({
        "user": user(app, user_id),
        "last_read": ts(r.last_read),
        "unread_messages": r.unread,
    });
    if let (Some(id), Some(obj)) = (&r.last_read_message_id, v.as_object_mut()) {
        obj.insert("last_read_message_id".into(), json!(id));
    }
    v
}
