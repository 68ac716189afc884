//! Gateway configuration: one typed [`Config`], parsed once, validated, then shared read-only.
//!
//! Values are resolved flag > environment > config file > default (see [`sources`]). Every bound the
//! gateway enforces is a named `DEFAULT_*` constant next to the key that overrides it, so the README's
//! configuration table and the code cannot drift apart silently (a test checks the table).

mod file;
pub mod sources;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use file::FileConfig;

/// Listener for client traffic (`listen`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Admin listener for `/metrics`, `/healthz`, `/readyz` (`admin_listen`). Loopback by default:
/// metrics are not for the internet.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Development app used with the embedded upstream when no key/secret is configured. Printed with a
/// warning at start-up; never use it in front of the real API.
pub const DEV_API_KEY: &str = "stream-edge-dev";
/// Secret of the development app (see [`DEV_API_KEY`]).
pub const DEV_API_SECRET: &str = "stream-edge-dev-secret-do-not-use-in-production";

/// Allowed clock skew for `exp`/`nbf`/`iat` (`auth.leeway_seconds`).
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(5);
/// Cached token validations (`auth.cache_capacity`).
pub const DEFAULT_AUTH_CACHE_CAPACITY: u64 = 100_000;
/// Longest a validation stays cached even without `exp` (`auth.cache_ttl_seconds`).
pub const DEFAULT_AUTH_CACHE_TTL: Duration = Duration::from_secs(3600);
/// Largest token accepted, in bytes (`auth.max_token_bytes`). Stream tokens are a few hundred bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 4096;
/// Users whose revocation cutoff is remembered (`auth.revocation_capacity`). Only users with a
/// cutoff take an entry.
pub const DEFAULT_REVOCATION_CAPACITY: u64 = 100_000;
/// How often each app's settings (its revocation cutoff) are read with `GET /app`
/// (`auth.app_settings_refresh_seconds`); SIGHUP also reads them at once.
pub const DEFAULT_APP_SETTINGS_REFRESH: Duration = Duration::from_secs(60);
/// How long a session ended for an expired or revoked token keeps its `connection_id` bound to its
/// user's upstream connection (`auth.ended_session_grace_seconds`), so the SDK's REST calls in
/// flight while it reconnects still succeed once it has refreshed its token.
pub const DEFAULT_ENDED_SESSION_GRACE: Duration = Duration::from_secs(30);

