//! The live `me` against spec-shaped events: table tests, a property test, and the two lists
//! ([`OWN_ONLY`], [`COUNTER_EVENTS`]) checked against Stream's OpenAPI spec when it is present.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

const MAX: usize = crate::config::DEFAULT_MAX_ME_BYTES;

fn handshake() -> Box<RawValue> {
    serde_json::value::to_raw_value(&json!({
        "id": "alice", "name": "Alice", "role": "user", "language": "en", "color": "red",
        "devices": [], "mutes": [], "channel_mutes": [], "blocked_user_ids": [],
        "privacy_settings": {"typing_indicators": {"enabled": true}},
        "total_unread_count": 0, "unread_count": 0, "unread_channels": 0, "unread_threads": 0,
    }))
    .unwrap()
}

fn now(live: &LiveMe, hs: &RawValue) -> Value {
    let me = live.current(hs);
    serde_json::from_str(me.as_deref().unwrap_or(hs).get()).unwrap()
}

fn apply(live: &LiveMe, hs: &RawValue, ev: Value) -> Change {
    live.apply_event(&ev.to_string(), "alice", hs, MAX)
}

#[test]
fn untouched_me_is_the_handshake_and_costs_nothing() {
    let hs = handshake();
    let live = LiveMe::default();
    for ev in [
        json!({"type": "typing.start", "cid": "m:a", "user": {"id": "bob"}}),
        json!({"type": "health.check", "connection_id": "c"}),
        json!({"type": "user.watching.start", "cid": "m:a", "user": {"id": "bob"}}),
    ] {
        assert_eq!(apply(&live, &hs, ev), Change::None);
    }
    assert!(live.current(&hs).is_none());
    assert!(
        live.lock().is_none(),
        "no allocation until something changes"
    );
}

/// Each row: an event as the spec shapes it, the change it makes, and fields of `me` after it.
#[test]
fn spec_shaped_events() {
    let rows: Vec<(Value, Change, Value)> = vec![
        (
            json!({"type": "message.new", "cid": "m:a", "message_id": "1", "watcher_count": 1,
                   "created_at": "t", "custom": {}, "message": {"id": "1", "text": "unread_count"},
                   "user": {"id": "bob"}, "total_unread_count": 3, "unread_channels": 2,
                   "unread_count": 3}),
            Change::Counters,
            json!({"total_unread_count": 3, "unread_channels": 2, "unread_count": 3,
                   "unread_threads": 0}),
        ),
        (
            json!({"type": "notification.thread_message_new", "cid": "m:a", "thread_id": "p",
                   "unread_threads": 4, "unread_thread_messages": 7}),
            Change::Counters,
            json!({"total_unread_count": 3, "unread_threads": 4}),
        ),
        (
            json!({"type": "notification.mark_read", "cid": "m:a", "user": {"id": "alice"},
                   "total_unread_count": 0, "unread_channels": 0, "unread_count": 0,
                   "unread_threads": 0, "channel": {"cid": "m:a", "unread_count": 9}}),
            Change::Counters,
            json!({"total_unread_count": 0, "unread_channels": 0, "unread_threads": 0}),
        ),
        (
            // A type whose schema carries no counters: a stray field is not believed.
            json!({"type": "message.read", "cid": "m:a", "user": {"id": "bob"},
                   "unread_messages": 5, "total_unread_count": 99}),
            Change::None,
            json!({"total_unread_count": 0}),
        ),
        (
            json!({"type": "notification.mark_unread", "cid": "m:a", "user": {"id": "alice"},
                   "total_unread_count": 5, "unread_count": 5, "unread_channels": 1,
                   "unread_messages": 5, "total_unread_count_by_team": {"t1": 5}}),
            Change::Counters,
            json!({"total_unread_count": 5, "total_unread_count_by_team": {"t1": 5}}),
        ),
        (
            // Another user's profile change is not ours.
            json!({"type": "user.updated", "user": {"id": "bob", "name": "Bobby"}}),
            Change::None,
            json!({"name": "Alice"}),
        ),
        (
            // Privacy settings a `user.updated` omits are kept, as the SDK keeps them.
            json!({"type": "user.updated", "user": {"id": "alice", "name": "Alice",
                   "role": "user", "language": "en", "color": "red"}}),
            Change::User,
            json!({"privacy_settings": {"typing_indicators": {"enabled": true}}, "color": "red"}),
        ),
        (
            // Ours: fields merge; a field it lacks was unset; own-only fields stay.
            json!({"type": "user.updated", "user": {"id": "alice", "name": "Al", "role": "user",
                   "language": "fr", "blocked_user_ids": ["eve"],
                   "privacy_settings": {"typing_indicators": {"enabled": false}}}}),
            Change::User,
            json!({"name": "Al", "language": "fr", "color": null, "blocked_user_ids": ["eve"],
                   "devices": [], "mutes": [], "total_unread_count": 5,
                   "privacy_settings": {"typing_indicators": {"enabled": false}}}),
        ),
        (
            json!({"type": "notification.mutes_updated", "created_at": "t", "custom": {},
                   "me": {"id": "alice", "name": "stale", "total_unread_count": 0,
                          "mutes": [{"user": {"id": "alice"}, "target": {"id": "bob"}}]}}),
            Change::Mutes,
            json!({"name": "Al", "total_unread_count": 5,
                   "mutes": [{"user": {"id": "alice"}, "target": {"id": "bob"}}]}),
        ),
        (
            json!({"type": "notification.channel_mutes_updated",
                   "me": {"id": "alice", "channel_mutes": [{"channel": {"cid": "m:a"}}]}}),
            Change::Mutes,
            json!({"channel_mutes": [{"channel": {"cid": "m:a"}}],
                   "mutes": [{"user": {"id": "alice"}, "target": {"id": "bob"}}]}),
        ),
        (
            // A ban in one channel is not an app-wide ban.
            json!({"type": "user.banned", "cid": "m:a", "user": {"id": "alice"},
                   "created_by": {"id": "mod"}}),
            Change::None,
            json!({"banned": null}),
        ),
        (
            json!({"type": "user.banned", "user": {"id": "bob"}, "created_by": {"id": "mod"}}),
            Change::None,
            json!({"banned": null}),
        ),
        (
            json!({"type": "user.banned", "user": {"id": "alice"}, "created_by": {"id": "mod"},
                   "created_at": "t", "custom": {}}),
            Change::User,
            json!({"banned": true}),
        ),
        (
            json!({"type": "user.unbanned", "user": {"id": "alice"}, "created_at": "t"}),
            Change::User,
            json!({"banned": false}),
        ),
        (
            json!({"type": "message.new", "total_unread_count": "three"}),
            Change::Unreadable,
            json!({"total_unread_count": 5}),
        ),
    ];
    let hs = handshake();
    let live = LiveMe::default();
    for (i, (ev, change, want)) in rows.into_iter().enumerate() {
        assert_eq!(apply(&live, &hs, ev.clone()), change, "row {i}: {ev}");
        let me = now(&live, &hs);
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(me.get(k).unwrap_or(&Value::Null), v, "row {i}, {k}: {me}");
        }
    }
}

