//! The emulator's in-memory state: per app, its users, channels and open WebSocket connections
//! with their bounded outbound queues and subscriptions (watches, presence). The records
//! themselves are in `model`. Everything here is plain data behind one mutex; no lock is held
//! across an `.await`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::config::{App, Faults};
use crate::metrics::Metrics;
pub(crate) use crate::model::{
    Channel, Device, Member, Message, Pin, Poll, PollOption, PollVote, Reaction, ReadState, Thread,
    Upload, User,
};

/// All apps, keyed by API key.
pub(crate) struct Store {
    pub apps: HashMap<String, AppData>,
    /// Injected failures, for exercising a gateway's fault handling.
    pub faults: Faults,
    /// The emulator's counters (shared with every app's `AppData`).
    pub metrics: Arc<Metrics>,
}

/// One app's world.
#[derive(Default)]
pub(crate) struct AppData {
    pub secrets: Vec<String>,
    pub users: HashMap<String, User>,
    /// Keyed by cid (`type:id`).
    pub channels: HashMap<String, Channel>,
    /// Keyed by connection id.
    pub conns: HashMap<String, Conn>,
    /// user id → connection ids; kept in step with `conns`.
    pub user_conns: HashMap<String, HashSet<String>>,
    /// user id → connections following that user's presence; kept in step with each
    /// `Conn::presence`, so a presence change costs its followers, not a scan of every connection.
    pub followers: HashMap<String, HashSet<String>>,
    /// The app setting `revoke_tokens_issued_before` (`revokeTokens`): every user token issued
    /// before it, or without `iat`, is refused.
    pub revoke_tokens_issued_before: Option<OffsetDateTime>,
    /// Uploaded files by id, and their total size (bounded; see `uploads`).
    pub uploads: HashMap<String, Upload>,
    pub upload_bytes: usize,
    /// Polls by id (bounded; see `polls`).
    pub polls: HashMap<String, Poll>,
    /// Mutes, blocks, bans, receipts, drafts, reminders, app settings (see `social`).
    pub social: crate::social::Social,
    /// The emulator's counters, for the bounds a handler reaches without failing the request.
    pub metrics: Arc<Metrics>,
}

/// One open WebSocket connection, as the rest of the emulator sees it.
pub(crate) struct Conn {
    pub user_id: String,
    /// Bounded queue to the session task; full means slow consumer.
    pub tx: mpsc::Sender<Utf8Bytes>,
    /// Cancelled to drop the socket without a close frame.
    pub abort: CancellationToken,
    /// Cancelled when the queue overflowed: the session closes with 1011.
    pub overflow: CancellationToken,
    /// cids this connection watches, to unbind them when it goes away.
    pub watching: HashSet<String>,
    /// Users whose presence this connection follows (`presence: true`; see `presence`).
    pub presence: HashSet<String>,
}

/// A connection just removed from the store, with what its removal changed for the other
/// watchers.
pub(crate) struct Unregistered {
    pub conn: Conn,
    /// cids its user no longer watches through any connection (each a `user.watching.stop`).
    pub stopped_watching: Vec<String>,
    /// When it went away (also the user's `last_active`).
    pub at: OffsetDateTime,
}

/// A user's unread counters across the channels they are a member of.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub total_unread: u32,
    pub unread_channels: u32,
    /// Threads with replies the user has not read.
    pub unread_threads: u32,
}

// === impl Store ===

impl Store {
    pub(crate) fn new(apps: Vec<App>) -> Self {
        let metrics = Arc::new(Metrics::new());
        let mut map: HashMap<String, AppData> = HashMap::new();
        for app in apps {
            // The same key listed twice contributes all its secrets.
            map.entry(app.api_key)
                .or_insert_with(|| AppData {
                    metrics: metrics.clone(),
                    ..AppData::default()
                })
                .secrets
                .extend(app.secrets);
        }
        Self {
            apps: map,
            faults: Faults::default(),
            metrics,
        }
    }
}

// === impl AppData ===

