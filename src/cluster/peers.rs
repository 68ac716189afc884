//! The replica set: the addresses `cluster.peers` resolves to (a Kubernetes headless Service's
//! DNS name gives one address per pod; a static list names them). A call is forwarded only to an
//! owner among them, so even an id signed with a leaked key cannot send a replica to an
//! arbitrary address. No new dependency: the system resolver, refreshed periodically and on a
//! miss (a replica that just started is found at once).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::RwLock;
use std::time::Duration;

use tokio::time::Instant;

/// A miss refreshes the set at most this often, whatever `cluster.peers_refresh_seconds` says:
/// a flood of calls naming a dead replica must not become a flood of DNS queries.
const MIN_MISS_REFRESH: Duration = Duration::from_secs(1);

/// The known replica addresses.
pub struct Peers {
    names: Vec<String>,
    refresh: Duration,
    known: RwLock<HashSet<Ipv4Addr>>,
    /// Held while resolving (one lookup at a time), with when the last one finished.
    resolving: tokio::sync::Mutex<Option<Instant>>,
}

impl Peers {
    pub fn new(names: Vec<String>, refresh: Duration) -> Self {
        Peers {
            names,
            refresh,
            known: RwLock::default(),
            resolving: tokio::sync::Mutex::new(None),
        }
    }

    fn has(&self, ip: Ipv4Addr) -> bool {
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&ip)
    }

    /// Whether `ip` is a replica's; a miss first re-resolves (rate-limited) unless a lookup is
    /// already running, in which case the current set answers: a slow resolver must not hold
    /// every call that names a dead replica.
    pub async fn contains(&self, ip: Ipv4Addr) -> bool {
        if self.has(ip) {
            return true;
        }
        if let Ok(last) = self.resolving.try_lock() {
            self.resolve_locked(last, MIN_MISS_REFRESH).await;
        }
        self.has(ip)
    }

    /// Resolves every name unless the last lookup finished less than `fresh` ago. A name that
    /// fails to resolve keeps nothing of its own; when every name fails, the last set is kept
    /// (a DNS outage must not stop forwarding to replicas that are still there).
    pub async fn resolve(&self, fresh: Duration) {
        let last = self.resolving.lock().await;
        self.resolve_locked(last, fresh).await;
    }

    async fn resolve_locked(
        &self,
        mut last: tokio::sync::MutexGuard<'_, Option<Instant>>,
        fresh: Duration,
    ) {
        if last.is_some_and(|t| t.elapsed() < fresh) {
            return;
        }
        let mut found = HashSet::new();
        let mut failed = 0;
        for name in &self.names {
            if let Ok(ip) = name.parse::<IpAddr>() {
                if let IpAddr::V4(v4) = ip {
                    found.insert(v4);
                }
                continue;
            }
            match tokio::net::lookup_host((name.as_str(), 0)).await {
                Ok(addrs) => found.extend(addrs.filter_map(|a| match a.ip() {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                })),
                Err(e) => {
                    failed += 1;
                    tracing::warn!(peer = %name, error = %e, "cannot resolve cluster peer name");
                }
            }
        }
        if failed < self.names.len() {
            *self.known.write().unwrap_or_else(|p| p.into_inner()) = found;
        }
        *last = Some(Instant::now());
    }

    /// Re-resolves every `cluster.peers_refresh_seconds` until `stop`.
    pub async fn run(&self, stop: tokio_util::sync::CancellationToken) {
        loop {
            self.resolve(Duration::ZERO).await;
            tokio::select! {
                _ = tokio::time::sleep(self.refresh) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_addresses_and_names_resolve() {
        let p = Peers::new(
            vec!["127.0.0.1".into(), "localhost".into(), "10.1.2.3".into()],
            Duration::from_secs(5),
        );
        assert!(p.contains(Ipv4Addr::new(10, 1, 2, 3)).await);
        assert!(p.contains(Ipv4Addr::LOCALHOST).await);
        assert!(!p.contains(Ipv4Addr::new(10, 9, 9, 9)).await);
    }

    #[tokio::test]
    async fn a_failing_lookup_keeps_the_last_set() {
        let p = Peers::new(vec!["no-such-peer.invalid".into()], Duration::from_secs(5));
        p.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(Ipv4Addr::new(10, 0, 0, 1));
        p.resolve(Duration::ZERO).await;
        assert!(p.has(Ipv4Addr::new(10, 0, 0, 1)));
    }
}
