//! Embedded, in-memory Stream-Chat-compatible upstream ("emulator").
//!
//! This module owns a small Stream Chat server: the WebSocket `/connect`
//! handshake and heartbeat, the REST routes the `stream-chat` JS SDK 9.x uses
//! for channels, messages, typing, read state and users, and the event
//! fan-out between connections. It is a product feature: `stream-edge serve
//! --upstream embedded` runs it on a loopback port behind the gateway, and
//! `stream-edge emulator --listen ADDR` runs it standalone so the real SDK can
//! chat against it directly.
//!
//! Layout (one concept per file):
//! * [`server`] – accept loop, hyper HTTP/1.1 connections, routing, CORS;
//! * [`rest`] – REST authentication, bounded bodies, handler dispatch;
//! * [`ws`], [`connect`] – the WebSocket session (handshake frame, pings,
//!   event delivery) and the checks of the `/connect` request;
//! * [`auth`] – HS256 JWT verification with Stream's error codes;
//! * [`store`] – the in-memory state (users, channels, connections, watchers);
//! * [`render`], [`render_chat`] – JSON shapes of users, channels and messages per the OpenAPI spec;
//! * [`events`] – event shapes and who receives them;
//! * [`channels`], [`actions`], [`query`], [`users`] – the REST handlers;
//! * [`error`] – the Stream `APIError` body.
//!
//! Everything that grows with a peer is bounded (see the `MAX_*` constants):
//! a misbehaving client can exhaust neither memory nor the event queues.

mod actions;
mod auth;
mod channels;
mod connect;
mod error;
mod events;
mod query;
mod render;
mod render_chat;
mod rest;
mod server;
mod store;
mod users;
mod ws;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use server::serve;

/// How often a session gets an unsolicited `health.check`; the SDK's 35 s
/// watchdog must never fire on an idle but healthy connection.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// Messages kept per channel; older ones are forgotten.
pub const MAX_MESSAGES_PER_CHANNEL: usize = 1000;
/// Events queued per connection before it counts as a slow consumer and is
/// closed with 1011.
pub const OUTBOUND_QUEUE_CAPACITY: usize = 256;
/// Largest accepted REST request body (larger ones get 413).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest accepted user object, serialized (Stream's documented limit).
pub const MAX_USER_BYTES: usize = 5 * 1024;
/// Longest accepted message text (the channel config's `max_message_length`).
pub const MAX_MESSAGE_TEXT: usize = 5000;

/// One Stream application the emulator serves.
#[derive(Debug, Clone)]
pub struct App {
    /// The public API key clients send as `api_key`.
    pub api_key: String,
    /// HS256 app secrets; a token signed with any one of them verifies, which
    /// is how secret rotation works.
    pub secrets: Vec<String>,
}

/// Failures the emulator can be told to produce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// `GET /users` answers 500.
    pub fail_user_queries: bool,
}

/// Handle to the emulator's shared state; cheap to clone.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Mutex<store::Store>>,
    /// Whether the `/_emulator/*` control routes are served; see [`Emulator::set_control`].
    control: Arc<AtomicBool>,
}

// === impl Emulator ===

impl Emulator {
    /// Creates an emulator serving `apps`, with no users or channels yet.
    pub fn new(apps: Vec<App>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(store::Store::new(apps))),
            control: Arc::default(),
        }
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
            if let Some(conn) = app.unregister(id) {
                conn.abort.cancel();
            }
        }
        ids.len()
    }

    /// Per-user connection counts keyed `"<api_key>/<user_id>"`, for the
    /// `/_emulator/connections` introspection route.
    fn connection_counts(&self) -> Vec<(String, usize)> {
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
    fn lock(&self) -> MutexGuard<'_, store::Store> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").finish_non_exhaustive()
    }
}
