//! `[ws]`, `[longpoll]` and `[privacy]`: how client sessions are held and what they are sent.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::value::{seconds, serde_as_text};

/// Largest WebSocket message from a client (`ws.max_message_bytes`). Clients only send pings.
pub const DEFAULT_WS_MAX_MESSAGE: usize = 64 * 1024;
/// Largest WebSocket frame from a client (`ws.max_frame_bytes`).
pub const DEFAULT_WS_MAX_FRAME: usize = 64 * 1024;
/// `ws.read_buffer_bytes`: accepted for old configs, no longer used. Client sockets are read into
/// one buffer per worker thread (`transport::wire`), and only a frame that arrives in part is kept.
pub const DEFAULT_WS_READ_BUFFER: usize = 1024;
/// `ws.max_write_buffer_bytes`: accepted for old configs, no longer used. A session buffers at most
/// one frame's unsent rest and its own reply; events wait in its bounded queue
/// (`limits.session_queue`).
pub const DEFAULT_WS_MAX_WRITE_BUFFER: usize = 1024 * 1024;
/// A Unity session gets a `health.check` this often however busy it is, and any other session
/// after [`health_silence`] of outbound silence (`ws.health_interval_seconds`): Unity's watchdog
/// fires after 30 s without a health check, the JS SDK's after 35 s of silence.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(25);
/// A client that sends nothing for this long is half-open and is closed
/// (`ws.client_idle_timeout_seconds`). Halfway through, a client that has not spoken gets an
/// RFC 6455 ping, which its WebSocket stack answers by itself: a client whose own pings stop (the
/// JS SDK pings only 25 s after the last `health.check` it received) is not mistaken for a dead one.
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// The outbound silence after which a non-Unity session gets an unsolicited `health.check`:
/// `ws.health_interval_seconds` plus a fifth, at most [`MAX_HEALTH_SILENCE`] (30 s by default).
///
/// Why more than the interval: the JS SDK pings 25 s after each `health.check` it receives and
/// reschedules on every one. A gateway that sent its own check after exactly 25 s of silence would
/// race that ping every cycle: when the check wins the client never pings (its timer is
/// rescheduled), when the ping wins the client gets two checks per cycle. Waiting a fifth longer
/// lets the client's ping come first, so one ping and its answer are the whole heartbeat. The cap
/// keeps the check 5 s ahead of the JS SDK's 35 s watchdog (the others' are 40 s) whatever the
/// interval; any silence of 25 s or more already lets the SDK's 25 s ping go first.
pub fn health_silence(interval: Duration) -> Duration {
    (interval + interval / 5).min(MAX_HEALTH_SILENCE)
}

/// The longest outbound silence a non-Unity session is left in ([`health_silence`]).
pub const MAX_HEALTH_SILENCE: Duration = Duration::from_secs(30);

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

/// `[ws]`: WebSocket sessions on `/connect`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// `ws.max_message_bytes`: largest client message, close 1009 beyond
    /// ([`DEFAULT_WS_MAX_MESSAGE`]).
    pub max_message_bytes: usize,
    /// `ws.max_frame_bytes`: largest client frame ([`DEFAULT_WS_MAX_FRAME`]).
    pub max_frame_bytes: usize,
    /// `ws.read_buffer_bytes`: not used any more ([`DEFAULT_WS_READ_BUFFER`]).
    pub read_buffer_bytes: usize,
    /// `ws.max_write_buffer_bytes`: not used any more ([`DEFAULT_WS_MAX_WRITE_BUFFER`]).
    pub max_write_buffer_bytes: usize,
    /// `ws.health_interval_seconds`: outbound silence before a `health.check` is sent
    /// ([`DEFAULT_HEALTH_INTERVAL`]).
    #[serde(rename = "health_interval_seconds", with = "seconds")]
    pub health_interval: Duration,
    /// `ws.client_idle_timeout_seconds`: client silence after which the socket is closed as
    /// half-open ([`DEFAULT_CLIENT_IDLE_TIMEOUT`]).
    #[serde(rename = "client_idle_timeout_seconds", with = "seconds")]
    pub client_idle_timeout: Duration,
    /// `ws.enabled`: accept WebSocket upgrades on `/connect`. Off: upgrades are refused with 403,
    /// as a proxy that blocks WebSockets would, and SDKs with `enableWSFallback` switch to
    /// long-poll.
    pub enabled: bool,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_bytes: DEFAULT_WS_MAX_MESSAGE,
            max_frame_bytes: DEFAULT_WS_MAX_FRAME,
            read_buffer_bytes: DEFAULT_WS_READ_BUFFER,
            max_write_buffer_bytes: DEFAULT_WS_MAX_WRITE_BUFFER,
            health_interval: DEFAULT_HEALTH_INTERVAL,
            client_idle_timeout: DEFAULT_CLIENT_IDLE_TIMEOUT,
            enabled: true,
        }
    }
}

