//! The validation cache (moka). A hit skips only the HMAC: time claims are re-checked on every use,
//! entries expire no later than the token's `exp`, keys are a SHA-256 digest of (api key, token) so
//! no other token can ever match an entry, and a hit whose secret has since been removed from the
//! config is thrown away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};

use super::{AppKeys, Claims, Identity};
use crate::config::AuthConfig;
use crate::metrics::Metrics;

pub(crate) struct Cached {
    pub(crate) identity: Identity,
    pub(crate) claims: Claims,
    fingerprint: [u8; 32],
}

struct UntilExp {
    ttl: Duration,
}

impl Expiry<[u8; 32], Arc<Cached>> for UntilExp {
    fn expire_after_create(&self, _: &[u8; 32], v: &Arc<Cached>, _: Instant) -> Option<Duration> {
        let until_exp = v.identity.exp.map(|exp| {
            let now = super::now_secs().max(0) as u64;
            Duration::from_secs(exp.saturating_sub(now))
        });
        Some(until_exp.map_or(self.ttl, |d| d.min(self.ttl)))
    }
}

pub(crate) struct ValidationCache {
    cache: Cache<[u8; 32], Arc<Cached>>,
    metrics: Arc<Metrics>,
}

impl ValidationCache {
    pub(crate) fn new(config: &AuthConfig, metrics: Arc<Metrics>) -> Self {
        let evictions = metrics.jwt_cache_evictions.clone();
        let cache = Cache::builder()
            .max_capacity(config.cache_capacity)
            .expire_after(UntilExp {
                ttl: config.cache_ttl,
            })
            .eviction_listener(move |_, _, cause| {
                if cause.was_evicted() {
                    evictions.inc();
                }
            })
            .build();
        ValidationCache { cache, metrics }
    }

    fn key(api_key: &str, token: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(api_key.as_bytes());
        h.update([0u8]);
        h.update(token.as_bytes());
        h.finalize().into()
    }

    pub(crate) fn get(&self, api_key: &str, token: &str, app: &AppKeys) -> Option<Arc<Cached>> {
        let key = Self::key(api_key, token);
        let hit = self.cache.get(&key).filter(|c| {
            let live = app.keys.iter().any(|k| k.fingerprint == c.fingerprint);
            if !live {
                self.cache.invalidate(&key);
                self.metrics.jwt_cache_evictions.inc();
            }
            live
        });
        let label = if hit.is_some() { "hit" } else { "miss" };
        self.metrics.jwt_cache.with_label_values(&[label]).inc();
        hit
    }

    pub(crate) fn insert(
        &self,
        api_key: &str,
        token: &str,
        identity: &Identity,
        claims: Claims,
        fingerprint: Option<[u8; 32]>,
    ) {
        // Developer tokens carry no secret to re-check against; they are cheap to parse anyway.
        let Some(fingerprint) = fingerprint else {
            return;
        };
        self.cache.insert(
            Self::key(api_key, token),
            Arc::new(Cached {
                identity: identity.clone(),
                claims,
                fingerprint,
            }),
        );
    }

    pub(crate) fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}