impl AppData {
    pub(crate) fn conns_of(&self, user_id: &str) -> Vec<String> {
        self.user_conns
            .get(user_id)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Online = at least one connection and not invisible.
    pub(crate) fn is_online(&self, user_id: &str) -> bool {
        let invisible = self
            .users
            .get(user_id)
            .and_then(|u| u.fields.get("invisible"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        !invisible && self.user_conns.get(user_id).is_some_and(|s| !s.is_empty())
    }

    /// Returns the user, creating a bare one if it does not exist yet.
    pub(crate) fn ensure_user(&mut self, id: &str, now: OffsetDateTime) -> &mut User {
        self.users.entry(id.to_owned()).or_insert_with(|| User {
            id: id.to_owned(),
            role: "user".to_owned(),
            fields: Map::new(),
            created_at: now,
            updated_at: now,
            last_active: None,
            revoke_tokens_issued_before: None,
            devices: Vec::new(),
        })
    }

    /// Whether a token of `user_id` issued at `iat` (unix seconds) is revoked: with a cutoff (the
    /// later of the app's and the user's) set, a token without `iat` or issued before it is.
    pub(crate) fn token_revoked(&self, user_id: &str, iat: Option<i64>) -> bool {
        let user = self
            .users
            .get(user_id)
            .and_then(|u| u.revoke_tokens_issued_before);
        let Some(cutoff) = user.max(self.revoke_tokens_issued_before) else {
            return false;
        };
        iat.is_none_or(|iat| i128::from(iat) * 1_000_000_000 < cutoff.unix_timestamp_nanos())
    }

    pub(crate) fn register(&mut self, conn_id: String, conn: Conn) {
        self.user_conns
            .entry(conn.user_id.clone())
            .or_default()
            .insert(conn_id.clone());
        self.conns.insert(conn_id, conn);
    }

    /// Removes a connection and unbinds its watches. `None` if it was already gone. Telling the
    /// other watchers is the caller's part (`events::unregister`): the store holds state
    /// and knows no event shapes.
    pub(crate) fn unregister(&mut self, conn_id: &str) -> Option<Unregistered> {
        let conn = self.conns.remove(conn_id)?;
        if let Some(set) = self.user_conns.get_mut(&conn.user_id) {
            set.remove(conn_id);
            if set.is_empty() {
                self.user_conns.remove(&conn.user_id);
            }
        }
        for followed in &conn.presence {
            if let Some(set) = self.followers.get_mut(followed) {
                set.remove(conn_id);
                if set.is_empty() {
                    self.followers.remove(followed);
                }
            }
        }
        let now = OffsetDateTime::now_utc();
        if let Some(user) = self.users.get_mut(&conn.user_id) {
            user.last_active = Some(now);
        }
        let mut stopped_watching = Vec::new();
        for cid in &conn.watching {
            if self.unbind(conn_id, &conn.user_id, cid) {
                stopped_watching.push(cid.clone());
            }
        }
        Some(Unregistered {
            conn,
            stopped_watching,
            at: now,
        })
    }

    /// Binds a connection to a channel. Returns true if the user was not
    /// watching it through any connection before (a `user.watching.start`).
    pub(crate) fn bind(&mut self, conn_id: &str, cid: &str) -> bool {
        let Some(conn) = self.conns.get_mut(conn_id) else {
            return false;
        };
        if !conn.watching.insert(cid.to_owned()) {
            return false;
        }
        let user_id = conn.user_id.clone();
        let was_watching = self.watcher_users(cid).contains_key(&user_id);
        if let Some(ch) = self.channels.get_mut(cid) {
            ch.watchers.insert(conn_id.to_owned());
        }
        !was_watching
    }

    /// Unbinds a connection from a channel. Returns true if its user no
    /// longer watches the channel through any connection (a `user.watching.stop`).
    pub(crate) fn unbind(&mut self, conn_id: &str, user_id: &str, cid: &str) -> bool {
        if let Some(conn) = self.conns.get_mut(conn_id) {
            conn.watching.remove(cid);
        }
        let Some(ch) = self.channels.get_mut(cid) else {
            return false;
        };
        if !ch.watchers.remove(conn_id) {
            return false;
        }
        !self.watcher_users(cid).contains_key(user_id)
    }

    /// Users watching `cid`, each with their watching connection ids.
    pub(crate) fn watcher_users(&self, cid: &str) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(ch) = self.channels.get(cid) {
            for conn_id in &ch.watchers {
                if let Some(conn) = self.conns.get(conn_id) {
                    out.entry(conn.user_id.clone())
                        .or_default()
                        .push(conn_id.clone());
                }
            }
        }
        out
    }

    /// Queues a frame on one connection; a full queue marks it as a slow
    /// consumer, which its session closes with 1011.
    pub(crate) fn push(&self, conn_id: &str, frame: &Utf8Bytes) {
        if let Some(conn) = self.conns.get(conn_id) {
            match conn.tx.try_send(frame.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.metrics.bound("connection_queue");
                    conn.overflow.cancel();
                }
                // The session is already ending; it unregisters itself.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Queues a frame on every connection of a user.
    pub(crate) fn push_user(&self, user_id: &str, frame: &Utf8Bytes) {
        if let Some(ids) = self.user_conns.get(user_id) {
            for id in ids {
                self.push(id, frame);
            }
        }
    }

    /// Unread counters of a user over the channels they are a member of.
    pub(crate) fn counters(&self, user_id: &str) -> Counters {
        let mut c = Counters::default();
        for ch in self.channels.values() {
            if let Some(read) = ch.reads.get(user_id) {
                c.total_unread = c.total_unread.saturating_add(read.unread);
                if read.unread > 0 {
                    c.unread_channels += 1;
                }
            }
            c.unread_threads += ch
                .thread_reads
                .iter()
                .filter(|((u, _), r)| u == user_id && r.unread > 0)
                .count() as u32;
        }
        c
    }
}

/// Serializes an event once for all the connections it goes to.
pub(crate) fn frame(event: &Value) -> Utf8Bytes {
    Utf8Bytes::from(event.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(user: &str, capacity: usize) -> (Conn, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(capacity);
        let conn = Conn {
            user_id: user.to_owned(),
            tx,
            abort: CancellationToken::new(),
            overflow: CancellationToken::new(),
            watching: HashSet::new(),
            presence: HashSet::new(),
        };
        (conn, rx)
    }

    #[test]
    fn full_queue_marks_the_connection_as_slow() {
        let mut app = AppData::default();
        let (c, _rx) = conn("alice", 1);
        let overflow = c.overflow.clone();
        app.register("c1".into(), c);
        let f = frame(&serde_json::json!({"type": "x"}));
        app.push_user("alice", &f);
        assert!(!overflow.is_cancelled());
        app.push_user("alice", &f);
        assert!(
            overflow.is_cancelled(),
            "second frame overflows a queue of one"
        );
    }

    #[test]
    fn unregister_keeps_user_index_in_step() {
        let mut app = AppData::default();
        let (a, _ra) = conn("alice", 4);
        let (b, _rb) = conn("alice", 4);
        app.register("a".into(), a);
        app.register("b".into(), b);
        assert_eq!(app.conns_of("alice").len(), 2);
        assert!(app.unregister("a").is_some());
        assert!(
            app.unregister("a").is_none(),
            "second unregister is a no-op"
        );
        assert_eq!(app.conns_of("alice"), vec!["b".to_owned()]);
        assert!(app.unregister("b").is_some());
        assert!(!app.user_conns.contains_key("alice"));
    }
}
