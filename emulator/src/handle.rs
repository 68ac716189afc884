//! [`Emulator`], the cheap handle to the emulator's shared state: what the server's tasks share
//! and what tests inspect (connections per user) or steer (dropped sessions, injected faults).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::{App, Faults};
use crate::events;
use crate::metrics::Metrics;
use crate::store;

/// Handle to the emulator's shared state; cheap to clone.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Mutex<store::Store>>,
    /// Whether the `/_emulator/*` control routes are served; see [`Emulator::set_control`].
    control: Arc<AtomicBool>,
    /// The same counters the store holds, reachable without its lock.
    metrics: Arc<Metrics>,
}

// === impl Emulator ===

impl Emulator {
    /// Creates an emulator serving `apps`, with no users or channels yet.
    pub fn new(apps: Vec<App>) -> Self {
        let store = store::Store::new(apps);
        Self {
            metrics: store.metrics.clone(),
            inner: Arc::new(Mutex::new(store)),
            control: Arc::default(),
        }
    }

    /// The emulator's own Prometheus registry (`stream_edge_emulator_*`: bounds hit, REST
    /// errors), for an embedder that wants it in its own `/metrics`; the emulator also serves it
    /// at `GET /_emulator/metrics`.
    pub fn metrics_registry(&self) -> prometheus::Registry {
        self.metrics.registry().clone()
    }

    /// The registry in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.metrics.text()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves (or stops serving) the `/_emulator/*` control routes: list connected users, drop a
    /// user's sessions, inject faults. Off by default, and never implied by where a request comes
    /// from: behind the gateway every request arrives from loopback. Tests and
    /// `stream-edge emulator --control` opt in.
    pub fn set_control(&self, on: bool) {
        self.control.store(on, Ordering::Release);
    }

    /// Whether the control routes are served.
    pub fn control(&self) -> bool {
        self.control.load(Ordering::Acquire)
    }

    /// Open upstream WebSocket connections for one user of one app (what
    /// tests assert multiplexing on).
    pub fn connections_of(&self, api_key: &str, user_id: &str) -> usize {
        let store = self.lock();
        store
            .apps
            .get(api_key)
            .map_or(0, |app| app.conns_of(user_id).len())
    }

    /// Injects (or clears) failures: what a gateway in front of a misbehaving upstream must cope
    /// with. Also reachable as `POST /_emulator/faults?fail_user_queries=true` when the control
    /// routes are on ([`Emulator::set_control`]).
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// All open WebSocket connections.
    pub fn connections_total(&self) -> usize {
        self.lock().apps.values().map(|app| app.conns.len()).sum()
    }

    /// Abruptly drops every WebSocket of this user (no close frame; simulates
    /// upstream loss). Returns how many were dropped.
    pub fn drop_connections_of(&self, api_key: &str, user_id: &str) -> usize {
        let mut store = self.lock();
        let Some(app) = store.apps.get_mut(api_key) else {
            return 0;
        };
        let ids = app.conns_of(user_id);
        for id in &ids {
            // Unregister here rather than in the session task so the counts
            // are already correct when this call returns.
            if let Some(conn) = events::unregister(app, id) {
                conn.abort.cancel();
            }
        }
        ids.len()
    }

    /// Per-user connection counts keyed `"<api_key>/<user_id>"`, for the
    /// `/_emulator/connections` introspection route.
    pub(crate) fn connection_counts(&self) -> Vec<(String, usize)> {
        let store = self.lock();
        let mut out = Vec::new();
        for (key, app) in &store.apps {
            for (user, conns) in &app.user_conns {
                if !conns.is_empty() {
                    out.push((format!("{key}/{user}"), conns.len()));
                }
            }
        }
        out
    }

    /// Locks the store. A panic while holding the lock cannot leave the maps
    /// structurally broken, so a poisoned lock is still usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, store::Store> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").finish_non_exhaustive()
    }
}
