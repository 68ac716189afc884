//! Which session of a user watches which channel (and the other per-session subscription state a
//! hub keeps: presence, the watching call in flight). The upstream connection watches the union; a
//! channel is unwatched upstream only when the last session of the user stops watching it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A gateway-minted session (`connection_id`) id.
pub type SessionId = Arc<str>;
/// A channel id, `type:id`.
pub type Cid = Arc<str>;

/// What the hub keeps about a watched channel.
pub(crate) struct ChannelInfo {
    pub(crate) channel: Box<RawValue>,
    pub(crate) member: bool,
}

/// An event held for the session whose watching call is in flight.
pub(crate) struct Held {
    pub(crate) frame: Utf8Bytes,
    pub(crate) received: Instant,
}

/// The watching call in flight, and the events held for its session.
pub(crate) struct InFlight {
    pub(crate) session: SessionId,
    /// The one channel a single-channel query subscribes to; `None` when the call's channels are
    /// known only from its answer (`POST /channels`, threads, `sync`).
    pub(crate) only: Option<Cid>,
    pub(crate) held: VecDeque<Held>,
    /// The hold hit its bound and the session was closed: nothing more is held.
    pub(crate) overflowed: bool,
}

/// A session's presence subscriptions.
pub(crate) enum Presence {
    Users(HashSet<Arc<str>>),
    /// Over `limits.presence_users_per_session`: every presence event (over-delivery is harmless
    /// to the SDK; losing one is not).
    All,
}

impl Presence {
    pub(crate) fn covers(&self, user: &str) -> bool {
        match self {
            Presence::Users(users) => users.contains(user),
            Presence::All => true,
        }
    }
}

/// Whether `cid` is a well-formed channel id, `type:id`, in Stream's alphabet (type: lower-case
/// letters, digits, `_`, `-`; id: letters, digits, `_`, `-`, `!`, `@`), at most 255 bytes: only
/// such cids are registered from an answer or a request, and released upstream, so no cid can
/// reshape a path the gateway builds.
pub fn valid_cid(cid: &str) -> bool {
    let Some((kind, id)) = cid.split_once(':') else {
        return false;
    };
    let kind_ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-';
    let id_ok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'!' | b'@');
    cid.len() <= 255
        && !kind.is_empty()
        && !id.is_empty()
        && kind.bytes().all(kind_ok)
        && id.bytes().all(id_ok)
}

/// Reference-counted watch subscriptions of one user's sessions.
#[derive(Debug, Default)]
pub struct WatchTable {
    by_cid: HashMap<Cid, HashSet<SessionId>>,
    by_session: HashMap<SessionId, HashSet<Cid>>,
}

impl WatchTable {
    /// Records that `session` watches `cid`. Returns true if it was not already watching.
    pub fn watch(&mut self, session: &SessionId, cid: &str) -> bool {
        let cid: Cid = match self.by_cid.get_key_value(cid) {
            Some((k, _)) => k.clone(),
            None => Arc::from(cid),
        };
        let added = self
            .by_cid
            .entry(cid.clone())
            .or_default()
            .insert(session.clone());
        self.by_session
            .entry(session.clone())
            .or_default()
            .insert(cid);
        added
    }

    /// Stops `session` watching `cid`. Returns true when no session watches `cid` any more, i.e.
    /// the upstream watch may be released.
    pub fn unwatch(&mut self, session: &SessionId, cid: &str) -> bool {
        if let Some(cids) = self.by_session.get_mut(session) {
            cids.remove(cid);
            if cids.is_empty() {
                self.by_session.remove(session);
            }
        }
        match self.by_cid.get_mut(cid) {
            Some(sessions) => {
                sessions.remove(session);
                if sessions.is_empty() {
                    self.by_cid.remove(cid);
                    true
                } else {
                    false
                }
            }
            None => true,
        }
    }

    /// Forgets every watch of `session`; returns the channels nobody watches any more.
    pub fn remove_session(&mut self, session: &SessionId) -> Vec<Cid> {
        let mut orphaned = Vec::new();
        if let Some(cids) = self.by_session.remove(session) {
            for cid in cids {
                if let Some(sessions) = self.by_cid.get_mut(&cid) {
                    sessions.remove(session);
                    if sessions.is_empty() {
                        self.by_cid.remove(&cid);
                        orphaned.push(cid);
                    }
                }
            }
        }
        orphaned
    }

    /// How many channels `session` watches.
    pub fn count(&self, session: &SessionId) -> usize {
        self.by_session.get(session).map_or(0, HashSet::len)
    }

