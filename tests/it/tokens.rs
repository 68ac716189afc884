//! Token lifecycle through the real gateway and its embedded upstream (issue 13, section 3):
//! Stream's user and app token revocation enforced at the edge, a session ended for its token
//! keeping its `connection_id` usable while the SDK reconnects, and no token in any log line.

use std::time::Duration;

use hyper::Method;
use serde_json::{json, Value};
use stream_edge::config::{DEV_API_KEY, DEV_API_SECRET};

use crate::support::*;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign_claims(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DEV_API_SECRET.as_bytes()),
    )
    .unwrap()
}

fn server_token() -> String {
    sign_claims(json!({"server": true}))
}

/// A user token issued `ago` seconds ago (`None`: without `iat`, as `createToken` makes them).
fn user_token(user: &str, ago: Option<i64>) -> String {
    match ago {
        Some(a) => sign_claims(json!({"user_id": user, "iat": now() - a})),
        None => sign_claims(json!({"user_id": user})),
    }
}

fn iso(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn open(gw: &TestGateway, user: &str, token: &str) -> (Ws, Value) {
    let payload = format!(r#"{{"user_id":"{user}","user_details":{{"id":"{user}"}}}}"#);
    gw.ws_raw(&gw.connect_url(&payload, DEV_API_KEY, token))
        .await
}

async fn connected(gw: &TestGateway, user: &str, token: &str) -> (Ws, String) {
    let (ws, first) = open(gw, user, token).await;
    assert_eq!(first["type"], "health.check", "{first}");
    (ws, first["connection_id"].as_str().unwrap().to_string())
}

async fn refused_with(gw: &TestGateway, user: &str, token: &str) -> i64 {
    let (_, first) = open(gw, user, token).await;
    first["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("an error frame: {first}"))
}

/// A backend's server-side call, straight to upstream (as a backend talks to Stream).
async fn backend(base: &str, method: Method, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{base}{path}?api_key={DEV_API_KEY}");
    let tok = server_token();
    let (status, text) = http(
        method,
        &url,
        Some(&body.to_string()),
        &[("authorization", &tok), ("stream-auth-type", "jwt")],
    )
    .await;
    (
        status.as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// `revokeUserToken(user, before)`.
async fn revoke_user(base: &str, user: &str, before: Option<i64>) {
    let (status, body) = backend(
        base,
        Method::PATCH,
        "/users",
        json!({"users":[{"id": user, "set": {"revoke_tokens_issued_before": before.map(iso)}}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// `revokeTokens(before)`.
async fn revoke_app(base: &str, before: Option<i64>) {
    let (status, body) = backend(
        base,
        Method::PATCH,
        "/app",
        json!({"revoke_tokens_issued_before": before.map(iso)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn rest_status(gw: &TestGateway, user: &str, token: &str) -> (u16, Value) {
    let url = format!(
        "{}/channels/messaging/tok-{user}/query?api_key={DEV_API_KEY}",
        gw.base
    );
    let (status, text) = http(
        Method::POST,
        &url,
        Some(r#"{"data":{"members":[]},"state":true}"#),
        &[("authorization", token), ("stream-auth-type", "jwt")],
    )
    .await;
    (
        status.as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn revoke_user_token_ends_live_sessions_and_refuses_older_tokens() {
    let gw = TestGateway::start().await;
    let up = gw.embedded_url();
    let old = user_token("rv-alice", Some(100));
    let (mut ws, _) = connected(&gw, "rv-alice", &old).await;
    let (mut other, _) = connected(&gw, "rv-bob", &user_token("rv-bob", Some(100))).await;

    // The backend revokes straight at upstream: the gateway learns it from `user.updated` on the
    // user's own upstream connection, and ends the session as an expired one.
    revoke_user(&up, "rv-alice", Some(now() - 10)).await;
    assert_eq!(close_code(&mut ws).await, 4040);

    // The old token (a validation-cache hit by now) and a token without `iat` are refused with
    // Stream's code 40, on connect and on REST; another user is untouched.
    assert_eq!(refused_with(&gw, "rv-alice", &old).await, 40);
    assert_eq!(
        refused_with(&gw, "rv-alice", &user_token("rv-alice", None)).await,
        40
    );
    let (status, body) = rest_status(&gw, "rv-alice", &old).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(40)), "{body}");
    assert_eq!(ping(&mut other).await["type"], "health.check");

    // A token issued after the cutoff works again.
    let fresh = user_token("rv-alice", Some(0));
    let (_ws, _) = connected(&gw, "rv-alice", &fresh).await;
    assert_eq!(rest_status(&gw, "rv-alice", &fresh).await.0, 201);
}

#[tokio::test]
async fn a_revocation_made_while_offline_is_learned_from_the_handshake() {
    let gw = TestGateway::start().await;
    // Revoked before the gateway ever saw this user: nothing is cached, so the gateway's own
    // validation passes and the user's cutoff arrives only with upstream's `me`.
    revoke_user(&gw.embedded_url(), "rv-carol", Some(now() - 10)).await;
    assert_eq!(
        refused_with(&gw, "rv-carol", &user_token("rv-carol", Some(100))).await,
        40
    );
    let (_ws, _) = connected(&gw, "rv-carol", &user_token("rv-carol", Some(0))).await;
}

#[tokio::test]
async fn revoke_user_token_through_the_proxy_is_learned_from_the_response() {
    let gw = TestGateway::start().await;
    let old = user_token("rv-dave", Some(100));
    let (mut ws, _) = connected(&gw, "rv-dave", &old).await;
    revoke_user(&gw.base, "rv-dave", Some(now() - 10)).await;
    assert_eq!(close_code(&mut ws).await, 4040);
    assert_eq!(refused_with(&gw, "rv-dave", &old).await, 40);
    // Undone (`revokeUserToken(user, null)`): the old token is good again.
    revoke_user(&gw.base, "rv-dave", None).await;
    let (_ws, _) = connected(&gw, "rv-dave", &old).await;
}

#[tokio::test]
async fn revoke_tokens_app_wide_is_read_from_get_app() {
    let cfg = test_config();
    let apps = cfg.apps.clone();
    let gw = TestGateway::start_with(cfg).await;
    let up = gw.embedded_url();
    let no_iat = user_token("rv-erin", None);
    let (mut ws, _) = connected(&gw, "rv-erin", &no_iat).await;
    let recent = user_token("rv-frank", Some(0));
    let (mut kept, _) = connected(&gw, "rv-frank", &recent).await;

    // `revokeTokens(now - 5s)` at upstream, then SIGHUP's reload: the gateway reads `GET /app`.
    revoke_app(&up, Some(now() - 5)).await;
    gw.running().shared.reload_apps(&apps);
    assert_eq!(
        close_code(&mut ws).await,
        4040,
        "a token without iat is revoked"
    );
    assert_eq!(refused_with(&gw, "rv-erin", &no_iat).await, 40);
    let (status, body) = rest_status(&gw, "rv-erin", &no_iat).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(40)), "{body}");
    assert_eq!(
        ping(&mut kept).await["type"],
        "health.check",
        "a token issued after the cutoff is untouched"
    );

    // Undone through the proxy (`revokeTokens(null)`): a `PATCH /app` seen passing through
    // makes the gateway read the settings at once.
    revoke_app(&gw.base, None).await;
    eventually("the app revocation is lifted", || async {
        let (_, first) = open(&gw, "rv-erin", &no_iat).await;
        first["type"] == "health.check"
    })
    .await;
}

#[tokio::test]
async fn the_embedded_upstream_enforces_revocation_itself() {
    let gw = TestGateway::start().await;
    let up = gw.embedded_url();
    // GET /app: the spec's required fields.
    let tok = user_token("rv-gina", Some(100));
    let (status, text) = http(
        Method::GET,
        &format!("{up}/app?api_key={DEV_API_KEY}"),
        None,
        &[("authorization", &tok), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let app: Value = serde_json::from_str(&text).unwrap();
    for key in [
        "id",
        "name",
        "placement",
        "async_url_enrich_enabled",
        "auto_translation_enabled",
        "file_upload_config",
        "image_upload_config",
    ] {
        assert!(app["app"].get(key).is_some(), "app.{key} in {app}");
    }
    // Only a server token may change app settings or a user's revocation.
    let (status, _) = http(
        Method::PATCH,
        &format!("{up}/app?api_key={DEV_API_KEY}"),
        Some(r#"{"revoke_tokens_issued_before":"2030-01-01T00:00:00Z"}"#),
        &[("authorization", &tok), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 403);
    let self_revoke = json!({"users":[{"id":"rv-gina","set":{"revoke_tokens_issued_before":"2030-01-01T00:00:00Z"}}]});
    let (status, _) = http(
        Method::PATCH,
        &format!("{up}/users?api_key={DEV_API_KEY}"),
        Some(&self_revoke.to_string()),
        &[("authorization", &tok), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 200);
    let users = format!("{up}/users?api_key={DEV_API_KEY}");
    let (status, _) = http(
        Method::GET,
        &users,
        None,
        &[("authorization", &tok), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 200, "a user token cannot revoke itself");

    // revokeUserToken: the upstream refuses the old token on REST and on connect.
    revoke_user(&up, "rv-gina", Some(now() - 10)).await;
    let (status, text) = http(
        Method::GET,
        &users,
        None,
        &[("authorization", &tok), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 401, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["code"],
        40,
        "{text}"
    );
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("json", r#"{"user_id":"rv-gina"}"#)
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("authorization", &tok)
        .append_pair("stream-auth-type", "jwt")
        .finish();
    let ws_url = format!("{}/connect?{q}", up.replacen("http", "ws", 1));
    let (_ws, first) = gw.ws_raw(&ws_url).await;
    assert_eq!(first["error"]["code"], 40, "{first}");
    // The app setting is in GET /app once set.
    revoke_app(&up, Some(now() - 3600)).await;
    let (_, app) = backend(&up, Method::GET, "/app", Value::Null).await;
    assert!(
        app["app"]["revoke_tokens_issued_before"].is_string(),
        "{app}"
    );
}

/// A session closed with 4040 at `exp` keeps its `connection_id` bound to the user's upstream
/// connection for a grace period: the SDK's REST calls made before it has reconnected (retried
/// with a refreshed token after code 40) must not fail with code 46.
#[tokio::test]
async fn rest_calls_bound_to_a_session_ended_by_expiry_still_work() {
    let gw = TestGateway::start().await;
    let short = sign(DEV_API_SECRET, "exp-hank", Some(1));
    let (mut ws, conn) = connected(&gw, "exp-hank", &short).await;
    gw.watch("exp-hank", &conn, "exp-room", &["exp-hank"]).await;
    assert_eq!(close_code(&mut ws).await, 4040);

    // The old token is expired (40); the refreshed one binds to the ended session's id.
    let fresh = gw.token("exp-hank", Some(3600));
    let query = format!(
        "{}/channels/messaging/exp-room/query?api_key={DEV_API_KEY}&connection_id={conn}",
        gw.base
    );
    let body = r#"{"data":{"members":["exp-hank"]},"state":true,"watch":true}"#;
    let (status, text) = http(
        Method::POST,
        &query,
        Some(body),
        &[("authorization", &short), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 401, "{text}");
    let (status, text) = http(
        Method::POST,
        &query,
        Some(body),
        &[("authorization", &fresh), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 201, "watch with the ended session's id: {text}");
    let send = format!(
        "{}/channels/messaging/exp-room/message?api_key={DEV_API_KEY}&connection_id={conn}",
        gw.base
    );
    let (status, text) = http(
        Method::POST,
        &send,
        Some(r#"{"message":{"text":"still here"}}"#),
        &[("authorization", &fresh), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 201, "send with the ended session's id: {text}");
    // Another user still cannot use it.
    let (status, _) = http(
        Method::POST,
        &send,
        Some(r#"{"message":{"text":"not mine"}}"#),
        &[
            ("authorization", &gw.token("exp-ivan", None)),
            ("stream-auth-type", "jwt"),
        ],
    )
    .await;
    assert_eq!(status, 403);
}

/// After the grace, the ended session's id is gone (code 46) and its hub can retire.
#[tokio::test]
async fn the_grace_of_an_ended_session_is_bounded() {
    let mut cfg = test_config();
    cfg.auth.ended_session_grace = Duration::from_millis(300);
    let gw = TestGateway::start_with(cfg).await;
    let short = sign(DEV_API_SECRET, "exp-jack", Some(1));
    let (mut ws, conn) = connected(&gw, "exp-jack", &short).await;
    assert_eq!(close_code(&mut ws).await, 4040);
    let fresh = gw.token("exp-jack", None);
    let send = format!(
        "{}/channels/messaging/exp-jroom/query?api_key={DEV_API_KEY}&connection_id={conn}",
        gw.base
    );
    eventually("the ended session's id is released", || async {
        let (status, text) = http(
            Method::POST,
            &send,
            Some(r#"{"data":{"members":["exp-jack"]}}"#),
            &[("authorization", &fresh), ("stream-auth-type", "jwt")],
        )
        .await;
        status == 400 && text.contains("\"code\":46")
    })
    .await;
    eventually("the hub retires", || async {
        gw.running().shared.hubs.hub_count() == 0
    })
    .await;
}

/// No token the gateway receives or mints appears in its log, even at `RUST_LOG=trace`: the binary
/// runs with every target at trace while a client connects (the gateway mints its upstream token
/// and opens the upstream socket), calls REST and disconnects.
#[tokio::test]
async fn no_token_in_any_log_line_at_trace() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stream-edge"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "trace")
        .env_remove("STREAM_EDGE_CONFIG")
        .env_remove("STREAM_API_KEY")
        .env_remove("STREAM_API_SECRET")
        .env_remove("STREAM_EDGE_UPSTREAM")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all).await;
        String::from_utf8_lossy(&all).into_owned()
    });
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .to_string();

    let token = sign_claims(json!({"user_id": "log-kim", "iat": now(), "exp": now() + 600}));
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("json", r#"{"user_id":"log-kim"}"#)
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("authorization", &token)
        .append_pair("stream-auth-type", "jwt")
        .finish();
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/connect?{q}")),
    )
    .await
    .unwrap()
    .unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "health.check", "{hello}");
    let conn = hello["connection_id"].as_str().unwrap().to_string();
    let (status, text) = http(
        Method::POST,
        &format!(
            "http://{addr}/channels/messaging/log-room/query?api_key={DEV_API_KEY}&connection_id={conn}"
        ),
        Some(r#"{"data":{"members":["log-kim"]},"state":true,"watch":true}"#),
        &[("authorization", &token), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let bad = format!("{token}x");
    let (status, _) = http(
        Method::GET,
        &format!("http://{addr}/users?api_key={DEV_API_KEY}"),
        None,
        &[("authorization", &bad), ("stream-auth-type", "jwt")],
    )
    .await;
    assert_eq!(status, 401);
    drop(ws);

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let log = tokio::time::timeout(WAIT, log).await.unwrap().unwrap();
    assert!(
        log.contains("TRACE"),
        "trace logging was on: {} bytes",
        log.len()
    );
    // Every JWT starts with a base64url `{"` ("eyJ"): neither the client's token nor the one the
    // gateway minted for its upstream connection may show up.
    let leaked: Vec<&str> = log.lines().filter(|l| l.contains("eyJ")).collect();
    assert!(leaked.is_empty(), "token in the log: {leaked:#?}");
}

/// The long-poll equivalent: a held poll of a revoked session ends at once (the session is over,
/// code 46), and the old token is refused with code 40 on the next poll and on reconnect.
#[tokio::test]
async fn a_revoked_long_poll_session_ends() {
    let mut cfg = test_config();
    // Longer than the revocation takes, shorter than the client's wait.
    cfg.longpoll.hold = Duration::from_secs(8);
    let gw = TestGateway::start_with(cfg).await;
    let old = user_token("rv-lp", Some(100));
    let json = r#"{"user_id":"rv-lp","user_details":{"id":"rv-lp"}}"#;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("user_id", "rv-lp")
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("json", json)
        .finish();
    let connect = format!("{}/longpoll?{q}", gw.base);
    let headers = [("authorization", old.as_str()), ("stream-auth-type", "jwt")];
    let (status, body) = http(Method::GET, &connect, None, &headers).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let conn = v["event"]["connection_id"].as_str().unwrap().to_string();
    let poll = format!(
        "{}/longpoll?user_id=rv-lp&connection_id={conn}&api_key={DEV_API_KEY}",
        gw.base
    );
    let held = {
        let (poll, old) = (poll.clone(), old.clone());
        tokio::spawn(async move {
            http(
                Method::GET,
                &poll,
                None,
                &[("authorization", &old), ("stream-auth-type", "jwt")],
            )
            .await
        })
    };
    eventually("the poll is held", || async {
        gw.metric("stream_edge_longpoll_held_requests", &[]).await == 1.0
    })
    .await;
    revoke_user(&gw.embedded_url(), "rv-lp", Some(now() - 10)).await;
    let (status, body) = held.await.unwrap();
    assert_eq!(
        status, 400,
        "the held poll ends, not after its hold: {body}"
    );
    assert!(body.contains("\"code\":46"), "{body}");
    let (status, body) = http(Method::GET, &poll, None, &headers).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"code\":40"), "{body}");
    let (status, body) = http(Method::GET, &connect, None, &headers).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"code\":40"), "{body}");
}

/// The token may come as the `Authorization` header of the upgrade instead of the query (the Swift
/// SDK's shape, and the one this gateway uses towards its own upstream): both the gateway and the
/// embedded upstream accept it, and check it as strictly.
#[tokio::test]
async fn connect_with_the_token_in_the_authorization_header() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let gw = TestGateway::start().await;
    for base in [
        gw.base.replacen("http", "ws", 1),
        gw.embedded_url().replacen("http", "ws", 1),
    ] {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("json", r#"{"user_id":"hdr-lee"}"#)
            .append_pair("api_key", DEV_API_KEY)
            .finish();
        for (token, ok) in [
            (user_token("hdr-lee", Some(0)), true),
            (user_token("hdr-lee", Some(0)) + "x", false),
        ] {
            let mut req = format!("{base}/connect?{q}").into_client_request().unwrap();
            req.headers_mut()
                .insert("authorization", token.parse().unwrap());
            req.headers_mut()
                .insert("stream-auth-type", "jwt".parse().unwrap());
            let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
                .await
                .unwrap()
                .unwrap();
            let first = next_json(&mut ws).await;
            if ok {
                assert_eq!(first["type"], "health.check", "{base}: {first}");
            } else {
                assert_eq!(first["error"]["code"], 43, "{base}: {first}");
            }
        }
    }
}

/// Reads the first stdout line of a spawned `stream-edge` (`… listening on http://ADDR …`) and
/// returns ADDR; the rest of stdout keeps being drained.
async fn announced(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    first
        .split("http://")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .to_string()
}

/// SIGHUP makes the running binary read every app's settings at once: a `revokeTokens` made at the
/// upstream ends a live session whose token it revokes, long before the (here hour-long) interval.
#[tokio::test]
async fn sighup_reads_the_app_revocation_at_once() {
    let mut emulator = tokio::process::Command::new(env!("CARGO_BIN_EXE_stream-edge"))
        .args(["emulator", "--listen", "127.0.0.1:0"])
        .env_remove("STREAM_API_KEY")
        .env_remove("STREAM_API_SECRET")
        .env_remove("STREAM_EDGE_CONFIG")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let up = format!("http://{}", announced(&mut emulator).await);
    let dir = std::env::temp_dir().join(format!("se-hup-rv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[[apps]]\napi_key = \"{DEV_API_KEY}\"\nsecrets = [\"{DEV_API_SECRET}\"]\n[upstream]\nurl = \"{up}\"\n[auth]\nleeway_seconds = 0\napp_settings_refresh_seconds = 3600\n"
        ),
    )
    .unwrap();
    let mut gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_stream-edge"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env_remove("STREAM_API_KEY")
        .env_remove("STREAM_API_SECRET")
        .env_remove("STREAM_EDGE_UPSTREAM")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = announced(&mut gateway).await;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("json", r#"{"user_id":"hup-mo"}"#)
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("authorization", &user_token("hup-mo", None))
        .finish();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/connect?{q}"))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "health.check");

    revoke_app(&up, Some(now() - 5)).await;
    // Not learned yet: the next read is an hour away.
    assert_eq!(ping(&mut ws).await["type"], "health.check");
    let pid = gateway.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(close_code(&mut ws).await, 4040);
    let _ = std::fs::remove_dir_all(dir);
}
