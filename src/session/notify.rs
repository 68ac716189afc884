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

use std::sync::Arc;

use tokio::time::Instant;

use super::event::EventHead;
use super::hub::{Hub, Participation, State};
use super::Hubs;
use crate::metrics::EventKind;

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
) -> Option<(Utf8Bytes, EventKind)> {
    let info = st.channels.get(cid)?;
    let kind = notification_kind(head, me, info.member)?;
    Some((rewrite(frame, kind, &info.channel)?, EventKind::of(kind)))
}

/// Rewrites `frame` as `kind`, with `channel` unless the event carries a (current) channel of its
/// own. Only this path pays for a full parse: the channel event's fields stay as upstream sent them
/// (the user's own unread counters included).
fn rewrite(frame: &str, kind: &str, channel: &RawValue) -> Option<Utf8Bytes> {
    let mut map: Map<String, Value> = serde_json::from_str(frame).ok()?;
    map.insert("type".into(), Value::String(kind.into()));
    if matches!(
        kind,
        "notification.added_to_channel" | "notification.removed_from_channel"
    ) {
        // The member event's acting `user` is not part of these notifications (spec, and what
        // upstream sends a client that does not watch).
        map.remove("user");
    }
    if !map.get("channel").is_some_and(Value::is_object) {
        let channel: Value = serde_json::from_str(channel.get()).ok()?;
        map.insert("channel".into(), channel);
    }
    serde_json::to_string(&map).ok().map(Utf8Bytes::from)
}

/// The parent of a thread-only reply someone else sent (`message.new` with `parent_id`, not shown in
/// the channel), for which Stream notifies the thread's participants that do not watch the channel.
pub(super) fn thread_reply_parent(head: &EventHead<'_>, me: &str) -> Option<String> {
    let m = head.message.as_ref()?;
    let parent = m.parent_id.as_deref().filter(|p| !p.is_empty())?;
    let sender = head.user.as_ref().map(|u| u.id.as_ref());
    (head.kind == "message.new" && m.show_in_channel != Some(true) && sender != Some(me))
        .then(|| parent.to_string())
}

#[derive(serde::Deserialize)]
struct Id {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    user: Option<Box<Id>>,
}

impl Id {
    fn id(&self) -> Option<&str> {
        self.id
            .as_deref()
            .or(self.user_id.as_deref())
            .or_else(|| self.user.as_ref().and_then(|u| u.id()))
    }
}

#[derive(serde::Deserialize)]
struct Author {
    #[serde(default)]
    user: Option<Id>,
}

/// The part of `ThreadStateResponse` that says who takes part.
#[derive(serde::Deserialize)]
struct Thread {
    #[serde(default)]
    created_by_user_id: Option<String>,
    #[serde(default)]
    parent_message: Option<Author>,
    #[serde(default)]
    thread_participants: Vec<Id>,
}

#[derive(serde::Deserialize)]
struct ThreadAnswer {
    thread: Thread,
}

/// `notification.thread_message_new` for the sessions of `hub`'s user that do not watch `cid`, when
/// the user takes part in the thread of `parent`: its author or one of its participants. Known from
/// the user's own messages, or else asked of upstream (`GET /threads/{parent}`, with the user's own
/// authority) and remembered. A failed lookup notifies no one and is counted.
pub(super) async fn thread_reply(
    hubs: &Hubs,
    hub: &Hub,
    cid: &str,
    parent: &str,
    frame: Utf8Bytes,
    received: Instant,
) {
    let known = hub.lock().threads.get(parent).cloned();
    let part = match known {
        Some(p) => p,
        None => match lookup(hubs, hub, parent).await {
            Some(p) => {
                remember(hub, &mut hub.lock(), parent, p.clone());
                p
            }
            None => {
                hub.dropped("thread_lookup_failed", "notification.thread_message_new");
                return;
            }
        },
    };
    if !part.takes_part {
        return;
    }
    let st = hub.lock();
    let Some(note) = thread_note(
        frame.as_str(),
        parent,
        part.author.as_deref(),
        st.channels.get(cid),
    ) else {
        return;
    };
    let kind = EventKind::of("notification.thread_message_new");
    let flight = st.in_flight.as_ref().map(|f| f.session.clone());
    for (id, entry) in &st.sessions {
        if Some(id) != flight.as_ref() && !st.watches.is_watching(id, cid) {
            hub.deliver(entry, &note, received, kind);
        }
    }
}

