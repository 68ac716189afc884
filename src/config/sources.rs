//! Resolving a [`Config`] from flags, environment and file: flag > env > file > default.
//!
//! clap reads flags and their environment variables into [`ConfigArgs`]; tests construct
//! [`ConfigArgs`] directly instead of touching the process environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{
    AppConfig, Config, ConfigError, FileConfig, LogFormat, Secret, UpstreamTarget, DEV_API_KEY,
    DEV_API_SECRET,
};

/// Options shared by `serve`, `check-config` and `token`, each with its environment variable.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML config file.
    #[arg(long, env = "STREAM_EDGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Client listener address.
    #[arg(long, env = "STREAM_EDGE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin listener address (/metrics, /healthz, /readyz).
    #[arg(long, env = "STREAM_EDGE_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// `embedded` or the Stream API base URL, e.g. https://chat.stream-io-api.com
    #[arg(long, env = "STREAM_EDGE_UPSTREAM", value_name = "URL|embedded")]
    pub upstream: Option<String>,
    /// Stream API key (adds or replaces that app).
    #[arg(long, env = "STREAM_API_KEY")]
    pub api_key: Option<String>,
    /// Stream API secret; several, comma-separated, for rotation (first one signs).
    #[arg(long, env = "STREAM_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
    /// Log format: human or json.
    #[arg(long, env = "STREAM_EDGE_LOG_FORMAT")]
    pub log_format: Option<String>,
}