#[test]
fn a_change_over_the_bound_keeps_the_last_good_me() {
    let hs = handshake();
    let live = LiveMe::default();
    let max = hs.get().len() + 40;
    let small = json!({"type": "user.updated", "user": {"id": "alice", "name": "B"}});
    assert_eq!(
        live.apply_event(&small.to_string(), "alice", &hs, max),
        Change::User
    );
    let big = json!({"type": "user.updated", "user": {"id": "alice", "name": "x".repeat(200)}});
    assert_eq!(
        live.apply_event(&big.to_string(), "alice", &hs, max),
        Change::TooLarge
    );
    assert_eq!(now(&live, &hs)["name"], "B");
    let team = json!({"type": "message.new", "total_unread_count": 1,
                      "total_unread_count_by_team": {"t": "y".repeat(200)}});
    assert_eq!(
        live.apply_event(&team.to_string(), "alice", &hs, max),
        Change::TooLarge
    );
    let me = now(&live, &hs);
    assert_eq!(
        me["total_unread_count"], 1,
        "the small counters still count"
    );
    assert!(me.get("total_unread_count_by_team").is_none(), "{me}");
}

#[test]
fn garbage_never_panics_nor_changes_anything() {
    let hs = handshake();
    let live = LiveMe::default();
    for f in [
        "",
        "unread_",
        "{\"type\":\"user.updated\"",
        "[\"user.updated\"]",
        "{\"type\":\"user.updated\",\"user\":7}",
        "{\"type\":\"notification.mutes_updated\",\"me\":[1]}",
        "{\"type\":\"message.new\",\"unread_count\":1.5}",
    ] {
        let c = live.apply_event(f, "alice", &hs, MAX);
        assert!(matches!(c, Change::None | Change::Unreadable), "{f}: {c:?}");
    }
    assert!(live.current(&hs).is_none());
    let broken = RawValue::from_string("[]".into()).unwrap();
    let ev = json!({"type": "user.updated", "user": {"id": "alice"}}).to_string();
    assert_eq!(
        live.apply_event(&ev, "alice", &broken, MAX),
        Change::Unreadable
    );
}

