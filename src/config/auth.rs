//! `[[apps]]` and `[auth]`: which Stream apps the gateway serves and how their tokens are checked.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::value::seconds;

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

/// One configured Stream app (`[[apps]]`): its key and the secrets that may sign its tokens. The
/// first secret mints the gateway's own upstream tokens; the others are accepted for rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// `apps[].api_key`: the app's Stream API key, 1-64 characters.
    pub api_key: String,
    /// `apps[].secrets`: HS256 secrets; the first signs upstream tokens, all verify client tokens.
    #[serde(default)]
    pub secrets: Vec<Secret>,
}

/// A secret that never prints itself, neither in `Debug` nor when a configuration is serialised.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// `[auth]`: client token validation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `auth.leeway_seconds`: clock skew allowed for `exp`, `nbf`, `iat` ([`DEFAULT_JWT_LEEWAY`]).
    #[serde(rename = "leeway_seconds", with = "seconds")]
    pub leeway: Duration,
    /// `auth.cache_capacity`: cached token validations ([`DEFAULT_AUTH_CACHE_CAPACITY`]).
    pub cache_capacity: u64,
    /// `auth.cache_ttl_seconds`: longest a validation stays cached, never past `exp`
    /// ([`DEFAULT_AUTH_CACHE_TTL`]).
    #[serde(rename = "cache_ttl_seconds", with = "seconds")]
    pub cache_ttl: Duration,
    /// `auth.max_token_bytes`: larger tokens are refused ([`DEFAULT_MAX_TOKEN_BYTES`]).
    pub max_token_bytes: usize,
    /// `auth.allow_dev_tokens`: accept `client.devToken()` tokens (signature `devtoken`). Off:
    /// Stream only accepts them for apps with auth checks disabled.
    pub allow_dev_tokens: bool,
    /// `auth.allow_anonymous`: accept `stream-auth-type=anonymous` sessions.
    pub allow_anonymous: bool,
    /// `auth.revocation_capacity`: users whose revocation cutoff is remembered
    /// ([`DEFAULT_REVOCATION_CAPACITY`]).
    pub revocation_capacity: u64,
    /// `auth.app_settings_refresh_seconds`: how often each app's revocation cutoff is read
    /// ([`DEFAULT_APP_SETTINGS_REFRESH`]).
    #[serde(rename = "app_settings_refresh_seconds", with = "seconds")]
    pub app_settings_refresh: Duration,
    /// `auth.ended_session_grace_seconds`: how long the `connection_id` of a session ended for its
    /// token stays usable on REST ([`DEFAULT_ENDED_SESSION_GRACE`]; 0: not at all).
    #[serde(rename = "ended_session_grace_seconds", with = "seconds")]
    pub ended_session_grace: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            leeway: DEFAULT_JWT_LEEWAY,
            cache_capacity: DEFAULT_AUTH_CACHE_CAPACITY,
            cache_ttl: DEFAULT_AUTH_CACHE_TTL,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            allow_dev_tokens: false,
            allow_anonymous: false,
            revocation_capacity: DEFAULT_REVOCATION_CAPACITY,
            app_settings_refresh: DEFAULT_APP_SETTINGS_REFRESH,
            ended_session_grace: DEFAULT_ENDED_SESSION_GRACE,
        }
    }
}

impl AppConfig {
    /// The development app ([`DEV_API_KEY`]), served when nothing else is configured.
    pub fn dev() -> Self {
        AppConfig {
            api_key: DEV_API_KEY.into(),
            secrets: vec![Secret(DEV_API_SECRET.into())],
        }
    }
}
