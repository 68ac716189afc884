//! Sessions and multiplexing: every session of one (app, user), whatever its transport, is attached
//! to that user's [`Hub`], which owns the single upstream connection they share.
//!
//! Lifecycle: the first session creates the hub and its upstream task; later sessions join it; the
//! last one to leave starts a linger timer, after which the hub retires and its upstream connection
//! closes. When the upstream connection is lost, the hub retires at once and closes every session
//! with a reconnect code (1011): each SDK reconnects, gets a fresh upstream connection, and its
//! `recoverState` re-watches its channels (`connection.recovered`). We chose this over replaying
//! watches ourselves because the SDK then also refetches the messages it missed while the upstream
//! was down, which a silent re-subscribe could not give it.

pub mod app_settings;
mod backoff;
pub mod device;
pub mod end;
pub mod event;
mod hub;
pub mod id;
pub mod longpoll;
pub mod mailbox;
pub mod me;
mod notify;
mod refresh;
mod route;
pub mod subscribe;
mod upstream_task;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

pub use end::SessionEnd;
pub use hub::{Bounds, Hub, Ready, Status};
pub use mailbox::{Delivery, Direct, Flushed, Mailbox, Next};
pub use subscribe::{WatchCall, Watched};
pub use upstream_task::DISCONNECT_REASONS;
pub use watch::SessionId;

use crate::auth::{AuthError, Identity, Revocations, TokenKind};
use crate::error::EdgeError;
use crate::metrics::{Limit, Metrics};
use crate::privacy::Privacy;

use crate::shutdown::Shutdown;
use crate::upstream::Upstream;

/// How a session reaches its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ws,
    LongPoll,
}

impl Transport {
    pub fn label(self) -> &'static str {
        crate::metrics::TRANSPORTS[self.index()]
    }

    /// Its position in [`crate::metrics::TRANSPORTS`].
    pub fn index(self) -> usize {
        match self {
            Transport::Ws => 0,
            Transport::LongPoll => 1,
        }
    }
}

type HubKey = (Arc<str>, Arc<str>);

struct Inner {
    hubs: Mutex<HashMap<HubKey, Arc<Hub>>>,
    /// Session id → hub, for REST `connection_id` rewriting and ownership checks.
    sessions: Mutex<HashMap<SessionId, Arc<Hub>>>,
    upstream: Arc<Upstream>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tasks: Shutdown,
    limits: crate::config::Limits,
    backoff: backoff::Backoff,
    privacy: Arc<Privacy>,
    revocations: Arc<Revocations>,
    /// Wakes the app-settings task for an immediate `GET /app` (SIGHUP, `PATCH /app` seen).
    app_settings_now: tokio::sync::Notify,
    /// How long a session ended for its token keeps its id bound (see [`Attachment::end_for_token`]).
    ended_grace: Duration,
    /// Mints and checks session ids (they name their owner replica).
    ids: Arc<id::Ids>,
}

/// The registry of hubs.
#[derive(Clone)]
pub struct Hubs {
    inner: Arc<Inner>,
}

/// A session attached to its hub. Dropping it detaches the session.
impl Attachment {
    /// The gateway's metrics (for delivery-latency accounting by transports).
    pub fn hub_metrics(&self) -> &Arc<Metrics> {
        &self.hub.metrics
    }
}

pub struct Attachment {
    pub id: SessionId,
    /// Events routed to this session, and why it must close.
    pub mailbox: Arc<Mailbox>,
    pub ready: Arc<Ready>,
    pub hub: Arc<Hub>,
    /// Detaches the session when the attachment drops.
    guard: Guard,
}

impl Attachment {
    /// Ends the session because its token expired or was revoked. Its events stop at once, but its
    /// `connection_id` stays bound to the user's upstream connection for the configured grace
    /// (`auth.ended_session_grace_seconds`): the SDK keeps sending it on REST calls until it has
    /// reconnected, and those calls (retried by the SDK with a refreshed token after code 40) must
    /// not fail with code 46. The bound id also keeps the hub from retiring meanwhile.
    pub fn end_for_token(&mut self, end: SessionEnd) {
        self.mailbox.close(end);
        self.guard.grace = Some(self.guard.hubs.inner.ended_grace);
    }
}

