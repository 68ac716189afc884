//! One user's hub: the sessions of one (app, user), their subscriptions (watch table, presence,
//! the watching call in flight), and the status of the single upstream connection they share.
//! Routing an upstream event to the right sessions is in `route`; the subscription lane, holds and
//! releases in `subscribe`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::end::SessionEnd;
use super::mailbox::Mailbox;
use super::watch::{ChannelInfo, Cid, InFlight, Presence, SessionId, WatchTable};
use super::Transport;
use crate::metrics::Metrics;

/// The upstream connection's handshake result.
pub struct Ready {
    pub connection_id: String,
    pub me: Box<RawValue>,
}

/// State of the hub's upstream connection.
#[derive(Clone)]
pub enum Status {
    Connecting,
    Ready(Arc<Ready>),
    Down(Arc<str>),
}

pub(super) struct Entry {
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) transport: Transport,
    /// The session's token's `iat`, when it has a token (anonymous sessions have none): a
    /// revocation learned later ends the session if it covers this token.
    pub(super) token_iat: Option<Option<i64>>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) sessions: HashMap<SessionId, Entry>,
    pub(super) watches: WatchTable,
    /// Set once the hub left the registry; a retired hub takes no new sessions.
    pub(super) retired: bool,
    /// Bumped on every attach, so a linger timer started before it does not retire the hub.
    pub(super) epoch: u64,
    /// The `user_details` last sent upstream, to forward changes from later sessions.
    pub(super) details: String,
    /// Presence subscriptions per session (`presence: true` on queries).
    pub(super) presence: HashMap<SessionId, Presence>,
    /// What a watching answer said about each watched channel (for notifications synthesised for
    /// sessions that do not watch it); removed with the channel's last watcher.
    pub(super) channels: HashMap<Cid, ChannelInfo>,
    /// The watching call in flight (at most one: they hold the lane), with its held events.
    pub(super) in_flight: Option<InFlight>,
    /// Threads (by parent message id) the user is known to take part in, or not, with the parent's
    /// author: learned from the user's own messages and from upstream (see `notify`); cleared when
    /// it reaches `limits.thread_cache_entries`.
    pub(super) threads: HashMap<Arc<str>, Participation>,
    /// Channels a release upstream is under way for (so an orphan is released once at a time).
    pub(super) releasing: std::collections::HashSet<Cid>,
}

/// Sessions of one (app, user) sharing one upstream connection.
pub struct Hub {
    pub app: Arc<str>,
    pub user: Arc<str>,
    pub(super) state: Mutex<State>,
    pub(super) status: watch::Sender<Status>,
    /// Cancelled when the hub retires; stops the upstream task.
    pub(super) cancel: CancellationToken,
    pub(super) metrics: Arc<Metrics>,
    /// The user's `me`, kept current for sessions that join later.
    pub(super) me: super::me::LiveMe,
    /// Held by every call that changes a channel subscription upstream until upstream answered
    /// (see `subscribe`), so they reach upstream in the order the gateway decided them.
    pub(super) lane: Arc<tokio::sync::Mutex<()>>,
    /// Per-hub bounds, from `[limits]`.
    pub(super) bounds: Bounds,
}

/// Whether the user takes part in a thread, and who wrote its parent message.
#[derive(Clone, Debug, Default)]
pub(super) struct Participation {
    pub(super) takes_part: bool,
    pub(super) author: Option<Arc<str>>,
}

/// The bounds a hub applies (`limits.watch_hold_events`, `limits.watches_per_session`,
/// `limits.presence_users_per_session`, `limits.channel_info_bytes`).
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub hold_events: usize,
    pub thread_cache_entries: usize,
    pub watches_per_session: usize,
    pub presence_users: usize,
    pub channel_info_bytes: usize,
}

impl Hub {
    pub(super) fn new(
        app: Arc<str>,
        user: Arc<str>,
        details: String,
        cancel: CancellationToken,
        metrics: Arc<Metrics>,
        bounds: Bounds,
    ) -> Self {
        Hub {
            app,
            user,
            state: Mutex::new(State {
                details,
                ..State::default()
            }),
            status: watch::Sender::new(Status::Connecting),
            cancel,
            metrics,
            lane: Arc::default(),
            bounds,
            me: super::me::LiveMe::default(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than refusing service forever would.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Upstream connection id, once connected.
    pub fn upstream_connection_id(&self) -> Option<String> {
        match &*self.status.borrow() {
            Status::Ready(r) => Some(r.connection_id.clone()),
            _ => None,
        }
    }

    /// Number of sessions attached.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Stops `session` watching `cid`; true when no session of this user watches it any more, so
    /// the upstream subscription may be released. Call it holding the lane ([`Hub::lane`]).
    pub fn unwatch(&self, session: &SessionId, cid: &str) -> bool {
        let released = {
            let mut st = self.lock();
            let released = st.watches.unwatch(session, cid);
            if released {
                st.channels.remove(cid);
            }
            released
        };
        let action = if released {
            "unwatch_upstream"
        } else {
            "unwatch_local"
        };
        self.metrics
            .watch_routing
            .with_label_values(&[action])
            .inc();
        released
    }

    /// Ends, as an expired token ends them, the sessions whose token `revoked` says is revoked.
    pub(super) fn end_revoked(&self, revoked: impl Fn(Option<i64>) -> bool) -> usize {
        let mut n = 0;
        for entry in self.lock().sessions.values() {
            if entry.token_iat.is_some_and(&revoked) && entry.mailbox.close_reason().is_none() {
                entry.mailbox.close(SessionEnd::TokenRevoked);
                n += 1;
            }
        }
        n
    }

    /// Closes every session (upstream lost or gateway retiring the hub).
    pub(super) fn close_all(&self, end: SessionEnd) {
        for entry in self.lock().sessions.values() {
            entry.mailbox.close(end);
        }
    }

    /// Ends every WebSocket session of this hub with `end` (long-poll sessions drain by their own
    /// rules).
    pub(super) fn close_ws(&self, end: SessionEnd) {
        for entry in self.lock().sessions.values() {
            if entry.transport == super::Transport::Ws {
                entry.mailbox.close(end);
            }
        }
    }
}
