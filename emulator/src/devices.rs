//! Push devices: the connect payload's `device`, `POST /devices` (CreateDevice), `GET /devices`
//! (ListDevices) and `DELETE /devices?id=` (DeleteDevice), and their `DeviceResponse` shape, which
//! `me.devices` and the user's own `FullUserResponse` carry. A device id is a push token, so it
//! belongs to one user of the app at a time: registering it for another user moves it.

use std::collections::HashMap;

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::auth::Identity;
use crate::config::MAX_DEVICES_PER_USER;
use crate::error::ApiError;
use crate::render;
use crate::store::{AppData, Device};

/// `CreateDeviceRequest.push_provider`'s enum.
const PUSH_PROVIDERS: &[&str] = &["firebase", "apn", "huawei", "xiaomi"];
/// `CreateDeviceRequest.id`'s `maxLength`.
const MAX_DEVICE_ID: usize = 255;
/// Longest accepted `push_provider_name` (the spec gives none; it names an app config entry).
const MAX_PROVIDER_NAME: usize = 255;

/// Checks a `CreateDeviceRequest`-shaped object (`{id, push_provider, push_provider_name?}`).
///
/// # Errors
/// Code 4 when a field is missing, of the wrong type, too long, or not a known provider.
pub(crate) fn parse(value: &Value) -> Result<Device, ApiError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::input("device must be an object"))?;
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= MAX_DEVICE_ID)
        .ok_or_else(|| {
            ApiError::input(format!(
                "device id must be a string of 1 to {MAX_DEVICE_ID} bytes"
            ))
        })?;
    let provider = obj
        .get("push_provider")
        .and_then(Value::as_str)
        .filter(|p| PUSH_PROVIDERS.contains(p))
        .ok_or_else(|| {
            ApiError::input(format!(
                "push_provider must be one of {}",
                PUSH_PROVIDERS.join(", ")
            ))
        })?;
    let name = match obj.get("push_provider_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if n.len() <= MAX_PROVIDER_NAME => Some(n.clone()),
        Some(_) => {
            return Err(ApiError::input(format!(
                "push_provider_name must be a string of at most {MAX_PROVIDER_NAME} bytes"
            )))
        }
    };
    Ok(Device {
        id: id.to_owned(),
        push_provider: provider.to_owned(),
        push_provider_name: name,
        created_at: OffsetDateTime::now_utc(),
    })
}

/// Registers `device` for `user_id`. The same id already registered for this user has no effect
/// (CreateDevice's documented behaviour); registered for another user, it moves. Beyond
/// `MAX_DEVICES_PER_USER` the oldest device is forgotten.
pub(crate) fn register(app: &mut AppData, user_id: &str, device: Device, now: OffsetDateTime) {
    for (id, user) in &mut app.users {
        if id != user_id {
            user.devices.retain(|d| d.id != device.id);
        }
    }
    let user = app.ensure_user(user_id, now);
    if user.devices.iter().any(|d| d.id == device.id) {
        return;
    }
    user.devices.push(device);
    if user.devices.len() > MAX_DEVICES_PER_USER {
        let excess = user.devices.len() - MAX_DEVICES_PER_USER;
        user.devices.drain(..excess);
        app.metrics.bound("devices_per_user");
    }
}

/// The user a devices call acts for: a user token acts for itself (naming anyone else is
/// refused), a server token must name the user.
fn owner(ident: &Identity, named: Option<&str>) -> Result<String, ApiError> {
    match (ident, named) {
        (Identity::User(me), None) => Ok(me.clone()),
        (Identity::User(me), Some(other)) if other == me => Ok(me.clone()),
        (Identity::User(_), Some(_)) => Err(ApiError::forbidden(
            "a user token can only manage its own devices",
        )),
        (Identity::Server, Some(id)) => {
            crate::req::check_id(id)?;
            Ok(id.to_owned())
        }
        (Identity::Server, None) => Err(ApiError::input(
            "server-side requests must name a user (user_id)",
        )),
    }
}

/// `POST /devices` → `Response` (201).
pub(crate) fn create(app: &mut AppData, ident: &Identity, body: &Value) -> Result<Value, ApiError> {
    let user = owner(ident, body.get("user_id").and_then(Value::as_str))?;
    let device = parse(body)?;
    register(app, &user, device, OffsetDateTime::now_utc());
    Ok(json!({}))
}

/// `GET /devices` → `ListDevicesResponse`.
pub(crate) fn list(
    app: &AppData,
    ident: &Identity,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let user = owner(ident, query.get("user_id").map(String::as_str))?;
    Ok(json!({ "devices": render::devices(app, &user) }))
}

/// `DELETE /devices?id=` → `Response`. An id the user has no device with is an input error.
pub(crate) fn delete(
    app: &mut AppData,
    ident: &Identity,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let user = owner(ident, query.get("user_id").map(String::as_str))?;
    let id = query
        .get("id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::input("id is required"))?;
    let removed = app.users.get_mut(&user).is_some_and(|u| {
        let before = u.devices.len();
        u.devices.retain(|d| &d.id != id);
        u.devices.len() < before
    });
    if removed {
        Ok(json!({}))
    } else {
        Err(ApiError::input(format!(
            "device {id} is not registered for user {user}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Device {
        Device {
            id: id.to_owned(),
            push_provider: "firebase".to_owned(),
            push_provider_name: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn oldest_device_goes_beyond_the_limit_and_ids_move_between_users() {
        let mut app = AppData::default();
        let now = OffsetDateTime::UNIX_EPOCH;
        for i in 0..=MAX_DEVICES_PER_USER {
            register(&mut app, "alice", device(&format!("d{i}")), now);
        }
        let ids: Vec<String> = app.users["alice"]
            .devices
            .iter()
            .map(|d| d.id.clone())
            .collect();
        assert_eq!(ids.len(), MAX_DEVICES_PER_USER);
        assert_eq!(ids.first().map(String::as_str), Some("d1"), "d0 forgotten");
        register(&mut app, "alice", device("d1"), now);
        assert_eq!(app.users["alice"].devices.len(), MAX_DEVICES_PER_USER);
        register(&mut app, "bob", device("d1"), now);
        assert!(app.users["alice"].devices.iter().all(|d| d.id != "d1"));
        assert_eq!(app.users["bob"].devices.len(), 1);
    }

    #[test]
    fn parse_refuses_bad_devices() {
        for bad in [
            json!("x"),
            json!({"push_provider": "firebase"}),
            json!({"id": "", "push_provider": "firebase"}),
            json!({"id": "a", "push_provider": "carrier-pigeon"}),
            json!({"id": "a", "push_provider": "apn", "push_provider_name": 3}),
            json!({"id": "x".repeat(256), "push_provider": "apn"}),
        ] {
            assert_eq!(parse(&bad).map(|_| ()).unwrap_err().code, 4, "{bad}");
        }
        let ok = parse(&json!({"id": "t", "push_provider": "apn", "push_provider_name": "prod"}));
        assert!(ok.is_ok_and(|d| d.push_provider_name.as_deref() == Some("prod")));
    }
}
