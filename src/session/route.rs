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
use super::watch::{Held, SessionId};
use crate::metrics::{event_label, Limit};
use crate::privacy::filter::{self, Known, Verdict};
use crate::privacy::Privacy;

impl Hub {
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
        let mut st = self.lock();
        match head.audience(&self.user) {
            Audience::Gateway => {}
            Audience::AllSessions => {
                for entry in st.sessions.values() {
                    self.deliver(entry, &frame, received, kind);
                }
            }
            Audience::Watchers(cid) => self.to_watchers(&mut st, &head, cid, &frame, received),
            Audience::Presence(user) => {
                let mut reached = false;
                for (id, entry) in &st.sessions {
                    if st.presence.get(id).is_some_and(|p| p.covers(user)) {
                        self.deliver(entry, &frame, received, kind);
                        reached = true;
                    }
                }
                if !reached {
                    self.dropped("not_subscribed", kind);
                }
            }
        }
    }

    /// A channel event: to the sessions watching `cid`; held for the session whose watching call
    /// is in flight (it may be subscribing to `cid`); and, for the sessions that watch it nowhere,
    /// the notification Stream sends a client that does not watch the channel (see `notify`).
    fn to_watchers(
        &self,
        st: &mut State,
        head: &EventHead<'_>,
        cid: &str,
        frame: &Utf8Bytes,
        received: Instant,
    ) {
        let kind = event_label(&head.kind);
        let mut reached = 0;
        if let Some(ids) = st.watches.watchers(cid) {
            for id in ids {
                if let Some(entry) = st.sessions.get(id) {
                    self.deliver(entry, frame, received, kind);
                    reached += 1;
                }
            }
        }
        let mut held_for: Option<SessionId> = None;
        if let Some(f) = st.in_flight.as_mut() {
            if !st.watches.is_watching(&f.session, cid) {
                held_for = Some(f.session.clone());
                if f.held.len() < self.bounds.hold_events {
                    f.held.push_back(Held {
                        frame: frame.clone(),
                        received,
                    });
                    self.metrics.watch_held.with_label_values(&["held"]).inc();
                } else {
                    // Policy: a session that would lose events of a channel it is subscribing to
                    // is closed with a reconnect code; its SDK then recovers the state.
                    self.metrics
                        .watch_held
                        .with_label_values(&["dropped"])
                        .inc();
                    self.metrics.limit_hit(Limit::WatchHoldEvents);
                    self.dropped("watch_hold_full", kind);
                    if let Some(entry) = st.sessions.get(&f.session) {
                        entry.mailbox.close(SessionEnd::SlowConsumer);
                    }
                }
            }
        }
        let others = st
            .sessions
            .len()
            .saturating_sub(reached + usize::from(held_for.is_some()));
        if others > 0 {
            if let Some((note, note_kind)) =
                notify::for_non_watchers(frame.as_str(), head, cid, &self.user, st)
            {
                for (id, entry) in &st.sessions {
                    if held_for.as_ref() == Some(id) || st.watches.is_watching(id, cid) {
                        continue;
                    }
                    self.deliver(entry, &note, received, note_kind);
                    reached += 1;
                }
            }
        }
        if reached == 0 && held_for.is_none() {
            self.dropped("not_watched", kind);
        }
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
        kind: &'static str,
    ) {
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
                self.dropped("slow_consumer", kind);
                self.metrics.limit_hit(Limit::SessionQueue);
                entry.mailbox.close(SessionEnd::SlowConsumer);
            }
            Pushed::Closed => {}
        }
    }
}
