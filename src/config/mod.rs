//! Gateway configuration: one typed [`Config`], parsed once, validated, then shared read-only.
//!
//! [`Config`] and its sections are the file's shape: each field is one key (named by its serde
//! name), documented where it is declared, with its default from the `DEFAULT_*` constant beside
//! it. Values are layered flag > environment > config file > default in one place ([`sources`]);
//! rules across fields are checked afterwards ([`Config::validate`]). A test checks that the README's
//! configuration table lists exactly these keys with these defaults.
//!
//! Adding a key: a field (with its serde name and `///`) in its section, its `DEFAULT_*` constant
//! and the section's `Default`, and a README row.

mod auth;
pub mod cluster;
pub mod http2;
mod limits;
mod sessions;
pub mod sources;
#[cfg(test)]
mod tests;
mod upstream;
mod validate;
mod value;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::auth::*;
pub use self::cluster::*;
pub use self::http2::*;
pub use self::limits::*;
pub use self::sessions::*;
pub use self::upstream::*;
use self::value::{serde_as_text, socket_addr};

/// Listener for client traffic (`listen`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Admin listener for `/metrics`, `/healthz`, `/readyz` (`admin_listen`). Loopback by default:
/// metrics are not for the internet.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// How often certificate and key files are checked for changes (`tls.reload_interval_seconds`).
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// How long shutdown waits for sessions and requests to finish (`shutdown.drain_seconds`). Keep it
/// below Kubernetes' `terminationGracePeriodSeconds`.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(20);

/// The whole configuration: the config file's shape, every key optional.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `listen`: client listener for WebSocket, long-poll and REST ([`DEFAULT_LISTEN`]).
    #[serde(with = "socket_addr")]
    pub listen: SocketAddr,
    /// `admin_listen`: listener for `/metrics`, `/healthz`, `/readyz` ([`DEFAULT_ADMIN_LISTEN`]).
    #[serde(with = "socket_addr")]
    pub admin_listen: SocketAddr,
    /// `log_format`: `human` or `json` (`human`).
    pub log_format: LogFormat,
    /// `[tls]`: serve the client listener over TLS (rustls) when `cert_file` and `key_file` are
    /// set.
    #[serde(with = "tls_section")]
    pub tls: Option<TlsConfig>,
    /// `[[apps]]`: the Stream apps served. Empty with the embedded upstream: the development app.
    pub apps: Vec<AppConfig>,
    /// True when the development key/secret were filled in because none were configured (not a
    /// key).
    #[serde(skip)]
    pub dev_credentials: bool,
    /// `[auth]`: client token validation.
    pub auth: AuthConfig,
    /// `[ws]`: WebSocket sessions.
    pub ws: WsConfig,
    /// `[http2]`: HTTP/2 for REST and long-poll, on the TLS listener (ALPN) and in cleartext.
    pub http2: Http2Config,
    /// `[longpoll]`: long-poll sessions.
    pub longpoll: LongPollConfig,
    /// `[cluster]`: replicas behind one load balancer (off without `cluster.peer_listen`).
    pub cluster: ClusterConfig,
    /// `[privacy]`: privacy settings lookups.
    pub privacy: PrivacyConfig,
    /// `[upstream]`: the Stream API and the connections to it.
    pub upstream: UpstreamConfig,
    /// `[limits]`: bounds on what clients may hold or send.
    pub limits: Limits,
    /// `shutdown.drain_seconds`: drain deadline after SIGTERM/SIGINT ([`DEFAULT_DRAIN_DEADLINE`]).
    #[serde(rename = "shutdown", with = "shutdown_section")]
    pub drain_deadline: Duration,
}

/// Log line format (`log_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not human or json")),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        })
    }
}

serde_as_text!(LogFormat);

/// TLS termination on the client listener, for deployments without a TLS-terminating balancer.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// `tls.cert_file`: PEM certificate chain.
    pub cert_file: PathBuf,
    /// `tls.key_file`: PEM private key.
    pub key_file: PathBuf,
    /// `tls.reload_interval_seconds`: how often both files are checked for changes
    /// ([`DEFAULT_TLS_RELOAD_INTERVAL`]).
    pub reload_interval: Duration,
}

/// `[tls]` as written: both files or neither. Without them there is no [`TlsConfig`].
mod tls_section {
    use super::*;

    #[derive(Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Section {
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        #[serde(rename = "reload_interval_seconds", with = "super::value::seconds")]
        reload_interval: Duration,
    }

    impl Default for Section {
        fn default() -> Self {
            Section {
                cert_file: None,
                key_file: None,
                reload_interval: DEFAULT_TLS_RELOAD_INTERVAL,
            }
        }
    }

    pub fn serialize<S: serde::Serializer>(
        tls: &Option<TlsConfig>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let section = match tls {
            Some(t) => Section {
                cert_file: Some(t.cert_file.clone()),
                key_file: Some(t.key_file.clone()),
                reload_interval: t.reload_interval,
            },
            None => Section::default(),
        };
        section.serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<TlsConfig>, D::Error> {
        let s = Section::deserialize(d)?;
        match (s.cert_file, s.key_file) {
            (Some(cert_file), Some(key_file)) => Ok(Some(TlsConfig {
                cert_file,
                key_file,
                reload_interval: s.reload_interval,
            })),
            (None, None) => Ok(None),
            _ => Err(serde::de::Error::custom(
                "cert_file and key_file go together",
            )),
        }
    }
}

/// `[shutdown]` as written; its one key is [`Config::drain_deadline`].
mod shutdown_section {
    use super::*;

    #[derive(Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Section {
        #[serde(rename = "drain_seconds", with = "super::value::seconds")]
        drain: Duration,
    }

    impl Default for Section {
        fn default() -> Self {
            Section {
                drain: DEFAULT_DRAIN_DEADLINE,
            }
        }
    }

    pub fn serialize<S: serde::Serializer>(drain: &Duration, s: S) -> Result<S::Ok, S::Error> {
        Section { drain: *drain }.serialize(s)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Section::deserialize(d).map(|s| s.drain)
    }
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

impl Default for Config {
    /// Every key at its default; no app yet (see [`sources`] for the development app).
    fn default() -> Self {
        Config {
            listen: default_addr(DEFAULT_LISTEN),
            admin_listen: default_addr(DEFAULT_ADMIN_LISTEN),
            log_format: LogFormat::Human,
            tls: None,
            apps: Vec::new(),
            dev_credentials: false,
            auth: AuthConfig::default(),
            ws: WsConfig::default(),
            http2: Http2Config::default(),
            cluster: ClusterConfig::default(),
            longpoll: LongPollConfig::default(),
            privacy: PrivacyConfig::default(),
            upstream: UpstreamConfig::default(),
            limits: Limits::default(),
            drain_deadline: DEFAULT_DRAIN_DEADLINE,
        }
    }
}

/// The `DEFAULT_*LISTEN` constants are literals a unit test parses; loopback:0 is never reached.
fn default_addr(literal: &str) -> SocketAddr {
    literal
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

impl Config {
    /// A configuration on ephemeral loopback ports with the embedded upstream and the development
    /// app: the base for tests and for `cargo run`.
    pub fn local_dev() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            apps: vec![AppConfig::dev()],
            dev_credentials: true,
            ..Config::default()
        }
    }

    /// Looks an app up by api key.
    pub fn app(&self, api_key: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.api_key == api_key)
    }
}
