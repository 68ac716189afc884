//! Rules across keys that types cannot express, checked once every layer is applied.

use std::time::Duration;

use super::{Config, ConfigError, UpstreamTarget};

impl Config {
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
        self.http2.validate()?;
        self.cluster.validate()?;
        if self.cluster.enabled() && self.cluster.forward_timeout <= self.longpoll.hold {
            return Err(ConfigError::invalid(
                "cluster.forward_timeout_seconds",
                "must be above longpoll.hold_seconds (a forwarded poll is held that long)",
            ));
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
        if self.upstream.linger > Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                "upstream.linger_seconds",
                "must be 0-3600",
            ));
        }
        if self.upstream.watchdog <= self.upstream.ping_interval {
            return Err(ConfigError::invalid(
                "upstream.watchdog_seconds",
                "must exceed upstream.ping_interval_seconds",
            ));
        }
        if self.ws.health_interval >= Duration::from_secs(30) || self.ws.health_interval.is_zero() {
            return Err(ConfigError::invalid(
                "ws.health_interval_seconds",
                "must be 1-29 s: the Unity SDK drops a socket after 30 s without a health.check",
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
}
