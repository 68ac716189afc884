//! Channel types: `GET /channeltypes` and `GET /channeltypes/{name}` (the SDK's `getChannelType`).
//! Every type is served with the one configuration the emulator gives all channels (everything the
//! SDK gates on enabled); the built-in types are always listed, and any type a channel was created
//! with too. Stream's answer also carries the type's permission policies and grants; the emulator
//! checks no permissions beyond authorship and membership, so it lists none.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::render::ts;
use crate::render_chat;
use crate::store::AppData;

/// The types every Stream app starts with.
const BUILT_IN: [&str; 5] = ["messaging", "team", "livestream", "commerce", "gaming"];

/// Longest channel type name (Stream's limit).
const MAX_TYPE_NAME: usize = 64;

fn one(name: &str) -> Value {
    let created = ts(OffsetDateTime::UNIX_EPOCH);
    let mut v = render_chat::config(name, &created);
    if let Some(map) = v.as_object_mut() {
        map.insert("permissions".into(), json!([]));
        map.insert("grants".into(), json!({}));
    }
    v
}

fn known(app: &AppData, name: &str) -> bool {
    BUILT_IN.contains(&name) || app.channels.values().any(|c| c.kind == name)
}

/// `GET /channeltypes/{name}`: the type's configuration; 404 (code 16) for a type no channel has
/// and no app starts with.
pub(crate) fn get(app: &AppData, name: &str) -> Result<Value, ApiError> {
    if name.is_empty() || name.len() > MAX_TYPE_NAME || !known(app, name) {
        return Err(ApiError::not_found(format!(
            "channel type {name} does not exist"
        )));
    }
    Ok(one(name))
}

/// `GET /channeltypes`: every type, by name.
pub(crate) fn list(app: &AppData) -> Value {
    let mut names: Vec<&str> = BUILT_IN.to_vec();
    for c in app.channels.values() {
        if !names.contains(&c.kind.as_str()) {
            names.push(&c.kind);
        }
    }
    let types: Map<String, Value> = names.into_iter().map(|n| (n.to_string(), one(n))).collect();
    json!({ "channel_types": types })
}
