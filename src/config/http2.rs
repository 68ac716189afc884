//! `[http2]`: whether the TLS listener offers `h2` in ALPN, whether the plain listener takes
//! h2c with prior knowledge, whether WebSockets are offered over HTTP/2 (all opt-in), and the edge-sized limits HTTP/2 connections run with. hyper's server defaults suit a file server (1 MiB windows,
//! 400 KiB send buffer per stream, 200 streams); an edge's answers are small JSON, so each is
//! lowered: what one browser can pin in the gateway's memory stays near what HTTP/1.1 costs.

use serde::{Deserialize, Serialize};

/// Streams one HTTP/2 connection may have open at once (`http2.max_concurrent_streams`): far
/// above a browser's tab count (each tab holds one poll and makes short REST calls), below
/// hyper's 200. More are refused by the HTTP/2 layer with `REFUSED_STREAM`, which clients retry;
/// `front::h2` counts each stream that fills a connection (`limit="h2_max_concurrent_streams"`).
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// The flow-control window of each stream (`http2.stream_window_bytes`): request bodies are at
/// most `limits.max_body_bytes` and rarely over a few KiB. hyper's default is 1 MiB.
pub const DEFAULT_H2_STREAM_WINDOW: u32 = 64 * 1024;
/// The flow-control window of the whole connection (`http2.connection_window_bytes`): what a
/// client may send unread across its streams. hyper's default is 1 MiB.
pub const DEFAULT_H2_CONNECTION_WINDOW: u32 = 256 * 1024;
/// Response bytes buffered per stream before its body waits for the client
/// (`http2.max_send_buffer_bytes`). hyper's default is 400 KiB.
pub const DEFAULT_H2_MAX_SEND_BUFFER: usize = 64 * 1024;
/// How often an idle HTTP/2 connection is pinged, so a client that vanished without a FIN (a
/// laptop closed behind NAT) frees its connection (`http2.keepalive_interval_seconds`); an
/// unanswered ping closes the connection after hyper's 20 s.
pub const DEFAULT_H2_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// `[http2]`: HTTP/2 for REST and long-poll; WebSockets over HTTP/2 (RFC 8441) only with
/// `http2.websockets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http2Config {
    /// `http2.tls`: offer `h2` before `http/1.1` in ALPN when the gateway terminates TLS. Off by
    /// default: HTTP/1.1 behind the lean long-poll front costs less per held poll for a one-tab
    /// client; h2 wins from several tabs of one browser (one connection instead of six).
    pub tls: bool,
    /// `http2.cleartext`: take h2c with prior knowledge on the plain listener (a connection that
    /// opens with the HTTP/2 preface), for ingresses that speak HTTP/2 to backends (Envoy, HAProxy
    /// `proto h2`): their held polls then share a few connections.
    pub cleartext: bool,
    /// `http2.websockets`: advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL` on HTTP/2 connections and
    /// serve `/connect` as an extended CONNECT (RFC 8441). Off by default: once it is advertised,
    /// browsers open `wss:` on the h2 connection and never fall back to HTTP/1.1, so it must be
    /// on only where every hop in front of the gateway carries extended CONNECT.
    pub websockets: bool,
    /// `http2.max_concurrent_streams` ([`DEFAULT_H2_MAX_CONCURRENT_STREAMS`]).
    pub max_concurrent_streams: u32,
    /// `http2.stream_window_bytes` ([`DEFAULT_H2_STREAM_WINDOW`]).
    pub stream_window_bytes: u32,
    /// `http2.connection_window_bytes` ([`DEFAULT_H2_CONNECTION_WINDOW`]).
    pub connection_window_bytes: u32,
    /// `http2.max_send_buffer_bytes` ([`DEFAULT_H2_MAX_SEND_BUFFER`]).
    pub max_send_buffer_bytes: usize,
    /// `http2.keepalive_interval_seconds` ([`DEFAULT_H2_KEEPALIVE_INTERVAL`]).
    #[serde(rename = "keepalive_interval_seconds", with = "super::value::seconds")]
    pub keepalive_interval: std::time::Duration,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            tls: false,
            cleartext: false,
            websockets: false,
            max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            stream_window_bytes: DEFAULT_H2_STREAM_WINDOW,
            connection_window_bytes: DEFAULT_H2_CONNECTION_WINDOW,
            max_send_buffer_bytes: DEFAULT_H2_MAX_SEND_BUFFER,
            keepalive_interval: DEFAULT_H2_KEEPALIVE_INTERVAL,
        }
    }
}

/// h2's own ranges (RFC 9113 6.5.2: windows up to 2^31-1; a window under the default 65 535 would
/// slow every request body), and a keep-alive that fires.
const MAX_WINDOW: u32 = (1 << 31) - 1;
const MIN_WINDOW: u32 = 65_535;

impl Http2Config {
    pub(super) fn validate(&self) -> Result<(), super::ConfigError> {
        use super::ConfigError;
        let window = |key: &'static str, v: u32| {
            if (MIN_WINDOW..=MAX_WINDOW).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::invalid(key, "must be 65535-2147483647"))
            }
        };
        window("http2.stream_window_bytes", self.stream_window_bytes)?;
        window(
            "http2.connection_window_bytes",
            self.connection_window_bytes,
        )?;
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError::invalid(
                "http2.max_concurrent_streams",
                "must be at least 1",
            ));
        }
        if self.max_send_buffer_bytes == 0 || self.max_send_buffer_bytes > MAX_WINDOW as usize {
            return Err(ConfigError::invalid(
                "http2.max_send_buffer_bytes",
                "must be 1-2147483647",
            ));
        }
        if self.websockets && !(self.tls || self.cleartext) {
            return Err(ConfigError::invalid(
                "http2.websockets",
                "needs http2.tls or http2.cleartext (WebSockets over HTTP/2 need an HTTP/2 listener)",
            ));
        }
        if self.keepalive_interval.is_zero() {
            return Err(ConfigError::invalid(
                "http2.keepalive_interval_seconds",
                "must be over 0",
            ));
        }
        Ok(())
    }
}
