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

use futures_util::StreamExt;

use super::event::Audience;
use super::hub::{Hub, State};
use super::notify;
use super::watch::{valid_cid, ChannelInfo, Cid, InFlight, Presence, SessionId};
use super::Hubs;
use crate::metrics::{EventKind, Limit};

/// A channel a watching answer returned.
#[derive(Debug)]
pub struct Watched {
    pub cid: String,
    /// The channel object as upstream returned it, kept for the notifications of sessions that do
    /// not watch the channel (see `notify`).
    pub channel: Option<Box<RawValue>>,
    /// Whether the answer said the user is a member (`membership`); `None` when the answer says
    /// nothing of it (threads, `sync`).
    pub member: Option<bool>,
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

    /// Starts a watching call of `session`: takes the lane, then holds every event the session
    /// would or might get (`only`: the one channel a single-channel query subscribes to) until the
    /// call ends.
    pub async fn begin_watch(
        self: &Arc<Self>,
        session: &SessionId,
        only: Option<&str>,
    ) -> WatchCall {
        let lane = self.lane().await;
        self.lock().in_flight = Some(InFlight {
            session: session.clone(),
            only: only.map(Arc::from),
            held: VecDeque::new(),
            overflowed: false,
        });
        WatchCall {
            hub: self.clone(),
            session: session.clone(),
            done: false,
            _lane: lane,
        }
    }

    /// Ends the call in flight: registers what it watched (a session gone meanwhile registers
    /// nothing; its channels are released when upstream next sends one), then replays the held
    /// events to the session in order, each decided as it would be now.
    fn end_watch(&self, session: &SessionId, watched: Vec<Watched>) {
        let mut st = self.lock();
        let Some(flight) = st.in_flight.take() else {
            return;
        };
        if st.sessions.contains_key(session) {
            for w in watched {
                self.register(&mut st, session, w);
            }
        }
        let Some(entry) = st.sessions.get(session) else {
            return;
        };
        for held in flight.held {
            let Ok(head) = super::event::EventHead::parse(held.frame.as_str()) else {
                continue;
            };
            let kind = EventKind::of(&head.kind);
            let outcome = match head.audience(&self.user) {
                Audience::Gateway => "discarded",
                Audience::AllSessions => "delivered",
                Audience::Presence(user) => {
                    if st.presence.get(session).is_some_and(|p| p.covers(user)) {
                        "delivered"
                    } else {
                        "discarded"
                    }
                }
                Audience::Watchers(cid) if st.watches.is_watching(session, cid) => "delivered",
                Audience::Watchers(cid) => {
                    match notify::for_non_watchers(held.frame.as_str(), &head, cid, &self.user, &st)
                    {
                        Some((note, note_kind)) => {
                            self.deliver(entry, &note, held.received, note_kind);
                            "notified"
                        }
                        None => "discarded",
                    }
                }
            };
            if outcome == "delivered" {
                self.deliver(entry, &held.frame, held.received, kind);
            }
            self.metrics.watch_held.with_label_values(&[outcome]).inc();
        }
    }

    /// Registers one watched channel of `session` (at most `limits.watches_per_session`), and what
    /// the answer said about it.
    fn register(&self, st: &mut State, session: &SessionId, w: Watched) {
        if !valid_cid(&w.cid) {
            return;
        }
        if !st.watches.is_watching(session, &w.cid) {
            if st.watches.count(session) >= self.bounds.watches_per_session {
                self.metrics.limit_hit(Limit::WatchesPerSession);
                return;
            }
            st.watches.watch(session, &w.cid);
            self.metrics
                .watch_routing
                .with_label_values(&["watch"])
                .inc();
        }
        let cid: Cid = Arc::from(w.cid.as_str());
        let known = st.channels.get(&cid).map(|c| c.member);
        // An answer that says nothing of membership (threads, sync) keeps what was known; with
        // nothing known, the user is taken for a member: a thread or a channel one syncs is one
        // the user can read, which for the channel types that notify means a member.
        let member = w.member.or(known).unwrap_or(true);
        match w.channel {
            Some(channel) if channel.get().len() <= self.bounds.channel_info_bytes => {
                st.channels.insert(cid, ChannelInfo { channel, member });
            }
            Some(_) => self.metrics.limit_hit(Limit::ChannelInfoBytes),
            None => {
                if let Some(info) = st.channels.get_mut(&cid) {
                    info.member = member;
                }
            }
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

/// Calls to release channels that run at once, in the lane.
const RELEASE_CONCURRENCY: usize = 8;

/// Unwatches upstream, in the lane, channels no session watches: those a closed session was the
/// last to watch (`via` = `session_closed`), or one upstream still sends (`orphan`). A channel
/// watched again meanwhile (another tab, or the same tab after reconnecting) is kept. The calls
/// run a few at a time, so a reconnecting tab's `recoverState` does not wait behind them one by one.
pub(super) async fn release(hubs: Hubs, hub: Arc<Hub>, cids: Vec<Cid>, via: &'static str) {
    let work = async {
        let _lane = hub.lane().await;
        futures_util::stream::iter(cids)
            .for_each_concurrent(RELEASE_CONCURRENCY, |cid| {
                let (hubs, hub) = (&hubs, &hub);
                async move {
                    let outcome = release_one(hubs, hub, &cid).await;
                    let mut st = hub.lock();
                    st.releasing.remove(&cid);
                    if outcome == Some("ok") && st.watches.watchers(&cid).is_none() {
                        st.channels.remove(&cid);
                    }
                    drop(st);
                    if let Some(outcome) = outcome {
                        hub.metrics
                            .subscriptions_released
                            .with_label_values(&[via, outcome])
                            .inc();
                    }
                }
            })
            .await;
    };
    tokio::select! {
        () = work => {}
        () = hub.cancel.cancelled() => {}
    }
}

/// One release call; `None` when none was needed (watched again) or possible (no connection).
async fn release_one(hubs: &Hubs, hub: &Hub, cid: &str) -> Option<&'static str> {
    if hub.lock().watches.watchers(cid).is_some() || !valid_cid(cid) {
        return None;
    }
    let conn = hub.upstream_connection_id()?;
    let cutoff = hubs.revocations().cutoff(&hub.app, &hub.user);
    let called = crate::upstream::calls::stop_watching(
        hubs.upstream(),
        &hub.app,
        &hub.user,
        cutoff,
        &conn,
        cid,
    )
    .await;
    Some(match called {
        Ok(()) => "ok",
        Err(e) => {
            tracing::debug!(app = %hub.app, error = %e, "releasing a channel upstream failed");
            "error"
        }
    })
}
