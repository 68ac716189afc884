//! Privacy filtering at the edge: each user's `privacy_settings` decide whether others may see that
//! user's typing, read and delivery state (stream-protocol.md 5). The gateway enforces this itself,
//! whatever the upstream does.
//!
//! The registry learns settings from connect payloads, from upstream's `me`, from `POST`/`PATCH
//! /users` passing through, and, for users not seen yet, from upstream (`GET /users` with a server
//! token), cached in moka with a bound and a TTL; concurrent lookups for one user are coalesced by
//! moka. [`filter`] holds the decision table, [`rewrite`] the REST body rewriting.
//!
//! Reciprocity (hiding others' typing from a user who hides their own, open question 6) is not
//! applied: Stream documents only the sender side, and hiding more would surprise users.

pub mod filter;
pub mod rewrite;
pub mod stream;

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use moka::future::Cache;
use serde::Deserialize;

use crate::config::PrivacyConfig;
use crate::metrics::Metrics;
use crate::upstream::Upstream;

/// One user's indicators; `true` means others may see it (the default when unset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub typing: bool,
    pub read: bool,
    pub delivery: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            typing: true,
            read: true,
            delivery: true,
        }
    }
}

#[derive(Deserialize, Default)]
struct Flag {
    enabled: Option<bool>,
}

/// `privacy_settings` as it appears on users.
#[derive(Deserialize, Default)]
pub struct Wire {
    #[serde(default)]
    typing_indicators: Option<Flag>,
    #[serde(default)]
    read_receipts: Option<Flag>,
    #[serde(default)]
    delivery_receipts: Option<Flag>,
}

impl Wire {
    /// Settings with unset flags taken from `base`.
    pub fn over(&self, base: Settings) -> Settings {
        let pick = |f: &Option<Flag>, d: bool| f.as_ref().and_then(|f| f.enabled).unwrap_or(d);
        Settings {
            typing: pick(&self.typing_indicators, base.typing),
            read: pick(&self.read_receipts, base.read),
            delivery: pick(&self.delivery_receipts, base.delivery),
        }
    }
}

#[derive(Deserialize)]
struct UserPrivacy {
    id: String,
    #[serde(default)]
    privacy_settings: Option<Wire>,
}

/// Why a lookup failed.
#[derive(Clone, Debug, thiserror::Error)]
#[error("privacy lookup failed: {0}")]
pub struct LookupError(String);

type Key = (Arc<str>, Arc<str>);

/// The per-app registry of users' settings.
pub struct Privacy {
    cache: Cache<Key, Settings>,
    config: PrivacyConfig,
    upstream: Arc<Upstream>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Privacy {
    pub fn new(config: PrivacyConfig, upstream: Arc<Upstream>, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder()
            .max_capacity(config.cache_capacity)
            .time_to_live(config.cache_ttl)
            .build();
        Privacy {
            cache,
            config,
            upstream,
            metrics,
        }
    }

    pub fn config(&self) -> &PrivacyConfig {
        &self.config
    }

    fn key(app: &str, user: &str) -> Key {
        (Arc::from(app), Arc::from(user))
    }

    /// Records settings seen on the wire (`privacy_settings` JSON object of `user`): a connect
    /// payload, upstream's `me`, or a user update. Missing flags mean enabled.
    pub async fn learn(&self, app: &str, user: &str, wire: &Wire) {
        self.cache
            .insert(Self::key(app, user), wire.over(Settings::default()))
            .await;
    }

    /// Learns from a raw user object (`user_details`, `me`) if it carries `privacy_settings`.
    pub async fn learn_from_user(&self, app: &str, user_json: &str) {
        if let Ok(u) = serde_json::from_str::<UserPrivacy>(user_json) {
            if let Some(w) = &u.privacy_settings {
                self.learn(app, &u.id, w).await;
            }
        }
    }

    /// Records computed settings.
    pub async fn set(&self, app: &str, user: &str, settings: Settings) {
        self.cache.insert(Self::key(app, user), settings).await;
    }

    /// Forgets a user's settings (after an update whose effect we cannot compute locally).
    pub async fn forget(&self, app: &str, user: &str) {
        self.cache.invalidate(&Self::key(app, user)).await;
    }

    /// Forgets every user's settings (a user update the gateway could not read went upstream).
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }

    /// Lowers known settings by what a client says of itself (`user_details.privacy_settings` of
    /// its own user): a flag it turns off is off from the next event; a flag it turns on waits for
    /// upstream to confirm (`me`, or the answer to the forwarded update). Unknown users are left
    /// to the lookup.
    pub async fn learn_restrictive(&self, app: &str, user_json: &str) {
        let Ok(u) = serde_json::from_str::<UserPrivacy>(user_json) else {
            return;
        };
        let Some(w) = &u.privacy_settings else {
            return;
        };
        let key = Self::key(app, &u.id);
        if let Some(known) = self.cache.get(&key).await {
            let claimed = w.over(known);
            let lowered = Settings {
                typing: known.typing && claimed.typing,
                read: known.read && claimed.read,
                delivery: known.delivery && claimed.delivery,
            };
            self.cache.insert(key, lowered).await;
        }
    }

    /// Settings if already known, without I/O.
    pub async fn cached(&self, app: &str, user: &str) -> Option<Settings> {
        self.cache.get(&Self::key(app, user)).await
    }

    /// Settings of `user`, looked up upstream when unknown. Concurrent calls for one user share
    /// one lookup.
    ///
    /// # Errors
    /// Upstream failed, timed out, or does not know the user.
    pub async fn get(&self, app: &str, user: &str) -> Result<Settings, LookupError> {
        let key = Self::key(app, user);
        if let Some(s) = self.cache.get(&key).await {
            return Ok(s);
        }
        // Concurrent callers for one user wait on the same initialiser: one upstream lookup.
        self.cache
            .try_get_with(key, async {
                let found = self.lookup(app, &[user]).await;
                let outcome = if found.is_ok() { "ok" } else { "error" };
                self.metrics
                    .privacy_lookups
                    .with_label_values(&[outcome])
                    .inc();
                found?
                    .remove(user)
                    .ok_or_else(|| LookupError(format!("user {user} unknown upstream")))
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// Settings of several users: known ones from the cache, the rest in one upstream call.
    /// Users whose settings cannot be learned are absent from the result.
    pub async fn get_many(&self, app: &str, users: &[&str]) -> HashMap<String, Settings> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        for u in users {
            match self.cache.get(&Self::key(app, u)).await {
                Some(s) => {
                    out.insert(u.to_string(), s);
                }
                None => missing.push(*u),
            }
        }
        if missing.is_empty() {
            return out;
        }
        match self.lookup(app, &missing).await {
            Ok(found) => {
                self.metrics
                    .privacy_lookups
                    .with_label_values(&["ok"])
                    .inc();
                for (u, s) in found {
                    self.cache.insert(Self::key(app, &u), s).await;
                    out.insert(u, s);
                }
            }
            Err(e) => {
                self.metrics
                    .privacy_lookups
                    .with_label_values(&["error"])
                    .inc();
                tracing::debug!(error = %e, "privacy batch lookup failed");
            }
        }
        out
    }

    async fn lookup(
        &self,
        app: &str,
        users: &[&str],
    ) -> Result<HashMap<String, Settings>, LookupError> {
        let payload = serde_json::json!({
            "filter_conditions": {"id": {"$in": users}},
            "limit": users.len().min(100),
        });
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        // Server authority: the filter names only user ids found in upstream's own responses and
        // events, and the answer is used for the filter alone, never returned to a client.
        let call = crate::upstream::calls::call(
            &self.upstream,
            app,
            crate::upstream::calls::Authority::Server,
            Method::GET,
            "/users",
            &query,
            None,
        );
        let (status, body) = tokio::time::timeout(self.config.lookup_timeout, call)
            .await
            .map_err(|_| LookupError("timed out".into()))?
            .map_err(|e| LookupError(e.to_string()))?;
        if !status.is_success() {
            return Err(LookupError(format!("upstream answered {status}")));
        }
        #[derive(Deserialize)]
        struct Users {
            users: Vec<UserPrivacy>,
        }
        let parsed: Users =
            serde_json::from_slice(&body).map_err(|e| LookupError(e.to_string()))?;
        Ok(parsed
            .users
            .into_iter()
            .map(|u| {
                let s = u
                    .privacy_settings
                    .as_ref()
                    .map_or(Settings::default(), |w| w.over(Settings::default()));
                (u.id, s)
            })
            .collect())
    }

    /// Entries cached (for metrics and leak checks).
    pub fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
