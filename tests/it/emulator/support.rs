//! Test harness for the emulator: a server on `127.0.0.1:0`, token minting,
//! a WebSocket client that validates every event it reads, and a REST client
//! that validates every body against the OpenAPI schema of its route.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use stream_edge_emulator::{serve, App, Emulator};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::{CancellationToken, DropGuard};

pub use super::schema::{validate, validate_event};

pub const KEY: &str = "test-key";
pub const SECRET_OLD: &str = "old-secret";
pub const SECRET_NEW: &str = "new-secret";
/// Upper bound for any single frame or response to arrive.
const WAIT: Duration = Duration::from_secs(5);

pub type RawWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running emulator; shut down when dropped.
pub struct Harness {
    pub addr: SocketAddr,
    pub emu: Emulator,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
    _guard: DropGuard,
}

impl Harness {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let emu = Emulator::new(vec![App {
            api_key: KEY.into(),
            secrets: vec![SECRET_OLD.into(), SECRET_NEW.into()],
        }]);
        // These tests introspect and drop connections through the control routes.
        emu.set_control(true);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, emu.clone(), shutdown.clone()));
        let _guard = shutdown.clone().drop_guard();
        Self {
            addr,
            emu,
            shutdown,
            task,
            _guard,
        }
    }

    pub fn token(&self, user: &str, secret: &str) -> String {
        self.token_claims(json!({ "user_id": user }), secret)
    }

    pub fn token_claims(&self, claims: Value, secret: &str) -> String {
        let key = EncodingKey::from_secret(secret.as_bytes());
        encode(&Header::new(Algorithm::HS256), &claims, &key).expect("sign")
    }

    pub async fn connect(&self, user: &str) -> WsConn {
        let details = json!({ "id": user, "name": user.to_uppercase() });
        self.connect_with(user, &self.token(user, SECRET_OLD), Some(details))
            .await
    }

    pub async fn connect_with(&self, user: &str, token: &str, details: Option<Value>) -> WsConn {
        self.connect_url(ws_url(self.addr, KEY, user, token, details))
            .await
    }

    /// Connects with the SDK's payload plus `extra` keys (e.g. `device`).
    pub async fn connect_extra(&self, user: &str, extra: Value) -> WsConn {
        let mut payload = json!({ "user_id": user, "user_details": {"id": user} });
        if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        let token = self.token(user, SECRET_OLD);
        self.connect_url(payload_url(self.addr, KEY, &token, &payload))
            .await
    }

    async fn connect_url(&self, url: String) -> WsConn {
        let (mut inner, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let hello = next_text(&mut inner).await;
        assert!(hello.get("error").is_none(), "connect failed: {hello}");
        validate_event(&hello);
        WsConn { inner, hello }
    }

    pub fn client(&self, user: &str) -> Client {
        Client::new(self.addr, KEY, &self.token(user, SECRET_OLD))
    }

    /// A client with a server token (`{"server":true}`).
    pub fn server_client(&self) -> Client {
        Client::new(
            self.addr,
            KEY,
            &self.token_claims(json!({ "server": true }), SECRET_NEW),
        )
    }

    pub async fn introspect(&self) -> Value {
        let (status, body, _) =
            request(self.addr, "GET", "/_emulator/connections", None, Vec::new()).await;
        assert_eq!(status, 200);
        body
    }

    pub async fn drop_via_http(&self, user: &str) -> Value {
        let path = format!("/_emulator/drop?api_key={KEY}&user_id={user}");
        let (status, body, _) = request(self.addr, "POST", &path, None, Vec::new()).await;
        assert_eq!(status, 200);
        body
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The URL the JS SDK builds for `/connect`.
pub fn ws_url(
    addr: SocketAddr,
    key: &str,
    user: &str,
    token: &str,
    details: Option<Value>,
) -> String {
    let mut payload = json!({ "user_id": user, "client_request_id": "req-1", "server_determines_connection_id": true });
    if let Some(d) = details {
        payload["user_details"] = d;
    }
    payload_url(addr, key, token, &payload)
}

/// The `/connect` URL for any `json` payload.
pub fn payload_url(addr: SocketAddr, key: &str, token: &str, payload: &Value) -> String {
    format!(
        "ws://{addr}/connect?json={}&api_key={}&authorization={}&stream-auth-type=jwt&X-Stream-Client={}",
        enc(&payload.to_string()),
        enc(key),
        enc(token),
        enc("stream-chat-js-v9.53.0-node|client_bundle=node-cjs"),
    )
}

/// The next frame, or `None` once the stream ended or failed.
pub async fn next_frame(ws: &mut RawWs) -> Option<Message> {
    match tokio::time::timeout(WAIT, ws.next()).await {
        Ok(Some(Ok(msg))) => Some(msg),
        Ok(_) => None,
        Err(_) => panic!("no frame within {WAIT:?}"),
    }
}

/// The next text frame as JSON (binary/ping frames skipped).
pub async fn next_text(ws: &mut RawWs) -> Value {
    loop {
        match next_frame(ws).await {
            Some(Message::Text(t)) => {
                return serde_json::from_str(t.as_str()).expect("text frames are JSON")
            }
            Some(Message::Close(c)) => panic!("closed while waiting for a frame: {c:?}"),
            Some(_) => {}
            None => panic!("stream ended while waiting for a frame"),
        }
    }
}

/// A connected SDK-like WebSocket client.
pub struct WsConn {
    pub inner: RawWs,
    /// The handshake `health.check`.
    pub hello: Value,
}

impl WsConn {
    pub fn conn_id(&self) -> String {
        self.hello["connection_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn send_text(&mut self, text: &str) {
        self.inner.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_binary(&mut self) {
        self.inner
            .send(Message::binary(vec![1u8, 2, 3]))
            .await
            .expect("send");
    }

    /// The next event, validated against its schema.
    pub async fn next_event(&mut self) -> Value {
        let ev = next_text(&mut self.inner).await;
        validate_event(&ev);
        ev
    }

    /// Skips events until one of type `kind` arrives.
    pub async fn expect(&mut self, kind: &str) -> Value {
        self.collect_until(kind).await.pop().unwrap_or_default()
    }

    /// Every event up to and including the first of type `kind`.
    pub async fn collect_until(&mut self, kind: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let ev = self.next_event().await;
            let done = ev["type"] == kind;
            seen.push(ev);
            if done {
                return seen;
            }
        }
    }

    /// Every event queued for this connection so far, in order. A ping's `health.check` reply
    /// comes after them (the session sends its queued events first), so whatever the emulator
    /// decided to send before this call is in the result: a barrier, not a sleep.
    pub async fn drain(&mut self) -> Vec<Value> {
        self.send_text(r#"[{"type":"health.check","client_id":"barrier"}]"#)
            .await;
        let mut seen = self.collect_until("health.check").await;
        seen.pop();
        seen
    }

    /// Types of the events `drain` returns.
    pub async fn drain_types(&mut self) -> Vec<String> {
        self.drain()
            .await
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The socket must end without a close frame.
    pub async fn expect_abrupt_end(&mut self) {
        loop {
            match next_frame(&mut self.inner).await {
                None => return,
                Some(Message::Close(c)) => panic!("expected an abrupt end, got close {c:?}"),
                Some(_) => {}
            }
        }
    }

    /// Closes cleanly and waits for the server's close reply.
    pub async fn close(mut self) {
        let _ = self.inner.close(None).await;
        while let Some(msg) = next_frame(&mut self.inner).await {
            if let Message::Text(t) = msg {
                if let Ok(ev) = serde_json::from_str::<Value>(t.as_str()) {
                    validate_event(&ev);
                }
            }
        }
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, JSON body, headers).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value, HeaderMap) {
    let stream = TcpStream::connect(addr).await.expect("tcp connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("stream-auth-type", "jwt");
    if let Some(t) = token {
        req = req.header("authorization", t);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, json, headers)
}

/// A REST client for one token, like the SDK's axios instance.
pub struct Client {
    addr: SocketAddr,
    key: String,
    token: String,
}

impl Client {
    pub fn new(addr: SocketAddr, key: &str, token: &str) -> Self {
        Self {
            addr,
            key: key.to_owned(),
            token: token.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}api_key={}", enc(&self.key))
    }

    /// Any request; error bodies are validated as `APIError`.
    pub async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw_bytes(method, path, bytes).await
    }

    pub async fn raw_bytes(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        let (status, json, _) =
            request(self.addr, method, &self.url(path), Some(&self.token), body).await;
        if status >= 400 {
            validate("APIError", &json);
        }
        (status, json)
    }

    /// A request that must succeed with `status`; the body is validated as `schema`.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Value,
        status: u16,
        schema: &str,
    ) -> Value {
        let (got, json) = self.raw(method, path, Some(body)).await;
        assert_eq!(got, status, "{method} {path}: {json}");
        validate(schema, &json);
        json
    }

    pub async fn post(&self, path: &str, body: Value, schema: &str) -> Value {
        self.send("POST", path, body, 201, schema).await
    }

    pub async fn get(&self, path: &str, schema: &str) -> Value {
        let (got, json) = self.raw("GET", path, None).await;
        assert_eq!(got, 200, "GET {path}: {json}");
        validate(schema, &json);
        json
    }

    /// A POST carrying the connection's id, as the SDK sends once connected.
    pub async fn post_conn(&self, path: &str, ws: &WsConn, body: Value, schema: &str) -> Value {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.post(
            &format!("{path}{sep}connection_id={}", ws.conn_id()),
            body,
            schema,
        )
        .await
    }

    /// A GET carrying the connection's id.
    pub async fn get_conn(&self, path: &str, ws: &WsConn, schema: &str) -> Value {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.get(
            &format!("{path}{sep}connection_id={}", ws.conn_id()),
            schema,
        )
        .await
    }

    pub async fn query_channel(&self, id: &str, body: Value) -> Value {
        self.post(
            &format!("/channels/messaging/{id}/query"),
            body,
            "ChannelStateResponse",
        )
        .await
    }

    pub async fn watch_channel(&self, id: &str, ws: &WsConn, data: Value) -> Value {
        let body = json!({ "data": data, "state": true, "watch": true, "presence": true, "messages": {"limit": 30} });
        self.post_conn(
            &format!("/channels/messaging/{id}/query"),
            ws,
            body,
            "ChannelStateResponse",
        )
        .await
    }

    pub async fn send_message(&self, id: &str, text: &str) -> Value {
        let body = json!({ "message": { "text": text } });
        self.post(
            &format!("/channels/messaging/{id}/message"),
            body,
            "SendMessageResponse",
        )
        .await
    }

    /// Sends an event; the echoed event is validated as `event_schema` too.
    pub async fn event(&self, id: &str, event: Value, event_schema: &str) -> Value {
        let res = self
            .post(
                &format!("/channels/messaging/{id}/event"),
                json!({ "event": event }),
                "EventResponse",
            )
            .await;
        validate(event_schema, &res["event"]);
        validate_event(&res["event"]);
        res
    }

    pub async fn mark_read(&self, id: &str) -> Value {
        self.post(
            &format!("/channels/messaging/{id}/read"),
            json!({}),
            "MarkReadResponse",
        )
        .await
    }

    pub async fn stop_watching(&self, id: &str, ws: &WsConn) -> Value {
        self.post_conn(
            &format!("/channels/messaging/{id}/stop-watching"),
            ws,
            json!({}),
            "Response",
        )
        .await
    }

    pub async fn preflight(&self, path: &str) -> (u16, HeaderMap) {
        let (status, _, headers) = request(self.addr, "OPTIONS", path, None, Vec::new()).await;
        (status, headers)
    }
}
