//! Who is connecting: validates Stream user JWTs (HS256, app secrets with rotation), developer and
//! anonymous identities, and caches successful validations (see [`cache`]).
//!
//! Error codes mirror Stream's (stream-protocol.md 6): 40 expired, 41 not yet valid, 42 issued in
//! the future, 43 anything else wrong with the token, 2 unknown api key, 4 missing input,
//! 17 not allowed.

mod cache;
mod jwt;
pub mod mint;
pub mod revocation;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::config::{AppConfig, AuthConfig};
use crate::metrics::Metrics;

pub use jwt::{now_secs, Claims};
pub use revocation::Revocations;

/// Why a credential was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("api_key not valid")]
    UnknownApiKey,
    #[error("JWTAuth error: token is expired (exp)")]
    Expired,
    /// Stream's own wording and code (40), so a token-provider SDK refreshes as on expiry.
    #[error("This token has been revoked, please generate a new token")]
    Revoked,
    #[error("JWTAuth error: token is not valid yet (nbf)")]
    NotYetValid,
    #[error("JWTAuth error: token used before issue at (iat)")]
    IssuedInFuture,
    #[error("JWTAuth error: signature is not valid")]
    BadSignature,
    #[error("JWTAuth error: token is malformed")]
    Malformed,
    #[error("JWTAuth error: only HS256 tokens are accepted")]
    Algorithm,
    #[error("JWTAuth error: token is too large")]
    TooLarge,
    #[error("JWTAuth error: user_id in token does not match the connecting user")]
    UserMismatch,
    #[error("server-side tokens are not accepted on client connections")]
    ServerToken,
    #[error("development tokens are disabled on this gateway")]
    DevTokenDisabled,
    #[error("anonymous users are disabled on this gateway")]
    AnonymousDisabled,
    #[error("authorization token is missing")]
    Missing,
}

impl AuthError {
    /// Every [`AuthError::label`], so each can be pre-created at 0.
    pub const LABELS: [&'static str; 14] = [
        "unknown_api_key",
        "token_expired",
        "token_revoked",
        "token_not_yet_valid",
        "token_iat_future",
        "token_bad_signature",
        "token_malformed",
        "token_algorithm",
        "token_too_large",
        "token_user_mismatch",
        "server_token",
        "dev_token_disabled",
        "anonymous_disabled",
        "token_missing",
    ];

    /// Stream error code.
    pub fn code(&self) -> i32 {
        match self {
            AuthError::UnknownApiKey => 2,
            AuthError::Expired | AuthError::Revoked => 40,
            AuthError::NotYetValid => 41,
            AuthError::IssuedInFuture => 42,
            AuthError::Missing => 4,
            AuthError::AnonymousDisabled => 17,
            _ => 43,
        }
    }

    /// Bounded metric label.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::UnknownApiKey => "unknown_api_key",
            AuthError::Expired => "token_expired",
            AuthError::Revoked => "token_revoked",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::IssuedInFuture => "token_iat_future",
            AuthError::BadSignature => "token_bad_signature",
            AuthError::Malformed => "token_malformed",
            AuthError::Algorithm => "token_algorithm",
            AuthError::TooLarge => "token_too_large",
            AuthError::UserMismatch => "token_user_mismatch",
            AuthError::ServerToken => "server_token",
            AuthError::DevTokenDisabled => "dev_token_disabled",
            AuthError::AnonymousDisabled => "anonymous_disabled",
            AuthError::Missing => "token_missing",
        }
    }
}

/// What kind of credential authenticated the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    User,
    Server,
    Dev,
    Anonymous,
}

/// A validated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Empty for server tokens.
    pub user_id: Arc<str>,
    pub kind: TokenKind,
    /// `exp` claim (unix seconds), enforced for the session's lifetime.
    pub exp: Option<u64>,
    /// `iat` claim (unix seconds), compared with revocation cutoffs for the session's lifetime.
    pub iat: Option<i64>,
}

/// What a caller presented.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    pub api_key: &'a str,
    /// Raw JWT; `None` or empty when absent.
    pub token: Option<&'a str>,
    /// `stream-auth-type: anonymous`.
    pub anonymous: bool,
    /// The user the caller claims to be (connect payload's `user_id`); must match the token.
    pub user_id: Option<&'a str>,
    /// A client connection (WS/long-poll): server tokens are refused.
    pub client_connection: bool,
}

/// HMAC keys of one app.
pub(crate) struct AppKeys {
    pub(crate) keys: Vec<jwt::Key>,
}