struct Guard {
    hubs: Hubs,
    hub: Arc<Hub>,
    id: SessionId,
    /// Detach only after this long (a session ended for its token; see `end_for_token`).
    grace: Option<Duration>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(grace) = self.grace.filter(|g| !g.is_zero()) else {
            self.hubs.detach(&self.hub, &self.id);
            return;
        };
        let (hubs, hub, id) = (self.hubs.clone(), self.hub.clone(), self.id.clone());
        let stop = hubs.inner.shutdown.clone();
        self.hubs.inner.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = stop.cancelled() => {}
            }
            hubs.detach(&hub, &id);
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hubs {
    // Each argument is a distinct handle `gateway::start` builds once and shares.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        upstream: Arc<Upstream>,
        metrics: Arc<Metrics>,
        privacy: Arc<Privacy>,
        limits: crate::config::Limits,
        tasks: Shutdown,
        revocations: Arc<Revocations>,
        ended_grace: Duration,
        ids: Arc<id::Ids>,
    ) -> Self {
        Hubs {
            inner: Arc::new(Inner {
                hubs: Mutex::default(),
                sessions: Mutex::default(),
                metrics,
                privacy,
                limits,
                revocations,
                app_settings_now: tokio::sync::Notify::new(),
                ended_grace,
                ids,

                shutdown: tasks.token.clone(),
                tasks,
                backoff: backoff::Backoff::new(upstream.config.backoff_max),
                upstream,
            }),
        }
    }

    /// Attaches a new session of `identity` to its hub, creating the hub (and its upstream
    /// connection) if needed, and waits until the upstream connection is ready.
    ///
    /// # Errors
    /// Upstream unavailable or not ready in time (retryable), or the gateway is draining.
    pub async fn attach(
        &self,
        app: &str,
        identity: &Identity,
        details: &RawValue,
        transport: Transport,
        queue: usize,
    ) -> Result<Attachment, EdgeError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(EdgeError::Draining);
        }
        let id: SessionId = self.inner.ids.mint(app);
        let mailbox = Arc::new(Mailbox::new(queue));
        let (hub, details_changed) =
            self.join_hub(app, identity, details, &id, &mailbox, transport)?;
        lock(&self.inner.sessions).insert(id.clone(), hub.clone());
        let guard = Guard {
            hubs: self.clone(),
            hub: hub.clone(),
            id: id.clone(),
            grace: None,
        };

        let mut status = hub.status.subscribe();
        let budget = self.inner.upstream.config.connect_timeout + Duration::from_secs(1);
        let wait = async {
            loop {
                match &*status.borrow_and_update() {
                    Status::Ready(r) => return Ok(r.clone()),
                    Status::Down(why) => {
                        return Err(EdgeError::UpstreamUnavailable(why.to_string()))
                    }
                    Status::Connecting => {}
                }
                if status.changed().await.is_err() {
                    return Err(EdgeError::UpstreamUnavailable("upstream task ended".into()));
                }
            }
        };
        let ready = tokio::time::timeout(budget, wait)
            .await
            .map_err(|_| EdgeError::UpstreamTimeout)??;
        // Checked again now that the session is in the hub and upstream's `me` (with the user's
        // cutoff) has been learned: a revocation learned since the token was validated either
        // sees this session in the hub or is seen here.
        if identity.kind != TokenKind::Anonymous
            && self
                .inner
                .revocations
                .is_revoked(app, &identity.user_id, identity.iat)
        {
            return Err(AuthError::Revoked.into());
        }
        if details_changed {
            // A later session brought different user details: forward them as an update rather
            // than dropping them (stream-protocol.md 8).
            upstream_task::forward_details(
                &self.inner.upstream,
                &self.inner.privacy,
                &self.inner.tasks,
                app,
                &hub.user,
                self.revocations().cutoff(app, &hub.user),
                details,
            );
        }
        Ok(Attachment {
            id,
            mailbox,
            ready,
            hub,
            guard,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn join_hub(
        &self,
        app: &str,
        identity: &Identity,
        details: &RawValue,
        id: &SessionId,
        mailbox: &Arc<Mailbox>,
        transport: Transport,
    ) -> Result<(Arc<Hub>, bool), EdgeError> {
        let limits = &self.inner.limits;
        let mut hubs = lock(&self.inner.hubs);
        if lock(&self.inner.sessions).len() >= limits.max_sessions {
            return Err(self.limit_hit(Limit::MaxSessions, "too many sessions on this gateway"));
        }
        let key: HubKey = (Arc::from(app), identity.user_id.clone());
        let (hub, created) = match hubs.get(&key) {
            Some(h) => {
                if h.session_count() >= limits.max_sessions_per_user {
                    return Err(self
                        .limit_hit(Limit::MaxSessionsPerUser, "too many sessions for this user"));
                }
                (h.clone(), false)
            }
            None => {
                // Only when the gateway holds that many hubs in total can one app be at its limit,
                // so the count is taken only then.
                if hubs.len() >= limits.max_upstream_per_app
                    && hubs.keys().filter(|(a, _)| &**a == app).count()
                        >= limits.max_upstream_per_app
                {
                    return Err(self.limit_hit(
                        Limit::MaxUpstreamPerApp,
                        "too many upstream connections for this app",
                    ));
                }
                let hub = Arc::new(Hub::new(
                    key.0.clone(),
                    key.1.clone(),
                    details.get().to_string(),
                    self.inner.shutdown.child_token(),
                    self.inner.metrics.clone(),
                    Bounds {
                        hold_events: limits.watch_hold_events,
                        thread_cache_entries: limits.thread_cache_entries,
                        watches_per_session: limits.watches_per_session,
                        presence_users: limits.presence_users_per_session,
                        channel_info_bytes: limits.channel_info_bytes,
                    },
                ));
                hubs.insert(key, hub.clone());
                (hub, true)
            }
        };
        let changed = {
            let mut st = hub.lock();
            st.epoch += 1;
            st.sessions.insert(
                id.clone(),
                hub::Entry {
                    mailbox: mailbox.clone(),
                    transport,
                    token_iat: (identity.kind != TokenKind::Anonymous).then_some(identity.iat),
                },
            );
            let changed = !created && st.details != details.get();
            if changed {
                st.details = details.get().to_string();
            }
            changed
        };
        self.inner
            .metrics
            .upstream_sessions
            .with_label_values(&[app])
            .inc();
        if created {
            let task = upstream_task::run(
                hub.clone(),
                self.clone(),
                self.inner.upstream.clone(),
                details.to_owned(),
            );
            self.inner.tasks.spawn(task);
        }
        Ok((hub, changed))
    }

    fn limit_hit(&self, limit: Limit, message: &str) -> EdgeError {
        self.inner.metrics.limit_hit(limit);
        EdgeError::RateLimited(message.to_string())
    }

    fn detach(&self, hub: &Arc<Hub>, id: &SessionId) {
        lock(&self.inner.sessions).remove(id);
        let (removed, idle, epoch, orphaned) = {
            let mut st = hub.lock();
            let removed = st.sessions.remove(id).is_some();
            st.presence.remove(id);
            // The channel objects stay until the release is done: meanwhile upstream still sends
            // the channel event, and the remaining tabs get its notification form.
            let mut orphaned = st.watches.remove_session(id);
            orphaned.retain(|cid| st.releasing.insert(cid.clone()));
            let retired = st.retired;
            (
                removed,
                st.sessions.is_empty() && !retired,
                st.epoch,
                orphaned,
            )
        };
        if !orphaned.is_empty() && !hub.cancel.is_cancelled() {
            // A closed (or reconnecting) tab's channels that no other tab watches are released
            // upstream now, not when the hub retires: other users see `user.watching.stop`, and
            // the user's other tabs get `notification.*` for them again.
            self.inner.tasks.spawn(subscribe::release(
                self.clone(),
                hub.clone(),
                orphaned,
                "session_closed",
            ));
        }
        if removed {
            self.inner
                .metrics
                .upstream_sessions
                .with_label_values(&[&hub.app])
                .dec();
        }
        if idle {
            let hubs = self.clone();
            let hub = hub.clone();
            let linger = self.inner.upstream.config.linger;
            self.inner.tasks.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(linger) => {}
                    _ = hub.cancel.cancelled() => {}
                }
                hubs.retire_if_idle(&hub, epoch);
            });
        }
    }

    /// Retires `hub` if no session joined since `epoch`.
    fn retire_if_idle(&self, hub: &Arc<Hub>, epoch: u64) {
        let mut hubs = lock(&self.inner.hubs);
        let mut st = hub.lock();
        if st.retired || !st.sessions.is_empty() || st.epoch != epoch {
            return;
        }
        st.retired = true;
        drop(st);
        remove_if_same(&mut hubs, hub);
        hub.cancel.cancel();
    }

    /// Retires `hub` because its upstream connection failed; closes its sessions so they reconnect.
    pub(crate) fn fail(&self, hub: &Arc<Hub>, why: &str) {
        {
            let mut hubs = lock(&self.inner.hubs);
            hub.lock().retired = true;
            remove_if_same(&mut hubs, hub);
        }
        hub.status.send_replace(Status::Down(Arc::from(why)));
        hub.close_all(SessionEnd::UpstreamLost);
        hub.cancel.cancel();
    }

    /// Revocation cutoffs (shared with the authenticator).
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.inner.revocations
    }

    /// Ends the live sessions whose token a newly learned cutoff revokes: every session of `user`,
    /// or with `None` every session of `app`.
    pub fn end_revoked(&self, app: &str, user: Option<&str>) {
        let hubs: Vec<Arc<Hub>> = lock(&self.inner.hubs)
            .iter()
            .filter(|((a, u), _)| &**a == app && user.is_none_or(|user| &**u == user))
            .map(|(_, h)| h.clone())
            .collect();
        let r = &self.inner.revocations;
        let mut ended = 0;
        for hub in hubs {
            ended += hub.end_revoked(|iat| r.is_revoked(app, &hub.user, iat));
        }
        if ended > 0 {
            tracing::info!(app, sessions = ended, "sessions ended: token revoked");
        }
    }

    /// Ends every session of `user` in `app` with `end` (convergence on another replica); the
    /// number of sessions ended.
    pub fn end_user(&self, app: &str, user: &str, end: SessionEnd) -> usize {
        let hub = lock(&self.inner.hubs)
            .get(&(Arc::from(app), Arc::from(user)))
            .cloned();
        hub.map_or(0, |h| {
            let n = h.session_count();
            h.close_all(end);
            n
        })
    }

    /// Ends every WebSocket session with `end` (the drain: a session task does not watch the
    /// shutdown itself, which would cost every idle session a waiter of its own).
    pub fn end_all_ws(&self, end: SessionEnd) {
        let hubs: Vec<_> = lock(&self.inner.hubs).values().cloned().collect();
        for h in hubs {
            h.close_ws(end);
        }
    }

    /// Mints and checks session ids.
    pub fn ids(&self) -> &Arc<id::Ids> {
        &self.inner.ids
    }

    /// Learns a user's revocation cutoff from a user object upstream sent (`me`, `user.updated`)
    /// and ends that user's sessions it revokes.
    pub(crate) fn learn_user(&self, app: &str, user: &str) {
        if let Some(id) = self.inner.revocations.learn_user(app, user) {
            self.end_revoked(app, Some(&id));
        }
    }

    /// Learns the cutoffs of the users in a `/users` response that passed through the proxy.
    pub fn learn_users_response(&self, app: &str, body: &[u8]) {
        for id in self.inner.revocations.learn_users_response(app, body) {
            self.end_revoked(app, Some(&id));
        }
    }

    /// Runs what routing an event of `hub` asked for: the release of a channel upstream still
    /// sends although no session watches it (in a task of its own), or the notification of a
    /// thread reply for the sessions that do not watch its channel. The latter runs here, before
    /// the hub's next event, so it keeps its place in each session's order; it asks upstream at
    /// most once per thread (cached).
    pub(crate) async fn follow_up(&self, hub: &Arc<Hub>, next: route::Followup) {
        match next {
            route::Followup::Release(cid) => self.inner.tasks.spawn(subscribe::release(
                self.clone(),
                hub.clone(),
                vec![cid],
                "orphan",
            )),
            route::Followup::ThreadReply {
                cid,
                parent,
                frame,
                received,
            } => {
                // Boxed: the lookup's future is large and rare; inline, it would sit in every
                // hub's upstream task.
                Box::pin(notify::thread_reply(
                    self, hub, &cid, &parent, frame, received,
                ))
                .await;
            }
        }
    }

    /// Asks the app-settings task for an immediate `GET /app` (SIGHUP, or a `PATCH /app` seen).
    pub fn refresh_app_settings(&self) {
        self.inner.app_settings_now.notify_one();
    }

    /// The hub owning session `id`.
    pub fn session_hub(&self, id: &str) -> Option<Arc<Hub>> {
        lock(&self.inner.sessions).get(id).cloned()
    }

    /// Open hubs (= upstream connections wanted).
    pub fn hub_count(&self) -> usize {
        lock(&self.inner.hubs).len()
    }

    /// Attached sessions.
    pub fn session_count(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.inner.upstream
    }

    pub(crate) fn privacy(&self) -> &Privacy {
        &self.inner.privacy
    }

    pub(crate) fn backoff(&self) -> &backoff::Backoff {
        &self.inner.backoff
    }

    /// Current reconnect delay imposed on `app`'s upstream connects.
    pub fn backoff_wait(&self, app: &str) -> Duration {
        self.inner.backoff.wait(app)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }
}

fn remove_if_same(hubs: &mut HashMap<HubKey, Arc<Hub>>, hub: &Arc<Hub>) {
    let key: HubKey = (hub.app.clone(), hub.user.clone());
    if hubs.get(&key).is_some_and(|h| Arc::ptr_eq(h, hub)) {
        hubs.remove(&key);
    }
}