/// Largest WebSocket message from a client (`ws.max_message_bytes`). Clients only send pings.
pub const DEFAULT_WS_MAX_MESSAGE: usize = 64 * 1024;
/// Largest WebSocket frame from a client (`ws.max_frame_bytes`).
pub const DEFAULT_WS_MAX_FRAME: usize = 64 * 1024;
/// Per-socket read buffer (`ws.read_buffer_bytes`); tungstenite's 128 KiB default would dominate
/// per-session memory.
pub const DEFAULT_WS_READ_BUFFER: usize = 1024;
/// Bytes queued in a socket's write buffer before writes wait (`ws.max_write_buffer_bytes`).
pub const DEFAULT_WS_MAX_WRITE_BUFFER: usize = 1024 * 1024;
/// Events queued for one session before it counts as a slow consumer and is closed
/// (`session.queue_capacity`).
pub const DEFAULT_SESSION_QUEUE: usize = 256;
/// A `health.check` is sent to a session after this much outbound silence
/// (`ws.health_interval_seconds`); the SDK's watchdog fires after 35 s.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(25);
/// A client that sends nothing (not even its 25 s ping) for this long is half-open and is closed
/// (`ws.client_idle_timeout_seconds`).
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// How long a long-poll request is held waiting for events (`longpoll.hold_seconds`): below the
/// SDK's 30 s request timeout.
pub const DEFAULT_LONGPOLL_HOLD: Duration = Duration::from_secs(20);
/// A long-poll session not polled for this long expires; its next poll gets code 46
/// (`longpoll.session_timeout_seconds`).
pub const DEFAULT_LONGPOLL_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest pause between two scans for expired long-poll sessions (no key: a quarter of
/// `longpoll.session_timeout_seconds`, at most this).
pub const DEFAULT_LONGPOLL_SWEEP: Duration = Duration::from_secs(1);

/// Events buffered for a long-poll session between polls (`longpoll.queue_capacity`); overflow
/// expires the session.
pub const DEFAULT_LONGPOLL_QUEUE: usize = 1024;
/// Events returned by one poll at most (`longpoll.max_batch`).
pub const DEFAULT_LONGPOLL_BATCH: usize = 256;

/// Users whose privacy settings are cached (`privacy.cache_capacity`).
pub const DEFAULT_PRIVACY_CACHE_CAPACITY: u64 = 100_000;
/// How long learned privacy settings are trusted before a fresh lookup (`privacy.cache_ttl_seconds`).
pub const DEFAULT_PRIVACY_CACHE_TTL: Duration = Duration::from_secs(300);
/// Budget of one privacy lookup upstream (`privacy.lookup_timeout_seconds`). Events of the user
/// being routed wait for it, so it is short.
pub const DEFAULT_PRIVACY_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Request bodies buffered for rewriting (watch tracking), in bytes (`rest.max_buffered_body_bytes`).
pub const DEFAULT_REST_MAX_BUFFERED_BODY: usize = 1024 * 1024;
/// Request bodies buffered at once, all requests together, in bytes
/// (`limits.rest_buffered_total_bytes`). Each buffered request reserves its declared length (or
/// `limits.rest_max_buffered_body` when it declares none) before it is read, so clients that send
/// large bodies and stall cannot hold more than this between them; beyond it, 429 with code 9.
pub const DEFAULT_REST_BUFFERED_TOTAL: usize = 64 * 1024 * 1024;
/// Response bodies buffered for rewriting (watch tracking, privacy), in bytes
/// (`rest.max_buffered_response_bytes`).
pub const DEFAULT_REST_MAX_BUFFERED_RESPONSE: usize = 16 * 1024 * 1024;

/// Open client connections (`limits.max_connections`); beyond it the accept loop waits.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// Request head size (`limits.max_header_bytes`). The SDK's upgrade URL carries a JWT and up to 5 KB
/// of user JSON, form-encoded.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Time to receive a complete request head (`limits.header_timeout_seconds`): slowloris bound.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to receive a complete request body, from its head to its last byte
/// (`limits.body_timeout_seconds`): the same bound for bodies (a client that declares
/// `Content-Length: 100` and sends one byte). A total, not an idle, bound, so a body dripped one
/// byte at a time cannot outlive it; 60 s lets a 32 MiB upload through at about 0.5 MiB/s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a write to a client may wait for the client to take bytes (`limits.send_timeout_seconds`):
/// a client that stops reading (a REST response, a long-poll answer, WebSocket events) is
/// disconnected instead of holding its connection, its buffers and, for a streamed response, an
/// upstream connection forever.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Open connections per client address (`limits.max_connections_per_ip`; 0 disables), so one
/// client cannot take every `limits.max_connections` slot. Counted per TCP peer at accept: peers
/// in `limits.trusted_proxies` are exempt (their connections carry many clients). 256 leaves room
/// for a large office behind one NAT address (a browser tab holds 1-3 connections).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// Largest `user_details` object accepted on connect, Stream's documented 5 KB user limit
/// (`limits.max_user_details_bytes`).
pub const DEFAULT_MAX_USER_DETAILS: usize = 5 * 1024;

/// Client sessions (WebSocket + long-poll) open at once (`limits.max_sessions`).
pub const DEFAULT_MAX_SESSIONS: usize = 50_000;
/// Sessions of one user at once (`limits.max_sessions_per_user`): tabs and devices, not bots.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 50;
/// Upstream connections (= users) per app (`limits.max_upstream_per_app`).
pub const DEFAULT_MAX_UPSTREAM_PER_APP: usize = 50_000;
/// New sessions per second per client IP, sustained (`limits.connect_rate_per_ip`); the bucket
/// holds twice as many for bursts (a page load opening a socket and a fallback).
pub const DEFAULT_CONNECT_RATE_PER_IP: u32 = 20;
/// Client IPs whose connect rate is tracked at once (`limits.connect_rate_tracked_ips`).
pub const DEFAULT_CONNECT_RATE_TRACKED: u64 = 100_000;
/// Largest proxied REST request body (`limits.max_body_bytes`); uploads stream through.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How often certificate and key files are checked for changes (`tls.reload_interval_seconds`).
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// How long shutdown waits for sessions and requests to finish (`shutdown.drain_seconds`). Keep it
/// below Kubernetes' `terminationGracePeriodSeconds`.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(20);

/// One configured Stream app: its key and the secrets that may sign its tokens. The first secret
/// mints the gateway's own upstream tokens; the others are accepted for rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppConfig {
    pub api_key: String,
    pub secrets: Vec<Secret>,
}

