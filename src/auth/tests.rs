//! Unit tests for token validation and the validation cache.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::config::{Config, Secret};

const S1: &str = "secret-number-one";
const S2: &str = "secret-number-two";

fn app(secrets: &[&str]) -> Vec<AppConfig> {
    vec![AppConfig {
        api_key: "key".into(),
        secrets: secrets.iter().map(|s| Secret(s.to_string())).collect(),
    }]
}

fn authn(secrets: &[&str]) -> Authenticator {
    let mut cfg = Config::local_dev().auth;
    cfg.leeway = Duration::ZERO;
    Authenticator::new(&app(secrets), cfg, Arc::new(Metrics::new()))
}

fn sign(secret: &str, claims: serde_json::Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn creds<'a>(token: &'a str, user: &'a str) -> Credentials<'a> {
    Credentials {
        api_key: "key",
        token: Some(token),
        anonymous: false,
        user_id: Some(user),
        client_connection: true,
    }
}

#[test]
fn codes_match_stream() {
    let a = authn(&[S1]);
    let now = now_secs();
    let cases = [
        (json!({"user_id":"u","exp": now - 10}), 40),
        (json!({"user_id":"u","nbf": now + 100}), 41),
        (json!({"user_id":"u","iat": now + 100}), 42),
        (json!({"user_id":"other"}), 43),
        (json!({"server": true}), 43),
    ];
    for (claims, code) in cases {
        let t = sign(S1, claims.clone());
        let err = a.authenticate(creds(&t, "u")).unwrap_err();
        assert_eq!(err.code(), code, "{claims}");
    }
    let wrong = sign("another-apps-secret", json!({"user_id":"u"}));
    assert_eq!(
        a.authenticate(creds(&wrong, "u")),
        Err(AuthError::BadSignature)
    );
    let mut c = creds(&wrong, "u");
    c.api_key = "nope";
    assert_eq!(a.authenticate(c).unwrap_err().code(), 2);
}

#[test]
fn no_exp_is_valid_and_rotation_accepts_every_secret() {
    let a = authn(&[S1, S2]);
    for s in [S1, S2] {
        let t = sign(s, json!({"user_id":"u"}));
        assert_eq!(&*a.authenticate(creds(&t, "u")).unwrap().user_id, "u");
    }
}

#[test]
fn algorithm_tricks_are_refused() {
    let a = authn(&[S1]);
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let payload = b64(json!({"user_id":"u"}));
    let none = format!("{}.{payload}.", b64(json!({"alg":"none","typ":"JWT"})));
    assert_eq!(a.authenticate(creds(&none, "u")), Err(AuthError::Algorithm));
    let rs = format!("{}.{payload}.c2ln", b64(json!({"alg":"RS256","typ":"JWT"})));
    assert_eq!(a.authenticate(creds(&rs, "u")), Err(AuthError::Algorithm));
    for junk in ["", "a.b", "a.b.c.d", "!!!.@@@.###", "eyJ.eyJ.sig"] {
        let err = a.authenticate(creds(junk, "u")).unwrap_err();
        assert!(err.code() == 43 || err.code() == 4, "{junk}: {err:?}");
    }
    let big = "a".repeat(10_000);
    assert_eq!(a.authenticate(creds(&big, "u")), Err(AuthError::TooLarge));
}

#[test]
fn duplicate_claims_are_refused() {
    let a = authn(&[S1]);
    let h = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = h.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = h.encode(r#"{"user_id":"u","user_id":"admin"}"#);
    use hmac_sig::sign_raw;
    let sig = sign_raw(S1, &format!("{header}.{payload}"));
    let token = format!("{header}.{payload}.{sig}");
    assert_eq!(
        a.authenticate(creds(&token, "u")),
        Err(AuthError::Malformed)
    );
}

mod hmac_sig {
    /// Signs arbitrary header.payload bytes with HS256 (to forge tokens serde would not produce).
    pub fn sign_raw(secret: &str, msg: &str) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::crypto::sign(msg.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap()
    }
}

#[test]
fn cache_hit_still_enforces_exp_and_secret_removal() {
    let a = authn(&[S1, S2]);
    let now = now_secs();
    let t = sign(S2, json!({"user_id":"u","exp": now + 1}));
    a.authenticate(creds(&t, "u")).unwrap();
    a.authenticate(creds(&t, "u")).unwrap();
    let hits = a.metrics.jwt_cache.with_label_values(&["hit"]).get();
    assert_eq!(hits, 1);
    // A different token never matches the cached one, even for the same user.
    let forged = format!("{}x", t);
    assert!(a.authenticate(creds(&forged, "u")).is_err());
    // Removing the secret that signed it invalidates the cached validation at once.
    a.set_apps(&app(&[S1]));
    assert_eq!(a.authenticate(creds(&t, "u")), Err(AuthError::BadSignature));
    // A cached validation past its exp answers 40, never a hit.
    let a = authn(&[S1]);
    let t = sign(S1, json!({"user_id":"u","exp": now - 1}));
    assert_eq!(a.authenticate(creds(&t, "u")), Err(AuthError::Expired));
}

#[test]
fn cached_hit_past_exp_is_refused() {
    let a = authn(&[S1]);
    let identity = Identity {
        user_id: "u".into(),
        kind: TokenKind::User,
        exp: None,
        iat: None,
    };
    let t = sign(S1, json!({"user_id":"u"}));
    // Plant a live entry whose claims say it expired long ago: a hit must still re-check time.
    let claims = Claims {
        user_id: Some("u".into()),
        exp: Some(1),
        ..Default::default()
    };
    let fp = jwt::Key::new(S1).fingerprint;
    a.cache.insert("key", &t, &identity, claims, Some(fp));
    assert_eq!(a.authenticate(creds(&t, "u")), Err(AuthError::Expired));
}

#[test]
fn server_dev_and_anonymous_policies() {
    let a = authn(&[S1]);
    let server = sign(S1, json!({"server": true}));
    let mut c = creds(&server, "u");
    c.user_id = None;
    assert_eq!(a.authenticate(c), Err(AuthError::ServerToken));
    c.client_connection = false;
    assert_eq!(a.authenticate(c).unwrap().kind, TokenKind::Server);

    let dev = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiYWxpY2UifQ==.devtoken";
    assert_eq!(
        a.authenticate(creds(dev, "alice")),
        Err(AuthError::DevTokenDisabled)
    );
    let mut cfg = Config::local_dev().auth;
    cfg.allow_dev_tokens = true;
    cfg.allow_anonymous = true;
    let open = Authenticator::new(&app(&[S1]), cfg, Arc::new(Metrics::new()));
    assert_eq!(
        open.authenticate(creds(dev, "alice")).unwrap().kind,
        TokenKind::Dev
    );
    assert_eq!(
        open.authenticate(creds(dev, "bob")),
        Err(AuthError::UserMismatch)
    );

    let anon = Credentials {
        api_key: "key",
        token: Some(""),
        anonymous: true,
        user_id: Some("anon-1"),
        client_connection: true,
    };
    assert_eq!(a.authenticate(anon), Err(AuthError::AnonymousDisabled));
    assert_eq!(open.authenticate(anon).unwrap().kind, TokenKind::Anonymous);
}

#[test]
fn minted_tokens_validate() {
    let a = authn(&[S1]);
    let t = mint::user_token(S1, "u", Some(60)).unwrap();
    let id = a.authenticate(creds(&t, "u")).unwrap();
    assert!(id.exp.is_some());
    let s = mint::server_token(S1).unwrap();
    let mut c = creds(&s, "u");
    c.client_connection = false;
    assert_eq!(a.authenticate(c).unwrap().kind, TokenKind::Server);
}

#[test]
fn revoked_tokens_are_refused_on_miss_and_on_hit() {
    let a = authn(&[S1]);
    let now = now_secs();
    let old = sign(S1, json!({"user_id":"u","iat": now - 100}));
    let fresh = sign(S1, json!({"user_id":"u","iat": now}));
    let no_iat = sign(S1, json!({"user_id":"u"}));
    // Cached first, so the second look is a cache hit.
    assert!(a.authenticate(creds(&old, "u")).is_ok());
    assert!(a.authenticate(creds(&no_iat, "u")).is_ok());
    a.revocations.set_user("key", "u", Some((now - 10) * 1000));
    assert_eq!(a.authenticate(creds(&old, "u")), Err(AuthError::Revoked));
    assert_eq!(a.authenticate(creds(&no_iat, "u")), Err(AuthError::Revoked));
    assert_eq!(AuthError::Revoked.code(), 40);
    assert!(a.authenticate(creds(&fresh, "u")).is_ok());
    // The app's cutoff applies to every user; server tokens are never revoked.
    let other = sign(S1, json!({"user_id":"v","iat": now - 100}));
    assert!(a.authenticate(creds(&other, "v")).is_ok());
    a.revocations.set_app("key", Some(now * 1000));
    assert_eq!(a.authenticate(creds(&other, "v")), Err(AuthError::Revoked));
    let server = sign(S1, json!({"server": true}));
    let mut c = creds(&server, "v");
    c.user_id = None;
    c.client_connection = false;
    assert!(a.authenticate(c).is_ok());
}

#[test]
fn minted_upstream_tokens_expire_and_are_never_issued_before_a_known_cutoff() {
    let now = now_secs();
    let decode = |t: &str| {
        let payload = t.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    };
    let t = mint::user_token_at(S1, "u", Some(3600), None).unwrap();
    let c = decode(&t);
    let exp = c["exp"].as_i64().unwrap();
    assert!((now + 3599..=now + 3601).contains(&exp), "{c}");
    assert!(
        c["iat"].as_i64().unwrap() < now,
        "backdated for clock skew: {c}"
    );
    // A user revoked a moment ago: the gateway's own token must not predate the cutoff...
    let t = mint::user_token_at(S1, "u", Some(3600), Some(now)).unwrap();
    assert!(decode(&t)["iat"].as_i64().unwrap() >= now);
    // ...but is never issued in the future (upstream would answer 42).
    let t = mint::user_token_at(S1, "u", Some(3600), Some(now + 600)).unwrap();
    assert!(decode(&t)["iat"].as_i64().unwrap() <= now_secs());
}
