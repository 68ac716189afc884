//! REST bodies privacy touches. Only these are parsed; every other route streams through:
//! - responses carrying read state (`read[]` of channels and threads, `message.read` events replayed
//!   by `/sync`) lose the entries of users with read receipts off, except the requester's own;
//! - `POST /channels/{type}/{id}/event` with a typing event from a user whose typing indicators are
//!   off is answered by the gateway and never forwarded;
//! - `POST`/`PATCH /users` teach the registry the new settings.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::{Privacy, Settings, Wire};
use crate::config::OnLookupFailure;

/// The `event.type` of a send-event body, if it is a typing event.
pub fn typing_kind(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Ev {
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(Deserialize)]
    struct Req {
        event: Ev,
    }
    let req: Req = serde_json::from_slice(body).ok()?;
    matches!(req.event.kind.as_str(), "typing.start" | "typing.stop").then_some(req.event.kind)
}

/// The success answer for a swallowed typing event, in upstream's `SendEvent` shape (201).
pub fn typing_ack(kind: &str, channel_type: &str, channel_id: &str, user: &str) -> String {
    serde_json::json!({
        "event": {
            "type": kind,
            "cid": format!("{channel_type}:{channel_id}"),
            "channel_type": channel_type,
            "channel_id": channel_id,
            "user": {"id": user},
            "created_at": crate::transport::frames::now_rfc3339(),
            "custom": {},
        },
        "duration": "0.00ms",
    })
    .to_string()
}

/// Removes read state of users who hide it from a response for `requester`. Returns the original
/// bytes untouched when nothing is removed (no re-serialisation).
pub async fn filter_reads(body: Bytes, requester: &str, app: &str, privacy: &Privacy) -> Bytes {
    let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    let mut users = HashSet::new();
    visit_reads(&mut v, &mut |entry_user| {
        if entry_user != requester {
            users.insert(entry_user.to_string());
        }
        false
    });
    if users.is_empty() {
        return body;
    }
    let ids: Vec<&str> = users.iter().map(String::as_str).collect();
    let known = privacy.get_many(app, &ids).await;
    let drop_unknown = privacy.config().on_lookup_failure == OnLookupFailure::Drop;
    let hidden = |u: &str| -> bool {
        if u == requester {
            return false;
        }
        match known.get(u) {
            Some(s) => !s.read,
            None => drop_unknown,
        }
    };
    let mut removed = 0u64;
    visit_reads(&mut v, &mut |u| {
        let h = hidden(u);
        if h {
            removed += 1;
        }
        h
    });
    if removed == 0 {
        return body;
    }
    privacy
        .metrics
        .events_dropped
        .with_label_values(&["privacy_read_state", "read_state"])
        .inc_by(removed);
    serde_json::to_vec(&v).map(Bytes::from).unwrap_or(body)
}

/// Calls `f(user_id)` for each read-state entry; removes the entry when `f` returns true.
pub fn visit_reads(v: &mut Value, f: &mut dyn FnMut(&str) -> bool) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    retain_read(obj.get_mut("read"), f);
    for key in ["channels", "threads"] {
        if let Some(Value::Array(items)) = obj.get_mut(key) {
            for item in items {
                if let Some(o) = item.as_object_mut() {
                    retain_read(o.get_mut("read"), f);
                }
            }
        }
    }
    if let Some(Value::Object(thread)) = obj.get_mut("thread") {
        retain_read(thread.get_mut("read"), f);
    }
    // `/sync` replays events; a hidden user's `message.read` goes like a live one would.
    if let Some(Value::Array(events)) = obj.get_mut("events") {
        events.retain(|e| {
            let is_read = e.get("type").and_then(Value::as_str) == Some("message.read");
            match (is_read, e.pointer("/user/id").and_then(Value::as_str)) {
                (true, Some(u)) => !f(u),
                _ => true,
            }
        });
    }
}

fn retain_read(read: Option<&mut Value>, f: &mut dyn FnMut(&str) -> bool) {
    if let Some(Value::Array(entries)) = read {
        entries.retain(|e| match e.pointer("/user/id").and_then(Value::as_str) {
            Some(u) => !f(u),
            None => true,
        });
    }
}

