//! Push devices and blocked users in the live `me`: the connect payload's `device`, registered
//! upstream with the user's own authority, and the `POST`/`DELETE /devices` and
//! `POST /users/block`/`unblock` calls that succeed through the REST proxy. Upstream sends no
//! event for these, so the gateway learns them where they pass.

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::me::Change;
use super::refresh::edit_hub;
use crate::auth::{Identity, TokenKind};
use crate::session::{Attachment, Hub, Hubs};

/// `CreateDeviceRequest.id`'s `maxLength` (a device id is a push token).
pub const MAX_DEVICE_ID: usize = 255;
/// Devices Stream keeps per user: registering one more forgets the oldest (its documented limit),
/// so the live `me` does the same.
pub const STREAM_MAX_DEVICES: usize = 25;

/// A push provider Stream knows (`DeviceFields.push_provider`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushProvider {
    Firebase,
    Apn,
    Huawei,
    Xiaomi,
}

/// A device as the connect payload (`DeviceFields`) or `POST /devices` (`CreateDeviceRequest`)
/// names it. Only these fields are ever sent upstream.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Device {
    pub id: String,
    pub push_provider: PushProvider,
    #[serde(default)]
    pub push_provider_name: Option<String>,
    #[serde(default, alias = "voip_token")]
    pub voip: Option<bool>,
    #[serde(default)]
    pub hardware_id: Option<String>,
}

/// Why a connect payload's `device` was refused (code 4 in the connect's error form).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("device must be an object with a string id and a push_provider")]
    Shape,
    #[error("device.id must be a string of 1 to 255 bytes")]
    Id,
    #[error("device.push_provider must be one of firebase, apn, huawei, xiaomi")]
    Provider,
}

impl Device {
    /// Validates a connect payload's `device`; `null` is no device.
    ///
    /// # Errors
    /// Not an object of `DeviceFields` shape, an empty id, or an unknown push provider.
    pub fn parse(raw: &str) -> Result<Option<Device>, DeviceError> {
        let v: Value = serde_json::from_str(raw).map_err(|_| DeviceError::Shape)?;
        let Value::Object(map) = &v else {
            return if v.is_null() {
                Ok(None)
            } else {
                Err(DeviceError::Shape)
            };
        };
        let provider = map.get("push_provider").cloned().unwrap_or(Value::Null);
        if serde_json::from_value::<PushProvider>(provider).is_err() {
            return Err(DeviceError::Provider);
        }
        let d: Device = serde_json::from_value(v).map_err(|_| DeviceError::Shape)?;
        if d.id.trim().is_empty() || d.id.len() > MAX_DEVICE_ID {
            return Err(DeviceError::Id);
        }
        Ok(Some(d))
    }

    /// The `CreateDeviceRequest` body: the device's fields only (the user is the token's).
    pub fn create_body(&self) -> String {
        let mut m = Map::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("push_provider".into(), provider(self.push_provider));
        if let Some(n) = &self.push_provider_name {
            m.insert("push_provider_name".into(), n.clone().into());
        }
        if let Some(v) = self.voip {
            m.insert("voip_token".into(), v.into());
        }
        if let Some(h) = &self.hardware_id {
            m.insert("hardware_id".into(), h.clone().into());
        }
        Value::Object(m).to_string()
    }

    /// The `DeviceResponse` of this device for `user`'s `me.devices`.
    fn response(&self, user: &str) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("push_provider".into(), provider(self.push_provider));
        if let Some(n) = &self.push_provider_name {
            m.insert("push_provider_name".into(), n.clone().into());
        }
        if let Some(v) = self.voip {
            m.insert("voip".into(), v.into());
        }
        if let Some(h) = &self.hardware_id {
            m.insert("hardware_id".into(), h.clone().into());
        }
        m.insert("user_id".into(), user.into());
        m.insert("created_at".into(), now_rfc3339().into());
        m.insert("disabled".into(), false.into());
        Value::Object(m)
    }
}

fn provider(p: PushProvider) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Registers a connecting session's `device` upstream (`POST /devices` with a user token of the
/// session's own user) unless its `me` already lists it, and adds it to the hub's `me`
/// (`stream_edge_device_registrations_total{outcome}`). A refusal or failure upstream does not
/// fail the connect: the session works without push, and the failure is counted and logged.
pub async fn register_device(att: &Attachment, device: Option<&Device>, hubs: &Hubs) {
    let Some(device) = device else { return };
    let hub = &att.hub;
    let outcome = if hub.me.has_device(&att.ready.me, &device.id) {
        "known"
    } else {
        let cutoff = hubs.revocations().cutoff(&hub.app, &hub.user);
        let body = device.create_body();
        let sent = crate::upstream::calls::create_device(
            hubs.upstream(),
            &hub.app,
            &hub.user,
            cutoff,
            body,
        );
        match sent.await {
            Ok(status) if status.is_success() => {
                add_device(hub, hubs, device);
                "ok"
            }
            Ok(status) => {
                tracing::debug!(app = %hub.app, %status, "device registration refused upstream");
                "refused"
            }
            Err(e) => {
                tracing::debug!(app = %hub.app, error = %e, "device registration failed");
                "error"
            }
        }
    };
    hub.metrics
        .device_registrations
        .with_label_values(&[outcome])
        .inc();
}

