//! The trust boundary (issue 13, sections 1 and 2): nothing a client sends reaches upstream with
//! more authority than the client has, and a response carrying other users' state is filtered or
//! refused, never passed on unread. Upstream traffic is observed through a recording TCP proxy in
//! front of the embedded upstream, or replaced by a misbehaving fake.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Method;
use serde_json::{json, Value};
use stream_edge::config::{DEV_API_KEY, DEV_API_SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A TCP proxy that records every byte the gateway sends upstream (plain HTTP/1.1 on loopback).
pub(crate) struct Recorder {
    pub(crate) addr: SocketAddr,
    pub(crate) sent: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    pub(crate) async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut up_r, mut up_w) = up.into_split();
                    let (mut down_r, mut down_w) = down.split();
                    let to_up = async {
                        let mut buf = vec![0u8; 16 << 10];
                        loop {
                            let n = match down_r.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            log.lock().unwrap().extend_from_slice(&buf[..n]);
                            if up_w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = up_w.shutdown().await;
                    };
                    let to_down = async {
                        let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
                    };
                    tokio::join!(to_up, to_down);
                });
            }
        });
        Recorder { addr, sent }
    }

    /// The first recorded request whose request line starts with `start`: (head, body).
    pub(crate) fn request(&self, start: &str) -> Option<(String, String)> {
        let sent = String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned();
        let at = sent.find(start)?;
        let rest = &sent[at..];
        let (head, after) = rest.split_once("\r\n\r\n")?;
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        (after.len() >= len).then(|| (head.to_string(), after[..len].to_string()))
    }
}

pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub(crate) fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

async fn connect_details(gw: &TestGateway, user: &str, details: Value) -> (Ws, Value) {
    let json = json!({"user_id": user, "user_details": details}).to_string();
    gw.ws_raw(&gw.connect_url(&json, DEV_API_KEY, &gw.token(user, None)))
        .await
}

#[tokio::test]
async fn a_later_tab_cannot_raise_its_own_authority() {
    let (emu, stop) = emulator().await;
    let rec = Recorder::start(emu).await;
    let gw = TestGateway::start_with(upstream_at(rec.addr)).await;
    let user = "esc-mallory";
    let (_tab1, first) = connect_details(&gw, user, json!({"id": user, "name": "first"})).await;
    assert_eq!(first["type"], "health.check", "{first}");
    let (_tab2, second) = connect_details(
        &gw,
        user,
        json!({
            "id": user,
            "name": "second",
            "role": "admin",
            "teams": ["other-tenant"],
            "teams_role": {"other-tenant": "admin"},
            "banned": false,
            "revoke_tokens_issued_before": null,
            "deactivated_at": null,
            "custom": {"role": "admin", "hobby": "chess"},
        }),
    )
    .await;
    assert_eq!(second["type"], "health.check", "{second}");

    let mut found = None;
    eventually("the profile change goes upstream", || {
        found = rec.request("PATCH /users");
        std::future::ready(found.is_some())
    })
    .await;
    let (head, body) = found.unwrap();
    let token = header(&head, "authorization").expect("signed");
    let c = claims(token);
    assert_eq!(c["user_id"], user, "the user's own authority: {c}");
    assert!(c.get("server").is_none(), "never a server token: {c}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let update = &body["users"][0];
    assert_eq!(update["id"], user);
    let set = update["set"].as_object().unwrap();
    assert_eq!(set["name"], "second", "{body}");
    for forbidden in [
        "role",
        "teams",
        "teams_role",
        "banned",
        "revoke_tokens_issued_before",
        "deactivated_at",
    ] {
        assert!(
            !set.contains_key(forbidden),
            "{forbidden} forwarded: {body}"
        );
    }
    assert_eq!(set["custom"], json!({"hobby": "chess"}), "{body}");

    // No request the gateway sends on its own carries a server token except the lookups it
    // makes for itself: GET /users for privacy settings, GET /app for the revocation cutoff.
    let sent = String::from_utf8_lossy(&rec.sent.lock().unwrap()).into_owned();
    for req in sent.split("\r\n\r\n") {
        let Some(line) = req.lines().find(|l| l.ends_with("HTTP/1.1")) else {
            continue;
        };
        let Some(tok) = header(req, "authorization") else {
            continue;
        };
        if tok.split('.').count() == 3 && claims(tok).get("server").is_some() {
            assert!(
                line.starts_with("GET /users?") || line.starts_with("GET /app?"),
                "server token on {line}"
            );
        }
    }
    stop.cancel();
}

#[tokio::test]
async fn more_than_one_connection_id_is_refused_unless_all_are_the_callers() {
    let gw = TestGateway::start().await;
    let (_a, a) = gw.connect("dup-a").await;
    let (_b, b) = gw.connect("dup-b").await;
    let tok = gw.token("dup-a", None);
    let body = json!({"data":{"members":["dup-a"]},"state":true,"watch":true}).to_string();
    let url = |ids: &[&str]| {
        let mut q = format!(
            "{}/channels/messaging/dup/query?user_id=dup-a&api_key={DEV_API_KEY}",
            gw.base
        );
        for id in ids {
            q.push_str(&format!("&connection_id={id}"));
        }
        q
    };
    let post = |url: String, extra: Option<(&'static str, &'static str)>| {
        let (body, tok) = (body.clone(), tok.clone());
        async move {
            let mut headers = vec![("authorization", tok.as_str())];
            headers.extend(extra);
            http(Method::POST, &url, Some(&body), &headers).await
        }
    };
    let (status, text) = post(url(&[&a, &b]), None).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["code"], 4);
    // Encoded keys are the same parameter.
    let (status, _) = post(format!("{}&connection%5Fid={b}", url(&[&a])), None).await;
    assert_eq!(status, 400);
    // A body the gateway must read (the watch flag) cannot hide behind an encoding.
    let (status, text) = post(url(&[&a]), Some(("content-encoding", "gzip"))).await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = post(url(&[&a, &a]), None).await;
    assert!(status.is_success(), "{status} {text}");
}

