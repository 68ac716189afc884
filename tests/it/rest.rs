//! The REST proxy: forwarding, connection_id ownership, Stream-shaped errors, CORS.

use hyper::Method;
use stream_edge::config::DEV_API_KEY;

use crate::support::*;

fn q(user: &str, conn: Option<&str>) -> String {
    match conn {
        Some(c) => format!("user_id={user}&api_key={DEV_API_KEY}&connection_id={c}"),
        None => format!("user_id={user}&api_key={DEV_API_KEY}"),
    }
}

#[tokio::test]
async fn query_with_own_connection_is_proxied_and_foreign_ones_refused() {
    let gw = TestGateway::start().await;
    let (_ws, conn) = gw.connect("rest-a").await;
    let tok = gw.token("rest-a", None);
    let auth = [
        ("authorization", tok.as_str()),
        ("stream-auth-type", "jwt"),
        ("content-type", "application/json"),
    ];
    let url = format!(
        "{}/channels/messaging/rest-ch/query?{}",
        gw.base,
        q("rest-a", Some(&conn))
    );
    let body = r#"{"data":{"members":["rest-a"]},"state":true,"watch":true,"presence":false}"#;
    let (status, text) = http(Method::POST, &url, Some(body), &auth).await;
    assert_eq!(status, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["channel"]["cid"], "messaging:rest-ch");

    // Another user's token with rest-a's connection_id: refused, code 17.
    let (_wsb, _) = gw.connect("rest-b").await;
    let tokb = gw.token("rest-b", None);
    let authb = [
        ("authorization", tokb.as_str()),
        ("stream-auth-type", "jwt"),
    ];
    let url = format!(
        "{}/channels/messaging/rest-ch/query?{}",
        gw.base,
        q("rest-b", Some(&conn))
    );
    let (status, text) = http(Method::POST, &url, Some(body), &authb).await;
    assert_eq!(status, 403, "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["code"],
        17
    );

    // Unknown connection id: Stream-shaped error, never forwarded.
    let url = format!(
        "{}/channels/messaging/rest-ch/query?{}",
        gw.base,
        q("rest-a", Some("nope"))
    );
    let (status, text) = http(Method::POST, &url, Some(body), &auth).await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["code"],
        46
    );
    assert!(
        gw.metric(
            "stream_edge_rest_requests_total",
            &[("route", "/channels/{type}/{id}/query")]
        )
        .await
            >= 3.0
    );
}

#[tokio::test]
async fn auth_errors_on_rest_are_json_with_stream_codes() {
    let gw = TestGateway::start().await;
    let expired = gw.token("rest-e", Some(-5));
    let url = format!("{}/users?{}", gw.base, q("rest-e", None));
    let (status, text) = http(Method::GET, &url, None, &[("authorization", &expired)]).await;
    assert_eq!(status, 401);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["code"], 40);
    assert_eq!(v["StatusCode"], 401);
    let url = format!("{}/users?api_key=wrong", gw.base);
    let (status, text) = http(Method::GET, &url, None, &[("authorization", &expired)]).await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["code"],
        2
    );
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let gw = TestGateway::start().await;
    let (status, headers, _) = http_full(
        Method::OPTIONS,
        &format!("{}/channels", gw.base),
        None,
        &[
            ("origin", "http://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization, content-type, stream-auth-type, x-stream-client, x-client-request-id"),
        ],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-origin"], "*");
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(m));
    }
    assert!(headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("x-client-request-id"));
    let (_, headers, _) = http_full(
        Method::GET,
        &format!("{}/app?api_key=x", gw.base),
        None,
        &[],
    )
    .await;
    assert_eq!(headers["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn upstream_down_gives_json_error_not_empty_body() {
    let mut cfg = test_config();
    // Nothing listens on port 9 of loopback (discard is not served here).
    cfg.upstream.target =
        stream_edge::config::UpstreamTarget::Url("http://127.0.0.1:9".parse().unwrap());
    cfg.upstream.connect_timeout = std::time::Duration::from_secs(2);
    let gw = TestGateway::start_with(cfg).await;
    let (status, text) = http(
        Method::GET,
        &format!("{}/app?api_key={DEV_API_KEY}", gw.base),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 502, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["code"].is_number() && v["message"].is_string());
    // A WS connect gets a retryable close (not an error frame, which the SDK treats as final).
    let json = r#"{"user_id":"down"}"#;
    let url = gw.connect_url(json, DEV_API_KEY, &gw.token("down", None));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(
        close_code(&mut ws).await,
        stream_edge::error::close::UPSTREAM_LOST
    );
}
