//! The lean HTTP/1.1 front for `/longpoll`, over raw TCP: one keep-alive connection moves
//! between it and hyper (connect, REST watch, held poll, REST again), and requests it does not
//! take (pipelined, oversized) still get hyper's answers.

use std::time::Duration;

use serde_json::Value;
use stream_edge::config::DEV_API_KEY;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::longpoll::connect_path;
use crate::support::*;

const IO_BUDGET: Duration = Duration::from_secs(10);

/// A response read off the socket: status, lower-cased headers, body (chunked decoded).
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A client connection that keeps unread bytes between responses.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(gw: &TestGateway) -> Conn {
        let addr = gw.base.trim_start_matches("http://");
        Conn {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, raw: &str) {
        self.s.write_all(raw.as_bytes()).await.unwrap();
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(IO_BUDGET, self.s.read(&mut chunk))
            .await
            .expect("response within the budget")
            .unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "closed mid-body");
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8(self.buf[..i].to_vec()).unwrap();
                self.buf.drain(..i + 2);
                return l;
            }
            assert!(self.fill().await, "closed mid-head");
        }
    }

    async fn response(&mut self) -> Resp {
        let status_line = self.line().await;
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let l = self.line().await;
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').unwrap();
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut r = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = r.header("content-length") {
            let len = len.parse().unwrap();
            r.body = self.take(len).await;
        } else if r.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(self.line().await.trim(), 16).unwrap();
                let chunk = self.take(size).await;
                self.line().await;
                if size == 0 {
                    break;
                }
                r.body.extend_from_slice(&chunk);
            }
        }
        r
    }

    /// True when the server closed the connection (EOF) with nothing more to read.
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }
}

fn get(path: &str, token: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nhost: edge\r\nauthorization: {token}\r\nstream-auth-type: jwt\r\n{extra}\r\n"
    )
}

fn poll_path(user: &str, id: &str) -> String {
    format!("/longpoll?user_id={user}&connection_id={id}&api_key={DEV_API_KEY}")
}

