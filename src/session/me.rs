//! The live `me` of one hub: the user's `OwnUserResponse`, kept current the way the SDK keeps
//! `client.user` current, so a session that joins a hub later gets in its first frame the `me` a
//! connection of its own would get, not a copy from when the hub's upstream connection opened.
//!
//! No Stream endpoint returns an `OwnUserResponse`, so it cannot be fetched: it starts from the
//! handshake's `me` (held by [`Ready`]; a live copy exists only once something changed) and
//! learns, before any routing or drop decision on the event:
//! - the user's own `user.updated` (merged as the SDK merges it, [`OWN_ONLY`] fields kept) and
//!   app-wide `user.banned`/`user.unbanned` (`banned`);
//! - `mutes` and `channel_mutes` from `notification.(channel_)mutes_updated`'s `me`;
//! - the unread counters of every event type whose schema carries them ([`COUNTER_EVENTS`]);
//! - push devices and blocked users changed through the gateway ([`device`]).
//!
//! Counters are kept apart and laid over the `me` only when a session asks for it: they change
//! with most `message.new` frames and must not cost a parse of the whole `me` each time.

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Fields a `user.updated` that lacks them leaves as they are; any other field it lacks was
/// removed (the SDK's `_handleUserEvent`). They are the `OwnUserResponse` fields a
/// `user.updated` cannot carry (its user is a `UserResponsePrivacyFields`), plus those the SDK
/// also keeps ([`SDK_KEPT`]): an event that omits the user's privacy settings must not erase them.
pub const OWN_ONLY: &[&str] = &[
    "channel_mutes",
    "devices",
    "invisible",
    "latest_hidden_channels",
    "mutes",
    "privacy_settings",
    "push_preferences",
    "roles",
    "total_unread_count",
    "total_unread_count_by_team",
    "unread_channels",
    "unread_count",
    "unread_threads",
];

/// [`OWN_ONLY`] fields a `user.updated` can carry but the SDK keeps when it does not
/// (`isOwnUserBaseProperty` in stream-chat-js's `utils.ts`).
pub const SDK_KEPT: &[&str] = &["invisible", "privacy_settings", "roles"];

/// Event types whose schema carries the receiving user's unread counters at the top level.
pub const COUNTER_EVENTS: &[&str] = &[
    "message.new",
    "notification.channel_deleted",
    "notification.channel_truncated",
    "notification.mark_read",
    "notification.mark_unread",
    "notification.message_new",
    "notification.thread_message_new",
];

/// What one change did to the live `me` (`stream_edge_me_changes_total{change}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing for the `me` in it.
    None,
    Counters,
    User,
    Mutes,
    Devices,
    Blocks,
    /// The change would have made the `me` larger than `limits.max_me_bytes`; the last good one
    /// is kept.
    TooLarge,
    /// The event or the `me` could not be read; nothing changed.
    Unreadable,
}

impl Change {
    /// Every label, pre-created at 0.
    pub const ALL: [Change; 7] = [
        Change::Counters,
        Change::User,
        Change::Mutes,
        Change::Devices,
        Change::Blocks,
        Change::TooLarge,
        Change::Unreadable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Change::None => "none",
            Change::Counters => "counters",
            Change::User => "user",
            Change::Mutes => "mutes",
            Change::Devices => "devices",
            Change::Blocks => "blocks",
            Change::TooLarge => "too_large",
            Change::Unreadable => "unreadable",
        }
    }
}

/// One hub's live `me`. Empty (one pointer) until something changes.
#[derive(Default)]
pub struct LiveMe {
    changes: Mutex<Option<Box<Changes>>>,
}

#[derive(Default)]
struct Changes {
    /// The `me` with every non-counter change applied; `None` while the handshake's is current.
    base: Option<Box<RawValue>>,
    counters: Counters,
}

/// The unread counters last seen, laid over the `me` when a session asks for it.
#[derive(Default, Debug)]
struct Counters {
    total_unread_count: Option<i64>,
    unread_count: Option<i64>,
    unread_channels: Option<i64>,
    unread_threads: Option<i64>,
    total_unread_count_by_team: Option<Box<RawValue>>,
}

