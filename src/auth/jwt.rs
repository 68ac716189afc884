//! HS256 verification with the `jsonwebtoken` crate, plus the checks it does not make: the header
//! algorithm is read strictly first (no `none`, no RS/ES/PS confusion), every app secret is tried in
//! turn (rotation), and `exp`/`nbf`/`iat` are checked here with one leeway, so a cache hit applies
//! exactly the same time rules as a full validation.

use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{AppKeys, AuthError, Identity, TokenKind};

/// One app secret, ready to verify, and its fingerprint (what cache entries remember).
pub(crate) struct Key {
    decoding: DecodingKey,
    pub(crate) fingerprint: [u8; 32],
}

impl Key {
    pub(crate) fn new(secret: &str) -> Self {
        Key {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            fingerprint: Sha256::digest(secret.as_bytes()).into(),
        }
    }
}

/// The registered claims the gateway reads. Unknown claims are ignored; duplicate claims make
/// serde fail, which refuses the token.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Claims {
    pub user_id: Option<String>,
    pub server: Option<bool>,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

impl Claims {
    /// `exp` (40), `nbf` (41), `iat` in the future (42), each with `leeway` seconds of skew.
    ///
    /// # Errors
    /// The first time rule broken.
    pub fn check_times(&self, now: i64, leeway: u64) -> Result<(), AuthError> {
        let leeway = i64::try_from(leeway).unwrap_or(i64::MAX / 2);
        if let Some(exp) = self.exp {
            if now > exp.saturating_add(leeway) {
                return Err(AuthError::Expired);
            }
        }
        if let Some(nbf) = self.nbf {
            if nbf > now.saturating_add(leeway) {
                return Err(AuthError::NotYetValid);
            }
        }
        if let Some(iat) = self.iat {
            if iat > now.saturating_add(leeway) {
                return Err(AuthError::IssuedInFuture);
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Fully validates `token` against the app's secrets.
///
/// Returns the identity, the claims (for re-checking time on cache hits) and the fingerprint of the
/// secret that verified it (`None` for developer tokens, which are never cached).
pub(crate) fn verify(
    token: &str,
    app: &AppKeys,
    now: i64,
    leeway: u64,
    allow_dev: bool,
) -> Result<(Identity, Claims, Option<[u8; 32]>), AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    if signature == "devtoken" {
        return dev_token(payload, allow_dev).map(|(i, c)| (i, c, None));
    }
    let header_json = b64url(header).ok_or(AuthError::Malformed)?;
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| AuthError::Malformed)?;
    if header.alg != "HS256" {
        return Err(AuthError::Algorithm);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let mut result = Err(AuthError::BadSignature);
    for key in &app.keys {
        match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
            Ok(data) => {
                result = Ok((data.claims, key.fingerprint));
                break;
            }
            Err(e) => match e.kind() {
                ErrorKind::InvalidSignature => continue,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    return Err(AuthError::Algorithm)
                }
                _ => return Err(AuthError::Malformed),
            },
        }
    }
    let (claims, fingerprint) = result?;
    claims.check_times(now, leeway)?;
    let identity = identity_of(&claims, TokenKind::User)?;
    Ok((identity, claims, Some(fingerprint)))
}

fn identity_of(claims: &Claims, kind: TokenKind) -> Result<Identity, AuthError> {
    let exp = claims.exp.and_then(|e| u64::try_from(e).ok());
    let iat = claims.iat;
    match (&claims.user_id, claims.server) {
        (Some(user), _) if !user.is_empty() => Ok(Identity {
            user_id: Arc::from(user.as_str()),
            kind,
            exp,
            iat,
        }),
        (None, Some(true)) if kind == TokenKind::User => Ok(Identity {
            user_id: Arc::from(""),
            kind: TokenKind::Server,
            exp,
            iat,
        }),
        _ => Err(AuthError::Malformed),
    }
}

/// `client.devToken(id)`: fixed header, payload in *standard* base64 with padding, signature
/// `devtoken` (stream-protocol.md 6). Accepted only when enabled.
fn dev_token(payload: &str, allow: bool) -> Result<(Identity, Claims), AuthError> {
    if !allow {
        return Err(AuthError::DevTokenDisabled);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()
        .or_else(|| b64url(payload))
        .ok_or(AuthError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    let identity = identity_of(&claims, TokenKind::Dev)?;
    Ok((identity, claims))
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}
