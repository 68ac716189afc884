//! Per-client admission: who the client is (the TCP peer, or the `X-Forwarded-For` hop a trusted
//! proxy vouches for) and how fast it may open sessions (a token bucket per IP, in a bounded moka
//! cache so a flood of distinct addresses cannot grow memory).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
