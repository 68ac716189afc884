//! Token attacks against `/connect`: each refused with the exact Stream code and counted; the
//! validation cache never turns a refusal into an acceptance, nor outlives `exp` or a secret.

use base64::Engine;
use serde_json::json;
use stream_edge::config::{AppConfig, Secret, DEV_API_KEY, DEV_API_SECRET};

use crate::support::*;

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn hs256(secret: &str, header: &str, payload: &str) -> String {
    let msg = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let sig =
        jsonwebtoken::crypto::sign(msg.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
    format!("{msg}.{sig}")
}

async fn code_for(gw: &TestGateway, token: &str) -> i64 {
    let url = gw.connect_url(r#"{"user_id":"victim"}"#, DEV_API_KEY, token);
    let (mut ws, first) = gw.ws_raw(&url).await;
    let code = first["error"]["code"].as_i64().unwrap_or(0);
    if code != 0 {
        assert_eq!(close_code(&mut ws).await, 1000);
    }
    code
}

#[tokio::test]
async fn every_attack_gets_its_code() {
    let gw = TestGateway::start().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let std_header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let good = hs256(DEV_API_SECRET, std_header, r#"{"user_id":"victim"}"#);
    let mut parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = b64(br#"{"user_id":"admin"}"#);
    parts[1] = &tampered_payload;
    let tampered = parts.join(".");
    let cases: Vec<(&str, String, i64)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(br#"{"user_id":"victim"}"#)
            ),
            43,
        ),
        (
            "alg confusion RS256 signed with the secret",
            hs256(
                DEV_API_SECRET,
                r#"{"alg":"RS256","typ":"JWT"}"#,
                r#"{"user_id":"victim"}"#,
            ),
            43,
        ),
        (
            "ES256 header",
            hs256(
                DEV_API_SECRET,
                r#"{"alg":"ES256"}"#,
                r#"{"user_id":"victim"}"#,
            ),
            43,
        ),
        (
            "PS256 header",
            hs256(
                DEV_API_SECRET,
                r#"{"alg":"PS256"}"#,
                r#"{"user_id":"victim"}"#,
            ),
            43,
        ),
        (
            "kid pointing elsewhere",
            hs256(
                "attacker-secret",
                r#"{"alg":"HS256","kid":"../../dev/null"}"#,
                r#"{"user_id":"victim"}"#,
            ),
            43,
        ),
        ("tampered payload", tampered, 43),
        (
            "another app's secret",
            hs256(
                "some-other-apps-secret",
                std_header,
                r#"{"user_id":"victim"}"#,
            ),
            43,
        ),
        (
            "expired",
            hs256(
                DEV_API_SECRET,
                std_header,
                &json!({"user_id":"victim","exp":now-60}).to_string(),
            ),
            40,
        ),
        (
            "not yet valid",
            hs256(
                DEV_API_SECRET,
                std_header,
                &json!({"user_id":"victim","nbf":now+600}).to_string(),
            ),
            41,
        ),
        (
            "iat in the future",
            hs256(
                DEV_API_SECRET,
                std_header,
                &json!({"user_id":"victim","iat":now+600}).to_string(),
            ),
            42,
        ),
        (
            "user_id mismatch",
            hs256(DEV_API_SECRET, std_header, r#"{"user_id":"someone"}"#),
            43,
        ),
        (
            "server token",
            hs256(DEV_API_SECRET, std_header, r#"{"server":true}"#),
            43,
        ),
        (
            "dev token disabled",
            format!(
                "{}.{}.devtoken",
                b64(std_header.as_bytes()),
                base64::engine::general_purpose::STANDARD.encode(br#"{"user_id":"victim"}"#)
            ),
            43,
        ),
        (
            "oversized",
            format!(
                "{}.{}.{}",
                b64(std_header.as_bytes()),
                "A".repeat(6000),
                "sig"
            ),
            43,
        ),
        ("malformed base64", "!!!.@@@.###".to_string(), 43),
        (
            "malformed JSON",
            format!("{}.{}.sig", b64(b"{not json"), b64(b"{nope")),
            43,
        ),
        (
            "duplicate claims",
            hs256(
                DEV_API_SECRET,
                std_header,
                r#"{"user_id":"victim","user_id":"admin"}"#,
            ),
            43,
        ),
        ("empty", String::new(), 4),
    ];
    for (name, token, want) in &cases {
        assert_eq!(code_for(&gw, token).await, *want, "{name}");
    }
    let rejected = gw
        .metric(
            "stream_edge_jwt_validations_total",
            &[("outcome", "rejected")],
        )
        .await;
    assert_eq!(rejected as usize, cases.len(), "every attack counted");

    // The good token still works after all that.
    assert_eq!(code_for(&gw, &good).await, 0);
}

#[tokio::test]
async fn cache_never_outlives_exp_or_secret() {
    let mut cfg = test_config();
    cfg.apps = vec![AppConfig {
        api_key: DEV_API_KEY.into(),
        secrets: vec![
            Secret(DEV_API_SECRET.into()),
            Secret("rotated-out-secret".into()),
        ],
    }];
    let gw = TestGateway::start_with(cfg).await;
    let old = sign("rotated-out-secret", "victim", None);
    assert_eq!(code_for(&gw, &old).await, 0);
    assert_eq!(code_for(&gw, &old).await, 0);
    assert!(
        gw.metric("stream_edge_jwt_cache_requests_total", &[("result", "hit")])
            .await
            >= 1.0
    );
    // Rotate the secret out: the cached validation stops counting at once.
    gw.running().shared.reload_apps(&[AppConfig {
        api_key: DEV_API_KEY.into(),
        secrets: vec![Secret(DEV_API_SECRET.into())],
    }]);
    assert_eq!(code_for(&gw, &old).await, 43);
    // A cached token past its exp answers 40.
    let short = sign(DEV_API_SECRET, "victim", Some(1));
    assert_eq!(code_for(&gw, &short).await, 0);
    let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(3);
    let mut code = 0;
    while code == 0 && std::time::SystemTime::now() < deadline {
        code = code_for(&gw, &short).await;
    }
    assert_eq!(code, 40);
    // A refused token stays refused however often it is presented.
    let bad = sign("wrong-secret-value", "victim", None);
    for _ in 0..3 {
        assert_eq!(code_for(&gw, &bad).await, 43);
    }
}
