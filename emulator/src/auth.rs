//! JWT verification as Stream does it: HS256 against any of the app's
//! secrets, `exp`/`nbf`/`iat` checked, and failures mapped to Stream's codes
//! (40 expired, 41 not yet valid, 42 issued in the future, 43 bad signature
//! or malformed) so the SDK's token-refresh logic behaves as in production.

use http::StatusCode;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// A user token (`{"user_id":…}`).
    User(String),
    /// A server token (`{"server":true}`); the acting user comes from the request.
    Server,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("JWTAuth error: token is expired (exp)")]
    Expired,
    #[error("JWTAuth error: token is not valid yet (nbf)")]
    NotYetValid,
    #[error("JWTAuth error: token used before issue at (iat)")]
    IssuedInFuture,
    #[error("JWTAuth error: signature is not valid, make sure the token is signed with this app's secret")]
    BadSignature,
    #[error("JWTAuth error: token is malformed")]
    Malformed,
    #[error("JWTAuth error: token is missing")]
    Missing,
    #[error("JWTAuth error: token has neither user_id nor server claim")]
    NoIdentity,
}

// === impl TokenError ===

impl TokenError {
    /// Stream's error code for this failure.
    pub(crate) fn code(&self) -> u32 {
        match self {
            Self::Expired => 40,
            Self::NotYetValid => 41,
            Self::IssuedInFuture => 42,
            _ => 43,
        }
    }
}

/// Stream's answer to a revoked token: code 40 like an expired one, so SDKs refresh.
pub(crate) fn revoked() -> ApiError {
    ApiError::new(
        40,
        StatusCode::UNAUTHORIZED,
        "This token has been revoked, please generate a new token",
    )
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::new(e.code(), StatusCode::UNAUTHORIZED, e.to_string())
    }
}

/// Verifies `token` against any of `secrets` and returns its identity.
///
/// # Errors
/// A [`TokenError`] naming the first failure that is not "wrong secret"; if
/// no secret matches, [`TokenError::BadSignature`].
/// The `iat` claim (unix seconds) comes back too: revocation compares it.
pub(crate) fn verify(
    token: &str,
    secrets: &[String],
) -> Result<(Identity, Option<i64>), TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    // SDK-minted tokens carry no `exp`; Stream accepts them forever.
    validation.required_spec_claims.clear();
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;

    let mut last = TokenError::BadSignature;
    for secret in secrets {
        let key = DecodingKey::from_secret(secret.as_bytes());
        // The crate checks the signature before the claims, so an expired
        // token signed with another secret reports InvalidSignature here and
        // we move on to the next secret.
        match decode::<Map<String, Value>>(token, &key, &validation) {
            Ok(data) => {
                let iat = data.claims.get("iat").and_then(Value::as_f64);
                return identity(&data.claims).map(|i| (i, iat.map(|t| t as i64)));
            }
            Err(e) => match e.kind() {
                ErrorKind::InvalidSignature => last = TokenError::BadSignature,
                ErrorKind::ExpiredSignature => return Err(TokenError::Expired),
                ErrorKind::ImmatureSignature => return Err(TokenError::NotYetValid),
                _ => return Err(TokenError::Malformed),
            },
        }
    }
    Err(last)
}

/// Checks `iat` (the crate does not) and extracts the identity.
fn identity(claims: &Map<String, Value>) -> Result<Identity, TokenError> {
    if let Some(iat) = claims.get("iat") {
        let iat = iat.as_f64().ok_or(TokenError::Malformed)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
        if iat > now + LEEWAY_SECS as f64 {
            return Err(TokenError::IssuedInFuture);
        }
    }
    match claims.get("user_id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(Identity::User(id.clone())),
        Some(_) => Err(TokenError::NoIdentity),
        None if claims.get("server") == Some(&Value::Bool(true)) => Ok(Identity::Server),
        None => Err(TokenError::NoIdentity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn sign(claims: Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap_or_default()
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn maps_failures_to_stream_codes() {
        let secrets = vec!["old".to_owned(), "new".to_owned()];
        let ok = sign(json!({"user_id": "alice"}), "new");
        let verify = |t: &str, s: &[String]| verify(t, s).map(|(i, _)| i);
        assert_eq!(verify(&ok, &secrets), Ok(Identity::User("alice".into())));
        let server = sign(json!({"server": true}), "old");
        assert_eq!(verify(&server, &secrets), Ok(Identity::Server));
        let expired = sign(json!({"user_id": "a", "exp": now() - 60}), "old");
        assert_eq!(verify(&expired, &secrets).map_err(|e| e.code()), Err(40));
        let nbf = sign(json!({"user_id": "a", "nbf": now() + 600}), "old");
        assert_eq!(verify(&nbf, &secrets).map_err(|e| e.code()), Err(41));
        let iat = sign(json!({"user_id": "a", "iat": now() + 600}), "old");
        assert_eq!(verify(&iat, &secrets).map_err(|e| e.code()), Err(42));
        let bad = sign(json!({"user_id": "a"}), "other");
        assert_eq!(verify(&bad, &secrets).map_err(|e| e.code()), Err(43));
        assert_eq!(verify("garbage", &secrets).map_err(|e| e.code()), Err(43));
    }
}