/// `[longpoll]`: long-poll sessions on `/longpoll`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LongPollConfig {
    /// `longpoll.hold_seconds`: how long a poll is held waiting for events
    /// ([`DEFAULT_LONGPOLL_HOLD`]).
    #[serde(rename = "hold_seconds", with = "seconds")]
    pub hold: Duration,
    /// `longpoll.session_timeout_seconds`: a session not polled this long expires
    /// ([`DEFAULT_LONGPOLL_SESSION_TIMEOUT`]).
    #[serde(rename = "session_timeout_seconds", with = "seconds")]
    pub session_timeout: Duration,
    /// `longpoll.queue_capacity`: events buffered between polls ([`DEFAULT_LONGPOLL_QUEUE`]).
    pub queue_capacity: usize,
    /// `longpoll.max_batch`: events returned by one poll at most ([`DEFAULT_LONGPOLL_BATCH`]).
    pub max_batch: usize,
}

impl Default for LongPollConfig {
    fn default() -> Self {
        LongPollConfig {
            hold: DEFAULT_LONGPOLL_HOLD,
            session_timeout: DEFAULT_LONGPOLL_SESSION_TIMEOUT,
            queue_capacity: DEFAULT_LONGPOLL_QUEUE,
            max_batch: DEFAULT_LONGPOLL_BATCH,
        }
    }
}

/// What to do with a typing/read/delivery event whose sender's settings cannot be learned
/// (`privacy.on_lookup_failure`: `drop` or `deliver`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnLookupFailure {
    /// Privacy-safe default: drop it (and count it).
    Drop,
    /// Deliver it as if the sender had every indicator enabled.
    Deliver,
}

impl std::str::FromStr for OnLookupFailure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(OnLookupFailure::Drop),
            "deliver" => Ok(OnLookupFailure::Deliver),
            other => Err(format!("`{other}` is not drop or deliver")),
        }
    }
}

impl std::fmt::Display for OnLookupFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnLookupFailure::Drop => "drop",
            OnLookupFailure::Deliver => "deliver",
        })
    }
}

serde_as_text!(OnLookupFailure);

/// `[privacy]`: learning each sender's privacy settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// `privacy.cache_capacity`: users whose settings are cached
    /// ([`DEFAULT_PRIVACY_CACHE_CAPACITY`]).
    pub cache_capacity: u64,
    /// `privacy.cache_ttl_seconds`: how long learned settings are trusted
    /// ([`DEFAULT_PRIVACY_CACHE_TTL`]).
    #[serde(rename = "cache_ttl_seconds", with = "seconds")]
    pub cache_ttl: Duration,
    /// `privacy.lookup_timeout_seconds`: budget of one upstream lookup
    /// ([`DEFAULT_PRIVACY_LOOKUP_TIMEOUT`]).
    #[serde(rename = "lookup_timeout_seconds", with = "seconds")]
    pub lookup_timeout: Duration,
    /// `privacy.on_lookup_failure`: what happens to an event whose sender's settings cannot be
    /// learned (`drop`).
    pub on_lookup_failure: OnLookupFailure,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            cache_capacity: DEFAULT_PRIVACY_CACHE_CAPACITY,
            cache_ttl: DEFAULT_PRIVACY_CACHE_TTL,
            lookup_timeout: DEFAULT_PRIVACY_LOOKUP_TIMEOUT,
            on_lookup_failure: OnLookupFailure::Drop,
        }
    }
}