/// Settings changes carried by a `POST /users` (upsert) or `PATCH /users` (partial) body: user id
/// → new settings, or `None` when the change cannot be computed locally (forget and look up).
pub fn user_updates(method: &http::Method, body: &[u8]) -> HashMap<String, Option<Settings>> {
    let mut out = HashMap::new();
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return out;
    };
    let settings = |p: &Value| -> Option<Settings> {
        let w: Wire = serde_json::from_value(p.clone()).ok()?;
        Some(w.over(Settings::default()))
    };
    if method == http::Method::POST {
        if let Some(users) = v.get("users").and_then(Value::as_object) {
            for (id, u) in users {
                let s = u.get("privacy_settings").and_then(settings);
                // An upsert without privacy_settings resets them to the defaults.
                out.insert(id.clone(), Some(s.unwrap_or_default()));
            }
        }
    } else if let Some(users) = v.get("users").and_then(Value::as_array) {
        for u in users {
            let Some(id) = u.get("id").and_then(Value::as_str) else {
                continue;
            };
            let set = u.pointer("/set/privacy_settings").and_then(settings);
            let unset = u.get("unset").and_then(Value::as_array).is_some_and(|a| {
                a.iter().any(|k| {
                    k.as_str()
                        .is_some_and(|k| k.starts_with("privacy_settings"))
                })
            });
            let touched = set.is_some()
                || unset
                || u.get("set")
                    .and_then(Value::as_object)
                    .is_some_and(|s| s.keys().any(|k| k.starts_with("privacy_settings")));
            if touched {
                out.insert(
                    id.to_string(),
                    if unset {
                        Some(Settings::default())
                    } else {
                        set
                    },
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_bodies() {
        assert_eq!(
            typing_kind(br#"{"event":{"type":"typing.start"}}"#).as_deref(),
            Some("typing.start")
        );
        assert_eq!(typing_kind(br#"{"event":{"type":"custom"}}"#), None);
        assert_eq!(typing_kind(b"nope"), None);
        let ack: Value =
            serde_json::from_str(&typing_ack("typing.stop", "messaging", "g", "u")).unwrap();
        assert_eq!(ack["event"]["cid"], "messaging:g");
    }

    #[test]
    fn visits_every_read_location() {
        let mut v: Value = serde_json::from_str(r#"{
            "read":[{"user":{"id":"a"}},{"user":{"id":"b"}}],
            "channels":[{"read":[{"user":{"id":"b"}}]}],
            "threads":[{"read":[{"user":{"id":"b"}}]}],
            "thread":{"read":[{"user":{"id":"b"}},{"user":{"id":"a"}}]},
            "events":[{"type":"message.read","user":{"id":"b"}},{"type":"message.new","user":{"id":"b"}}]
        }"#).unwrap();
        visit_reads(&mut v, &mut |u| u == "b");
        assert_eq!(v["read"].as_array().unwrap().len(), 1);
        assert!(v["channels"][0]["read"].as_array().unwrap().is_empty());
        assert!(v["threads"][0]["read"].as_array().unwrap().is_empty());
        assert_eq!(v["thread"]["read"].as_array().unwrap().len(), 1);
        assert_eq!(v["events"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn user_update_bodies() {
        let post = br#"{"users":{"a":{"id":"a","privacy_settings":{"typing_indicators":{"enabled":false}}},"b":{"id":"b"}}}"#;
        let u = user_updates(&http::Method::POST, post);
        assert!(!u["a"].unwrap().typing);
        assert_eq!(u["b"], Some(Settings::default()));
        let patch = br#"{"users":[{"id":"a","set":{"privacy_settings":{"read_receipts":{"enabled":false}}}},{"id":"c","set":{"name":"x"}}]}"#;
        let u = user_updates(&http::Method::PATCH, patch);
        assert!(!u["a"].unwrap().read);
        assert!(!u.contains_key("c"));
    }
}