fn add_device(hub: &Hub, hubs: &Hubs, device: &Device) {
    edit_hub(hub, hubs, Change::Devices, |me| {
        add_to(me, device, &hub.user);
    });
}

/// Adds `device` to `me.devices` as Stream does: the same id again changes nothing
/// (CreateDevice's documented behaviour), and beyond [`STREAM_MAX_DEVICES`] the oldest goes.
pub(super) fn add_to(me: &mut Map<String, Value>, device: &Device, user: &str) {
    with_list(me, "devices", |list| {
        if list
            .iter()
            .any(|d| d.get("id").and_then(Value::as_str) == Some(&device.id))
        {
            return;
        }
        list.push(device.response(user));
        let excess = list.len().saturating_sub(STREAM_MAX_DEVICES);
        list.drain(..excess);
    });
}

/// Runs `f` on the array `me[key]` (an empty one when it is missing or not an array).
fn with_list(me: &mut Map<String, Value>, key: &str, f: impl FnOnce(&mut Vec<Value>)) {
    let mut items = match me.remove(key) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    f(&mut items);
    me.insert(key.into(), Value::Array(items));
}

/// A change to a user's `me` that a proxied REST call makes once it succeeds.
#[derive(Debug, PartialEq, Eq)]
pub enum RestChange {
    Nothing,
    AddDevice { user: String, device: Device },
    RemoveDevice { user: String, id: String },
    Block { user: String, other: String },
    Unblock { user: String, other: String },
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    blocked_user_id: Option<String>,
}

impl RestChange {
    /// Whether the proxy must read the request body of this call for the `me`.
    pub fn reads_body(method: &Method, path: &str) -> bool {
        *method == Method::POST && matches!(path, "/devices" | "/users/block" | "/users/unblock")
    }

    /// What the call (`query` and the body read for [`RestChange::reads_body`]) will change.
    pub fn of(
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: Option<&[u8]>,
        identity: Option<&Identity>,
    ) -> Self {
        let Some(identity) = identity else {
            return RestChange::Nothing;
        };
        if *method == Method::DELETE && path == "/devices" {
            let param = |name: &str| {
                url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            };
            return match (acting(identity, param("user_id")), param("id")) {
                (Some(user), Some(id)) => RestChange::RemoveDevice { user, id },
                _ => RestChange::Nothing,
            };
        }
        if !Self::reads_body(method, path) {
            return RestChange::Nothing;
        }
        let body = body.unwrap_or_default();
        let Ok(named) = serde_json::from_slice::<Named>(body) else {
            return RestChange::Nothing;
        };
        let Some(user) = acting(identity, named.user_id) else {
            return RestChange::Nothing;
        };
        match (path, named.blocked_user_id) {
            ("/devices", _) => match serde_json::from_slice::<Device>(body) {
                Ok(device) => RestChange::AddDevice { user, device },
                Err(_) => RestChange::Nothing,
            },
            ("/users/block", Some(other)) => RestChange::Block { user, other },
            ("/users/unblock", Some(other)) => RestChange::Unblock { user, other },
            _ => RestChange::Nothing,
        }
    }

    /// Applies the change to the user's hub, if the call succeeded and the hub is open.
    pub fn after(self, status: StatusCode, hubs: &Hubs, app: &str) {
        if !status.is_success() {
            return;
        }
        let (user, change): (&str, Change) = match &self {
            RestChange::Nothing => return,
            RestChange::AddDevice { user, .. } | RestChange::RemoveDevice { user, .. } => {
                (user, Change::Devices)
            }
            RestChange::Block { user, .. } | RestChange::Unblock { user, .. } => {
                (user, Change::Blocks)
            }
        };
        let Some(hub) = hubs.hub_of(app, user) else {
            return;
        };
        match self {
            RestChange::AddDevice { device, .. } => add_device(&hub, hubs, &device),
            RestChange::RemoveDevice { id, .. } => {
                edit_hub(&hub, hubs, change, |me| {
                    with_list(me, "devices", |l| {
                        l.retain(|d| d.get("id").and_then(Value::as_str) != Some(&id));
                    });
                });
            }
            RestChange::Block { other, .. } => {
                edit_hub(&hub, hubs, change, |me| {
                    with_list(me, "blocked_user_ids", |ids| {
                        if !ids.iter().any(|v| v.as_str() == Some(&other)) {
                            ids.push(other.clone().into());
                        }
                    });
                });
            }
            RestChange::Unblock { other, .. } => {
                edit_hub(&hub, hubs, change, |me| {
                    with_list(me, "blocked_user_ids", |ids| {
                        ids.retain(|v| v.as_str() != Some(&other));
                    });
                });
            }
            RestChange::Nothing => {}
        }
    }
}

/// Whose `me` a call changes: a user acts for itself (a call naming someone else changes no `me`
/// here, upstream decides whether it is allowed); a backend acts for the user it names.
fn acting(identity: &Identity, named: Option<String>) -> Option<String> {
    match identity.kind {
        TokenKind::Server => named,
        TokenKind::User | TokenKind::Dev => match named {
            Some(n) if n != *identity.user_id => None,
            _ => Some(identity.user_id.to_string()),
        },
        TokenKind::Anonymous => None,
    }
}
