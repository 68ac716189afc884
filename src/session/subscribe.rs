//! Subscriptions of one user's sessions on their shared upstream connection
//! (stream-event-recipients.md, "REST calls that create state on a connection"):
//! - the **lane**: every call that changes a channel subscription upstream (a watching query, a
//!   forwarded stop-watching, the release of a closed session's channels) holds it until upstream
//!   answered, so those calls reach upstream in the order the gateway decided them;
//! - the **hold**: while a session's watching call is in flight, events of channels it does not
//!   watch yet are kept (bounded by `limits.watch_hold_events`) and, once the answer is read,
//!   delivered if the session now watches their channel;
//! - the **release**: channels no session watches any more (a tab closed or reconnected) are
//!   unwatched upstream at once, so other users see `user.watching.stop`;
//! - **presence**: which users' presence each session subscribed to (`presence: true`).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::OwnedMutexGuard;

use super::hub::Hub;
use super::notify;
use super::watch::{ChannelInfo, Cid, InFlight, Presence, SessionId};
use super::Hubs;
use crate::metrics::{event_label, Limit};

/// A channel a watching answer returned.
#[derive(Debug)]
pub struct Watched {
    pub cid: String,
    /// The channel object as upstream returned it, kept for the notifications of sessions that do
    /// not watch the channel (see `notify`).
    pub channel: Option<Box<RawValue>>,
    /// The answer carried the user's `membership`.
    pub member: bool,
}

/// A watching call of one session, from before it goes upstream until its answer is read. Dropped
/// without [`WatchCall::finish`] (the call failed or the client went away), it ends the hold and
/// registers nothing.
pub struct WatchCall {
    hub: Arc<Hub>,
    session: SessionId,
    done: bool,
    /// Released after `Drop::drop` ends the hold, so no other subscription call slips in between.
    _lane: OwnedMutexGuard<()>,
}

impl WatchCall {
    /// The call succeeded: the session watches `watched`, and the held events of those channels
    /// are delivered to it, in the order upstream sent them.
    pub fn finish(mut self, watched: Vec<Watched>) {
        self.done = true;
        self.hub.end_watch(&self.session, watched);
    }
}

impl Drop for WatchCall {
    fn drop(&mut self) {
        if !self.done {
            self.hub.end_watch(&self.session, Vec::new());
        }
    }
}

impl Hub {
    /// Waits for the user's subscription lane. Hold the guard until upstream has answered the
    /// subscription call.
    pub async fn lane(&self) -> OwnedMutexGuard<()> {
        self.lane.clone().lock_owned().await
    }

    /// Starts a watching call of `session`: takes the lane, then holds the events of channels the
    /// session does not watch yet until the call ends.
    pub async fn begin_watch(self: &Arc<Self>, session: &SessionId) -> WatchCall {
        let lane = self.lane().await;
        self.lock().in_flight = Some(InFlight {
            session: session.clone(),
            held: VecDeque::new(),
        });
        WatchCall {
            hub: self.clone(),
            session: session.clone(),
            done: false,
            _lane: lane,
        }
    }

    fn end_watch(&self, session: &SessionId, watched: Vec<Watched>) {
        let mut st = self.lock();
        let Some(flight) = st.in_flight.take() else {
            return;
        };
        if st.sessions.contains_key(session) {
            for w in watched {
                if st.watches.watch(session, &w.cid) {
                    self.metrics
                        .watch_routing
                        .with_label_values(&["watch"])
                        .inc();
                }
                if let Some(channel) = w.channel {
                    if channel.get().len() <= self.bounds.channel_info_bytes {
                        let cid: Cid = Arc::from(w.cid.as_str());
                        st.channels.insert(
                            cid,
                            ChannelInfo {
                                channel,
                                member: w.member,
                            },
                        );
                    } else {
                        self.metrics.limit_hit(Limit::ChannelInfoBytes);
                    }
                }
            }
        }
        let Some(entry) = st.sessions.get(session) else {
            return;
        };
        for held in flight.held {
            let Ok(head) = super::event::EventHead::parse(held.frame.as_str()) else {
                continue;
            };
            let kind = event_label(&head.kind);
            let watching = head
                .cid
                .as_deref()
                .is_some_and(|cid| st.watches.is_watching(session, cid));
            let outcome = if watching {
                self.deliver(entry, &held.frame, held.received, kind);
                "delivered"
            } else if let Some((note, note_kind)) =
                notify::for_held(held.frame.as_str(), &self.user, &st)
            {
                self.deliver(entry, &note, held.received, note_kind);
                "notified"
            } else {
                "discarded"
            };
            self.metrics.watch_held.with_label_values(&[outcome]).inc();
        }
    }

    /// Subscribes `session` to the presence of `users` (an answer to a `presence: true` query).
    pub fn subscribe_presence(&self, session: &SessionId, users: Vec<String>) {
        let mut st = self.lock();
        if !st.sessions.contains_key(session) || users.is_empty() {
            return;
        }
        let limit = self.bounds.presence_users;
        let sub = st
            .presence
            .entry(session.clone())
            .or_insert_with(|| Presence::Users(HashSet::new()));
        if let Presence::Users(set) = sub {
            for u in users {
                set.insert(Arc::from(u));
            }
            if set.len() > limit {
                self.metrics.limit_hit(Limit::PresenceUsersPerSession);
                *sub = Presence::All;
            }
        }
    }
}

/// Unwatches upstream the channels a closed session was the last to watch, in the lane: a channel
/// watched again meanwhile (another tab, or the same tab after reconnecting) is kept.
pub(super) async fn release(hubs: Hubs, hub: Arc<Hub>, cids: Vec<Cid>) {
    let work = async {
        let _lane = hub.lane().await;
        for cid in cids {
            if hub.lock().watches.watchers(&cid).is_some() {
                continue;
            }
            let Some(conn) = hub.upstream_connection_id() else {
                return;
            };
            let cutoff = hubs.revocations().cutoff(&hub.app, &hub.user);
            let outcome = match crate::upstream::calls::stop_watching(
                hubs.upstream(),
                &hub.app,
                &hub.user,
                cutoff,
                &conn,
                &cid,
            )
            .await
            {
                Ok(()) => "ok",
                Err(e) => {
                    tracing::debug!(app = %hub.app, error = %e, "releasing a channel upstream failed");
                    "error"
                }
            };
            hub.metrics
                .subscriptions_released
                .with_label_values(&["session_closed", outcome])
                .inc();
        }
    };
    tokio::select! {
        () = work => {}
        () = hub.cancel.cancelled() => {}
    }
}