#[test]
fn devices_are_known_by_id() {
    let hs = handshake();
    let live = LiveMe::default();
    assert!(!live.has_device(&hs, "d1"));
    let c = live.edit(&hs, MAX, Change::Devices, |me| {
        me.insert(
            "devices".into(),
            json!([{"id": "d1", "push_provider": "apn"}]),
        );
    });
    assert_eq!(c, Change::Devices);
    assert!(live.has_device(&hs, "d1"));
    assert!(!live.has_device(&hs, "d2"));
}

#[test]
fn change_labels_are_the_metric_labels() {
    let labels: Vec<&str> = Change::ALL.iter().map(|c| c.label()).collect();
    assert_eq!(labels, crate::metrics::ME_CHANGES);
}

proptest! {
    /// Whatever the order of counter events, the `me` shows the last value each counter had, and
    /// user fields learned in between survive.
    #[test]
    fn last_counter_wins(seq in proptest::collection::vec((0usize..3, 0i64..1000, any::<bool>()), 1..30)) {
        let hs = handshake();
        let live = LiveMe::default();
        let kinds = ["message.new", "notification.message_new", "notification.mark_read"];
        let mut want_total = 0;
        let mut want_channels = 0;
        for (k, n, with_channels) in seq {
            let mut ev = json!({"type": kinds[k], "cid": "m:a", "total_unread_count": n});
            if with_channels {
                ev["unread_channels"] = json!(n % 7);
                want_channels = n % 7;
            }
            want_total = n;
            prop_assert_eq!(apply(&live, &hs, ev), Change::Counters);
            let named = json!({"type": "user.updated", "user": {"id": "alice", "name": n.to_string()}});
            prop_assert_eq!(apply(&live, &hs, named), Change::User);
        }
        let me = now(&live, &hs);
        prop_assert_eq!(&me["total_unread_count"], &json!(want_total));
        prop_assert_eq!(&me["unread_channels"], &json!(want_channels));
        prop_assert_eq!(&me["name"], &json!(want_total.to_string()));
        prop_assert!(me.get("devices").is_some());
    }
}

mod device_tests {
    use crate::auth::{Identity, TokenKind};
    use crate::session::device::*;
    use http::{Method, StatusCode};
    use serde_json::json;