/// A fake upstream answering every request with `status`, `headers` and `body`, recording the
/// request headers it saw.
async fn fake_upstream(
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
) -> (SocketAddr, Arc<Mutex<Vec<hyper::HeaderMap>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let body = Bytes::from(body);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let log = log.clone();
            let body = body.clone();
            let headers = headers.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    log.lock().unwrap().push(req.headers().clone());
                    let mut resp = hyper::Response::builder().status(201);
                    for (k, v) in &headers {
                        resp = resp.header(*k, *v);
                    }
                    let resp = resp.body(Full::new(body.clone())).unwrap();
                    std::future::ready(Ok::<_, std::convert::Infallible>(resp))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn query_channels(gw: &TestGateway, user: &str) -> (u16, String) {
    query_channels_as(gw, user, &gw.token(user, None)).await
}

async fn query_channels_as(gw: &TestGateway, user: &str, token: &str) -> (u16, String) {
    let (status, text) = http(
        Method::POST,
        &format!("{}/channels?user_id={user}&api_key={DEV_API_KEY}", gw.base),
        Some(r#"{"filter_conditions":{},"state":true}"#),
        &[
            ("authorization", token),
            ("accept-encoding", "gzip, deflate, br"),
        ],
    )
    .await;
    (status.as_u16(), text)
}

#[tokio::test]
async fn a_compressed_answer_on_a_filtered_route_is_refused() {
    // An upstream that ignores Accept-Encoding and answers gzip: the gateway cannot filter it.
    let (addr, seen) = fake_upstream(
        vec![
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3],
    )
    .await;
    let gw = TestGateway::start_with(upstream_at(addr)).await;
    let (status, text) = query_channels(&gw, "gz-bob").await;
    assert_eq!(status, 502, "{text}");
    let err: Value = serde_json::from_str(&text).expect("a Stream error body");
    assert_eq!(err["StatusCode"], 502, "{err}");
    let asked = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        asked["accept-encoding"], "identity",
        "the filtered route asks for an identity body"
    );
    assert_eq!(
        gw.metric(
            "stream_edge_privacy_unfilterable_total",
            &[("reason", "encoding")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn an_unreadable_answer_on_a_filtered_route_is_refused() {
    let read = r#"{"channels":[{"channel":{"cid":"messaging:x"},"read":[{"user":{"id":"hider"},"last_read":"2026-01-01T00:00:00Z"}]}],"#;
    let (addr, _) = fake_upstream(
        vec![("content-type", "application/json")],
        read.as_bytes().to_vec(),
    )
    .await;
    let gw = TestGateway::start_with(upstream_at(addr)).await;
    let (status, text) = query_channels(&gw, "trunc-bob").await;
    assert_eq!(status, 502, "{text}");
    assert!(
        !text.contains("hider"),
        "nothing of the body passes: {text}"
    );
    assert_eq!(
        gw.metric(
            "stream_edge_privacy_unfilterable_total",
            &[("reason", "parse")]
        )
        .await,
        1.0
    );
}

/// A successful `POST {path}` as `user` (a user token).
async fn post_as(gw: &TestGateway, user: &str, path: &str, body: &Value) {
    let (status, text) = http(
        Method::POST,
        &format!("{}{path}", gw.base),
        Some(&body.to_string()),
        &[("authorization", &gw.token(user, None))],
    )
    .await;
    assert!(status.is_success(), "{status} {text}");
}

const HIDE_READ: &str = r#"{"read_receipts":{"enabled":false}}"#;

/// Alice (read receipts off) and Bob share a channel in which both have read state.
async fn shared_channel(gw: &TestGateway, ch: &str, alice: &str, bob: &str) {
    let privacy: Value = serde_json::from_str(HIDE_READ).unwrap();
    let (_wa, first) =
        connect_details(gw, alice, json!({"id": alice, "privacy_settings": privacy})).await;
    let a = first["connection_id"].as_str().unwrap().to_string();
    gw.watch(alice, &a, ch, &[alice, bob]).await;
    gw.send(alice, ch, "hello").await;
    let read = format!("/channels/messaging/{ch}/read?user_id={alice}&api_key={DEV_API_KEY}");
    post_as(gw, alice, &read, &json!({})).await;
    // A backend (server token) sees everything: alice's read state is there to hide.
    let server = stream_edge::auth::mint::server_token(DEV_API_SECRET).unwrap();
    let (status, text) = query_channels_as(gw, bob, &server).await;
    assert!((200..300).contains(&status), "{status} {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        read_users(&v["channels"][0]).contains(&alice.to_string()),
        "{text}"
    );
}

fn read_users(channel_state: &Value) -> Vec<String> {
    channel_state["read"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|e| e["user"]["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_map_key_that_differs_from_the_id_teaches_nothing() {
    let gw = TestGateway::start().await;
    let (alice, bob) = ("key-alice", "key-mallory");
    shared_channel(&gw, "keyed", alice, bob).await;
    let (status, text) = query_channels(&gw, bob).await;
    assert!((200..300).contains(&status), "{status} {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        !read_users(&v["channels"][0]).contains(&alice.to_string()),
        "hidden before: {text}"
    );
    // Mallory upserts herself under alice's key.
    let body = json!({"users": {alice: {"id": bob}}});
    post_as(&gw, bob, &format!("/users?api_key={DEV_API_KEY}"), &body).await;
    let (status, text) = query_channels(&gw, bob).await;
    assert!((200..300).contains(&status), "{status} {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let readers = read_users(&v["channels"][0]);
    assert!(readers.contains(&bob.to_string()), "{text}");
    assert!(
        !readers.contains(&alice.to_string()),
        "alice's read state leaked after a keyed upsert: {text}"
    );
}

#[tokio::test]
async fn a_deeply_nested_custom_field_never_unmasks_read_state() {
    let gw = TestGateway::start().await;
    let (alice, bob) = ("deep-alice", "deep-bob");
    shared_channel(&gw, "deep", alice, bob).await;
    // One message with a custom field nested 124 levels deep: with its place in the answer, past
    // serde_json's recursion limit of 128.
    let mut nested = json!(1);
    for _ in 0..124 {
        nested = json!([nested]);
    }
    let body = json!({"message": {"text": "deep", "nest": nested}});
    let path = format!("/channels/messaging/deep/message?user_id={bob}&api_key={DEV_API_KEY}");
    post_as(&gw, bob, &path, &body).await;
    let (status, text) = query_channels(&gw, bob).await;
    // The answer is deeper than serde_json's recursion limit: the filter must still work on it,
    // and every member still gets the channel list.
    assert!((200..300).contains(&status), "{status} {text}");
    let deep = format!("{}1{}", "[".repeat(124), "]".repeat(124));
    assert!(text.contains(&deep), "the custom field passes unchanged");
    let v: Value = serde_json::from_str(&text.replace(&deep, "0")).unwrap();
    let readers = read_users(&v["channels"][0]);
    assert!(readers.contains(&bob.to_string()), "{readers:?}");
    assert!(
        !readers.contains(&alice.to_string()),
        "alice's read state passed"
    );
}