    /// Sessions watching `cid`.
    pub fn watchers(&self, cid: &str) -> Option<&HashSet<SessionId>> {
        self.by_cid.get(cid)
    }

    pub fn is_watching(&self, session: &SessionId, cid: &str) -> bool {
        self.by_cid.get(cid).is_some_and(|s| s.contains(session))
    }

    /// Channels watched by at least one session.
    pub fn channel_count(&self) -> usize {
        self.by_cid.len()
    }

    /// Internal consistency: the two indexes describe the same relation.
    #[cfg(test)]
    pub fn consistent(&self) -> bool {
        let a: usize = self.by_cid.values().map(HashSet::len).sum();
        let b: usize = self.by_session.values().map(HashSet::len).sum();
        a == b
            && self.by_cid.values().all(|s| !s.is_empty())
            && self
                .by_session
                .iter()
                .all(|(s, cids)| !cids.is_empty() && cids.iter().all(|c| self.is_watching(s, c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sid(n: u8) -> SessionId {
        Arc::from(format!("s{n}"))
    }

    #[test]
    fn only_well_formed_cids_pass() {
        for ok in [
            "messaging:general",
            "team-a:x_1",
            "messaging:!members-abc",
            "m:a@b",
        ] {
            assert!(valid_cid(ok), "{ok}");
        }
        for bad in [
            "", "general", ":x", "m:", "m:..", "m:a/b", "M:x", "m:a b", "m:a%2F", "m:a?b", "m:a:b",
        ] {
            assert!(!valid_cid(bad), "{bad}");
        }
    }

    #[test]
    fn last_unwatch_releases_upstream() {
        let mut t = WatchTable::default();
        assert!(t.watch(&sid(1), "m:a"));
        assert!(!t.watch(&sid(1), "m:a"));
        t.watch(&sid(2), "m:a");
        assert!(!t.unwatch(&sid(1), "m:a"), "session 2 still watches");
        assert!(t.is_watching(&sid(2), "m:a"));
        assert!(t.unwatch(&sid(2), "m:a"));
        assert_eq!(t.channel_count(), 0);
    }

    #[test]
    fn removing_a_session_orphans_only_its_exclusive_channels() {
        let mut t = WatchTable::default();
        t.watch(&sid(1), "m:a");
        t.watch(&sid(1), "m:b");
        t.watch(&sid(2), "m:b");
        let mut orphaned = t.remove_session(&sid(1));
        orphaned.sort();
        assert_eq!(orphaned, vec![Arc::from("m:a")]);
        assert!(t.is_watching(&sid(2), "m:b"));
        assert!(t.consistent());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Watch(u8, u8),
        Unwatch(u8, u8),
        Leave(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..4, 0u8..4).prop_map(|(s, c)| Op::Watch(s, c)),
            (0u8..4, 0u8..4).prop_map(|(s, c)| Op::Unwatch(s, c)),
            (0u8..4).prop_map(Op::Leave),
        ]
    }

    proptest! {
        /// Against a model (a set of pairs): the table agrees on who watches what, and "released
        /// upstream" is reported exactly when the last watcher of a channel goes.
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 0..64)) {
            let mut t = WatchTable::default();
            let mut model: HashSet<(u8, u8)> = HashSet::new();
            for op in ops {
                match op {
                    Op::Watch(s, c) => {
                        let added = t.watch(&sid(s), &format!("m:{c}"));
                        prop_assert_eq!(added, model.insert((s, c)));
                    }
                    Op::Unwatch(s, c) => {
                        model.remove(&(s, c));
                        let released = t.unwatch(&sid(s), &format!("m:{c}"));
                        prop_assert_eq!(released, !model.iter().any(|(_, mc)| *mc == c));
                    }
                    Op::Leave(s) => {
                        let before: HashSet<u8> = model.iter().map(|(_, c)| *c).collect();
                        model.retain(|(ms, _)| *ms != s);
                        let after: HashSet<u8> = model.iter().map(|(_, c)| *c).collect();
                        let mut orphaned: Vec<String> = t.remove_session(&sid(s)).iter().map(|c| c.to_string()).collect();
                        orphaned.sort();
                        let mut expect: Vec<String> = before.difference(&after).map(|c| format!("m:{c}")).collect();
                        expect.sort();
                        prop_assert_eq!(orphaned, expect);
                    }
                }
                prop_assert!(t.consistent());
                for s in 0..4u8 { for c in 0..4u8 {
                    prop_assert_eq!(t.is_watching(&sid(s), &format!("m:{c}")), model.contains(&(s, c)));
                }}
            }
        }
    }
}