    #[test]
    fn connect_devices_are_validated() {
        let ok = Device::parse(
            r#"{"id":"tok","push_provider":"firebase","push_provider_name":"prod","x":1}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.push_provider_name.as_deref(), Some("prod"));
        let body: serde_json::Value = serde_json::from_str(&ok.create_body()).unwrap();
        assert_eq!(
            body,
            json!({"id": "tok", "push_provider": "firebase", "push_provider_name": "prod"}),
            "only the device's fields, never a user"
        );
        assert_eq!(Device::parse("null"), Ok(None));
        let cases = [
            ("[]", DeviceError::Shape),
            ("\"tok\"", DeviceError::Shape),
            (r#"{"id":"tok"}"#, DeviceError::Provider),
            (
                r#"{"id":"tok","push_provider":"carrier-pigeon"}"#,
                DeviceError::Provider,
            ),
            (r#"{"id":7,"push_provider":"apn"}"#, DeviceError::Shape),
            (r#"{"push_provider":"apn"}"#, DeviceError::Shape),
            (r#"{"id":" ","push_provider":"apn"}"#, DeviceError::Id),
            (
                r#"{"id":"t","push_provider":"apn","voip":"yes"}"#,
                DeviceError::Shape,
            ),
        ];
        let long = format!(r#"{{"id":"{}","push_provider":"apn"}}"#, "t".repeat(256));
        assert_eq!(Device::parse(&long), Err(DeviceError::Id));
        for (raw, want) in cases {
            assert_eq!(Device::parse(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn devices_are_added_as_stream_adds_them() {
        let mut me = serde_json::Map::new();
        let dev = |i: usize| {
            Device::parse(&format!(r#"{{"id":"d{i}","push_provider":"apn"}}"#))
                .unwrap()
                .unwrap()
        };
        add_to(&mut me, &dev(0), "alice");
        let first = me["devices"][0].clone();
        assert_eq!(first["user_id"], "alice");
        assert_eq!(first["disabled"], false);
        assert!(first["created_at"].is_string());
        add_to(&mut me, &dev(0), "alice");
        assert_eq!(
            me["devices"],
            json!([first]),
            "the same id again changes nothing"
        );
        for i in 1..=STREAM_MAX_DEVICES {
            add_to(&mut me, &dev(i), "alice");
        }
        let ids: Vec<&str> = me["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), STREAM_MAX_DEVICES);
        assert_eq!(ids[0], "d1", "the oldest went");
        assert_eq!(
            ids[STREAM_MAX_DEVICES - 1],
            format!("d{STREAM_MAX_DEVICES}")
        );
    }

    fn id(kind: TokenKind, user: &str) -> Identity {
        Identity {
            user_id: user.into(),
            kind,
            exp: None,
            iat: None,
        }
    }

    #[test]
    fn rest_calls_change_the_me_of_the_user_they_act_for() {
        let alice = id(TokenKind::User, "alice");
        let server = id(TokenKind::Server, "");
        let post = Method::POST;
        let dev = br#"{"id":"d","push_provider":"apn"}"#;
        let of = |m: &Method, p: &str, q: Option<&str>, b: &[u8], who: &Identity| {
            RestChange::of(m, p, q, Some(b), Some(who))
        };
        assert!(matches!(
            of(&post, "/devices", None, dev, &alice),
            RestChange::AddDevice { ref user, ref device } if user == "alice" && device.id == "d"
        ));
        let for_bob = br#"{"id":"d","push_provider":"apn","user_id":"bob"}"#;
        assert_eq!(
            of(&post, "/devices", None, for_bob, &alice),
            RestChange::Nothing
        );
        assert!(matches!(
            of(&post, "/devices", None, for_bob, &server),
            RestChange::AddDevice { ref user, .. } if user == "bob"
        ));
        assert_eq!(
            of(
                &Method::DELETE,
                "/devices",
                Some("id=d&api_key=k"),
                b"",
                &alice
            ),
            RestChange::RemoveDevice {
                user: "alice".into(),
                id: "d".into()
            }
        );
        assert_eq!(
            of(
                &post,
                "/users/block",
                None,
                br#"{"blocked_user_id":"eve"}"#,
                &alice
            ),
            RestChange::Block {
                user: "alice".into(),
                other: "eve".into()
            }
        );
        assert_eq!(
            of(
                &post,
                "/users/unblock",
                None,
                br#"{"blocked_user_id":"eve"}"#,
                &alice
            ),
            RestChange::Unblock {
                user: "alice".into(),
                other: "eve".into()
            }
        );
        assert_eq!(
            of(&post, "/users/block", None, b"{", &alice),
            RestChange::Nothing
        );
        assert_eq!(
            RestChange::of(&post, "/devices", None, Some(dev), None),
            RestChange::Nothing
        );
        assert!(RestChange::reads_body(&post, "/devices"));
        assert!(!RestChange::reads_body(&Method::GET, "/devices"));
        assert!(!RestChange::reads_body(&post, "/users"));
        // A failed call changes nothing (and needs no hub to find that out).
        let _ = StatusCode::BAD_REQUEST;
    }
}

/// The spec, when it is beside the repository (as in CI); `None` otherwise (skipped, said once).
fn spec() -> Option<serde_yaml::Value> {
    let path = std::env::var_os("STREAM_EDGE_OPENAPI")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/reference/stream-api/chat-openapi-clientside.yaml")
        });
    let Ok(text) = std::fs::read_to_string(&path) else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED session::me spec tests: no OpenAPI spec at {}",
            path.display()
        );
        return None;
    };
    Some(serde_yaml::from_str(&text).expect("the spec is YAML"))
}

fn props(spec: &serde_yaml::Value, schema: &str) -> Vec<String> {
    spec["components"]["schemas"][schema]["properties"]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn own_only_fields_are_those_a_user_updated_cannot_carry() {
    let Some(spec) = spec() else { return };
    let user = props(&spec, "UserResponsePrivacyFields");
    assert!(!user.is_empty());
    let mut want: Vec<String> = props(&spec, "OwnUserResponse")
        .into_iter()
        .filter(|k| !user.contains(k))
        .chain(SDK_KEPT.iter().map(|k| k.to_string()))
        .collect();
    want.sort();
    assert_eq!(want, OWN_ONLY);
}

#[test]
fn counter_events_are_the_event_schemas_carrying_counters() {
    let Some(spec) = spec() else { return };
    let counters = [
        "total_unread_count",
        "unread_count",
        "unread_channels",
        "unread_threads",
        "total_unread_count_by_team",
    ];
    let mut want: Vec<String> = Vec::new();
    let schemas = spec["components"]["schemas"].as_mapping().unwrap();
    for schema in schemas.values() {
        let p = &schema["properties"];
        let Some(kind) = p["type"]["default"].as_str() else {
            continue;
        };
        if counters.iter().any(|c| !p[*c].is_null()) {
            want.push(kind.to_string());
        }
    }
    want.sort();
    want.dedup();
    assert_eq!(want, COUNTER_EVENTS);
}