impl ConfigArgs {
    /// Reads the file (if any) and resolves everything into a validated [`Config`].
    ///
    /// # Errors
    /// Unreadable or invalid file, or a value that fails validation.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                FileConfig::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.clone(),
                    message,
                })?
            }
            None => FileConfig::default(),
        };
        let config = self.merge(file)?;
        config.validate()?;
        Ok(config)
    }

    /// Layers flags/env over `file` over defaults. Does not validate.
    ///
    /// # Errors
    /// A value that does not parse.
    pub fn merge(&self, file: FileConfig) -> Result<Config, ConfigError> {
        let mut c = Config::local_dev();
        c.listen = addr(
            "listen",
            self.listen.clone().or(file.listen),
            super::DEFAULT_LISTEN,
        )?;
        c.admin_listen = addr(
            "admin_listen",
            self.admin_listen.clone().or(file.admin_listen),
            super::DEFAULT_ADMIN_LISTEN,
        )?;
        c.log_format = match self.log_format.clone().or(file.log_format).as_deref() {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "log_format",
                    format!("`{other}` is not human or json"),
                ))
            }
        };
        c.upstream.target = match self
            .upstream
            .clone()
            .or(file.upstream.url.clone())
            .as_deref()
        {
            None | Some("embedded") => UpstreamTarget::Embedded,
            Some(raw) => UpstreamTarget::Url(
                url::Url::parse(raw)
                    .map_err(|e| ConfigError::invalid("upstream", format!("{raw}: {e}")))?,
            ),
        };

        let mut apps: Vec<AppConfig> = file
            .apps
            .into_iter()
            .map(|a| AppConfig {
                api_key: a.api_key,
                secrets: a.secrets.into_iter().map(Secret).collect(),
            })
            .collect();
        match (&self.api_key, &self.api_secret) {
            (Some(key), Some(secrets)) => {
                apps.retain(|a| &a.api_key != key);
                apps.insert(
                    0,
                    AppConfig {
                        api_key: key.clone(),
                        secrets: secrets
                            .split(',')
                            .map(|s| Secret(s.trim().to_string()))
                            .collect(),
                    },
                );
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError::invalid(
                    "api_key",
                    "--api-key and --api-secret (STREAM_API_KEY, STREAM_API_SECRET) go together",
                ))
            }
        }
        c.dev_credentials = apps.is_empty() && c.upstream.target == UpstreamTarget::Embedded;
        if c.dev_credentials {
            apps.push(AppConfig {
                api_key: DEV_API_KEY.into(),
                secrets: vec![Secret(DEV_API_SECRET.into())],
            });
        }
        c.apps = apps;

        let a = file.auth;
        set_secs(&mut c.auth.leeway, a.leeway_seconds);
        set(&mut c.auth.cache_capacity, a.cache_capacity);
        set_secs(&mut c.auth.cache_ttl, a.cache_ttl_seconds);
        set(&mut c.auth.max_token_bytes, a.max_token_bytes);
        set(&mut c.auth.allow_dev_tokens, a.allow_dev_tokens);
        set(&mut c.auth.allow_anonymous, a.allow_anonymous);
        set(&mut c.auth.revocation_capacity, a.revocation_capacity);
        set_secs(
            &mut c.auth.app_settings_refresh,
            a.app_settings_refresh_seconds,
        );
        set_secs(
            &mut c.auth.ended_session_grace,
            a.ended_session_grace_seconds,
        );

        let w = file.ws;
        set(&mut c.ws.max_message_bytes, w.max_message_bytes);
        set(&mut c.ws.max_frame_bytes, w.max_frame_bytes);
        set(&mut c.ws.read_buffer_bytes, w.read_buffer_bytes);
        set(&mut c.ws.max_write_buffer_bytes, w.max_write_buffer_bytes);
        set_secs(&mut c.ws.health_interval, w.health_interval_seconds);
        set_secs(&mut c.ws.client_idle_timeout, w.client_idle_timeout_seconds);
        set(&mut c.ws.enabled, w.enabled);

        let lp = file.longpoll;
        set_secs(&mut c.longpoll.hold, lp.hold_seconds);
        set_secs(&mut c.longpoll.session_timeout, lp.session_timeout_seconds);
        set(&mut c.longpoll.queue_capacity, lp.queue_capacity);
        set(&mut c.longpoll.max_batch, lp.max_batch);

        let p = file.privacy;
        set(&mut c.privacy.cache_capacity, p.cache_capacity);
        set_secs(&mut c.privacy.cache_ttl, p.cache_ttl_seconds);
        set_secs(&mut c.privacy.lookup_timeout, p.lookup_timeout_seconds);
        c.privacy.on_lookup_failure = match p.on_lookup_failure.as_deref() {
            None | Some("drop") => super::OnLookupFailure::Drop,
            Some("deliver") => super::OnLookupFailure::Deliver,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "privacy.on_lookup_failure",
                    format!("`{other}` is not drop or deliver"),
                ))
            }
        };

        let u = file.upstream;

        c.upstream.ca_file = u.ca_file;
        if let Some(s) = u.linger_seconds {
            if !(0.0..=3600.0).contains(&s) {
                return Err(ConfigError::invalid(
                    "upstream.linger_seconds",
                    "must be 0-3600",
                ));
            }
            c.upstream.linger = Duration::from_secs_f64(s);
        }
        set_secs(&mut c.upstream.connect_timeout, u.connect_timeout_seconds);
        set_secs(&mut c.upstream.request_timeout, u.request_timeout_seconds);
        set_secs(&mut c.upstream.ping_interval, u.ping_interval_seconds);
        set_secs(&mut c.upstream.watchdog, u.watchdog_seconds);
        set_secs(&mut c.upstream.backoff_max, u.backoff_max_seconds);
        set_secs(&mut c.upstream.probe_interval, u.probe_interval_seconds);

        set(&mut c.upstream.pool_idle_per_host, u.pool_idle_per_host);
        set_secs(&mut c.upstream.token_ttl, u.token_ttl_seconds);

        let l = file.limits;
        set(&mut c.limits.max_connections, l.max_connections);
        set(&mut c.limits.max_header_bytes, l.max_header_bytes);
        set_secs(&mut c.limits.header_timeout, l.header_timeout_seconds);
        set(
            &mut c.limits.max_connections_per_ip,
            l.max_connections_per_ip,
        );
        set_secs(&mut c.limits.body_timeout, l.body_timeout_seconds);
        set_secs(&mut c.limits.send_timeout, l.send_timeout_seconds);
        set(
            &mut c.limits.rest_buffered_total,
            l.rest_buffered_total_bytes,
        );
        set(
            &mut c.limits.max_user_details_bytes,
            l.max_user_details_bytes,
        );
        set(&mut c.limits.session_queue, l.session_queue);
        set(
            &mut c.limits.rest_max_buffered_body,
            l.rest_max_buffered_body,
        );
        set(
            &mut c.limits.rest_max_buffered_response,
            l.rest_max_buffered_response,
        );
        set(&mut c.limits.max_sessions, l.max_sessions);
        set(&mut c.limits.max_sessions_per_user, l.max_sessions_per_user);
        set(&mut c.limits.max_upstream_per_app, l.max_upstream_per_app);
        set(&mut c.limits.connect_rate_per_ip, l.connect_rate_per_ip);
        set(
            &mut c.limits.connect_rate_tracked_ips,
            l.connect_rate_tracked_ips,
        );
        set(&mut c.limits.max_body_bytes, l.max_body_bytes);
        if let Some(nets) = l.trusted_proxies {
            c.limits.trusted_proxies = nets
                .iter()
                .map(|n| super::IpNet::parse(n))
                .collect::<Result<_, _>>()
                .map_err(|m| ConfigError::invalid("limits.trusted_proxies", m))?;
        }

        set_secs(&mut c.drain_deadline, file.shutdown.drain_seconds);
        c.tls = match (file.tls.cert_file, file.tls.key_file) {
            (Some(cert_file), Some(key_file)) => Some(super::TlsConfig {
                cert_file,
                key_file,
                reload_interval: file
                    .tls
                    .reload_interval_seconds
                    .map_or(super::DEFAULT_TLS_RELOAD_INTERVAL, Duration::from_secs),
            }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::invalid(
                    "tls",
                    "cert_file and key_file go together",
                ))
            }
        };
        Ok(c)
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn set_secs(slot: &mut Duration, value: Option<u64>) {
    if let Some(v) = value {
        *slot = Duration::from_secs(v);
    }
}

