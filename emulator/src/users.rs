//! Users: validation of client-supplied user objects (connect `user_details`,
//! `POST /users`, `PATCH /users`) and the user REST handlers; `GET /users` is in `user_query`.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::auth::Identity;
use crate::config::MAX_USER_BYTES;
use crate::error::ApiError;
use crate::req::check_id;
use crate::store::AppData;
use crate::{presence, render};

/// Keys the server manages; clients cannot set them.
const READ_ONLY: &[&str] = &[
    "id",
    "role",
    "created_at",
    "updated_at",
    "last_active",
    "online",
    "banned",
    "blocked_user_ids",
    "devices",
    "mutes",
    "channel_mutes",
    "unread_count",
    "total_unread_count",
    "unread_channels",
    "unread_threads",
    "shadow_banned",
    "deactivated_at",
    "deleted_at",
    "revoke_tokens_issued_before",
    "teams_role",
    "avg_response_time",
    "push_preferences",
    "latest_hidden_channels",
    "total_unread_count_by_team",
    "ban_expires",
    "anon",
];

/// Validates a user object and returns the fields to store. `custom: {…}`
/// (new-style SDKs) is flattened into plain custom fields.
///
/// # Errors
/// Code 4 if the object is too big or a typed field has the wrong type.
pub(crate) fn validate(details: &Value) -> Result<Map<String, Value>, ApiError> {
    let obj = details
        .as_object()
        .ok_or_else(|| ApiError::input("user must be a JSON object"))?;
    if details.to_string().len() > MAX_USER_BYTES {
        return Err(ApiError::input(format!(
            "user object is larger than {MAX_USER_BYTES} bytes"
        )));
    }
    let mut out = Map::new();
    for (key, value) in obj {
        if READ_ONLY.contains(&key.as_str()) {
            continue;
        }
        if key == "custom" {
            let custom = value
                .as_object()
                .ok_or_else(|| ApiError::input("user.custom must be an object"))?;
            for (k, v) in custom {
                if !READ_ONLY.contains(&k.as_str()) && !render::USER_TYPED.contains(&k.as_str()) {
                    out.insert(k.clone(), v.clone());
                }
            }
            continue;
        }
        check_typed(key, value)?;
        out.insert(key.clone(), value.clone());
    }
    Ok(out)
}

fn check_typed(key: &str, value: &Value) -> Result<(), ApiError> {
    let ok = match key {
        "name" | "image" | "language" => value.is_string(),
        "invisible" => value.is_boolean(),
        "teams" => value
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)),
        "privacy_settings" => value.as_object().is_some_and(|p| {
            p.iter().all(|(k, s)| match k.as_str() {
                "typing_indicators" | "read_receipts" | "delivery_receipts" => s
                    .as_object()
                    .is_some_and(|s| s.get("enabled").is_none_or(Value::is_boolean)),
                _ => true,
            })
        }),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::input(format!("user.{key} has the wrong type")))
    }
}

/// Upserts `fields` into user `id`; `replace` drops fields not given (POST
/// /users semantics), otherwise they merge (connect `user_details`).
pub(crate) fn apply(
    app: &mut AppData,
    id: &str,
    fields: Map<String, Value>,
    replace: bool,
    now: OffsetDateTime,
) {
    let user = app.ensure_user(id, now);
    if replace {
        user.fields = fields;
    } else {
        user.fields.extend(fields);
    }
    user.updated_at = now;
}

/// A user token may only change its own user; a server token any user.
fn may_edit(ident: &Identity, id: &str) -> Result<(), ApiError> {
    match ident {
        Identity::Server => Ok(()),
        Identity::User(me) if me == id => Ok(()),
        Identity::User(_) => Err(ApiError::forbidden(
            "a user token can only update its own user",
        )),
    }
}

