//! JSON shapes of users, channels, members, messages and read state, exactly
//! as the OpenAPI schemas (`UserResponse`, `FullUserResponse`,
//! `OwnUserResponse`, `ChannelResponse`, `MessageResponse`, …) require them.
//! Custom fields go both into `custom` (the spec) and onto the top level
//! (where the JS SDK reads them, e.g. `user.name`, `channel.data.name`).

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::store::{AppData, Channel, Member, Message, ReadState, User};

/// User keys with a typed meaning; everything else a client sends is custom.
pub(crate) const USER_TYPED: &[&str] = &[
    "name",
    "image",
    "language",
    "teams",
    "invisible",
    "privacy_settings",
];

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
];

/// RFC 3339 with nanoseconds, as Stream sends timestamps.
pub(crate) fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// `UserResponse` / `UserResponseCommonFields`.
pub(crate) fn user(app: &AppData, id: &str) -> Value {
    Value::Object(user_map(app, id))
}

/// `UserResponsePrivacyFields`: a user plus `invisible` and `privacy_settings`.
pub(crate) fn user_with_privacy(app: &AppData, id: &str) -> Value {
    let mut map = user_map(app, id);
    add_privacy(app, id, &mut map);
    Value::Object(map)
}

/// `FullUserResponse` (`GET /users`, `POST/PATCH /users`).
pub(crate) fn full_user(app: &AppData, id: &str, with_privacy: bool) -> Value {
    let mut map = own_map(app, id);
    map.insert("shadow_banned".into(), json!(false));
    if !with_privacy {
        map.remove("privacy_settings");
    }
    Value::Object(map)
}

/// `OwnUserResponse`: the `me` of the connect frame.
pub(crate) fn own_user(app: &AppData, id: &str) -> Value {
    Value::Object(own_map(app, id))
}

fn own_map(app: &AppData, id: &str) -> Map<String, Value> {
    let mut map = user_map(app, id);
    add_privacy(app, id, &mut map);
    let c = app.counters(id);
    // Every array must be present: the SDK loops over mutes/channel_mutes.
    for key in [
        "devices",
        "mutes",
        "channel_mutes",
        "latest_hidden_channels",
    ] {
        map.insert(key.into(), json!([]));
    }
    map.insert("unread_count".into(), json!(c.total_unread));
    map.insert("total_unread_count".into(), json!(c.total_unread));
    map.insert("unread_channels".into(), json!(c.unread_channels));
    map.insert("unread_threads".into(), json!(0));
    map
}

fn user_map(app: &AppData, id: &str) -> Map<String, Value> {
    let Some(u) = app.users.get(id) else {
        // Only reachable for ids that never made it into the store.
        let epoch = ts(OffsetDateTime::UNIX_EPOCH);
        return base_map(id, "user", &Map::new(), &epoch, &epoch, None, false);
    };
    base_map(
        &u.id,
        &u.role,
        &u.fields,
        &ts(u.created_at),
        &ts(u.updated_at),
        u.last_active,
        app.is_online(id),
    )
}

fn base_map(
    id: &str,
    role: &str,
    fields: &Map<String, Value>,
    created: &str,
    updated: &str,
    last_active: Option<OffsetDateTime>,
    online: bool,
) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("id".into(), json!(id));
    map.insert("role".into(), json!(role));
    map.insert("created_at".into(), json!(created));
    map.insert("updated_at".into(), json!(updated));
    map.insert("banned".into(), json!(false));
    map.insert("online".into(), json!(online));
    map.insert("blocked_user_ids".into(), json!([]));
    map.insert(
        "language".into(),
        fields.get("language").cloned().unwrap_or(json!("")),
    );
    map.insert(
        "teams".into(),
        fields.get("teams").cloned().unwrap_or(json!([])),
    );
    if let Some(t) = last_active {
        map.insert("last_active".into(), json!(ts(t)));
    }
    for key in ["name", "image"] {
        if let Some(v) = fields.get(key) {
            map.insert(key.into(), v.clone());
        }
    }
    let custom = custom_of(fields, USER_TYPED);
    flatten(&mut map, &custom);
    map.insert("custom".into(), Value::Object(custom));
    map
}

