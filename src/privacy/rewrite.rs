//! REST bodies and events privacy touches. Only these are parsed; every other route streams through:
//! - responses and events carrying other users' read, delivery or typing state (the carriers of
//!   [`super::stream`]) lose the state of users who hide it, except the requester's own;
//! - `POST /channels/{type}/{id}/event` with a typing event from a user whose typing indicators are
//!   off is answered by the gateway and never forwarded;
//! - `POST`/`PATCH /users`: every user the request names is forgotten before it goes upstream, and
//!   the registry learns only from the users upstream's answer confirms.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::filter::Indicator;
use super::stream::{self, Shape};
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

/// A body the filter could not read: a response is answered with a 502, an event is dropped;
/// neither is passed on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unfilterable(String);

/// Removes other users' hidden read, delivery and typing state from a body for `requester` (the
/// carriers of [`super::stream`]; `""` for a caller without a user, who sees no hidden state).
/// The requester's own state always stays. Returns the original bytes when nothing is removed,
/// else a copy without the removed ranges: peak extra memory is one body.
///
/// # Errors
/// The body is not JSON the filter can read (fail closed: the caller refuses it).
pub async fn filter_body(
    body: Bytes,
    shape: Shape,
    requester: &str,
    app: &str,
    privacy: &Privacy,
) -> Result<Bytes, Unfilterable> {
    let mut users = stream::scan_users(&body, shape).map_err(|e| Unfilterable(e.to_string()))?;
    users.remove(requester);
    let ids: Vec<&str> = users.iter().map(String::as_str).collect();
    let known = if ids.is_empty() {
        HashMap::new()
    } else {
        privacy.get_many(app, &ids).await
    };
    let drop_unknown = privacy.config().on_lookup_failure == OnLookupFailure::Drop;
    let hidden = |u: &str, ind: Indicator| -> bool {
        if u == requester {
            return false;
        }
        match known.get(u) {
            Some(s) => !match ind {
                Indicator::Read => s.read,
                Indicator::Delivery => s.delivery,
                Indicator::Typing => s.typing,
            },
            None => drop_unknown,
        }
    };
    let mut out = Vec::new();
    let removed = stream::rewrite(&body, shape, &hidden, &mut out)
        .map_err(|e| Unfilterable(e.to_string()))?;
    if removed.total() == 0 {
        return Ok(body);
    }
    let dropped = &privacy.metrics.events_dropped;
    for (kind, n) in [
        (
            "read_state",
            removed.read_entries + removed.participant_reads,
        ),
        ("delivery_state", removed.delivery_fields),
        ("replayed_event", removed.events),
    ] {
        if n > 0 {
            dropped
                .with_label_values(&["privacy_read_state", kind])
                .inc_by(n);
        }
    }
    Ok(Bytes::from(out))
}

/// Calls `f(user_id)` for each read-state entry; removes the entry when `f` returns true. Not on
/// the request path: the tree-building reference that the streaming rewriter is checked against
/// (unit tests) and measured against (`benches/read_rewriter.rs`).
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

/// Every user a `POST /users` (upsert, keyed map) or `PATCH /users` (partial, list) body names,
/// by map key and by `id`: their cached settings are forgotten before the call goes upstream, so
/// nothing a client claims is ever taken as settings (issue: a map key differing from the `id`).
/// `None` when the body cannot be read: the caller then forgets every cached setting.
pub fn named_users(body: &[u8]) -> Option<HashSet<String>> {
    let mut out = HashSet::new();
    let v = serde_json::from_slice::<Value>(body).ok()?;
    let mut id_of = |u: &Value| {
        if let Some(id) = u.get("id").and_then(Value::as_str) {
            out.insert(id.to_string());
        }
    };
    match v.get("users") {
        Some(Value::Object(users)) => {
            for u in users.values() {
                id_of(u);
            }
            out.extend(users.keys().cloned());
        }
        Some(Value::Array(users)) => users.iter().for_each(&mut id_of),
        _ => {}
    }
    Some(out)
}