/// Asks upstream who takes part in the thread of `parent`.
async fn lookup(hubs: &Hubs, hub: &Hub, parent: &str) -> Option<Participation> {
    let cutoff = hubs.revocations().cutoff(&hub.app, &hub.user);
    let body =
        crate::upstream::calls::get_thread(hubs.upstream(), &hub.app, &hub.user, cutoff, parent)
            .await
            .ok()?;
    let t = serde_json::from_slice::<ThreadAnswer>(&body).ok()?.thread;
    let me = &*hub.user;
    let author = t
        .parent_message
        .as_ref()
        .and_then(|m| m.user.as_ref())
        .and_then(Id::id)
        .map(str::to_owned)
        .or(t.created_by_user_id);
    let takes_part =
        author.as_deref() == Some(me) || t.thread_participants.iter().any(|p| p.id() == Some(me));
    Some(Participation {
        takes_part,
        author: author.map(Arc::from),
    })
}

/// Remembers the user's participation in the thread of `parent`, within
/// `limits.thread_cache_entries` (cleared and counted when full).
fn remember(hub: &Hub, st: &mut State, parent: &str, part: Participation) {
    if st.threads.len() >= hub.bounds.thread_cache_entries && !st.threads.contains_key(parent) {
        st.threads.clear();
        hub.metrics
            .limit_hit(crate::metrics::Limit::ThreadCacheEntries);
    }
    st.threads.insert(Arc::from(parent), part);
}

/// Learns from the user's own `message.new`: a reply makes the user a participant of its thread; a
/// top-level message is the parent of any thread under it.
pub(super) fn learn_own_message(hub: &Hub, head: &EventHead<'_>, st: &mut State) {
    let sender = head.user.as_ref().map(|u| u.id.as_ref());
    let (Some(m), "message.new", true) = (&head.message, &*head.kind, sender == Some(&*hub.user))
    else {
        return;
    };
    match (
        m.parent_id.as_deref().filter(|p| !p.is_empty()),
        m.id.as_deref(),
    ) {
        (Some(parent), _) => {
            let author = st.threads.get(parent).and_then(|p| p.author.clone());
            let part = Participation {
                takes_part: true,
                author,
            };
            remember(hub, st, parent, part);
        }
        (None, Some(id)) => {
            let part = Participation {
                takes_part: true,
                author: Some(hub.user.clone()),
            };
            remember(hub, st, id, part);
        }
        (None, None) => {}
    }
}

/// The reply event as `notification.thread_message_new`: `thread_id`, `parent_author`, and the
/// channel object when one is known.
fn thread_note(
    frame: &str,
    parent: &str,
    author: Option<&str>,
    info: Option<&super::watch::ChannelInfo>,
) -> Option<Utf8Bytes> {
    let mut map: Map<String, Value> = serde_json::from_str(frame).ok()?;
    map.insert(
        "type".into(),
        Value::String("notification.thread_message_new".into()),
    );
    map.insert("thread_id".into(), Value::String(parent.into()));
    if let Some(a) = author {
        map.insert("parent_author".into(), Value::String(a.into()));
    }
    if let (false, Some(info)) = (map.get("channel").is_some_and(Value::is_object), info) {
        map.insert(
            "channel".into(),
            serde_json::from_str(info.channel.get()).ok()?,
        );
    }
    serde_json::to_string(&map).ok().map(Utf8Bytes::from)
}

/// Keeps the user's membership of `cid` current from the member events of the user itself, so a
/// removed member's other tabs are not notified of the channel's messages any more.
pub(super) fn learn_membership(head: &EventHead<'_>, cid: &str, me: &str, st: &mut State) {
    let own = head
        .member
        .as_ref()
        .and_then(|m| m.user_id.as_deref())
        .is_some_and(|u| u == me);
    if !own {
        return;
    }
    let member = match &*head.kind {
        "member.added" => true,
        "member.removed" => false,
        _ => return,
    };
    if let Some(info) = st.channels.get_mut(cid) {
        info.member = member;
    }
}
