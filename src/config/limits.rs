//! `[limits]`: every bound on what clients may hold or send, and who is believed about client IPs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::value::{seconds, serde_as_text};

/// Events queued for one session before it counts as a slow consumer and is closed
/// (`limits.session_queue`).
pub const DEFAULT_SESSION_QUEUE: usize = 256;
/// Request bodies buffered for rewriting (watch tracking), in bytes (`limits.rest_max_buffered_body`).
pub const DEFAULT_REST_MAX_BUFFERED_BODY: usize = 1024 * 1024;
/// Request bodies buffered at once, all requests together, in bytes
/// (`limits.rest_buffered_total_bytes`). Each buffered request reserves its declared length (or
/// `limits.rest_max_buffered_body` when it declares none) before it is read, so clients that send
/// large bodies and stall cannot hold more than this between them; beyond it, 429 with code 9.
pub const DEFAULT_REST_BUFFERED_TOTAL: usize = 64 * 1024 * 1024;
/// Response bodies buffered for rewriting (watch tracking, privacy), in bytes
/// (`limits.rest_max_buffered_response`).
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
/// Largest live `me` kept per user (`limits.max_me_bytes`): a change that would make it larger
/// (many mutes, devices or blocked users) is not kept, the last good `me` is, and the hit is
/// counted. A typical `me` is 1-2 KB; 256 KiB leaves room for a few hundred mutes.
pub const DEFAULT_MAX_ME_BYTES: usize = 256 * 1024;

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
/// Events held for a session while its watching call is in flight, before the session is closed
/// with a reconnect code (`limits.watch_hold_events`).
pub const DEFAULT_WATCH_HOLD_EVENTS: usize = 1024;
/// Channels one session may watch (`limits.watches_per_session`); further watches are not
/// registered (their events are not delivered to it) and are counted.
pub const DEFAULT_WATCHES_PER_SESSION: usize = 5_000;
/// Users one session may subscribe to the presence of before it gets every presence event of its
/// user's upstream connection (`limits.presence_users_per_session`).
pub const DEFAULT_PRESENCE_USERS_PER_SESSION: usize = 5_000;
/// Largest channel object kept per watched channel for synthesised notifications, in bytes
/// (`limits.channel_info_bytes`); a larger one is not kept, and its notifications not made.
pub const DEFAULT_CHANNEL_INFO_BYTES: usize = 16 * 1024;
/// Largest proxied REST request body (`limits.max_body_bytes`); uploads stream through.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// `[limits]`: bounds on connections, sessions, heads, bodies and rates.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// `limits.max_connections`: open client connections ([`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// `limits.max_connections_per_ip`: open connections per TCP peer address; 0 disables
    /// ([`DEFAULT_MAX_CONNECTIONS_PER_IP`]).
    pub max_connections_per_ip: usize,
    /// `limits.max_header_bytes`: request head size ([`DEFAULT_MAX_HEADER_BYTES`]).
    pub max_header_bytes: usize,
    /// `limits.header_timeout_seconds`: time to a complete request head
    /// ([`DEFAULT_HEADER_TIMEOUT`]).
    #[serde(rename = "header_timeout_seconds", with = "seconds")]
    pub header_timeout: Duration,
    /// `limits.body_timeout_seconds`: time to a complete request body ([`DEFAULT_BODY_TIMEOUT`]).
    #[serde(rename = "body_timeout_seconds", with = "seconds")]
    pub body_timeout: Duration,
    /// `limits.send_timeout_seconds`: longest a write waits for a client
    /// ([`DEFAULT_SEND_TIMEOUT`]).
    #[serde(rename = "send_timeout_seconds", with = "seconds")]
    pub send_timeout: Duration,
    /// `limits.max_user_details_bytes`: `user_details` in the connect payload
    /// ([`DEFAULT_MAX_USER_DETAILS`]).
    pub max_user_details_bytes: usize,
    /// `limits.max_me_bytes`: the live `me` kept per user ([`DEFAULT_MAX_ME_BYTES`]).
    pub max_me_bytes: usize,
    /// `limits.session_queue`: events queued per session before it is closed as a slow consumer
    /// ([`DEFAULT_SESSION_QUEUE`]).
    pub session_queue: usize,
    /// `limits.rest_max_buffered_body`: request bodies the proxy parses
    /// ([`DEFAULT_REST_MAX_BUFFERED_BODY`]).
    pub rest_max_buffered_body: usize,
    /// `limits.rest_buffered_total_bytes`: request bodies buffered at once, all requests together
    /// ([`DEFAULT_REST_BUFFERED_TOTAL`]).
    #[serde(rename = "rest_buffered_total_bytes")]
    pub rest_buffered_total: usize,
    /// `limits.rest_max_buffered_response`: responses the proxy parses
    /// ([`DEFAULT_REST_MAX_BUFFERED_RESPONSE`]).
    pub rest_max_buffered_response: usize,
    /// `limits.max_sessions`: client sessions at once ([`DEFAULT_MAX_SESSIONS`]).
    pub max_sessions: usize,
    /// `limits.max_sessions_per_user`: sessions of one user at once
    /// ([`DEFAULT_MAX_SESSIONS_PER_USER`]).
    pub max_sessions_per_user: usize,
    /// `limits.max_upstream_per_app`: upstream connections (= users) per app
    /// ([`DEFAULT_MAX_UPSTREAM_PER_APP`]).
    pub max_upstream_per_app: usize,
    /// `limits.connect_rate_per_ip`: new sessions per second per client IP; 0 disables
    /// ([`DEFAULT_CONNECT_RATE_PER_IP`]).
    pub connect_rate_per_ip: u32,
    /// `limits.connect_rate_tracked_ips`: client IPs tracked by the rate limiter
    /// ([`DEFAULT_CONNECT_RATE_TRACKED`]).
    pub connect_rate_tracked_ips: u64,
    /// `limits.max_body_bytes`: largest proxied request body ([`DEFAULT_MAX_BODY_BYTES`]).
    pub max_body_bytes: usize,
    /// `limits.watch_hold_events` ([`DEFAULT_WATCH_HOLD_EVENTS`]).
    pub watch_hold_events: usize,
    /// `limits.watches_per_session` ([`DEFAULT_WATCHES_PER_SESSION`]).
    pub watches_per_session: usize,
    /// `limits.presence_users_per_session` ([`DEFAULT_PRESENCE_USERS_PER_SESSION`]).
    pub presence_users_per_session: usize,
    /// `limits.channel_info_bytes` ([`DEFAULT_CHANNEL_INFO_BYTES`]).
    pub channel_info_bytes: usize,
    /// `limits.trusted_proxies`: proxies whose `X-Forwarded-For` is believed (IPs or CIDRs);
    /// everyone else is identified by the TCP peer address (none).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            max_user_details_bytes: DEFAULT_MAX_USER_DETAILS,
            max_me_bytes: DEFAULT_MAX_ME_BYTES,
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
            watch_hold_events: DEFAULT_WATCH_HOLD_EVENTS,
            watches_per_session: DEFAULT_WATCHES_PER_SESSION,
            presence_users_per_session: DEFAULT_PRESENCE_USERS_PER_SESSION,
            channel_info_bytes: DEFAULT_CHANNEL_INFO_BYTES,
            trusted_proxies: Vec::new(),
        }
    }
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

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        IpNet::parse(s)
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

serde_as_text!(IpNet);