impl Counters {
    fn merge(&mut self, newer: Counters) {
        let Counters {
            total_unread_count,
            unread_count,
            unread_channels,
            unread_threads,
            total_unread_count_by_team,
        } = newer;
        self.total_unread_count = total_unread_count.or(self.total_unread_count);
        self.unread_count = unread_count.or(self.unread_count);
        self.unread_channels = unread_channels.or(self.unread_channels);
        self.unread_threads = unread_threads.or(self.unread_threads);
        if total_unread_count_by_team.is_some() {
            self.total_unread_count_by_team = total_unread_count_by_team;
        }
    }

    fn is_empty(&self) -> bool {
        self.total_unread_count.is_none()
            && self.unread_count.is_none()
            && self.unread_channels.is_none()
            && self.unread_threads.is_none()
            && self.total_unread_count_by_team.is_none()
    }

    fn lay_over(&self, me: &mut Map<String, Value>) {
        let ints = [
            ("total_unread_count", self.total_unread_count),
            ("unread_count", self.unread_count),
            ("unread_channels", self.unread_channels),
            ("unread_threads", self.unread_threads),
        ];
        for (k, v) in ints {
            if let Some(v) = v {
                me.insert(k.into(), v.into());
            }
        }
        if let Some(by_team) = &self.total_unread_count_by_team {
            if let Ok(v) = serde_json::from_str(by_team.get()) {
                me.insert("total_unread_count_by_team".into(), v);
            }
        }
    }
}

/// The fields of an upstream event the live `me` reads, in one parse of the frame.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    user: Option<&'a RawValue>,
    #[serde(default, borrow)]
    me: Option<&'a RawValue>,
    #[serde(default, borrow)]
    cid: Option<Cow<'a, str>>,
    #[serde(default)]
    total_unread_count: Option<i64>,
    #[serde(default)]
    unread_count: Option<i64>,
    #[serde(default)]
    unread_channels: Option<i64>,
    #[serde(default)]
    unread_threads: Option<i64>,
    #[serde(default, borrow)]
    total_unread_count_by_team: Option<&'a RawValue>,
}

impl Event<'_> {
    fn counters(&self) -> Counters {
        Counters {
            total_unread_count: self.total_unread_count,
            unread_count: self.unread_count,
            unread_channels: self.unread_channels,
            unread_threads: self.unread_threads,
            total_unread_count_by_team: self.total_unread_count_by_team.map(ToOwned::to_owned),
        }
    }
}

/// The user id of a `user.updated`.
#[derive(Deserialize)]
struct Id<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

