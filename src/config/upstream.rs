//! `[upstream]`: where events and REST calls go, and how the connections there are kept.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::value::{fractional_seconds, seconds, serde_as_text};

/// Keep an upstream connection open this long after its last session leaves, so a reload reuses it
/// (`upstream.linger_seconds`).
pub const DEFAULT_UPSTREAM_LINGER: Duration = Duration::from_secs(10);
/// TCP + TLS + WebSocket handshake + first frame from upstream (`upstream.connect_timeout_seconds`).
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to the response head of a proxied REST call (`upstream.request_timeout_seconds`).
pub const DEFAULT_UPSTREAM_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Ping cadence towards upstream (`upstream.ping_interval_seconds`), the SDK's own.
pub const DEFAULT_UPSTREAM_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Upstream silence after which the connection is declared dead (`upstream.watchdog_seconds`).
pub const DEFAULT_UPSTREAM_WATCHDOG: Duration = Duration::from_secs(35);
/// First delay before reconnecting upstream after a failed connect; doubles per consecutive failure,
/// with jitter.
pub const DEFAULT_UPSTREAM_BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest reconnect delay (`upstream.backoff_max_seconds`).
pub const DEFAULT_UPSTREAM_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often the upstream is probed (TCP connect) for readiness (`upstream.probe_interval_seconds`).
pub const DEFAULT_UPSTREAM_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Idle pooled REST connections kept per upstream host (`upstream.pool_idle_per_host`).
pub const DEFAULT_UPSTREAM_POOL_IDLE: usize = 64;
/// Lifetime of the user token minted for each upstream connect (`upstream.token_ttl_seconds`).
/// Upstream checks it only in the connect handshake; every (re)connect mints a fresh one.
pub const DEFAULT_UPSTREAM_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Where events and REST calls go (`upstream.url`: `embedded` or an http(s) base URL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// The in-process Stream-compatible upstream on a loopback port.
    Embedded,
    /// A real Stream API base URL, e.g. `https://chat.stream-io-api.com`.
    Url(url::Url),
}

impl std::str::FromStr for UpstreamTarget {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "embedded" => Ok(UpstreamTarget::Embedded),
            raw => url::Url::parse(raw)
                .map(UpstreamTarget::Url)
                .map_err(|e| format!("{raw}: {e}")),
        }
    }
}

impl std::fmt::Display for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamTarget::Embedded => f.write_str("embedded"),
            UpstreamTarget::Url(url) => f.write_str(url.as_str()),
        }
    }
}

serde_as_text!(UpstreamTarget);

/// `[upstream]`: the Stream API (or the embedded upstream) and the connections to it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `upstream.url`: `embedded` or the Stream API base URL (`embedded`).
    #[serde(rename = "url")]
    pub target: UpstreamTarget,
    /// `upstream.ca_file`: extra PEM CA bundle trusted for `https`/`wss` upstreams, on top of the
    /// platform roots.
    pub ca_file: Option<PathBuf>,
    /// `upstream.linger_seconds`: how long a user's upstream connection outlives its last session
    /// ([`DEFAULT_UPSTREAM_LINGER`]; fractions allowed).
    #[serde(rename = "linger_seconds", with = "fractional_seconds")]
    pub linger: Duration,
    /// `upstream.connect_timeout_seconds`: handshake budget ([`DEFAULT_UPSTREAM_CONNECT_TIMEOUT`]).
    #[serde(rename = "connect_timeout_seconds", with = "seconds")]
    pub connect_timeout: Duration,
    /// `upstream.request_timeout_seconds`: time to a proxied response head
    /// ([`DEFAULT_UPSTREAM_REQUEST_TIMEOUT`]).
    #[serde(rename = "request_timeout_seconds", with = "seconds")]
    pub request_timeout: Duration,
    /// `upstream.ping_interval_seconds`: heartbeat towards upstream
    /// ([`DEFAULT_UPSTREAM_PING_INTERVAL`]).
    #[serde(rename = "ping_interval_seconds", with = "seconds")]
    pub ping_interval: Duration,
    /// `upstream.watchdog_seconds`: upstream silence that declares the connection dead
    /// ([`DEFAULT_UPSTREAM_WATCHDOG`]).
    #[serde(rename = "watchdog_seconds", with = "seconds")]
    pub watchdog: Duration,
    /// `upstream.backoff_max_seconds`: cap of the reconnect backoff
    /// ([`DEFAULT_UPSTREAM_BACKOFF_MAX`]).
    #[serde(rename = "backoff_max_seconds", with = "seconds")]
    pub backoff_max: Duration,
    /// `upstream.probe_interval_seconds`: readiness probe cadence
    /// ([`DEFAULT_UPSTREAM_PROBE_INTERVAL`]).
    #[serde(rename = "probe_interval_seconds", with = "seconds")]
    pub probe_interval: Duration,
    /// `upstream.pool_idle_per_host`: idle keep-alive REST connections kept
    /// ([`DEFAULT_UPSTREAM_POOL_IDLE`]).
    pub pool_idle_per_host: usize,
    /// `upstream.token_ttl_seconds`: lifetime (`exp`) of the user token minted for each upstream
    /// connect ([`DEFAULT_UPSTREAM_TOKEN_TTL`]).
    #[serde(rename = "token_ttl_seconds", with = "seconds")]
    pub token_ttl: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            target: UpstreamTarget::Embedded,
            ca_file: None,
            linger: DEFAULT_UPSTREAM_LINGER,
            connect_timeout: DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_UPSTREAM_REQUEST_TIMEOUT,
            ping_interval: DEFAULT_UPSTREAM_PING_INTERVAL,
            watchdog: DEFAULT_UPSTREAM_WATCHDOG,
            backoff_max: DEFAULT_UPSTREAM_BACKOFF_MAX,
            probe_interval: DEFAULT_UPSTREAM_PROBE_INTERVAL,
            pool_idle_per_host: DEFAULT_UPSTREAM_POOL_IDLE,
            token_ttl: DEFAULT_UPSTREAM_TOKEN_TTL,
        }
    }
}
