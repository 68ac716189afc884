//! Resolving a [`Config`] from flags, environment and file: flag > env > file > default, in one
//! place.
//!
//! clap reads flags and their environment variables into [`ConfigArgs`] (flag over variable); tests
//! construct [`ConfigArgs`] directly instead of touching the process environment. The file is
//! parsed into a TOML tree, each flag that names a key replaces that key in the tree
//! (`ConfigArgs::overrides`), and the tree is deserialised once into [`Config`], whose `Default`
//! impls supply every key left out. A rejection names the key, and the file line or the flag it
//! came from.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{AppConfig, Config, ConfigError, Secret, UpstreamTarget};

/// Options shared by every subcommand, each with its environment variable. They are global: given
/// before or after the subcommand, they land in this one struct (no merging).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML config file.
    #[arg(long, global = true, env = "STREAM_EDGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Client listener address.
    #[arg(long, global = true, env = "STREAM_EDGE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin listener address (/metrics, /healthz, /readyz).
    #[arg(
        long,
        global = true,
        env = "STREAM_EDGE_ADMIN_LISTEN",
        value_name = "ADDR"
    )]
    pub admin_listen: Option<String>,
    /// `embedded` or the Stream API base URL, e.g. https://chat.stream-io-api.com
    #[arg(
        long,
        global = true,
        env = "STREAM_EDGE_UPSTREAM",
        value_name = "URL|embedded"
    )]
    pub upstream: Option<String>,
    /// Stream API key (adds or replaces that app).
    #[arg(long, global = true, env = "STREAM_API_KEY")]
    pub api_key: Option<String>,
    /// Stream API secret; several, comma-separated, for rotation (first one signs).
    #[arg(long, global = true, env = "STREAM_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
    /// Log format: human or json.
    #[arg(long, global = true, env = "STREAM_EDGE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Peer listener address (`cluster.peer_listen`): turns clustering on.
    #[arg(
        long,
        global = true,
        env = "STREAM_EDGE_PEER_LISTEN",
        value_name = "ADDR"
    )]
    pub peer_listen: Option<String>,
    /// The IPv4 address peers reach this replica at (`cluster.advertise`; Kubernetes: the pod IP).
    #[arg(
        long,
        global = true,
        env = "STREAM_EDGE_CLUSTER_ADVERTISE",
        value_name = "IP"
    )]
    pub cluster_advertise: Option<String>,
}

impl ConfigArgs {
    /// Reads the file (if any) and resolves everything into a validated [`Config`].
    ///
    /// # Errors
    /// Unreadable or invalid file, or a value that fails validation.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let text = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some((path.as_path(), text))
            }
            None => None,
        };
        let config = self.layer(text.as_ref().map(|(p, t)| (*p, t.as_str())))?;
        config.validate()?;
        Ok(config)
    }

    /// Flags (or their environment variables) that set a file key: the key's path, the name a
    /// rejection gives it, and the value if one was given. Adding a flag for a key: a field above and
    /// a row here.
    fn overrides(&self) -> [(&'static str, &'static str, Option<&String>); 6] {
        [
            ("listen", "listen", self.listen.as_ref()),
            ("admin_listen", "admin_listen", self.admin_listen.as_ref()),
            ("upstream.url", "upstream", self.upstream.as_ref()),
            ("log_format", "log_format", self.log_format.as_ref()),
            (
                "cluster.peer_listen",
                "peer_listen",
                self.peer_listen.as_ref(),
            ),
            (
                "cluster.advertise",
                "cluster_advertise",
                self.cluster_advertise.as_ref(),
            ),
        ]
    }

    /// Layers flags/env over `file` (its path and text) over defaults. Does not validate.
    ///
    /// # Errors
    /// A file that does not parse, an unknown key, or a value of the wrong form.
    pub fn layer(&self, file: Option<(&Path, &str)>) -> Result<Config, ConfigError> {
        let mut tree = match file {
            Some((path, text)) => DeTable::parse(text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.message().to_string() + &line_of(text, e.span()),
            })?,
            None => Spanned::new(0..0, DeTable::new()),
        };
        let overrides = self.overrides();
        for (key, _, value) in &overrides {
            if let Some(value) = value {
                set(tree.get_mut(), key, value);
            }
        }
        let mut config = Config::deserialize(toml::de::Deserializer::from(tree))
            .map_err(|e| rejection(&e, file, &overrides))?;
        self.add_app(&mut config.apps)?;
        config.dev_credentials =
            config.apps.is_empty() && config.upstream.target == UpstreamTarget::Embedded;
        if config.dev_credentials {
            config.apps.push(AppConfig::dev());
        }
        Ok(config)
    }

    /// `--api-key` with `--api-secret` add that app first, replacing a file app of the same key.
    fn add_app(&self, apps: &mut Vec<AppConfig>) -> Result<(), ConfigError> {
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
                Ok(())
            }
            (None, None) => Ok(()),
            _ => Err(ConfigError::invalid(
                "api_key",
                "--api-key and --api-secret (STREAM_API_KEY, STREAM_API_SECRET) go together",
            )),
        }
    }
}

/// Puts `value` at the dotted `key` of `tree`, creating (or replacing) the tables on the way.
fn set(tree: &mut DeTable<'_>, key: &str, value: &str) {
    let mut table = tree;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let name = Spanned::new(0..0, Cow::Owned(part.to_string()));
        if parts.peek().is_none() {
            let value = DeValue::String(Cow::Owned(value.to_string()));
            table.insert(name, Spanned::new(0..0, value));
            return;
        }
        let slot = table
            .entry(name)
            .or_insert_with(|| Spanned::new(0..0, DeValue::Table(DeTable::new())));
        if !matches!(slot.get_ref(), DeValue::Table(_)) {
            *slot = Spanned::new(0..0, DeValue::Table(DeTable::new()));
        }
        let DeValue::Table(inner) = slot.get_mut() else {
            return;
        };
        table = inner;
    }
}

/// One line naming what was rejected: the flag when its key came from one, else the file key and
/// its line.
fn rejection(
    e: &toml::de::Error,
    file: Option<(&Path, &str)>,
    overrides: &[(&'static str, &'static str, Option<&String>)],
) -> ConfigError {
    let key = key_of(e);
    if let Some((_, name, _)) = overrides.iter().find(|(k, _, v)| v.is_some() && *k == key) {
        return ConfigError::invalid(name, e.message());
    }
    let prefix = if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    };
    match file {
        Some((path, text)) => ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("{prefix}{}{}", e.message(), line_of(text, e.span())),
        },
        None => ConfigError::invalid("config", format!("{prefix}{}", e.message())),
    }
}

/// The dotted key an error is about. toml records it, and prints it as a last line
/// ``in `a.b` `` when, as here, the error carries no source text.
fn key_of(e: &toml::de::Error) -> String {
    e.to_string()
        .lines()
        .find_map(|l| {
            l.strip_prefix("in `")?
                .strip_suffix('`')
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let before = &text.as_bytes()[..r.start.min(text.len())];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}
