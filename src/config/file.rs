//! The TOML config file: every key optional, unknown keys rejected so typos fail loudly.

use serde::Deserialize;

/// `[[apps]]`: one Stream app.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileApp {
    pub api_key: String,
    /// HS256 secrets; the first signs upstream tokens, all verify client tokens (rotation).
    #[serde(default)]
    pub secrets: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    pub leeway_seconds: Option<u64>,
    pub cache_capacity: Option<u64>,
    pub cache_ttl_seconds: Option<u64>,
    pub max_token_bytes: Option<usize>,
    pub allow_dev_tokens: Option<bool>,
    pub allow_anonymous: Option<bool>,
    pub revocation_capacity: Option<u64>,
    pub app_settings_refresh_seconds: Option<u64>,
    pub ended_session_grace_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWs {
    pub max_message_bytes: Option<usize>,
    pub max_frame_bytes: Option<usize>,
    pub read_buffer_bytes: Option<usize>,
    pub max_write_buffer_bytes: Option<usize>,
    pub health_interval_seconds: Option<u64>,
    pub client_idle_timeout_seconds: Option<u64>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLongPoll {
    pub hold_seconds: Option<u64>,
    pub session_timeout_seconds: Option<u64>,
    pub queue_capacity: Option<usize>,
    pub max_batch: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePrivacy {
    pub cache_capacity: Option<u64>,
    pub cache_ttl_seconds: Option<u64>,
    pub lookup_timeout_seconds: Option<u64>,
    /// `drop` or `deliver`.
    pub on_lookup_failure: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    /// `embedded` or an http(s) base URL.
    pub url: Option<String>,
    pub ca_file: Option<std::path::PathBuf>,
    pub linger_seconds: Option<f64>,
    pub connect_timeout_seconds: Option<u64>,
    pub request_timeout_seconds: Option<u64>,
    pub ping_interval_seconds: Option<u64>,
    pub watchdog_seconds: Option<u64>,
    pub backoff_max_seconds: Option<u64>,
    pub probe_interval_seconds: Option<u64>,

    pub pool_idle_per_host: Option<usize>,
    pub token_ttl_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub header_timeout_seconds: Option<u64>,
    pub body_timeout_seconds: Option<u64>,
    pub send_timeout_seconds: Option<u64>,
    pub max_user_details_bytes: Option<usize>,
    pub session_queue: Option<usize>,
    pub rest_max_buffered_body: Option<usize>,
    pub rest_buffered_total_bytes: Option<usize>,
    pub rest_max_buffered_response: Option<usize>,
    pub max_sessions: Option<usize>,
    pub max_sessions_per_user: Option<usize>,
    pub max_upstream_per_app: Option<usize>,
    pub connect_rate_per_ip: Option<u32>,
    pub connect_rate_tracked_ips: Option<u64>,
    pub max_body_bytes: Option<usize>,
    /// IPs or CIDRs of proxies whose `X-Forwarded-For` is trusted.
    pub trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    pub reload_interval_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileShutdown {
    pub drain_seconds: Option<u64>,
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    /// `human` or `json`.
    pub log_format: Option<String>,
    #[serde(default)]
    pub apps: Vec<FileApp>,
    #[serde(default)]
    pub auth: FileAuth,
    #[serde(default)]
    pub ws: FileWs,
    #[serde(default)]
    pub longpoll: FileLongPoll,
    #[serde(default)]
    pub privacy: FilePrivacy,

    #[serde(default)]
    pub upstream: FileUpstream,

    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub shutdown: FileShutdown,
    #[serde(default)]
    pub tls: FileTls,
}

impl FileConfig {
    /// Parses TOML text.
    ///
    /// # Errors
    /// The parser's message, including line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.message().to_string() + &location(text, e.span()))
    }
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let line = text[..r.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}
