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

/// The real binary: SIGHUP applies a secret removal at once (cached validations included), SIGTERM
/// drains with 1001 and the process exits 0 within its deadline.
#[tokio::test]
async fn sighup_rotates_secrets_and_sigterm_drains() {
    let dir = std::env::temp_dir().join(format!("se-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("edge.toml");
    let write = |secrets: &str| {
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[[apps]]\napi_key = \"k1\"\nsecrets = [{secrets}]\n[auth]\nleeway_seconds = 0\n[shutdown]\ndrain_seconds = 3\n"
            ),
        )
        .unwrap()
    };
    write("\"secret-A-value\", \"secret-B-value\"");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stream-edge"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = announced_addr(&mut child).await;
    let pid = child.id().unwrap().to_string();

    let token_b = crate::support::sign("secret-B-value", "hup", None);
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("json", r#"{"user_id":"hup"}"#)
        .append_pair("api_key", "k1")
        .append_pair("authorization", &token_b)
        .finish();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/connect?{q}"))
        .await
        .unwrap();
    assert_eq!(
        crate::support::next_json(&mut ws).await["type"],
        "health.check"
    );
    let users = format!("http://{addr}/users?api_key=k1");
    let (status, _) = crate::support::http(
        hyper::Method::GET,
        &users,
        None,
        &[("authorization", &token_b)],
    )
    .await;
    assert!(
        status.is_success(),
        "token B valid before the reload: {status}"
    );

    write("\"secret-A-value\"");
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    crate::support::eventually("secret B refused after SIGHUP", || async {
        let (s, body) = crate::support::http(
            hyper::Method::GET,
            &users,
            None,
            &[("authorization", &token_b)],
        )
        .await;
        s == 401 && body.contains("\"code\":43")
    })
    .await;

    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(crate::support::close_code(&mut ws).await, 1001);
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Starts `stream-edge ARGS --listen 127.0.0.1:0` and asks it for `/_emulator/connections`.
async fn emulator_connections(args: &[&str]) -> (tokio::process::Child, hyper::StatusCode, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stream-edge"))
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://{}", announced_addr(&mut child).await);
    let (status, body) = crate::support::http(
        hyper::Method::GET,
        &format!("{base}/_emulator/connections"),
        None,
        &[],
    )
    .await;
    (child, status, body)
}

#[tokio::test]
async fn emulator_subcommand_serves_standalone() {
    // Without `--control`, the control routes are an unknown route even from loopback.
    let (mut plain, status, body) = emulator_connections(&["emulator"]).await;
    assert_eq!(status, 404, "{body}");
    plain.kill().await.unwrap();

    let (mut child, status, body) = emulator_connections(&["emulator", "--control"]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"total\":0"), "{body}");
    child.kill().await.unwrap();
}

/// Tokens and secrets never reach the logs, even at trace level.
#[tokio::test]
async fn logs_never_contain_tokens_or_secrets() {
    let secret = "log-test-secret-value-42";
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stream-edge"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--api-key",
            "lk",
            "--api-secret",
            secret,
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Drain the logs while the gateway runs, or a full pipe would block its writes.
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all).await;
        all
    });
    let addr = announced_addr(&mut child).await;
    let good = crate::support::sign(secret, "logged", None);
    let expired = crate::support::sign(secret, "logged", Some(-5));
    let forged = crate::support::sign("not-the-secret", "logged", None);
    for token in [&good, &expired, &forged] {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("json", r#"{"user_id":"logged"}"#)
            .append_pair("api_key", "lk")
            .append_pair("authorization", token)
            .finish();
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/connect?{q}"))
            .await
            .unwrap();
        let _ = crate::support::next_json(&mut ws).await;
        let _ = crate::support::http(
            hyper::Method::GET,
            &format!("http://{addr}/users?api_key=lk"),
            None,
            &[("authorization", token)],
        )
        .await;
    }
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let logs = logs.await.unwrap();
    let logs = String::from_utf8_lossy(&logs);
    assert!(logs.len() > 1000, "trace logging produced output");
    for needle in [secret, good.as_str(), expired.as_str(), forged.as_str()] {
        // The signature part alone must not appear either.
        let sig = needle.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(sig),
            "a token or secret leaked into the logs"
        );
    }
}

/// Reads the first stdout line of a spawned `stream-edge` (`… listening on http://ADDR …`) and
/// returns ADDR; the rest of stdout keeps being drained so the child never blocks on it.
async fn announced_addr(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(crate::support::WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    first
        .split("http://")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}
