//! Per-client admission: who the client is (the TCP peer, or the `X-Forwarded-For` hop a trusted
//! proxy vouches for), how fast it may open sessions (a token bucket per IP, in a bounded moka
//! cache so a flood of distinct addresses cannot grow memory), and how many connections one
//! address may hold open ([`PerIpConnections`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use http::HeaderMap;
use moka::sync::Cache;

use crate::config::{IpNet, Limits};

/// The client's address: the TCP peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer.ip()) {
        return peer.ip();
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer.ip())
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// New-session rate limit per client IP.
pub struct ConnectLimiter {
    buckets: Cache<IpAddr, Arc<Mutex<Bucket>>>,
    rate: f64,
    burst: f64,
}

impl ConnectLimiter {
    pub fn new(limits: &Limits) -> Self {
        let rate = f64::from(limits.connect_rate_per_ip);
        ConnectLimiter {
            buckets: Cache::builder()
                .max_capacity(limits.connect_rate_tracked_ips)
                // An idle bucket refills completely within a few seconds; forget it after a minute.
                .time_to_idle(Duration::from_secs(60))
                .build(),
            rate,
            burst: rate * 2.0,
        }
    }

    /// Takes one token for `ip`; false when the client is over its rate.
    pub fn admit(&self, ip: IpAddr) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let burst = self.burst;
        let bucket = self.buckets.get_with(ip, || {
            Arc::new(Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
            }))
        });
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> u64 {
        self.buckets.run_pending_tasks();
        self.buckets.entry_count()
    }
}

/// Open connections per address; an address leaves the map with its last connection.
type OpenPerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Open connections per TCP peer address (`limits.max_connections_per_ip`).
///
/// Counted at accept, where only the socket peer is known: a request's `X-Forwarded-For` names
/// the client of one request, not of the connection (a proxy pools connections across clients).
/// So peers in `limits.trusted_proxies` are not capped here; the proxy bounds its own clients, and
/// the global `limits.max_connections` and the per-request timeouts still hold. The map holds
/// only addresses with an open connection, so it is bounded by `limits.max_connections`.
pub struct PerIpConnections {
    open: OpenPerIp,
    max: usize,
    trusted: Vec<IpNet>,
}

/// One admitted connection; its slot is freed when dropped.
pub struct ConnSlot {
    open: Option<(OpenPerIp, IpAddr)>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Some((open, ip)) = self.open.take() {
            let mut map = open.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

impl PerIpConnections {
    pub fn new(limits: &Limits) -> Self {
        PerIpConnections {
            open: Arc::default(),
            max: limits.max_connections_per_ip,
            trusted: limits.trusted_proxies.clone(),
        }
    }

    /// A slot for a new connection from `peer`; `None` when that address already holds the
    /// maximum.
    pub fn admit(&self, peer: IpAddr) -> Option<ConnSlot> {
        if self.max == 0 || self.trusted.iter().any(|n| n.contains(peer)) {
            return Some(ConnSlot { open: None });
        }
        let mut map = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(peer).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            open: Some((self.open.clone(), peer)),
        })
    }

