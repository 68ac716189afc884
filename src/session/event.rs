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
    /// `message.parent_id` and `message.show_in_channel`: a thread-only reply is not announced as
    /// `notification.message_new`.
    #[serde(default, borrow)]
    pub message: Option<MessageHead<'a>>,
    /// `member.user_id` of `member.added` / `member.removed`.
    #[serde(default, borrow)]
    pub member: Option<MemberHead<'a>>,
}

/// The fields of `event.message` that decide whether it is announced to non-watchers.
#[derive(Debug, Deserialize)]
pub struct MessageHead<'a> {
    #[serde(default, borrow)]
    pub parent_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub show_in_channel: Option<bool>,
}

/// `event.member.user_id`.
#[derive(Debug, Deserialize)]
pub struct MemberHead<'a> {
    #[serde(default, borrow)]
    pub user_id: Option<Cow<'a, str>>,
}

/// `event.user.id`.
#[derive(Debug, Deserialize)]
pub struct UserHead<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
}

/// Who gets an event among one user's sessions (README "Protocol choices", after
/// `stream-event-recipients.md`).
#[derive(Debug, PartialEq, Eq)]
pub enum Audience<'a> {
    /// Every session of the user: user-level events (`notification.*`, the user's own `user.*`,
    /// `channel.hidden`/`visible`, `reminder.*`, `draft.*`, anything without a channel).
    AllSessions,
    /// Sessions watching this channel.
    Watchers(&'a str),
    /// Sessions subscribed to this user's presence (`user.presence.changed`, and another user's
    /// `user.updated` / `user.deleted`).
    Presence(&'a str),
    /// Consumed by the gateway (upstream heartbeats).
    Gateway,
}

/// Events that carry a `cid` but go to every client of the user, watching or not.
fn user_level(kind: &str) -> bool {
    matches!(kind, "channel.hidden" | "channel.visible")
        || kind.starts_with("notification.")
        || kind.starts_with("reminder.")
        || kind.starts_with("draft.")
}

/// Another user's events that go to the clients subscribed to that user's presence.
fn presence_kind(kind: &str) -> bool {
    matches!(
        kind,
        "user.presence.changed" | "user.updated" | "user.deleted"
    )
}

impl<'a> EventHead<'a> {
    /// Parses the head of a frame.
    ///
    /// # Errors
    /// The frame is not a JSON object with a string `type`.
    pub fn parse(frame: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(frame)
    }

    /// The routing decision among the sessions of `me` (stream-event-recipients.md).
    pub fn audience(&self, me: &str) -> Audience<'_> {
        if self.kind == "health.check" {
            return Audience::Gateway;
        }
        if user_level(&self.kind) {
            return Audience::AllSessions;
        }
        let subject = self.user.as_ref().map(|u| u.id.as_ref());
        if presence_kind(&self.kind) {
            return match subject {
                Some(other) if other != me => Audience::Presence(other),
                _ => Audience::AllSessions,
            };
        }
        // A channel ban reaches every client of the banned user; other users see it as a
        // channel event.
        if matches!(&*self.kind, "user.banned" | "user.unbanned") && subject == Some(me) {
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
                Audience::Presence("x"),
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
            // Cid events that belong to the user, not to the channel's watchers.
            (
                r#"{"type":"channel.hidden","cid":"m:a","user":{"id":"me"}}"#,
                Audience::AllSessions,
            ),
            (
                r#"{"type":"channel.visible","cid":"m:a"}"#,
                Audience::AllSessions,
            ),
            (
                r#"{"type":"reminder.created","cid":"m:a"}"#,
                Audience::AllSessions,
            ),
            (
                r#"{"type":"draft.updated","cid":"m:a"}"#,
                Audience::AllSessions,
            ),
            (
                r#"{"type":"user.banned","cid":"m:a","user":{"id":"me"}}"#,
                Audience::AllSessions,
            ),
            (
                r#"{"type":"user.banned","cid":"m:a","user":{"id":"x"}}"#,
                Audience::Watchers("m:a"),
            ),
            // Presence: another user's state goes to the presence subscribers.
            (
                r#"{"type":"user.presence.changed","user":{"id":"x","online":true}}"#,
                Audience::Presence("x"),
            ),
            (
                r#"{"type":"user.updated","user":{"id":"me"}}"#,
                Audience::AllSessions,
            ),
        ];
        for (frame, want) in cases {
            let head = EventHead::parse(frame).unwrap();
            assert_eq!(head.audience("me"), want, "{frame}");
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