impl LiveMe {
    fn lock(&self) -> MutexGuard<'_, Option<Box<Changes>>> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one upstream event of `user`'s connection, whose handshake `me` is `handshake`.
    pub fn apply_event(&self, frame: &str, user: &str, handshake: &RawValue, max: usize) -> Change {
        // Most frames carry nothing for the `me`: they are not parsed a second time.
        let counters = frame.contains("unread_");
        let interesting = counters
            || frame.contains("\"user.updated\"")
            || frame.contains("mutes_updated\"")
            || frame.contains("\"user.banned\"")
            || frame.contains("\"user.unbanned\"");
        if !interesting {
            return Change::None;
        }
        let Ok(ev) = serde_json::from_str::<Event<'_>>(frame) else {
            return Change::Unreadable;
        };
        match &*ev.kind {
            "user.updated" => match ev.user {
                Some(u) if is_user(u, user) => self.merge_user(u, handshake, max),
                _ => Change::None,
            },
            // App-wide (no channel) bans of the user: `me.banned`.
            kind @ ("user.banned" | "user.unbanned")
                if ev.cid.as_deref().is_none_or(str::is_empty) =>
            {
                match ev.user {
                    Some(u) if is_user(u, user) => {
                        let banned = kind == "user.banned";
                        self.edit(handshake, max, Change::User, |me| {
                            me.insert("banned".into(), banned.into());
                        })
                    }
                    _ => Change::None,
                }
            }
            "notification.mutes_updated" | "notification.channel_mutes_updated" => match ev.me {
                Some(me) => self.take_mutes(me, handshake, max),
                None => Change::None,
            },
            kind if counters && COUNTER_EVENTS.contains(&kind) => match ev.counters() {
                c if c.is_empty() => Change::None,
                c => self.set_counters(c, handshake, max),
            },
            _ => Change::None,
        }
    }

    fn set_counters(&self, mut c: Counters, handshake: &RawValue, max: usize) -> Change {
        let mut g = self.lock();
        let changes = g.get_or_insert_with(Box::default);
        let mut out = Change::Counters;
        if let Some(by_team) = &c.total_unread_count_by_team {
            let base = changes.base.as_deref().unwrap_or(handshake).get().len();
            if base + by_team.get().len() > max {
                c.total_unread_count_by_team = None;
                out = Change::TooLarge;
            }
        }
        changes.counters.merge(c);
        out
    }

    fn merge_user(&self, user: &RawValue, handshake: &RawValue, max: usize) -> Change {
        let Ok(user) = serde_json::from_str::<Map<String, Value>>(user.get()) else {
            return Change::Unreadable;
        };
        self.edit(handshake, max, Change::User, |me| {
            me.retain(|k, _| user.contains_key(k) || OWN_ONLY.contains(&k.as_str()));
            for (k, v) in user {
                me.insert(k, v);
            }
        })
    }

    fn take_mutes(&self, from: &RawValue, handshake: &RawValue, max: usize) -> Change {
        #[derive(Deserialize)]
        struct Mutes {
            mutes: Option<Value>,
            channel_mutes: Option<Value>,
        }
        let Ok(m) = serde_json::from_str::<Mutes>(from.get()) else {
            return Change::Unreadable;
        };
        if m.mutes.is_none() && m.channel_mutes.is_none() {
            return Change::None;
        }
        self.edit(handshake, max, Change::Mutes, |me| {
            if let Some(v) = m.mutes {
                me.insert("mutes".into(), v);
            }
            if let Some(v) = m.channel_mutes {
                me.insert("channel_mutes".into(), v);
            }
        })
    }

    /// Applies `f` to the current `me` (counters aside) and keeps the result, unless it is over
    /// `max` bytes: then the last good one stays.
    pub(crate) fn edit(
        &self,
        handshake: &RawValue,
        max: usize,
        done: Change,
        f: impl FnOnce(&mut Map<String, Value>),
    ) -> Change {
        let mut g = self.lock();
        let current = g
            .as_ref()
            .and_then(|c| c.base.as_deref())
            .unwrap_or(handshake);
        let Ok(mut me) = serde_json::from_str::<Map<String, Value>>(current.get()) else {
            return Change::Unreadable;
        };
        f(&mut me);
        let Ok(next) = serde_json::value::to_raw_value(&me) else {
            return Change::Unreadable;
        };
        if next.get().len() > max {
            return Change::TooLarge;
        }
        g.get_or_insert_with(Box::default).base = Some(next);
        done
    }

    /// The current `me`, or `None` while the handshake's still is.
    pub fn current(&self, handshake: &RawValue) -> Option<Box<RawValue>> {
        let g = self.lock();
        let changes = g.as_ref()?;
        if changes.counters.is_empty() {
            return changes.base.clone();
        }
        let base = changes.base.as_deref().unwrap_or(handshake);
        let mut me = serde_json::from_str::<Map<String, Value>>(base.get()).ok()?;
        changes.counters.lay_over(&mut me);
        serde_json::value::to_raw_value(&me).ok()
    }

    /// Whether the current `me` lists device `id`.
    pub fn has_device(&self, handshake: &RawValue, id: &str) -> bool {
        #[derive(Deserialize)]
        struct Devices<'a> {
            #[serde(default, borrow)]
            devices: Vec<Id<'a>>,
        }
        let g = self.lock();
        let current = g
            .as_ref()
            .and_then(|c| c.base.as_deref())
            .unwrap_or(handshake);
        serde_json::from_str::<Devices<'_>>(current.get())
            .is_ok_and(|d| d.devices.iter().any(|d| d.id == id))
    }
}

fn is_user(raw: &RawValue, user: &str) -> bool {
    serde_json::from_str::<Id<'_>>(raw.get()).is_ok_and(|u| u.id == user)
}