/// A secret that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where events and REST calls go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// The in-process Stream-compatible upstream on a loopback port.
    Embedded,
    /// A real Stream API base URL, e.g. `https://chat.stream-io-api.com`.
    Url(url::Url),
}

/// TLS termination on the client listener, for deployments without a TLS-terminating balancer.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub reload_interval: Duration,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub leeway: Duration,
    pub cache_capacity: u64,
    pub cache_ttl: Duration,
    pub max_token_bytes: usize,
    /// Accept `client.devToken()` tokens (signature `devtoken`). Off: Stream only accepts them for
    /// apps with auth checks disabled.
    pub allow_dev_tokens: bool,
    /// Accept `stream-auth-type=anonymous` sessions.
    pub allow_anonymous: bool,
    pub revocation_capacity: u64,
    pub app_settings_refresh: Duration,
    pub ended_session_grace: Duration,
}

#[derive(Clone, Debug)]
pub struct WsConfig {
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub read_buffer_bytes: usize,
    pub max_write_buffer_bytes: usize,
    pub health_interval: Duration,
    pub client_idle_timeout: Duration,
    /// Accept WebSocket upgrades on `/connect`. Off: upgrades are refused with 403, as a proxy that
    /// blocks WebSockets would, and SDKs with `enableWSFallback` switch to long-poll.
    pub enabled: bool,
}

/// What to do with a typing/read/delivery event whose sender's settings cannot be learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnLookupFailure {
    /// Privacy-safe default: drop it (and count it).
    Drop,
    /// Deliver it as if the sender had every indicator enabled.
    Deliver,
}

#[derive(Clone, Debug)]
pub struct PrivacyConfig {
    pub cache_capacity: u64,
    pub cache_ttl: Duration,
    pub lookup_timeout: Duration,
    pub on_lookup_failure: OnLookupFailure,
}

#[derive(Clone, Debug)]
pub struct LongPollConfig {
    pub hold: Duration,
    pub session_timeout: Duration,
    pub queue_capacity: usize,
    pub max_batch: usize,
}

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    pub target: UpstreamTarget,
    /// Extra PEM CA bundle trusted for `https`/`wss` upstreams, on top of the platform roots.
    pub ca_file: Option<PathBuf>,
    pub linger: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub ping_interval: Duration,
    pub watchdog: Duration,
    pub backoff_max: Duration,
    pub probe_interval: Duration,
    pub pool_idle_per_host: usize,
    /// Lifetime (`exp`) of the user token the gateway mints for each upstream connect.
    pub token_ttl: Duration,
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// 0 disables the per-address connection cap.
    pub max_connections_per_ip: usize,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub send_timeout: Duration,
    pub max_user_details_bytes: usize,
    pub session_queue: usize,
    pub rest_max_buffered_body: usize,
    pub rest_buffered_total: usize,
    pub rest_max_buffered_response: usize,
    pub max_sessions: usize,
    pub max_sessions_per_user: usize,
    pub max_upstream_per_app: usize,
    /// 0 disables the per-IP connect rate limit.
    pub connect_rate_per_ip: u32,
    pub connect_rate_tracked_ips: u64,
    pub max_body_bytes: usize,
    /// Proxies whose `X-Forwarded-For` is believed (IPs or CIDRs); everyone else is identified
    /// by the TCP peer address.
    pub trusted_proxies: Vec<IpNet>,
}

/// An IP network (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Parses `addr` or `addr/prefix`.
    ///
    /// # Errors
    /// Not an address, or a prefix longer than the address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .map_err(|_| format!("`{s}` has a bad prefix"))?,
            None => max,
        };
        if prefix > max {
            return Err(format!("`{s}` has a prefix over {max}"));
        }
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        match (self.addr, ip) {
            (V4(n), V4(i)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (V6(n), V6(i)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// The whole, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Serve the client listener over TLS (rustls) when set.
    pub tls: Option<TlsConfig>,
    pub apps: Vec<AppConfig>,
    /// True when the development key/secret were filled in because none were configured.
    pub dev_credentials: bool,
    pub auth: AuthConfig,
    pub ws: WsConfig,
    pub longpoll: LongPollConfig,
    pub privacy: PrivacyConfig,
    pub upstream: UpstreamConfig,
    pub limits: Limits,
    pub drain_deadline: Duration,
    pub log_format: LogFormat,
}

/// Why a configuration was rejected; printed as one line before exit 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            message: message.into(),
        }
    }
}

