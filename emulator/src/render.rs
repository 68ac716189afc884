//! JSON shapes of users (`UserResponse`, `UserResponsePrivacyFields`,
//! `FullUserResponse`, `OwnUserResponse`, `DeviceResponse`) exactly as the OpenAPI schemas
//! require them, plus the helpers shared with `render_chat`.
//! Custom fields go both into `custom` (the spec) and onto the top level
//! (where the JS SDK reads them, e.g. `user.name`, `channel.data.name`).

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::{AppData, Device, User};

/// User keys with a typed meaning; everything else a client sends is custom.
pub(crate) const USER_TYPED: &[&str] = &[
    "name",
    "image",
    "language",
    "teams",
    "invisible",
    "privacy_settings",
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
        // Another user's push tokens are as private as their settings.
        map.remove("privacy_settings");
        map.insert("devices".into(), json!([]));
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
    map.insert("devices".into(), devices(app, id));
    map.insert("mutes".into(), mutes(app, id));
    map.insert("channel_mutes".into(), channel_mutes(app, id));
    map.insert("blocked_user_ids".into(), json!(app.social.blocked_ids(id)));
    let mut hidden: Vec<&String> = app
        .channels
        .values()
        .filter(|ch| ch.members.iter().any(|m| m.user_id == id && m.hidden))
        .map(|ch| &ch.cid)
        .collect();
    hidden.sort();
    map.insert("latest_hidden_channels".into(), json!(hidden));
    map.insert("unread_count".into(), json!(c.total_unread));
    map.insert("total_unread_count".into(), json!(c.total_unread));
    map.insert("unread_channels".into(), json!(c.unread_channels));
    map.insert("unread_threads".into(), json!(c.unread_threads));
    map
}

fn user_map(app: &AppData, id: &str) -> Map<String, Value> {
    let Some(u) = app.users.get(id) else {
        // Only reachable for ids that never made it into the store.
        let epoch = ts(OffsetDateTime::UNIX_EPOCH);
        return base_map(id, "user", &Map::new(), &epoch, &epoch, None, false);
    };
    let mut map = base_map(
        &u.id,
        &u.role,
        &u.fields,
        &ts(u.created_at),
        &ts(u.updated_at),
        u.last_active,
        app.is_online(id),
    );
    // A shadow ban is invisible: the user and everyone else see an ordinary user.
    if app.social.global_ban(id).is_some_and(|b| !b.shadow) {
        map.insert("banned".into(), json!(true));
    }
    if let Some(social) = app.social.users.get(id) {
        for (key, at) in [
            ("deactivated_at", social.deactivated_at),
            ("deleted_at", social.deleted_at),
        ] {
            if let Some(t) = at {
                map.insert(key.into(), json!(ts(t)));
            }
        }
    }
    if let Some(t) = u.revoke_tokens_issued_before {
        map.insert("revoke_tokens_issued_before".into(), json!(ts(t)));
    }
    map
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

/// `DeviceResponse` list of a user, oldest first.
pub(crate) fn devices(app: &AppData, user_id: &str) -> Value {
    let list: Vec<Value> = app
        .users
        .get(user_id)
        .map(|u| u.devices.iter().map(|d| device(user_id, d)).collect())
        .unwrap_or_default();
    Value::Array(list)
}

fn device(user_id: &str, d: &Device) -> Value {
    let mut v = json!({
        "id": d.id,
        "push_provider": d.push_provider,
        "user_id": user_id,
        "created_at": ts(d.created_at),
        "disabled": false,
    });
    if let (Some(name), Some(map)) = (&d.push_provider_name, v.as_object_mut()) {
        map.insert("push_provider_name".into(), json!(name));
    }
    v
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
pub(crate) fn flatten(map: &mut Map<String, Value>, custom: &Map<String, Value>) {
    for (k, v) in custom {
        if !map.contains_key(k) {
            map.insert(k.clone(), v.clone());
        }
    }
}

/// `UserMuteResponse` list of the users `id` muted (expired mutes left out).
pub(crate) fn mutes(app: &AppData, id: &str) -> Value {
    let now = OffsetDateTime::now_utc();
    let Some(social) = app.social.users.get(id) else {
        return json!([]);
    };
    let list: Vec<Value> = social
        .mutes
        .iter()
        .filter(|m| m.expires.is_none_or(|t| t > now))
        .map(|m| {
            let mut v = json!({
                "user": user(app, id),
                "target": user(app, &m.target),
                "created_at": ts(m.created_at),
                "updated_at": ts(m.created_at),
            });
            if let (Some(t), Some(obj)) = (m.expires, v.as_object_mut()) {
                obj.insert("expires".into(), json!(ts(t)));
            }
            v
        })
        .collect();
    Value::Array(list)
}

/// `ChannelMute` list of the channels `id` muted. The channel is the `ChannelResponse`'s required
/// fields only: the SDK reads `channel.cid`, and the full rendering lives above this module.
pub(crate) fn channel_mutes(app: &AppData, id: &str) -> Value {
    let now = OffsetDateTime::now_utc();
    let Some(social) = app.social.users.get(id) else {
        return json!([]);
    };
    let list: Vec<Value> = social
        .channel_mutes
        .iter()
        .filter(|m| m.expires.is_none_or(|t| t > now))
        .filter_map(|m| app.channels.get(&m.cid).map(|ch| (m, ch)))
        .map(|(m, ch)| {
            let mut v = json!({
                "user": user(app, id),
                "channel": {
                    "id": ch.id, "type": ch.kind, "cid": ch.cid,
                    "created_at": ts(ch.created_at), "updated_at": ts(ch.updated_at),
                    "frozen": false, "disabled": false, "custom": ch.data,
                },
                "created_at": ts(m.created_at),
                "updated_at": ts(m.created_at),
            });
            if let (Some(t), Some(obj)) = (m.expires, v.as_object_mut()) {
                obj.insert("expires".into(), json!(ts(t)));
            }
            v
        })
        .collect();
    Value::Array(list)
}
