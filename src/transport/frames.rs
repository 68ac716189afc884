//! Server-to-client frames the gateway writes itself. One JSON object per text frame, never
//! anything else (a non-JSON frame breaks the SDK's handler, stream-protocol.md 1.3).

use serde_json::value::RawValue;

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

/// Whether a client text frame is a heartbeat ping: the JS SDK sends
/// `[{"type":"health.check",…}]`, the Flutter SDK `{"type":"health.check",…}`.
pub fn is_ping(frame: &str) -> Result<bool, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Ping<'a> {
        #[serde(borrow)]
        One(Typed<'a>),
        Many(Vec<Typed<'a>>),
    }
    let check = |t: &Typed<'_>| t.kind.as_deref() == Some("health.check");
    Ok(match serde_json::from_str::<Ping<'_>>(frame)? {
        Ping::One(t) => check(&t),
        Ping::Many(v) => v.iter().any(check),
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
