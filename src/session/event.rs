//! A light parse of an upstream event: only the fields routing and privacy decide on, borrowed from
//! the frame. The frame itself is forwarded byte for byte, never re-serialised.

use std::borrow::Cow;

use serde::Deserialize;

/// The routing-relevant head of an event.
#[derive(Debug, Deserialize)]
pub struct EventHead<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub cid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub user: Option<UserHead<'a>>,
    /// Present on the first `health.check` of a connection.
    #[serde(default, borrow)]
    pub connection_id: Option<Cow<'a, str>>,
}

/// `event.user.id`.
#[derive(Debug, Deserialize)]
pub struct UserHead<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
}

/// Who gets an event among one user's sessions.
#[derive(Debug, PartialEq, Eq)]
pub enum Audience<'a> {
    /// Every session of the user: user-level events (`notification.*`, `user.*` without a
    /// channel, anything without a channel).
    AllSessions,
    /// Sessions watching this channel.
    Watchers(&'a str),
    /// Consumed by the gateway (upstream heartbeats).
    Gateway,
}

impl<'a> EventHead<'a> {
    /// Parses the head of a frame.
    ///
    /// # Errors
    /// The frame is not a JSON object with a string `type`.
    pub fn parse(frame: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(frame)
    }

    /// The routing decision (stream-protocol.md 8).
    pub fn audience(&self) -> Audience<'_> {
        if self.kind == "health.check" {
            return Audience::Gateway;
        }
        if self.kind.starts_with("notification.") {
            return Audience::AllSessions;
        }
        match self.cid.as_deref() {
            Some(cid) if cid != "*" && !cid.is_empty() => Audience::Watchers(cid),
            _ => Audience::AllSessions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_table() {
        let cases = [
            (
                r#"{"type":"message.new","cid":"m:a","user":{"id":"x"},"message":{"text":"hi"}}"#,
                Audience::Watchers("m:a"),
            ),
            (
                r#"{"type":"notification.mark_read","cid":"m:a"}"#,
                Audience::AllSessions,
            ),
            (
                r#"{"type":"notification.message_new","cid":"m:b"}"#,
                Audience::AllSessions,
            ),
            (
                r#"{"type":"user.updated","user":{"id":"x"}}"#,
                Audience::AllSessions,
            ),
            (
                r#"{"type":"user.watching.start","cid":"m:a","user":{"id":"x"}}"#,
                Audience::Watchers("m:a"),
            ),
            (
                r#"{"type":"health.check","connection_id":"c","cid":"*"}"#,
                Audience::Gateway,
            ),
            (
                r#"{"type":"custom.thing","cid":"*"}"#,
                Audience::AllSessions,
            ),
        ];
        for (frame, want) in cases {
            let head = EventHead::parse(frame).unwrap();
            assert_eq!(head.audience(), want, "{frame}");
        }
    }

    #[test]
    fn escaped_strings_still_parse() {
        let head =
            EventHead::parse(r#"{"type":"message.new","cid":"m:\u0061","user":{"id":"a\"b"}}"#)
                .unwrap();
        assert_eq!(head.cid.as_deref(), Some("m:a"));
        assert_eq!(head.user.unwrap().id, "a\"b");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for f in ["", "[]", "null", "{\"type\":3}", "{", "\u{0}"] {
            assert!(EventHead::parse(f).is_err(), "{f}");
        }
    }
}
