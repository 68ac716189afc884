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

mod backoff;
pub mod event;
mod hub;
pub mod mailbox;
mod upstream_task;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

pub use hub::{Hub, Ready, Status};
pub use mailbox::{Delivery, Mailbox, Next};
pub use watch::SessionId;

use crate::auth::Identity;
use crate::error::EdgeError;
use crate::metrics::Metrics;
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
        match self {
            Transport::Ws => "ws",
            Transport::LongPoll => "longpoll",
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
    _guard: Guard,
}

struct Guard {
    hubs: Hubs,
    hub: Arc<Hub>,
    id: SessionId,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.hubs.detach(&self.hub, &self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hubs {
    pub fn new(
        upstream: Arc<Upstream>,
        metrics: Arc<Metrics>,
        privacy: Arc<Privacy>,
        limits: crate::config::Limits,
        tasks: Shutdown,
    ) -> Self {
        Hubs {
            inner: Arc::new(Inner {
                hubs: Mutex::default(),
                sessions: Mutex::default(),
                metrics,
                privacy,
                limits,

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
        let id: SessionId = Arc::from(uuid::Uuid::new_v4().to_string());
        let mailbox = Arc::new(Mailbox::new(queue));
        let (hub, details_changed) =
            self.join_hub(app, identity, details, &id, &mailbox, transport)?;
        lock(&self.inner.sessions).insert(id.clone(), hub.clone());
        let guard = Guard {
            hubs: self.clone(),
            hub: hub.clone(),
            id: id.clone(),
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
        if details_changed {
            // A later session brought different user details: forward them as an update rather
            // than dropping them (stream-protocol.md 8).
            upstream_task::forward_details(
                &self.inner.upstream,
                &self.inner.privacy,
                &self.inner.tasks,
                app,
                &hub.user,
                details,
            );
        }
        Ok(Attachment {
            id,
            mailbox,
            ready,
            hub,
            _guard: guard,
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
            return Err(self.limit_hit("max_sessions", "too many sessions on this gateway"));
        }
        let key: HubKey = (Arc::from(app), identity.user_id.clone());
        let (hub, created) = match hubs.get(&key) {
            Some(h) => {
                if h.session_count() >= limits.max_sessions_per_user {
                    return Err(
                        self.limit_hit("max_sessions_per_user", "too many sessions for this user")
                    );
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
                        "max_upstream_per_app",
                        "too many upstream connections for this app",
                    ));
                }
                let hub = Arc::new(Hub::new(
                    key.0.clone(),
                    key.1.clone(),
                    details.get().to_string(),
                    self.inner.shutdown.child_token(),
                    self.inner.metrics.clone(),
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

    fn limit_hit(&self, limit: &'static str, message: &str) -> EdgeError {
        self.inner
            .metrics
            .limit_hits
            .with_label_values(&[limit])
            .inc();
        EdgeError::RateLimited(message.to_string())
    }

    fn detach(&self, hub: &Arc<Hub>, id: &SessionId) {
        lock(&self.inner.sessions).remove(id);
        let (removed, idle, epoch) = {
            let mut st = hub.lock();
            let removed = st.sessions.remove(id).is_some();
            st.watches.remove_session(id);
            (removed, st.sessions.is_empty() && !st.retired, st.epoch)
        };
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
        hub.close_all(
            crate::error::close::UPSTREAM_LOST,
            "upstream connection lost",
        );
        hub.cancel.cancel();
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