// === impl Config ===

impl Config {
    /// A configuration on ephemeral loopback ports with the embedded upstream and the development
    /// app: the base for tests and for `cargo run`.
    pub fn local_dev() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            apps: vec![AppConfig {
                api_key: DEV_API_KEY.into(),
                secrets: vec![Secret(DEV_API_SECRET.into())],
            }],
            dev_credentials: true,
            auth: AuthConfig {
                leeway: DEFAULT_JWT_LEEWAY,
                cache_capacity: DEFAULT_AUTH_CACHE_CAPACITY,
                cache_ttl: DEFAULT_AUTH_CACHE_TTL,
                max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
                revocation_capacity: DEFAULT_REVOCATION_CAPACITY,
                app_settings_refresh: DEFAULT_APP_SETTINGS_REFRESH,
                ended_session_grace: DEFAULT_ENDED_SESSION_GRACE,
                allow_dev_tokens: false,
                allow_anonymous: false,
            },
            ws: WsConfig {
                max_message_bytes: DEFAULT_WS_MAX_MESSAGE,
                max_frame_bytes: DEFAULT_WS_MAX_FRAME,
                read_buffer_bytes: DEFAULT_WS_READ_BUFFER,
                max_write_buffer_bytes: DEFAULT_WS_MAX_WRITE_BUFFER,
                health_interval: DEFAULT_HEALTH_INTERVAL,
                client_idle_timeout: DEFAULT_CLIENT_IDLE_TIMEOUT,
                enabled: true,
            },
            longpoll: LongPollConfig {
                hold: DEFAULT_LONGPOLL_HOLD,
                session_timeout: DEFAULT_LONGPOLL_SESSION_TIMEOUT,
                queue_capacity: DEFAULT_LONGPOLL_QUEUE,
                max_batch: DEFAULT_LONGPOLL_BATCH,
            },
            privacy: PrivacyConfig {
                cache_capacity: DEFAULT_PRIVACY_CACHE_CAPACITY,
                cache_ttl: DEFAULT_PRIVACY_CACHE_TTL,
                lookup_timeout: DEFAULT_PRIVACY_LOOKUP_TIMEOUT,
                on_lookup_failure: OnLookupFailure::Drop,
            },

            upstream: UpstreamConfig {
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
            },
            limits: Limits {
                max_connections: DEFAULT_MAX_CONNECTIONS,
                max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
                max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
                header_timeout: DEFAULT_HEADER_TIMEOUT,
                body_timeout: DEFAULT_BODY_TIMEOUT,
                send_timeout: DEFAULT_SEND_TIMEOUT,
                max_user_details_bytes: DEFAULT_MAX_USER_DETAILS,
                session_queue: DEFAULT_SESSION_QUEUE,
                rest_max_buffered_body: DEFAULT_REST_MAX_BUFFERED_BODY,
                rest_buffered_total: DEFAULT_REST_BUFFERED_TOTAL,
                rest_max_buffered_response: DEFAULT_REST_MAX_BUFFERED_RESPONSE,
                max_sessions: DEFAULT_MAX_SESSIONS,
                max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
                max_upstream_per_app: DEFAULT_MAX_UPSTREAM_PER_APP,
                connect_rate_per_ip: DEFAULT_CONNECT_RATE_PER_IP,
                connect_rate_tracked_ips: DEFAULT_CONNECT_RATE_TRACKED,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                trusted_proxies: Vec::new(),
            },

