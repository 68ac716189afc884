//! Convergence after a scale-up: a replica that receives forwarded calls for one of its users has
//! learned that the balancer now routes that user to another replica. After a random delay (up to
//! `cluster.converge_delay_seconds`, so a scale-up's moved users do not reconnect as one storm)
//! and at most `cluster.converge_closes_per_second` users a second, it closes that user's
//! sessions with [`SessionEnd::Moved`] (WebSocket close 1001; a long-poll session's next poll gets
//! code 46). The SDKs reconnect through the balancer, land on the new replica and `recoverState`;
//! the user's upstream connection here closes with its last session, leaving one per user.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ClusterConfig;
use crate::metrics::{Limit, Metrics};
use crate::session::{Hubs, SessionEnd};

type User = (Arc<str>, Arc<str>);

#[derive(Default)]
struct Pending {
    /// Due time (with a sequence number for uniqueness) → user.
    due: BTreeMap<(Instant, u64), User>,
    /// Each scheduled user's key in `due`.
    queued: HashMap<User, (Instant, u64)>,
    seq: u64,
}

/// The users waiting for their convergence close.
pub struct Converge {
    pending: Mutex<Pending>,
    /// `pending.queued.len()`, readable without the lock (every direct call checks it).
    count: AtomicUsize,
    wake: Notify,
    delay: Duration,
    interval: Duration,
    max_pending: usize,
    hubs: Hubs,
    metrics: Arc<Metrics>,
}

impl Converge {
    pub fn new(config: &ClusterConfig, hubs: Hubs, metrics: Arc<Metrics>) -> Self {
        Converge {
            pending: Mutex::default(),
            count: AtomicUsize::new(0),
            wake: Notify::new(),
            delay: config.converge_delay,
            interval: Duration::from_secs(1) / config.converge_closes_per_second.max(1),
            max_pending: config.max_converge_pending,
            hubs,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call for `user`'s session arrived forwarded: schedule the user's close, once.
    pub fn note(&self, app: &str, user: &str) {
        let key: User = (Arc::from(app), Arc::from(user));
        let mut p = self.lock();
        if p.queued.contains_key(&key) {
            return;
        }
        if p.queued.len() >= self.max_pending {
            // A later forwarded call schedules the user once there is room.
            drop(p);
            self.metrics.limit_hit(Limit::ConvergePending);
            return;
        }
        let jitter = self.delay.mul_f64(rand::random::<f64>());
        p.seq += 1;
        let seq = p.seq;
        let at = (Instant::now() + jitter, seq);
        p.due.insert(at, key.clone());
        p.queued.insert(key, at);
        self.counted(&p);
        drop(p);
        self.wake.notify_one();
    }

    /// A call for `user`'s session arrived here directly: the balancer still routes the user
    /// here (a balancer that does not hash consistently sends some calls each way), so a
    /// scheduled close is cancelled rather than moving the user back and forth.
    pub fn cancel(&self, app: &str, user: &str) {
        let mut p = self.lock();
        if let Some(at) = p.queued.remove(&(Arc::from(app), Arc::from(user))) {
            p.due.remove(&at);
            self.counted(&p);
        }
    }

    /// Users scheduled and not yet closed.
    pub fn pending(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    fn counted(&self, p: &Pending) {
        self.count.store(p.queued.len(), Ordering::Relaxed);
        self.metrics.convergence_pending.set(p.queued.len() as i64);
    }

    /// Closes users as they fall due, at the configured rate, until `stop`.
    pub async fn run(&self, stop: tokio_util::sync::CancellationToken) {
        let mut next_close = Instant::now();
        loop {
            let first = self.lock().due.keys().next().map(|(at, _)| *at);
            let wait = async {
                match first {
                    Some(at) => tokio::time::sleep_until(at.max(next_close)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait => {}
                () = self.wake.notified() => continue,
                () = stop.cancelled() => return,
            }
            let now = Instant::now();
            let user = {
                let mut p = self.lock();
                match p.due.first_key_value() {
                    Some((&(at, seq), _)) if at <= now => {
                        let user = p.due.remove(&(at, seq));
                        if let Some(u) = &user {
                            p.queued.remove(u);
                        }
                        self.counted(&p);
                        user
                    }
                    _ => None,
                }
            };
            let Some((app, user)) = user else { continue };
            next_close = now + self.interval;
            let ended = self.hubs.end_user(&app, &user, SessionEnd::Moved);
            if ended > 0 {
                self.metrics.convergence_closes.inc();
                tracing::info!(
                    app = %app,
                    sessions = ended,
                    "sessions closed: the balancer routes this user to another replica"
                );
            }
        }
    }
}