/// Learns settings from the users an `UpdateUsersResponse` confirms (`users` keyed by id; each
/// value's own `id` is what counts). A user without `privacy_settings` in the answer is forgotten
/// and looked up again when needed.
pub async fn learn_from_response(body: &[u8], app: &str, privacy: &Privacy) {
    #[derive(Deserialize)]
    struct Confirmed {
        id: String,
        #[serde(default)]
        privacy_settings: Option<Wire>,
    }
    #[derive(Deserialize)]
    struct Resp {
        users: HashMap<String, Confirmed>,
    }
    let Ok(resp) = serde_json::from_slice::<Resp>(body) else {
        return;
    };
    for u in resp.users.into_values() {
        match u.privacy_settings {
            Some(w) => privacy.set(app, &u.id, w.over(Settings::default())).await,
            None => privacy.forget(app, &u.id).await,
        }
    }
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

    fn registry() -> Privacy {
        let config = crate::config::Config::local_dev();
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        // Nothing is looked up: every user in these bodies is set first (unknown users would be
        // looked up at an address where nothing listens, and then follow the drop policy).
        let upstream = crate::upstream::Upstream::new(
            "http://127.0.0.1:9".parse().unwrap(),
            config.upstream.clone(),
            &config.apps,
            metrics.clone(),
        )
        .unwrap();
        Privacy::new(
            config.privacy.clone(),
            std::sync::Arc::new(upstream),
            metrics,
        )
    }

    const HIDER: Settings = Settings {
        typing: false,
        read: false,
        delivery: false,
    };

    #[tokio::test]
    async fn events_lose_embedded_state_of_hidden_users_for_others_only() {
        let p = registry();
        p.set("k", "hider", HIDER).await;
        p.set("k", "open", Settings::default()).await;
        let ev = br#"{"type":"thread.updated","thread":{"thread_participants":[{"user_id":"hider","last_read_at":"2026-01-01T00:00:00Z"},{"user_id":"open","last_read_at":"2026-01-02T00:00:00Z"}]}}"#;
        let out = filter_body(Bytes::from_static(ev), Shape::Event, "open", "k", &p)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let parts = v["thread"]["thread_participants"].as_array().unwrap();
        assert!(parts[0].get("last_read_at").is_none(), "{v}");
        assert!(parts[1].get("last_read_at").is_some(), "{v}");
        // The hider's own view keeps everything, byte for byte.
        let own = filter_body(Bytes::from_static(ev), Shape::Event, "hider", "k", &p)
            .await
            .unwrap();
        assert_eq!(&own[..], &ev[..]);
    }

    #[tokio::test]
    async fn responses_fail_closed_and_keep_delivery_rules() {
        let p = registry();
        p.set(
            "k",
            "quiet",
            Settings {
                typing: true,
                read: true,
                delivery: false,
            },
        )
        .await;
        let body = br#"{"read":[{"user":{"id":"quiet"},"last_read":"x","last_delivered_at":"y","last_delivered_message_id":"m"}]}"#;
        let out = filter_body(Bytes::from_static(body), Shape::Response, "me", "k", &p)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["read"][0]["last_read"], "x");
        assert!(v["read"][0].get("last_delivered_at").is_none(), "{v}");
        for bad in [&b"{\"read\":["[..], b"{} x", b"\xff"] {
            let r = filter_body(Bytes::copy_from_slice(bad), Shape::Response, "me", "k", &p).await;
            assert!(r.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn named_users_by_key_and_id() {
        let post = br#"{"users":{"alice":{"id":"mallory"},"b":{"id":"b"}}}"#;
        let u = named_users(post).unwrap();
        assert!(u.contains("alice") && u.contains("mallory") && u.contains("b"));
        let patch = br#"{"users":[{"id":"a","set":{}},{"set":{}}]}"#;
        assert_eq!(named_users(patch).unwrap().len(), 1);
        assert!(named_users(b"[").is_none());
    }
}