fn add_privacy(app: &AppData, id: &str, map: &mut Map<String, Value>) {
    let user = app.users.get(id);
    let invisible = user
        .and_then(|u| u.fields.get("invisible"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    map.insert("invisible".into(), json!(invisible));
    map.insert("privacy_settings".into(), privacy(user));
}

/// `PrivacySettingsResponse` with every flag spelled out (absent = enabled).
pub(crate) fn privacy(user: Option<&User>) -> Value {
    let stored = user.and_then(|u| u.fields.get("privacy_settings"));
    let mut out = Map::new();
    for key in ["typing_indicators", "read_receipts", "delivery_receipts"] {
        let enabled = stored
            .and_then(|p| p.get(key))
            .and_then(|s| s.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        out.insert(key.into(), json!({ "enabled": enabled }));
    }
    Value::Object(out)
}

/// Custom fields: everything in `fields` not in `typed`.
pub(crate) fn custom_of(fields: &Map<String, Value>, typed: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .filter(|(k, _)| !typed.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Copies custom fields onto the top level without shadowing spec fields.
fn flatten(map: &mut Map<String, Value>, custom: &Map<String, Value>) {
    for (k, v) in custom {
        if !map.contains_key(k) {
            map.insert(k.clone(), v.clone());
        }
    }
}

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
    flatten(&mut map, &ch.data);
    map.insert("custom".into(), Value::Object(ch.data.clone()));
    Value::Object(map)
}

/// `ChannelConfigWithInfo` for every channel type: everything the SDK gates
/// on (typing, read, connect events) is enabled.
fn config(kind: &str, created: &str) -> Value {
    json!({
        "name": kind, "created_at": created, "updated_at": created,
        "typing_events": true, "read_events": true, "connect_events": true,
        "delivery_events": true, "search": true, "reactions": true, "replies": true,
        "quotes": true, "mutes": true, "uploads": true, "url_enrichment": false,
        "custom_events": true, "push_notifications": true, "reminders": false,
        "mark_messages_pending": false, "polls": false, "user_message_reminders": false,
        "shared_locations": false, "count_messages": true, "message_retention": "infinite",
        "max_message_length": super::MAX_MESSAGE_TEXT, "automod": "disabled",
        "automod_behavior": "flag", "skip_last_msg_update_for_system_msgs": false,
        "commands": [],
    })
}

/// `ChannelMemberResponse`.
pub(crate) fn member(app: &AppData, m: &Member) -> Value {
    let at = ts(m.created_at);
    json!({
        "user_id": m.user_id, "user": user(app, &m.user_id),
        "created_at": at, "updated_at": at,
        "banned": false, "shadow_banned": false, "notifications_muted": false,
        "channel_role": if m.is_creator { "channel_moderator" } else { "channel_member" },
        "role": if m.is_creator { "owner" } else { "member" },
        "custom": {},
    })
}

/// `MessageResponse`.
pub(crate) fn message(app: &AppData, cid: &str, m: &Message) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), json!(m.id));
    map.insert("text".into(), json!(m.text));
    map.insert("html".into(), json!(html(&m.text)));
    let kind = if m.parent_id.is_some() {
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
    for key in [
        "latest_reactions",
        "own_reactions",
        "mentioned_users",
        "restricted_visibility",
    ] {
        map.insert(key.into(), json!([]));
    }
    map.insert("reaction_counts".into(), json!({}));
    map.insert("reaction_scores".into(), json!({}));
    map.insert("reply_count".into(), json!(m.reply_count));
    map.insert("deleted_reply_count".into(), json!(0));
    for key in ["shadowed", "mentioned_channel", "mentioned_here", "pinned"] {
        map.insert(key.into(), json!(false));
    }
    map.insert("silent".into(), json!(m.silent));
    if let Some(parent) = &m.parent_id {
        map.insert("parent_id".into(), json!(parent));
        map.insert("show_in_channel".into(), json!(m.show_in_channel));
    }
    flatten(&mut map, &m.custom);
    map.insert("custom".into(), Value::Object(m.custom.clone()));
    Value::Object(map)
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
