//! Routing one upstream event among the sessions of its hub's user: the privacy verdict, then the
//! audience ([`Audience`]): every session, the sessions watching the channel (plus a hold for the
//! session whose watching call is in flight, and the notification form for sessions that watch it
//! nowhere), or the sessions subscribed to a user's presence.

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::end::SessionEnd;
use super::event::{Audience, EventHead};
use super::hub::{Entry, Hub, State};
use super::mailbox::{Delivery, Pushed};
use super::notify;
use super::watch::{Cid, Held, SessionId};
use crate::metrics::{EventKind, Limit};
use crate::privacy::filter::{self, Known, Verdict};
use crate::privacy::Privacy;
use std::sync::Arc;

/// What the upstream task does after routing an event (it holds what the hub does not: the
/// upstream and the task tracker).
pub enum Followup {
    /// Release this channel upstream: no session watches it.
    Release(Cid),
    /// A thread reply in a channel some sessions do not watch.
    ThreadReply {
        cid: Cid,
        parent: String,
        frame: Utf8Bytes,
        received: Instant,
    },
}

impl Hub {
    /// Delivers one upstream frame to the sessions that should see it, after the privacy filter.
    /// Sessions of one hub are one user, so the privacy verdict is taken once per event.
    ///
    /// Returns what the upstream task must do next, if anything ([`Followup`]).
    pub async fn route(
        &self,
        frame: Utf8Bytes,
        received: Instant,
        privacy: &Privacy,
    ) -> Option<Followup> {
        // Checked here, not inside the boxed filter: most events embed no carrier and must not
        // pay for the box.
        let frame = if frame.as_str().contains("\"thread_participants\"") {
            match Box::pin(self.filter_embedded(frame, privacy)).await {
                Some(f) => f,
                None => return None,
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
                return None;
            }
        };
        let kind = EventKind::of(&head.kind);
        self.metrics
            .events_received
            .with_label_values(&[kind.label()])
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
                self.dropped(reason, kind.label());
                return None;
            }
        }
        let mut st = self.lock();
        let audience = head.audience(&self.user);
        // The session whose watching call is in flight gets nothing directly: every event it
        // would or might get is held, in order, and replayed once its answer is read
        // (`subscribe`), so a held `message.new` never arrives after a later event of its channel.
        let flight = st.in_flight.as_ref().map(|f| f.session.clone());
        let skip = |id: &SessionId| flight.as_ref() == Some(id);
        let mut reached = 0usize;
        match &audience {
            Audience::Gateway => return None,
            Audience::AllSessions => {
                for (_, entry) in st.sessions.iter().filter(|(id, _)| !skip(id)) {
                    self.deliver(entry, &frame, received, kind);
                    reached += 1;
                }
            }
            Audience::Presence(user) => {
                for (id, entry) in st.sessions.iter().filter(|(id, _)| !skip(id)) {
                    if st.presence.get(id).is_some_and(|p| p.covers(user)) {
                        self.deliver(entry, &frame, received, kind);
                        reached += 1;
                    }
                }
            }
            Audience::Watchers(cid) => {
                reached += self.to_watchers(&st, &head, cid, &frame, received, flight.as_ref());
                notify::learn_membership(&head, cid, &self.user, &mut st);
                notify::learn_own_message(self, &head, &mut st);
            }
        }
        if let Some(session) = &flight {
            if wanted_by_flight(&st, session, &audience) {
                reached += 1;
                self.hold(&mut st, &frame, received, kind);
            }
        }
        if reached > 0 {
            let Audience::Watchers(cid) = audience else {
                return None;
            };
            // A thread reply: the sessions that do not watch its channel get
            // `notification.thread_message_new` if the user takes part in the thread, which only
            // upstream knows (see `notify::thread_reply`).
            let parent = notify::thread_reply_parent(&head, &self.user)?;
            let unwatched = st
                .sessions
                .keys()
                .any(|id| !skip(id) && !st.watches.is_watching(id, cid));
            return unwatched.then(|| Followup::ThreadReply {
                cid: Arc::from(cid),
                parent,
                frame: frame.clone(),
                received,
            });
        }
        match audience {
            Audience::Watchers(cid) => {
                self.dropped("not_watched", kind.label());
                // Upstream still sends a channel no session watches (a watching call whose answer
                // was never read, a failed release): release it now. Once per channel at a time.
                let cid: Cid = Arc::from(cid);
                st.releasing
                    .insert(cid.clone())
                    .then_some(Followup::Release(cid))
            }
            Audience::Presence(_) => {
                self.dropped("not_subscribed", kind.label());
                None
            }
            _ => None,
        }
    }

    /// Holds `frame` for the session whose watching call is in flight; past
    /// `limits.watch_hold_events` the session is closed with a reconnect code instead.
    fn hold(&self, st: &mut State, frame: &Utf8Bytes, received: Instant, kind: EventKind) {
        let Some(f) = st.in_flight.as_mut() else {
            return;
        };
        if f.overflowed {
            return;
        }
        if f.held.len() < self.bounds.hold_events {
            f.held.push_back(Held {
                frame: frame.clone(),
                received,
            });
            self.metrics.watch_held.with_label_values(&["held"]).inc();
            return;
        }
        // Policy: a session that would lose events of a channel it is subscribing to is closed
        // with a reconnect code; its SDK then recovers the state.
        f.overflowed = true;
        self.metrics
            .watch_held
            .with_label_values(&["dropped"])
            .inc();
        self.metrics.limit_hit(Limit::WatchHoldEvents);
        self.dropped("watch_hold_full", kind.label());
        let session = f.session.clone();
        if let Some(entry) = st.sessions.get(&session) {
            entry.mailbox.close(SessionEnd::SlowConsumer);
        }
    }

    /// A channel event: to the sessions watching `cid` and, for the sessions that watch it nowhere,
    /// the notification Stream sends a client that does not watch the channel (see `notify`). The
    /// session of the call in flight (`flight`) is left to the hold. Returns how many it reached.
    fn to_watchers(
        &self,
        st: &State,
        head: &EventHead<'_>,
        cid: &str,
        frame: &Utf8Bytes,
        received: Instant,
        flight: Option<&SessionId>,
    ) -> usize {
        let kind = EventKind::of(&head.kind);
        let mut reached = 0;
        if let Some(ids) = st.watches.watchers(cid) {
            for id in ids.iter().filter(|id| Some(*id) != flight) {
                if let Some(entry) = st.sessions.get(id) {
                    self.deliver(entry, frame, received, kind);
                    reached += 1;
                }
            }
        }
        let watching = st.watches.watchers(cid).map_or(0, |w| w.len());
        if st.sessions.len() > watching + usize::from(flight.is_some()) {
            if let Some((note, note_kind)) =
                notify::for_non_watchers(frame.as_str(), head, cid, &self.user, st)
            {
                for (id, entry) in &st.sessions {
                    if Some(id) == flight || st.watches.is_watching(id, cid) {
                        continue;
                    }
                    self.deliver(entry, &note, received, note_kind);
                    reached += 1;
                }
            }
        }
        reached
    }

    /// Counts an event deliberately not delivered.
    pub(super) fn dropped(&self, reason: &str, kind: &str) {
        self.metrics
            .events_dropped
            .with_label_values(&[reason, kind])
            .inc();
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
                self.dropped("unfilterable", "other");
                None
            }
        }
    }

    pub(super) fn deliver(
        &self,
        entry: &Entry,
        frame: &Utf8Bytes,
        received: Instant,
        kind: EventKind,
    ) {
        let delivered = || self.metrics.delivered(entry.transport.index(), kind).inc();
        match entry.mailbox.push(Delivery {
            frame: frame.clone(),
            received,
        }) {
            Pushed::Written => {
                // Written from here (a direct writer): what the session's task would have counted.
                self.metrics
                    .event_delivery_seconds
                    .observe(received.elapsed().as_secs_f64());
                self.metrics.ws_bytes_out.inc_by(frame.len() as u64);
                delivered();
            }
            Pushed::Queued => delivered(),
            Pushed::Full => {
                // Policy: a session that cannot keep up is closed with a reconnect code (its SDK
                // then recovers state), never allowed to slow the user's other sessions.
                self.dropped("slow_consumer", kind.label());
                self.metrics.limit_hit(Limit::SessionQueue);
                entry.mailbox.close(SessionEnd::SlowConsumer);
            }
            Pushed::Closed => {}
        }
    }
}

/// Whether the session of the watching call in flight would get this event now, or may get it once
/// the call's answer is read (a channel it may be subscribing to: the call's one channel, or any
/// for calls whose channels are known only from their answer).
fn wanted_by_flight(st: &State, session: &SessionId, audience: &Audience<'_>) -> bool {
    match audience {
        Audience::Gateway => false,
        Audience::AllSessions => true,
        Audience::Presence(user) => st.presence.get(session).is_some_and(|p| p.covers(user)),
        Audience::Watchers(cid) => {
            st.watches.is_watching(session, cid)
                || st
                    .in_flight
                    .as_ref()
                    .is_none_or(|f| f.only.as_deref().is_none_or(|only| only == *cid))
        }
    }
}