    /// Addresses with an open connection now.
    pub fn tracked(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The request bytes buffered at once by the REST proxy, all requests together
/// (`limits.rest_buffered_total_bytes`), counted in KiB permits.
pub struct BufferBudget {
    permits: Arc<tokio::sync::Semaphore>,
    per_request: usize,
}

/// Bytes reserved for one buffered request body; returned when dropped.
pub struct BufferReservation(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl BufferBudget {
    pub fn new(limits: &Limits) -> Self {
        let kib = (limits.rest_buffered_total / 1024).min(tokio::sync::Semaphore::MAX_PERMITS);
        BufferBudget {
            permits: Arc::new(tokio::sync::Semaphore::new(kib)),
            per_request: limits.rest_max_buffered_body,
        }
    }

    /// Reserves room for a body that declared `declared` bytes (at most the per-request limit,
    /// which also stands in for an undeclared length); `None` when the budget is spent. Never
    /// waits: a request over budget is refused at once.
    pub fn reserve(&self, declared: Option<u64>) -> Option<BufferReservation> {
        let bytes = declared.map_or(self.per_request, |n| {
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(self.per_request)
        });
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        self.permits
            .clone()
            .try_acquire_many_owned(kib)
            .ok()
            .map(BufferReservation)
    }
}

/// The one-time warning for a deployment behind a proxy that is not trusted: a per-IP limit is
/// on, no proxy is trusted, and a request carries `X-Forwarded-For`. Then every client behind
/// that proxy shares the proxy's per-IP budget, and one client's junk gets everyone refused.
#[derive(Default)]
pub struct UntrustedProxyWarning {
    warned: AtomicBool,
}

impl UntrustedProxyWarning {
    /// Checks one request's headers; warns, and counts it in
    /// `stream_edge_config_warnings_total{warning="untrusted_forwarded_for"}`, at most once per
    /// gateway.
    pub fn check(&self, headers: &HeaderMap, limits: &Limits, metrics: &crate::metrics::Metrics) {
        if self.warned.load(Ordering::Relaxed)
            || !limits.trusted_proxies.is_empty()
            || (limits.connect_rate_per_ip == 0 && limits.max_connections_per_ip == 0)
            || !headers.contains_key("x-forwarded-for")
        {
            return;
        }
        if !self.warned.swap(true, Ordering::AcqRel) {
            metrics
                .config_warnings
                .with_label_values(&["untrusted_forwarded_for"])
                .inc();
            tracing::warn!(
                "a request carries X-Forwarded-For but limits.trusted_proxies is empty: per-IP \
                 limits count the proxy's address, so every client behind it shares one budget; \
                 list the proxy's addresses in limits.trusted_proxies"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec![IpNet::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.1.2.3"),
        );
        let proxy: SocketAddr = "10.9.9.9:1".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.7:1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(stranger, &h, &trusted),
            stranger.ip(),
            "spoofed header ignored"
        );
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy.ip());
    }

    #[test]
    fn cidr_matching() {
        let n = IpNet::parse("192.168.0.0/16").unwrap();
        assert!(n.contains("192.168.5.1".parse().unwrap()));
        assert!(!n.contains("192.169.0.1".parse().unwrap()));
        assert!(IpNet::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpNet::parse("1.2.3.4/33").is_err());
    }

    #[test]
    fn connections_per_ip_are_capped_and_freed() {
        let mut limits = crate::config::Config::local_dev().limits;
        limits.max_connections_per_ip = 2;
        limits.trusted_proxies = vec![IpNet::parse("10.0.0.0/8").unwrap()];
        let c = PerIpConnections::new(&limits);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = c.admit(ip).expect("first");
        let _b = c.admit(ip).expect("second");
        assert!(c.admit(ip).is_none(), "third refused");
        assert!(c.admit("192.0.2.2".parse().unwrap()).is_some(), "per IP");
        drop(a);
        assert!(c.admit(ip).is_some(), "a closed connection frees its slot");
        let proxy: IpAddr = "10.1.1.1".parse().unwrap();
        let held: Vec<_> = (0..5).map(|_| c.admit(proxy)).collect();
        assert!(
            held.iter().all(Option::is_some),
            "trusted proxies are not capped"
        );
        drop(held);
        assert_eq!(
            c.tracked(),
            1,
            "only addresses with open connections are kept"
        );
    }

    #[test]
    fn buffer_budget_reserves_declared_lengths_and_frees_them() {
        let mut limits = crate::config::Config::local_dev().limits;
        limits.rest_buffered_total = 4096;
        limits.rest_max_buffered_body = 2048;
        let b = BufferBudget::new(&limits);
        let undeclared = b.reserve(None).expect("2 KiB of 4");
        let small = b.reserve(Some(100)).expect("1 KiB");
        assert!(
            b.reserve(Some(5000)).is_none(),
            "capped at 2 KiB, 1 KiB left"
        );
        let last = b.reserve(Some(1024)).expect("the last KiB");
        assert!(b.reserve(Some(1)).is_none(), "spent");
        drop((undeclared, small, last));
        assert!(b.reserve(None).is_some(), "freed when dropped");
    }

    #[test]
    fn bucket_allows_burst_then_refuses() {
        let mut limits = crate::config::Config::local_dev().limits;
        limits.connect_rate_per_ip = 5;
        let l = ConnectLimiter::new(&limits);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let admitted = (0..20).filter(|_| l.admit(ip)).count();
        assert_eq!(admitted, 10, "burst of 2x rate");
        assert!(l.admit("192.0.2.2".parse().unwrap()), "per IP");
    }
}
