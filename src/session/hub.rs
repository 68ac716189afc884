//! One user's hub: the sessions of one (app, user), their watch table, and the status of the single
//! upstream connection they share. Routing an upstream event to the right sessions happens here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::mailbox::{Delivery, Mailbox, Pushed};

use super::end::SessionEnd;
use super::event::{Audience, EventHead};
use super::watch::{SessionId, WatchTable};
use super::Transport;
use crate::metrics::{event_label, Metrics};
use crate::privacy::filter::{self, Known, Verdict};
use crate::privacy::Privacy;

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
}

impl Hub {
    pub(super) fn new(
        app: Arc<str>,
        user: Arc<str>,
        details: String,
        cancel: CancellationToken,
        metrics: Arc<Metrics>,
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

    /// Records that `session` watches each of `cids`.
    pub fn watch(&self, session: &SessionId, cids: &[String]) {
        let mut st = self.lock();
        if !st.sessions.contains_key(session) {
            return;
        }
        for cid in cids {
            if st.watches.watch(session, cid) {
                self.metrics
                    .watch_routing
                    .with_label_values(&["watch"])
                    .inc();
            }
        }
    }

    /// Stops `session` watching `cid`; true when no session of this user watches it any more, so
    /// the upstream subscription may be released.
    pub fn unwatch(&self, session: &SessionId, cid: &str) -> bool {
        let released = self.lock().watches.unwatch(session, cid);
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

    /// Delivers one upstream frame to the sessions that should see it, after the privacy filter.
    /// Sessions of one hub are one user, so the privacy verdict is taken once per event.
    pub async fn route(&self, frame: Utf8Bytes, received: Instant, privacy: &Privacy) {
        // Checked here, not inside the boxed filter: most events embed no carrier and must not
        // pay for the box.
        let frame = if frame.as_str().contains("\"thread_participants\"") {
            match Box::pin(self.filter_embedded(frame, privacy)).await {
                Some(f) => f,
                None => return,
            }
        } else {
            frame
        };
        let head = match EventHead::parse(frame.as_str()) {
            Ok(h) => h,
            Err(_) => {
                self.metrics
                    .events_dropped
                    .with_label_values(&["unparseable", "other"])
                    .inc();
                return;
            }
        };
        let kind = event_label(&head.kind);
        self.metrics
            .events_received
            .with_label_values(&[kind])
            .inc();
        let sender = head.user.as_ref().map(|u| u.id.as_ref());
        if filter::indicator(&head.kind).is_some() && sender.is_some_and(|s| s != &*self.user) {
            let known = match sender {
                // Boxed: the lookup's future is large and only typing/read events from other
                // users need it; inline, it would sit in every hub's upstream task.
                Some(s) => match Box::pin(privacy.get(&self.app, s)).await {
                    Ok(settings) => Known::Settings(settings),
                    Err(_) => Known::Unknown,
                },
                None => Known::Unknown,
            };
            let policy = privacy.config().on_lookup_failure;
            if let Verdict::Drop(reason) =
                filter::verdict(&head.kind, sender, &self.user, || known, policy)
            {
                self.metrics
                    .events_dropped
                    .with_label_values(&[reason, kind])
                    .inc();
                return;
            }
        }
        let st = self.lock();
        match head.audience() {
            Audience::Gateway => {}
            Audience::AllSessions => {
                for entry in st.sessions.values() {
                    self.deliver(entry, &frame, received, kind);
                }
            }
            Audience::Watchers(cid) => match st.watches.watchers(cid) {
                Some(ids) => {
                    for id in ids {
                        if let Some(entry) = st.sessions.get(id) {
                            self.deliver(entry, &frame, received, kind);
                        }
                    }
                }
                None => self
                    .metrics
                    .events_dropped
                    .with_label_values(&["not_watched", kind])
                    .inc(),
            },
        }
    }

    /// Removes other users' hidden state that an event embeds (thread participants' `last_read_at`
    /// in `message.read`, `notification.mark_read` and `thread.updated`: the carriers of
    /// [`crate::privacy::stream`]), for this hub's user; [`Hub::route`] calls it only for frames
    /// that mention a carrier, and every other frame passes as the bytes upstream sent. An
    /// embedding frame that cannot be filtered is dropped and counted, never delivered.
    async fn filter_embedded(&self, frame: Utf8Bytes, privacy: &Privacy) -> Option<Utf8Bytes> {
        let bytes = bytes::Bytes::from(frame.clone());
        let shape = crate::privacy::stream::Shape::Event;
        let filtered = crate::privacy::rewrite::filter_body(
            bytes.clone(),
            shape,
            &self.user,
            &self.app,
            privacy,
        )
        .await;
        match filtered.map(Utf8Bytes::try_from) {
            Ok(Ok(out)) if out.len() == bytes.len() => Some(frame),
            Ok(Ok(out)) => Some(out),
            _ => {
                self.metrics
                    .events_dropped
                    .with_label_values(&["unfilterable", "other"])
                    .inc();
                None
            }
        }
    }

    fn deliver(&self, entry: &Entry, frame: &Utf8Bytes, received: Instant, kind: &'static str) {
        match entry.mailbox.push(Delivery {
            frame: frame.clone(),
            received,
        }) {
            Pushed::Queued => self
                .metrics
                .events_delivered
                .with_label_values(&[entry.transport.label(), kind])
                .inc(),
            Pushed::Full => {
                // Policy: a session that cannot keep up is closed with a reconnect code (its SDK
                // then recovers state), never allowed to slow the user's other sessions.
                self.metrics
                    .events_dropped
                    .with_label_values(&["slow_consumer", kind])
                    .inc();
                self.metrics.limit_hit(crate::metrics::Limit::SessionQueue);
                entry.mailbox.close(SessionEnd::SlowConsumer);
            }
            Pushed::Closed => {}
        }
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
}