/// One poll on `c`: it must answer 200; its events.
async fn poll_events(c: &mut Conn, user: &str, id: &str, tok: &str) -> Vec<Value> {
    c.send(&get(&poll_path(user, id), tok, "")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    r.json()["events"].as_array().cloned().unwrap_or_default()
}

/// A gateway, a user's token and a raw connection to the gateway.
async fn start(user: &str) -> (TestGateway, String, Conn) {
    let gw = TestGateway::start().await;
    let tok = gw.token(user, None);
    let c = Conn::open(&gw).await;
    (gw, tok, c)
}

#[tokio::test]
async fn one_connection_moves_between_the_front_and_hyper() {
    let user = "front-a";
    let (gw, tok, mut c) = start(user).await;

    c.send(&get(&connect_path(user), &tok, "")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let id = r.json()["event"]["connection_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The watch is REST: hyper serves it on the same connection.
    let body = serde_json::json!({"data":{"members":[user,"front-b"]},"state":true,"watch":true})
        .to_string();
    c.send(&format!(
        "POST /channels/messaging/front-ch/query?user_id={user}&api_key={DEV_API_KEY}&connection_id={id} HTTP/1.1\r\nhost: edge\r\nauthorization: {tok}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ))
    .await;
    let r = c.response().await;
    assert!(r.status == 200 || r.status == 201, "watch: {}", r.status);

    // Back on the front: a message sent while nobody polls waits, and the next poll takes it.
    gw.send("front-b", "front-ch", "between polls").await;
    let events = poll_events(&mut c, user, &id, &tok).await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "message.new" && e["message"]["text"] == "between polls"),
        "{events:?}"
    );

    // And REST again after a poll, then a poll that asks to close the connection.
    let payload = r#"{"filter_conditions":{"id":{"$in":["front-b"]}}}"#;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("user_id", user)
        .append_pair("payload", payload)
        .finish();
    c.send(&get(&format!("/users?{q}"), &tok, "")).await;

    assert_eq!(c.response().await.status, 200);
    c.send(&get(
        &format!("{}&close=true", poll_path(user, &id)),
        &tok,
        "connection: close\r\n",
    ))
    .await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        c.closed().await,
        "the front closes after `connection: close`"
    );
}

#[tokio::test]
async fn requests_the_front_does_not_take_get_hyper_answers() {
    let user = "front-p";
    let (gw, tok, mut c) = start(user).await;

    // Two connects pipelined in one write: both answered, in order.

    let one = get(&connect_path(user), &tok, "");
    c.send(&format!("{one}{one}")).await;
    for _ in 0..2 {
        let r = c.response().await;
        assert_eq!(r.status, 200);
        assert!(r.json()["event"]["connection_id"].is_string());
    }

    // A head over the configured limit: 431 in Stream's error form, counted, connection closed.
    let mut c = Conn::open(&gw).await;
    let big = format!(
        "x-filler: {}\r\n",
        "a".repeat(gw.running().shared.config.limits.max_header_bytes)
    );
    c.send(&get(&connect_path(user), &tok, &big)).await;
    let r = c.response().await;
    assert_eq!((r.status, r.json()["code"].as_i64()), (431, Some(4)));
    assert!(c.closed().await);
    assert_eq!(
        gw.metric(
            "stream_edge_limit_hits_total",
            &[("limit", "max_header_bytes")]
        )
        .await,
        1.0
    );

    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut c = Conn::open(&gw).await;
    c.send(&format!(
        "GET /longpoll?connection_id=nope&api_key={DEV_API_KEY} HTTP/1.0\r\nauthorization: {tok}\r\n\r\n"
    ))
    .await;
    let r = c.response().await;
    assert_eq!((r.status, r.json()["code"].as_i64()), (400, Some(46)));
    assert!(c.closed().await);
}

#[tokio::test]
async fn a_client_that_leaves_mid_poll_ends_it_and_loses_nothing() {
    let user = "front-gone";
    let (gw, tok, mut c) = start(user).await;
    c.send(&get(&connect_path(user), &tok, "")).await;

    let id = c.response().await.json()["event"]["connection_id"]
        .as_str()
        .unwrap()
        .to_string();
    gw.watch(user, &id, "front-gone-ch", &[user, "front-other"])
        .await;
    // Take what the watch queued, so the next poll is held (for the default 20 s).
    gw.send("front-other", "front-gone-ch", "before").await;
    while !poll_events(&mut c, user, &id, &tok)
        .await
        .iter()
        .any(|e| e["message"]["text"] == "before")
    {}

    // A poll is held, then its client goes away.

    c.send(&get(&poll_path(user, &id), &tok, "")).await;
    eventually("the poll is held", || async {
        gw.metric("stream_edge_longpoll_held_requests", &[]).await == 1.0
    })
    .await;
    drop(c);
    eventually("the abandoned poll ends", || async {
        gw.metric("stream_edge_longpoll_held_requests", &[]).await == 0.0
    })
    .await;

    // What arrives now waits for the next poll instead of going to the dead socket.
    gw.send("front-other", "front-gone-ch", "after the client left")
        .await;
    let mut c = Conn::open(&gw).await;
    let events = poll_events(&mut c, user, &id, &tok).await;
    assert!(
        events
            .iter()
            .any(|e| e["message"]["text"] == "after the client left"),
        "{events:?}"
    );
}

/// What a proxy sees (issue 19): every long-poll and REST answer says `cache-control: no-store`
/// (the API names no cache header; a caching proxy must never replay one), and a long-poll answer
/// is always one complete body with a content-length, never chunked, on the lean front and in
/// hyper alike, including a held poll answered with events.
#[tokio::test]
async fn answers_are_never_cached_and_a_poll_is_one_complete_body() {
    let user = "front-cache";
    let (gw, tok, mut c) = start(user).await;
    let complete_no_store = |r: &Resp, what: &str| {
        assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
        assert!(r.header("transfer-encoding").is_none(), "{what}: chunked");
        assert_eq!(
            r.header("content-length")
                .map(|l| l.parse::<usize>().unwrap()),
            Some(r.body.len()),
            "{what}: content-length"
        );
    };

    // Connect on the lean front.
    c.send(&get(&connect_path(user), &tok, "")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    complete_no_store(&r, "connect (lean front)");
    let id = r.json()["event"]["connection_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Two pipelined long-polls go to hyper: the same headers there.
    let one = get(&poll_path(user, "nope"), &tok, "");
    c.send(&format!("{one}{one}")).await;
    for _ in 0..2 {
        let r = c.response().await;
        assert_eq!(r.status, 400);
        complete_no_store(&r, "poll error (hyper)");
    }

    // REST through hyper.
    gw.watch(user, &id, "front-cache-ch", &[user, "front-cache-b"])
        .await;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("api_key", DEV_API_KEY)
        .append_pair("user_id", user)
        .append_pair("payload", r#"{"filter_conditions":{"id":{"$in":[]}}}"#)
        .finish();
    c.send(&get(&format!("/users?{q}"), &tok, "")).await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"), "REST");

    // A held poll answered when an event arrives: one complete body. What the watch queued is
    // taken first (until a marker arrives), so the next poll is held.
    gw.send("front-cache-b", "front-cache-ch", "before").await;
    while !poll_events(&mut c, user, &id, &tok)
        .await
        .iter()
        .any(|e| e["message"]["text"] == "before")
    {}
    c.send(&get(&poll_path(user, &id), &tok, "")).await;
    eventually("the poll is held", || async {
        gw.metric("stream_edge_longpoll_held_requests", &[]).await == 1.0
    })
    .await;
    gw.send("front-cache-b", "front-cache-ch", "while held")
        .await;
    let r = c.response().await;
    assert_eq!(r.status, 200);
    complete_no_store(&r, "held poll (lean front)");
    assert!(r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["message"]["text"] == "while held"));
}

/// A keep-alive connection goes back to the front once hyper's answer is flushed and nothing more
/// has arrived; a pipelined request whose head had only partly arrived then is not lost with it.
#[tokio::test]
async fn an_idle_hand_back_keeps_a_partly_arrived_pipelined_head() {
    let user = "front-i";
    let (_gw, tok, mut c) = start(user).await;
    let app = get(&format!("/app?api_key={DEV_API_KEY}"), &tok, "");
    let (head, tail) = app.split_at(24);
    // The first request whole, the second's head cut short: hyper answers the first, then finds
    // the connection idle with part of the second in its buffer.
    let answered = |status: u16, body: &[u8]| {
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(body));
    };
    c.send(&format!("{app}{head}")).await;
    let first = c.response().await;
    answered(first.status, &first.body);
    c.send(tail).await;
    let second = c.response().await;
    answered(second.status, &second.body);
    assert_eq!(first.json()["app"], second.json()["app"]);
    // The connection still serves requests after it.
    c.send(&app).await;
    assert_eq!(c.response().await.status, 200);
}
