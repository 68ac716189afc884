//! Stream's token revocation, enforced at the edge. Stream revokes one user's tokens
//! (`revoke_tokens_issued_before` on the user, set by `revokeUserToken`) or every token of an app
//! (`revoke_tokens_issued_before` in the app settings, set by `revokeTokens`). A client token whose
//! `iat` is before the cutoff that applies to it, or that has no `iat` while a cutoff is set, is
//! refused with code 40, as Stream refuses it, so a token-provider SDK fetches a new token.
//!
//! The gateway connects upstream with tokens it mints itself, so upstream never sees a client's
//! token on the realtime path: the cutoffs are learned here instead. A user's from upstream's
//! answers (`me` in the connect handshake, `user.updated` events, user objects in REST
//! responses), an app's from `GET /app` (see `session::app_settings`). This module owns only the
//! cutoffs and the check; ending live sessions is the hubs' job.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use moka::sync::Cache;
use serde::Deserialize;

use crate::metrics::Metrics;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The cutoffs known to this gateway.
pub struct Revocations {
    /// api key → the app's cutoff.
    apps: RwLock<HashMap<Arc<str>, Millis>>,
    /// (api key, user id) → the user's cutoff. Only users with a cutoff are kept.
    users: Cache<(Arc<str>, Arc<str>), Millis>,
}

impl Revocations {
    /// `capacity` bounds the users with a known cutoff; an eviction is counted as a limit hit.
    pub fn new(capacity: u64, metrics: Arc<Metrics>) -> Self {
        let users = Cache::builder()
            .max_capacity(capacity)
            .eviction_listener(move |_, _, cause| {
                if cause.was_evicted() {
                    metrics.limit_hit(crate::metrics::Limit::RevocationCapacity);
                }
            })
            .build();
        Revocations {
            apps: RwLock::default(),
            users,
        }
    }

    /// The cutoff that applies to `user` of `app`: the later of the app's and the user's.
    pub fn cutoff(&self, app: &str, user: &str) -> Option<Millis> {
        let app_cut = self
            .apps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .copied();
        let user_cut = self.users.get(&(Arc::from(app), Arc::from(user)));
        app_cut.max(user_cut)
    }

    /// Whether a token of `user` issued at `iat` (unix seconds) is revoked.
    pub fn is_revoked(&self, app: &str, user: &str, iat: Option<i64>) -> bool {
        revoked_by(self.cutoff(app, user), iat)
    }

    /// Records the app's cutoff (`None`: revocation undone). True when it changed.
    pub fn set_app(&self, app: &str, cutoff: Option<Millis>) -> bool {
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        let before = apps.get(app).copied();
        match cutoff {
            Some(c) => apps.insert(Arc::from(app), c),
            None => apps.remove(app),
        };
        before != cutoff
    }

    /// Records a user's cutoff (`None`: none). True when it changed.
    pub fn set_user(&self, app: &str, user: &str, cutoff: Option<Millis>) -> bool {
        let key = (Arc::from(app), Arc::from(user));
        let before = self.users.get(&key);
        match cutoff {
            Some(c) => self.users.insert(key, c),
            None => self.users.invalidate(&key),
        }
        before != cutoff
    }

    /// Learns the cutoff of the user object `user` (raw JSON) came from upstream. Returns the user
    /// id when the cutoff changed.
    pub fn learn_user(&self, app: &str, user: &str) -> Option<String> {
        let u: UserCutoff = serde_json::from_str(user).ok()?;
        self.learn(app, u)
    }

    fn learn(&self, app: &str, u: UserCutoff) -> Option<String> {
        let id = u.id?;
        let cutoff = u
            .revoke_tokens_issued_before
            .as_deref()
            .and_then(parse_time);
        self.set_user(app, &id, cutoff).then_some(id)
    }

    /// Learns every user's cutoff from a `POST`/`PATCH /users` response (`users` keyed by id) or a
    /// `GET /users` response (`users` array). Returns the users whose cutoff changed.
    pub fn learn_users_response(&self, app: &str, body: &[u8]) -> Vec<String> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Users {
            Map(HashMap<String, UserCutoff>),
            List(Vec<UserCutoff>),
        }
        #[derive(Deserialize)]
        struct Resp {
            users: Users,
        }
        let users = match serde_json::from_slice::<Resp>(body) {
            Ok(Resp {
                users: Users::Map(m),
            }) => m.into_values().collect(),
            Ok(Resp {
                users: Users::List(l),
            }) => l,
            Err(_) => return Vec::new(),
        };
        users
            .into_iter()
            .filter_map(|u| self.learn(app, u))
            .collect()
    }
}

/// The fields of a user object this module reads.
#[derive(Deserialize)]
struct UserCutoff {
    id: Option<String>,
    #[serde(default)]
    revoke_tokens_issued_before: Option<String>,
}

/// Stream's rule: with a cutoff set, a token without `iat`, or issued before the cutoff, is
/// revoked.
pub fn revoked_by(cutoff: Option<Millis>, iat: Option<i64>) -> bool {
    match (cutoff, iat) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(c), Some(iat)) => iat.saturating_mul(1000) < c,
    }
}

/// An RFC 3339 time (`2026-12-01T15:00:00.123Z`) as unix milliseconds.
pub fn parse_time(s: &str) -> Option<Millis> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `{"app":{"revoke_tokens_issued_before":…}}` (a `GET /app` response) → the app's cutoff.
///
/// # Errors
/// The body is not an app settings response.
pub fn app_cutoff(body: &[u8]) -> Result<Option<Millis>, serde_json::Error> {
    #[derive(Deserialize)]
    struct App {
        #[serde(default)]
        revoke_tokens_issued_before: Option<String>,
    }
    #[derive(Deserialize)]
    struct Resp {
        app: App,
    }
    let r: Resp = serde_json::from_slice(body)?;
    Ok(r.app
        .revoke_tokens_issued_before
        .as_deref()
        .and_then(parse_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_and_sources() {
        assert!(!revoked_by(None, None));
        assert!(revoked_by(Some(1_000), None));
        assert!(revoked_by(Some(1_500), Some(1)));
        assert!(!revoked_by(Some(1_000), Some(1)));
        let r = Revocations::new(10, Arc::new(Metrics::new()));
        assert!(!r.is_revoked("k", "u", Some(1)));
        let changed = r.learn_user(
            "k",
            r#"{"id":"u","revoke_tokens_issued_before":"1970-01-01T00:00:02.5Z"}"#,
        );
        assert_eq!(changed.as_deref(), Some("u"));
        assert!(r.is_revoked("k", "u", Some(2)));
        assert!(!r.is_revoked("k", "u", Some(3)));
        assert!(!r.is_revoked("k", "other", None));
        assert!(r.set_app("k", Some(10_000)));
        assert!(r.is_revoked("k", "other", Some(9)));
        let undone = r.learn_users_response(
            "k",
            br#"{"users":{"u":{"id":"u","revoke_tokens_issued_before":null}}}"#,
        );
        assert_eq!(undone, vec!["u".to_string()]);
        assert_eq!(r.cutoff("k", "u"), Some(10_000));
        assert_eq!(
            app_cutoff(br#"{"app":{"revoke_tokens_issued_before":"1970-01-01T00:00:01Z"}}"#)
                .unwrap(),
            Some(1000)
        );
        assert_eq!(app_cutoff(br#"{"app":{}}"#).unwrap(), None);
    }
}
