//! The binary's command-line contract: check-config exit codes, token minting.

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stream-edge"));
    // Only what each test passes: nothing from the developer's environment leaks in.
    for v in [
        "STREAM_EDGE_CONFIG",
        "STREAM_EDGE_LISTEN",
        "STREAM_EDGE_ADMIN_LISTEN",
        "STREAM_EDGE_UPSTREAM",
        "STREAM_API_KEY",
        "STREAM_API_SECRET",
        "STREAM_EDGE_LOG_FORMAT",
    ] {
        c.env_remove(v);
    }
    c
}

#[test]
fn check_config_accepts_defaults_and_rejects_bad_values_with_64() {
    let ok = bin().arg("check-config").output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let dir = std::env::temp_dir().join(format!("se-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[ws]\nhealth_interval_seconds = 40\n").unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("ws.health_interval_seconds"), "{err}");

    let out = bin()
        .args(["check-config", "--listen", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = bin()
        .args(["serve", "--upstream", "https://chat.stream-io-api.com"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "a real upstream needs credentials; refused before binding"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn token_command_signs_with_the_configured_secret() {
    let out = bin()
        .args([
            "token",
            "alice",
            "--expires-in",
            "60",
            "--api-key",
            "k",
            "--api-secret",
            "s3cret-value",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_secret(b"s3cret-value"),
        &v,
    )
    .unwrap();
    assert_eq!(data.claims["user_id"], "alice");
    assert!(data.claims["exp"].is_number());
    let out = bin().args(["token", "bad id!"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}