fn addr(
    key: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let raw = value.unwrap_or_else(|| default.to_string());
    raw.parse()
        .map_err(|_| ConfigError::invalid(key, format!("`{raw}` is not an IP:port address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_beats_default() {
        let file = FileConfig::parse(
            "listen = \"0.0.0.0:1\"\nadmin_listen = \"0.0.0.0:2\"\n[auth]\nleeway_seconds = 0\n",
        )
        .unwrap();
        let args = ConfigArgs {
            listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let c = args.merge(file).unwrap();
        assert_eq!(c.listen.port(), 3);
        assert_eq!(c.admin_listen.port(), 2);
        assert_eq!(c.auth.leeway, Duration::ZERO);
        assert_eq!(c.upstream.linger, crate::config::DEFAULT_UPSTREAM_LINGER);
        assert!(c.dev_credentials);
    }

    #[test]
    fn token_lifecycle_keys() {
        let file = FileConfig::parse(
            "[auth]\nrevocation_capacity = 7\napp_settings_refresh_seconds = 9\nended_session_grace_seconds = 0\n[upstream]\ntoken_ttl_seconds = 600\n",
        )
        .unwrap();
        let c = ConfigArgs::default().merge(file).unwrap();
        assert_eq!(c.auth.revocation_capacity, 7);
        assert_eq!(c.auth.app_settings_refresh, Duration::from_secs(9));
        assert_eq!(c.auth.ended_session_grace, Duration::ZERO);
        assert_eq!(c.upstream.token_ttl, Duration::from_secs(600));
        let file = FileConfig::parse("[upstream]\ntoken_ttl_seconds = 5\n").unwrap();
        let short = ConfigArgs::default().merge(file).unwrap();
        assert!(
            short.validate().is_err(),
            "a minted token must outlive the handshake"
        );
        assert!(c.validate().is_ok());
        let c = Config::local_dev();
        assert_eq!(
            c.upstream.token_ttl,
            crate::config::DEFAULT_UPSTREAM_TOKEN_TTL
        );
        assert_eq!(
            c.auth.ended_session_grace,
            crate::config::DEFAULT_ENDED_SESSION_GRACE
        );
    }

    #[test]
    fn unknown_key_is_rejected_with_its_line() {
        let err = FileConfig::parse("listen = \"x\"\n[ws]\nmax_mesage_bytes = 3\n").unwrap_err();
        assert!(err.contains("max_mesage_bytes"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn real_upstream_needs_credentials() {
        let args = ConfigArgs {
            upstream: Some("https://chat.stream-io-api.com".into()),
            ..Default::default()
        };
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.starts_with("apps:"), "{err}");
    }

    #[test]
    fn rotation_secrets_split_and_key_must_pair() {
        let args = ConfigArgs {
            api_key: Some("k".into()),
            api_secret: Some("secret-one-x, secret-two-x".into()),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.apps[0].secrets.len(), 2);
        assert!(!c.dev_credentials);
        let half = ConfigArgs {
            api_key: Some("k".into()),
            ..Default::default()
        };
        assert!(half.resolve().is_err());
    }
}