            drain_deadline: DEFAULT_DRAIN_DEADLINE,
            log_format: LogFormat::Human,
        }
    }

    /// Checks cross-field rules that types cannot express.
    ///
    /// # Errors
    /// The first rule broken, naming its config key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.apps.is_empty() {
            return Err(ConfigError::invalid("apps", "at least one app is required"));
        }
        let mut seen = std::collections::HashSet::new();
        for app in &self.apps {
            if app.api_key.is_empty() || app.api_key.len() > 64 {
                return Err(ConfigError::invalid(
                    "apps.api_key",
                    "must be 1-64 characters",
                ));
            }
            if !seen.insert(app.api_key.as_str()) {
                return Err(ConfigError::invalid(
                    "apps.api_key",
                    format!("duplicate api key {}", app.api_key),
                ));
            }
            if app.secrets.is_empty() || app.secrets.iter().any(|s| s.0.len() < 8) {
                return Err(ConfigError::invalid(
                    "apps.secrets",
                    format!("app {} needs at least one secret of 8+ bytes", app.api_key),
                ));
            }
        }
        if let UpstreamTarget::Url(url) = &self.upstream.target {
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::invalid(
                    "upstream",
                    "must be `embedded` or an http(s):// base URL",
                ));
            }
        } else if self.upstream.ca_file.is_some() {
            return Err(ConfigError::invalid(
                "upstream.ca_file",
                "only applies to an https upstream",
            ));
        }
        if self.upstream.watchdog <= self.upstream.ping_interval {
            return Err(ConfigError::invalid(
                "upstream.watchdog_seconds",
                "must exceed upstream.ping_interval_seconds",
            ));
        }
        if self.ws.health_interval >= Duration::from_secs(35) || self.ws.health_interval.is_zero() {
            return Err(ConfigError::invalid(
                "ws.health_interval_seconds",
                "must be 1-34 s: the SDK drops a socket after 35 s of silence",
            ));
        }
        if self.ws.client_idle_timeout <= Duration::from_secs(30) {
            return Err(ConfigError::invalid(
                "ws.client_idle_timeout_seconds",
                "must exceed 30 s: clients ping every 20-25 s",
            ));
        }
        if self.ws.read_buffer_bytes < 1024 || self.ws.max_frame_bytes > self.ws.max_message_bytes {
            return Err(ConfigError::invalid(
                "ws",
                "read_buffer_bytes must be >= 1024 and max_frame_bytes <= max_message_bytes",
            ));
        }
        if self.limits.max_header_bytes < 8192 {
            return Err(ConfigError::invalid(
                "limits.max_header_bytes",
                "must be at least 8192 (the SDK's connect URL carries a token and user JSON)",
            ));
        }
        if self.limits.session_queue == 0 || self.limits.max_connections == 0 {
            return Err(ConfigError::invalid(
                "limits",
                "session_queue and max_connections must be positive",
            ));
        }
        if self.limits.body_timeout.is_zero()
            || self.limits.header_timeout.is_zero()
            || self.limits.send_timeout.is_zero()
        {
            return Err(ConfigError::invalid(
                "limits",
                "header_timeout_seconds, body_timeout_seconds and send_timeout_seconds must be positive",
            ));
        }
        if self.limits.rest_buffered_total < self.limits.rest_max_buffered_body {
            return Err(ConfigError::invalid(
                "limits.rest_buffered_total_bytes",
                "must be at least limits.rest_max_buffered_body",
            ));
        }
        let lp = &self.longpoll;
        if lp.hold.is_zero() || lp.hold >= Duration::from_secs(30) {
            return Err(ConfigError::invalid(
                "longpoll.hold_seconds",
                "must be 1-29 s: the SDK times a poll out after 30 s",
            ));
        }
        if lp.session_timeout <= lp.hold {
            return Err(ConfigError::invalid(
                "longpoll.session_timeout_seconds",
                "must exceed longpoll.hold_seconds",
            ));
        }
        if lp.queue_capacity == 0 || lp.max_batch == 0 {
            return Err(ConfigError::invalid(
                "longpoll",
                "queue_capacity and max_batch must be positive",
            ));
        }
        if self.auth.cache_capacity == 0 {
            return Err(ConfigError::invalid(
                "auth.cache_capacity",
                "must be positive",
            ));
        }
        if self.auth.revocation_capacity == 0 || self.auth.app_settings_refresh.is_zero() {
            return Err(ConfigError::invalid(
                "auth",
                "revocation_capacity and app_settings_refresh_seconds must be positive",
            ));
        }
        if self.upstream.token_ttl < Duration::from_secs(60) {
            return Err(ConfigError::invalid(
                "upstream.token_ttl_seconds",
                "must be at least 60 (the token must outlive the connect handshake)",
            ));
        }
        Ok(())
    }

    /// Looks an app up by api key.
    pub fn app(&self, api_key: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.api_key == api_key)
    }
}
