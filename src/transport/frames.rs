//! Server-to-client frames the gateway writes itself. One JSON object per text frame, never
//! anything else (a non-JSON frame breaks the SDK's handler, stream-protocol.md 1.3).

use serde_json::value::RawValue;

use super::dialect::Dialect;
use crate::error::EdgeError;

/// RFC 3339 UTC timestamp with nanoseconds, like Stream's.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The handshake result: `health.check` with the session's own id and upstream's `me`.
pub fn connected(connection_id: &str, me: &RawValue) -> String {
    format!(
        "{{\"type\":\"health.check\",\"connection_id\":{},\"cid\":\"*\",\"created_at\":\"{}\",\"me\":{}}}",
        json_str(connection_id),
        now_rfc3339(),
        me.get()
    )
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
            "created_at": now_rfc3339(),
            "custom": {},
        },
        "duration": "0.00ms",
    })
    .to_string()
}

/// A heartbeat, as reply to a ping or after outbound silence.
pub fn health_check(connection_id: &str) -> String {
    format!(
        "{{\"type\":\"health.check\",\"connection_id\":{},\"cid\":\"*\",\"created_at\":\"{}\"}}",
        json_str(connection_id),
        now_rfc3339()
    )
}

/// `{"error": APIError}`: the handshake rejection (followed by close 1000), or a complaint about a
/// bad frame on a live session.
pub fn error(err: &EdgeError) -> String {
    serde_json::json!({ "error": err.api_error() }).to_string()
}

/// `{"type":"connection.error",…,"error": APIError}`: the only error shape the Swift 5 SDK
/// decodes (it needs `type`; Android's typed reading also wants `created_at` and
/// `connection_id`, empty before a session exists).
pub fn connection_error(connection_id: &str, err: &EdgeError) -> String {
    serde_json::json!({
        "type": "connection.error",
        "connection_id": connection_id,
        "created_at": now_rfc3339(),
        "error": err.api_error(),
    })
    .to_string()
}

/// The error frame in the client's dialect (see [`Dialect::typed_errors`]).
pub fn error_in(dialect: Dialect, connection_id: &str, err: &EdgeError) -> String {
    if dialect.typed_errors() {
        connection_error(connection_id, err)
    } else {
        error(err)
    }
}

/// One client object, reduced to whether its `type` is `health.check`. The key is matched
/// case-insensitively, as Stream's Go decoder does: Unity sends `{"Type":"health.check"}`.
struct Probe(bool);

impl<'de> serde::Deserialize<'de> for Probe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Probe;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Probe, A::Error> {
                let mut ping = false;
                while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key.eq_ignore_ascii_case("type") {
                        let v: serde_json::Value = m.next_value()?;
                        ping |= v.as_str() == Some("health.check");
                    } else {
                        m.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Probe(ping))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Whether a client text frame is a heartbeat ping: the JS SDK sends
/// `[{"type":"health.check",…}]`, Flutter and Android `{"type":"health.check",…}`, Unity
/// `{"Type":"health.check"}`.
pub fn is_ping(frame: &str) -> Result<bool, serde_json::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Ping {
        One(Probe),
        Many(Vec<Probe>),
    }
    Ok(match serde_json::from_str::<Ping>(frame)? {
        Ping::One(p) => p.0,
        Ping::Many(v) => v.iter().any(|p| p.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_ack_has_the_send_event_shape() {
        let ack: serde_json::Value =
            serde_json::from_str(&typing_ack("typing.stop", "messaging", "g", "u")).unwrap();
        assert_eq!(ack["event"]["cid"], "messaging:g");
        assert_eq!(ack["event"]["user"]["id"], "u");
    }

    #[test]
    fn both_ping_shapes() {
        assert!(is_ping(r#"[{"type":"health.check","client_id":"a--b"}]"#).unwrap());
        assert!(is_ping(r#"{"type":"health.check","connection_id":"x"}"#).unwrap());
        assert!(!is_ping(r#"{"type":"typing.start"}"#).unwrap());
        assert!(is_ping("nope").is_err());
    }

    #[test]
    fn the_type_key_is_matched_without_case() {
        assert!(is_ping(r#"{"Type":"health.check"}"#).unwrap());
        assert!(is_ping(r#"{"TYPE":"health.check","x":[1,{"a":null}]}"#).unwrap());
        // The value is not: Stream's decoder compares it exactly.
        assert!(!is_ping(r#"{"Type":"Health.Check"}"#).unwrap());
        assert!(!is_ping(r#"{"Type":5}"#).unwrap());
        assert!(!is_ping(r#"{"kind":"health.check"}"#).unwrap());
        assert!(is_ping("5").is_err());
    }

    #[test]
    fn swift_gets_a_typed_connection_error_and_the_rest_an_untyped_one() {
        let err = EdgeError::Auth(crate::auth::AuthError::Expired);
        let typed: serde_json::Value =
            serde_json::from_str(&error_in(Dialect::Swift, "", &err)).unwrap();
        assert_eq!(typed["type"], "connection.error");
        assert_eq!(typed["error"]["code"], 40);
        // Swift's synthesized APIError decoding needs every key.
        for k in [
            "code",
            "details",
            "duration",
            "message",
            "more_info",
            "StatusCode",
        ] {
            assert!(typed["error"].get(k).is_some(), "{k}");
        }
        for d in [Dialect::Js, Dialect::Unreal, Dialect::Android] {
            let plain: serde_json::Value = serde_json::from_str(&error_in(d, "", &err)).unwrap();
            assert!(plain.get("type").is_none(), "{d:?}");
            assert_eq!(plain["error"]["code"], 40);
        }
    }

    #[test]
    fn frames_are_json_objects() {
        let me = RawValue::from_string(r#"{"id":"a"}"#.into()).unwrap();
        for f in [
            connected("c\"1", &me),
            health_check("c1"),
            error(&EdgeError::NotFound),
        ] {
            let v: serde_json::Value = serde_json::from_str(&f).unwrap();
            assert!(v.is_object(), "{f}");
        }
    }
}
