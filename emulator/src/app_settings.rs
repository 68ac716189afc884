//! App settings: `GET /app` (`getAppSettings`, which stream-chat-react reads for upload limits)
//! and `PATCH /app` (`updateAppSettings`, `revokeTokens`; server token only). The settings a
//! client can see (`name`, `async_url_enrich_enabled`, `auto_translation_enabled`,
//! `file_upload_config`, `image_upload_config`) are stored as given and returned; anything else
//! is accepted and ignored, as the emulator has no push or webhook machinery to configure.
//!
//! A change a client can see is an `app.updated` to every open connection of the app
//! (`stream-event-recipients.md`: all of each user's connections).

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::render::ts;
use crate::store::{frame, AppData};
use crate::users::revocation;

/// Settings a client sees, with their defaults.
fn defaults() -> Map<String, Value> {
    let upload = json!({
        "allowed_file_extensions": [],
        "blocked_file_extensions": [],
        "allowed_mime_types": [],
        "blocked_mime_types": [],
        "size_limit": 0,
    });
    let v = json!({
        "name": "stream-edge-emulator",
        "async_url_enrich_enabled": false,
        "auto_translation_enabled": false,
        "file_upload_config": upload.clone(),
        "image_upload_config": upload,
    });
    v.as_object().cloned().unwrap_or_default()
}

/// The visible settings: the defaults overlaid with what `PATCH /app` set.
fn visible(app: &AppData) -> Map<String, Value> {
    let mut out = defaults();
    out.extend(app.social.settings.clone());
    out
}

/// `GET /app` → `GetApplicationResponse` (the required `AppResponseFields`, plus the app's
/// `revoke_tokens_issued_before` when set, as Stream's server-side API returns it).
pub(crate) fn get(app: &AppData) -> Value {
    let mut fields = visible(app);
    fields.insert("id".into(), json!(1));
    fields.insert("placement".into(), json!(""));
    if let Some(t) = app.revoke_tokens_issued_before {
        fields.insert("revoke_tokens_issued_before".into(), json!(ts(t)));
    }
    json!({ "app": fields })
}

/// `PATCH /app` (server token only) → `Response`.
pub(crate) fn update(app: &mut AppData, ident: &Identity, body: &Value) -> Result<Value, ApiError> {
    if *ident != Identity::Server {
        return Err(ApiError::forbidden(
            "app settings can only be changed with a server token",
        ));
    }
    let mut changed = Map::new();
    for (key, value) in body.as_object().into_iter().flatten() {
        let ok = match key.as_str() {
            "async_url_enrich_enabled" | "auto_translation_enabled" => value.is_boolean(),
            "file_upload_config" | "image_upload_config" => upload_config_ok(value),
            _ => continue,
        };
        if !ok {
            return Err(ApiError::input(format!("{key} has the wrong type")));
        }
        changed.insert(key.clone(), value.clone());
    }
    if let Some(cutoff) = revocation(ident, body.get("revoke_tokens_issued_before"))? {
        app.revoke_tokens_issued_before = cutoff;
    }
    if !changed.is_empty() {
        for (key, value) in changed {
            let merged = match (defaults().remove(&key), value) {
                (Some(Value::Object(mut base)), Value::Object(patch)) => {
                    base.extend(patch);
                    Value::Object(base)
                }
                (_, value) => value,
            };
            app.social.settings.insert(key, merged);
        }
        let ev = json!({
            "type": "app.updated",
            "created_at": ts(OffsetDateTime::now_utc()),
            "custom": {},
            "app": visible(app),
        });
        let bytes = frame(&ev);
        for conn in app.conns.keys() {
            app.push(conn, &bytes);
        }
    }
    Ok(json!({}))
}

/// A `FileUploadConfig` patch: lists of strings and a non-negative `size_limit`.
fn upload_config_ok(value: &Value) -> bool {
    value.as_object().is_some_and(|o| {
        o.iter().all(|(k, v)| match k.as_str() {
            "size_limit" => v.as_u64().is_some(),
            _ => v
                .as_array()
                .is_some_and(|l| l.len() <= 100 && l.iter().all(Value::is_string)),
        })
    })
}