/// Validates credentials for every configured app.
pub struct Authenticator {
    apps: RwLock<Arc<HashMap<String, AppKeys>>>,
    cache: cache::ValidationCache,
    config: AuthConfig,
    metrics: Arc<Metrics>,
    /// Revocation cutoffs, checked on every validation (cache hits included).
    pub revocations: Arc<Revocations>,
}

impl Authenticator {
    pub fn new(apps: &[AppConfig], config: AuthConfig, metrics: Arc<Metrics>) -> Self {
        Authenticator {
            apps: RwLock::new(Arc::new(build_keys(apps))),
            cache: cache::ValidationCache::new(&config, metrics.clone()),
            revocations: Arc::new(Revocations::new(
                config.revocation_capacity,
                metrics.clone(),
            )),
            config,
            metrics,
        }
    }

    /// Replaces the apps and secrets (config reload). Cached validations made with a removed
    /// secret stop being accepted at once: every hit re-checks its secret's fingerprint.
    pub fn set_apps(&self, apps: &[AppConfig]) {
        let keys = Arc::new(build_keys(apps));
        match self.apps.write() {
            Ok(mut g) => *g = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    fn apps(&self) -> Arc<HashMap<String, AppKeys>> {
        match self.apps.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether `api_key` names a configured app.
    pub fn knows(&self, api_key: &str) -> bool {
        self.apps().contains_key(api_key)
    }

    /// Validates `creds`, counting the outcome.
    ///
    /// # Errors
    /// The Stream-coded reason the credential is refused.
    pub fn authenticate(&self, creds: Credentials<'_>) -> Result<Identity, AuthError> {
        let result = self.check(creds);
        let (outcome, code) = match &result {
            Ok(_) => ("ok", 0),
            Err(e) => ("rejected", e.code()),
        };
        self.metrics
            .jwt_validations
            .with_label_values(&[outcome, code_label(code)])
            .inc();
        result
    }

    fn check(&self, creds: Credentials<'_>) -> Result<Identity, AuthError> {
        let apps = self.apps();
        let app = apps.get(creds.api_key).ok_or(AuthError::UnknownApiKey)?;
        let token = creds.token.filter(|t| !t.is_empty());
        if creds.anonymous {
            if !self.config.allow_anonymous {
                return Err(AuthError::AnonymousDisabled);
            }
            let user_id = creds.user_id.ok_or(AuthError::Missing)?;
            return Ok(Identity {
                user_id: user_id.into(),
                kind: TokenKind::Anonymous,
                exp: None,
                iat: None,
            });
        }
        let token = token.ok_or(AuthError::Missing)?;
        if token.len() > self.config.max_token_bytes {
            return Err(AuthError::TooLarge);
        }
        let now = now_secs();
        let leeway = self.config.leeway.as_secs();
        let identity = match self.cache.get(creds.api_key, token, app) {
            Some(hit) => {
                // A hit skips only the HMAC: time claims are checked on every use.
                hit.claims.check_times(now, leeway)?;
                hit.identity.clone()
            }
            None => {
                let (identity, claims, fingerprint) =
                    jwt::verify(token, app, now, leeway, self.config.allow_dev_tokens)?;
                self.cache
                    .insert(creds.api_key, token, &identity, claims, fingerprint);
                identity
            }
        };
        if identity.kind == TokenKind::Server {
            if creds.client_connection {
                return Err(AuthError::ServerToken);
            }
            return Ok(identity);
        }
        if let Some(claimed) = creds.user_id {
            if claimed != &*identity.user_id {
                return Err(AuthError::UserMismatch);
            }
        }
        // Checked after the cache too: a cutoff learned after a token was cached applies at once.
        if self
            .revocations
            .is_revoked(creds.api_key, &identity.user_id, identity.iat)
        {
            return Err(AuthError::Revoked);
        }
        Ok(identity)
    }

    /// Entries in the validation cache (for metrics and leak checks).
    pub fn cache_len(&self) -> u64 {
        self.cache.len()
    }
}

fn build_keys(apps: &[AppConfig]) -> HashMap<String, AppKeys> {
    apps.iter()
        .map(|a| {
            let keys = a.secrets.iter().map(|s| jwt::Key::new(&s.0)).collect();
            (a.api_key.clone(), AppKeys { keys })
        })
        .collect()
}

fn code_label(code: i32) -> &'static str {
    match code {
        0 => "0",
        2 => "2",
        4 => "4",
        17 => "17",
        40 => "40",
        41 => "41",
        42 => "42",
        _ => "43",
    }
}

#[cfg(test)]
mod tests;
