//! Tokens the gateway signs itself: the upstream user token for each multiplexed connection (so its
//! lifetime is independent of any client's token), server tokens for privacy lookups, and the
//! `stream-edge token` command.

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

/// Backdating of `iat`, so an upstream whose clock runs slightly behind ours does not answer 42.
const IAT_SKEW_SECS: i64 = 5;

/// Signs a user token `{"user_id", "iat", "exp"?}` with HS256.
///
/// # Errors
/// Only if signing itself fails (never for HMAC keys in practice).
pub fn user_token(
    secret: &str,
    user_id: &str,
    expires_in: Option<u64>,
) -> Result<String, jsonwebtoken::errors::Error> {
    user_token_at(secret, user_id, expires_in, None)
}

/// As [`user_token`], with `iat` raised to `iat_at_least` (unix seconds; never past now): the
/// gateway's token for a user whose tokens were revoked a moment ago must not itself count as
/// revoked because of the backdating.
///
/// # Errors
/// Only if signing itself fails.
pub fn user_token_at(
    secret: &str,
    user_id: &str,
    expires_in: Option<u64>,
    iat_at_least: Option<i64>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = super::now_secs();
    let iat = (now - IAT_SKEW_SECS).max(iat_at_least.unwrap_or(i64::MIN).min(now));
    let mut claims = json!({"user_id": user_id, "iat": iat});
    if let Some(secs) = expires_in {
        claims["exp"] = json!(now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX / 2)));
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// Signs a server token `{"server": true}`.
///
/// # Errors
/// Only if signing itself fails.
pub fn server_token(secret: &str) -> Result<String, jsonwebtoken::errors::Error> {
    encode(
        &Header::default(),
        &json!({"server": true}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}
