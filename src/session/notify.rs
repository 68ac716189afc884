//! The notification Stream sends a client that does not watch a channel, made from the channel
//! event the shared upstream connection received because another session of the user watches it.
//!
//! Stream documents `notification.message_new` (and `…channel_deleted`, `…channel_truncated`,
//! `…added_to_channel`, `…removed_from_channel`) as going to the user's clients that are *not
//! watching* the channel (stream-event-recipients.md). On its own connection, a tab that does not
//! watch a channel another tab watches would get the notification; through the gateway, upstream
//! sends the channel event instead (the shared connection watches). Choice: the gateway gives each
//! such tab the notification, built from the channel event with the channel object the watching
//! answer returned. It does so only when that answer said the user is a member (Stream notifies
//! members), never for the user's own message, and never for a thread-only reply.

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::event::EventHead;
use super::hub::State;
use crate::metrics::event_label;

/// The notification type a non-watching session gets for `head`, if any.
fn notification_kind(head: &EventHead<'_>, me: &str, member: bool) -> Option<&'static str> {
    let sender = head.user.as_ref().map(|u| u.id.as_ref());
    let own_member = head
        .member
        .as_ref()
        .and_then(|m| m.user_id.as_deref())
        .is_some_and(|u| u == me);
    match &*head.kind {
        "message.new" => {
            let thread_only = head.message.as_ref().is_some_and(|m| {
                m.parent_id.as_deref().is_some_and(|p| !p.is_empty())
                    && m.show_in_channel != Some(true)
            });
            (member && !thread_only && sender != Some(me)).then_some("notification.message_new")
        }
        "channel.deleted" => member.then_some("notification.channel_deleted"),
        "channel.truncated" => member.then_some("notification.channel_truncated"),
        "member.added" if own_member => Some("notification.added_to_channel"),
        "member.removed" if own_member => Some("notification.removed_from_channel"),
        _ => None,
    }
}

/// The notification for the sessions of `me` that do not watch `cid`, with its metric label.
pub(super) fn for_non_watchers(
    frame: &str,
    head: &EventHead<'_>,
    cid: &str,
    me: &str,
    st: &State,
) -> Option<(Utf8Bytes, &'static str)> {
    let info = st.channels.get(cid)?;
    let kind = notification_kind(head, me, info.member)?;
    Some((rewrite(frame, kind, &info.channel)?, event_label(kind)))
}

/// Re-reads a frame held while a watching call was in flight, for a session that did not end up
/// watching its channel: the notification form, if it has one.
pub(super) fn for_held(frame: &str, me: &str, st: &State) -> Option<(Utf8Bytes, &'static str)> {
    let head = EventHead::parse(frame).ok()?;
    let cid = head.cid.as_deref()?;
    for_non_watchers(frame, &head, cid, me, st)
}

/// Rewrites `frame` as `kind` with `channel`. Only this path pays for a full parse: the channel
/// event's fields stay as upstream sent them (the user's own unread counters included), with the
/// type and the channel object set.
fn rewrite(frame: &str, kind: &str, channel: &RawValue) -> Option<Utf8Bytes> {
    let mut map: Map<String, Value> = serde_json::from_str(frame).ok()?;
    map.insert("type".into(), Value::String(kind.into()));
    let channel: Value = serde_json::from_str(channel.get()).ok()?;
    map.insert("channel".into(), channel);
    serde_json::to_string(&map).ok().map(Utf8Bytes::from)
}