/// `POST /users` with `{"users":{id:{…}}}` → `UpdateUsersResponse`.
pub(crate) fn upsert(app: &mut AppData, ident: &Identity, body: &Value) -> Result<Value, ApiError> {
    let users = body
        .get("users")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::input("users must be an object keyed by user id"))?;
    let mut staged = Vec::new();
    for (key, user) in users {
        let id = user.get("id").and_then(Value::as_str).unwrap_or(key);
        check_id(id)?;
        may_edit(ident, id)?;
        staged.push((id.to_owned(), validate(user)?));
    }
    let mut revokes = Vec::new();
    for (key, user) in users {
        let id = user.get("id").and_then(Value::as_str).unwrap_or(key);
        if let Some(r) = revocation(ident, user.get("revoke_tokens_issued_before"))? {
            revokes.push((id.to_owned(), r));
        }
    }
    let now = OffsetDateTime::now_utc();
    let ids: Vec<String> = staged.iter().map(|(id, _)| id.clone()).collect();
    let was_online = online_of(app, &ids);
    for (id, fields) in staged {
        apply(app, &id, fields, true, now);
    }
    for (id, cutoff) in revokes {
        app.ensure_user(&id, now).revoke_tokens_issued_before = cutoff;
    }
    Ok(finish(app, &ids, &was_online, now))
}

/// `revoke_tokens_issued_before` in a user object: only a server token may set it (a user token's
/// value is ignored like any other server-managed field). `Some(None)` clears it.
pub(crate) fn revocation(
    ident: &Identity,
    value: Option<&Value>,
) -> Result<Option<Option<OffsetDateTime>>, ApiError> {
    if *ident != Identity::Server {
        return Ok(None);
    }
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => {
            let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    ApiError::input("revoke_tokens_issued_before must be an RFC 3339 date-time")
                })?;
            Ok(Some(Some(t)))
        }
        Some(_) => Err(ApiError::input(
            "revoke_tokens_issued_before must be a date-time string or null",
        )),
    }
}

/// `PATCH /users` with `{"users":[{"id","set","unset"}]}` → `UpdateUsersResponse`.
pub(crate) fn partial(
    app: &mut AppData,
    ident: &Identity,
    body: &Value,
) -> Result<Value, ApiError> {
    let ops = body
        .get("users")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::input("users must be an array of partial updates"))?;
    let mut staged = Vec::new();
    let mut revokes = Vec::new();
    for op in ops {
        let id = op
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::input("partial update needs an id"))?;
        check_id(id)?;
        may_edit(ident, id)?;
        let set = validate(op.get("set").unwrap_or(&json!({})))?;
        let unset: Vec<String> = match op.get("unset") {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|_| ApiError::input("unset must be an array of field names"))?,
        };
        let mut revoke = revocation(
            ident,
            op.get("set")
                .and_then(|s| s.get("revoke_tokens_issued_before")),
        )?;
        if *ident == Identity::Server && unset.iter().any(|k| k == "revoke_tokens_issued_before") {
            revoke = Some(None);
        }
        revokes.push((id.to_owned(), revoke));
        staged.push((id.to_owned(), set, unset));
    }
    let mut merged = Vec::new();
    for (id, set, unset) in staged {
        let mut fields = app
            .users
            .get(&id)
            .map(|u| u.fields.clone())
            .unwrap_or_default();
        for key in &unset {
            fields.remove(key);
        }
        fields.extend(set);
        if Value::Object(fields.clone()).to_string().len() > MAX_USER_BYTES {
            return Err(ApiError::input("user object would exceed the size limit"));
        }
        merged.push((id, fields));
    }
    let now = OffsetDateTime::now_utc();
    let ids: Vec<String> = merged.iter().map(|(id, _)| id.clone()).collect();
    let was_online = online_of(app, &ids);
    for (id, fields) in merged {
        apply(app, &id, fields, true, now);
    }
    for (id, revoke) in revokes {
        if let Some(cutoff) = revoke {
            app.ensure_user(&id, now).revoke_tokens_issued_before = cutoff;
        }
    }
    Ok(finish(app, &ids, &was_online, now))
}

fn online_of(app: &AppData, ids: &[String]) -> Vec<bool> {
    ids.iter().map(|id| app.is_online(id)).collect()
}

/// Announces the updates (`user.updated`, and `user.presence.changed` where `invisible` flipped
/// the user's online status) and renders the response.
fn finish(app: &AppData, ids: &[String], was_online: &[bool], now: OffsetDateTime) -> Value {
    let mut users = Map::new();
    for (id, was) in ids.iter().zip(was_online) {
        presence::user_updated(app, id, now);
        if app.is_online(id) != *was {
            presence::changed(app, id, now);
        }
        users.insert(id.clone(), render::full_user(app, id, true));
    }
    json!({ "users": users, "membership_deletion_task_id": "" })
}
