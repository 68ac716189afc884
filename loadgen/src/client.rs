//! Client side of the real protocol: sockets bound to 127.0.0.x, signed tokens, WebSocket and
//! long-poll sessions (each on its own HTTP/1.1 connection, or as streams of shared h2c
//! connections), the REST watch call, and delivery-latency accounting.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::clock::mono_ns;

/// What every session of one worker records.
pub struct Stats {
    /// Delivery latency (publisher's send → client receive) in nanoseconds.
    pub hist: Mutex<Histogram<u64>>,
    /// `message.new` events carrying a `sent_ns` that arrived.
    pub received: AtomicU64,
    /// Sessions that ended without being asked to, or failed polls.
    pub errors: AtomicU64,
    /// Frames or poll responses seen of any kind.
    pub frames: AtomicU64,
}

impl Stats {
    pub fn new() -> Self {
        Self {
            hist: Mutex::new(new_hist()),
            received: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            frames: AtomicU64::new(0),
        }
    }

    fn record(&self, sent_ns: u64) {
        let now = mono_ns();
        let lat = now.saturating_sub(sent_ns).max(1);
        self.received.fetch_add(1, Ordering::Relaxed);
        let mut h = self
            .hist
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        h.saturating_record(lat);
    }
}

/// 1 ns .. 60 s, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Signs `{"user_id", "iat"}` (plus a `jti` nonce when given, so the token is unique) with HS256.
pub fn token(secret: &str, user: &str, nonce: Option<&str>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = json!({"user_id": user, "iat": now.saturating_sub(5)});
    if let Some(n) = nonce {
        claims["jti"] = json!(n);
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// A server-side token (`{"server": true}`), for the publisher's upserts straight to the upstream.
pub fn server_token(secret: &str) -> anyhow::Result<String> {
    Ok(encode(
        &Header::default(),
        &json!({"server": true}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// A TCP connection from `src` (port chosen at connect time: `IP_BIND_ADDRESS_NO_PORT`, so
/// binding reserves no ephemeral port) to `dst`.
pub async fn connect_from(src: Option<Ipv4Addr>, dst: SocketAddr) -> anyhow::Result<TcpStream> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = src {
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)
            .context("IP_BIND_ADDRESS_NO_PORT")?;
        sock.bind(&SocketAddrV4::new(ip, 0).into())
            .with_context(|| format!("bind {ip}"))?;
    }
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    let std_stream: std::net::TcpStream = sock.into();
    let socket = tokio::net::TcpSocket::from_std_stream(std_stream);
    let stream = socket
        .connect(dst)
        .await
        .with_context(|| format!("connect {dst}"))?;
    Ok(stream)
}

fn connect_json(user: &str) -> String {
    let payload = json!({"user_id": user, "user_details": {"id": user}}).to_string();
    url::form_urlencoded::byte_serialize(payload.as_bytes()).collect()
}

/// Extracts `"connection_id":"…"` from a frame or body.
pub fn connection_id(text: &str) -> Option<String> {
    let key = "\"connection_id\":\"";
    let at = text.find(key)? + key.len();
    let end = text[at..].find('"')?;
    Some(text[at..at + end].to_string())
}

/// Scans one WebSocket frame: a `message.new` carrying `sent_ns` is recorded.
fn scan_frame(text: &str, stats: &Stats) {
    stats.frames.fetch_add(1, Ordering::Relaxed);
    if !text.contains("\"type\":\"message.new\"") {
        return;
    }
    if let Some(sent) = sent_ns_after(text, 0) {
        stats.record(sent);
    }
}

fn sent_ns_after(text: &str, from: usize) -> Option<u64> {
    let key = "\"sent_ns\":";
    let at = text[from..].find(key)? + from + key.len();
    let digits: String = text[at..]
        .chars()
        .skip_while(|c| *c == ' ')
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Where and as whom a session connects.
pub struct SessionTarget<'a> {
    pub src: Option<Ipv4Addr>,
    pub dst: SocketAddr,
    pub api_key: &'a str,
    pub user: &'a str,
    pub token: &'a str,
}

/// An open WebSocket session: the handshake is done; `run` reads until `cancel`.
pub struct WsSession {
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    pub connection_id: String,
}

/// Opens a WebSocket session and waits for its `health.check` handshake frame.
pub async fn ws_connect(t: &SessionTarget<'_>) -> anyhow::Result<WsSession> {
    let stream = connect_from(t.src, t.dst).await?;
    let url = format!(
        "ws://{}/connect?json={}&api_key={}&authorization={}&stream-auth-type=jwt",
        t.dst,
        connect_json(t.user),
        t.api_key,
        t.token
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .context("websocket handshake")?;
    let first = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .context("no handshake frame within 30 s")?;
    match first {
        Some(Ok(Message::Text(t))) => {
            let id = connection_id(&t).ok_or_else(|| {
                anyhow!(
                    "first frame has no connection_id: {}",
                    &t[..t.len().min(200)]
                )
            })?;
            Ok(WsSession {
                ws,
                connection_id: id,
            })
        }
        other => bail!("unexpected first frame: {other:?}"),
    }
}

impl WsSession {
    /// Reads frames (recording deliveries) and pings like the JS SDK until `cancel`, then closes
    /// from the client side: `ping` after each `health.check` it receives, rescheduled by every
    /// one (stream-chat 9.53.0 src/connection.ts 498-502, 655-671), so a server's own checks move
    /// the client's pings as they would the SDK's.
    pub async fn run(
        mut self,
        user: String,
        ping: Option<Duration>,
        cancel: CancellationToken,
        stats: Arc<Stats>,
    ) {
        let ping_every = ping.unwrap_or(Duration::from_secs(3600));
        // The connect frame was a health.check, so the SDK's first ping would follow it one
        // interval later. The benchmark connects thousands of sessions within a second, which no
        // real fleet does: their pings would then come in one burst every interval and land in
        // some measurement windows but not others. The first ping waits a random part of the
        // interval instead, as if each session had connected at its own moment.
        let next = tokio::time::sleep(ping_every.mul_f64(phase()));
        tokio::pin!(next);
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
                    return;
                }
                () = &mut next, if ping.is_some() => {
                    let frame = format!("[{{\"type\":\"health.check\",\"client_id\":\"{user}--bench\"}}]");
                    if self.ws.send(Message::text(frame)).await.is_err() {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    // Sent; the next one waits for the answer (or for the server's own check).
                    next.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(3600));
                }
                msg = self.ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        if t.contains("\"type\":\"health.check\"") {
                            next.as_mut().reset(tokio::time::Instant::now() + ping_every);
                        }
                        scan_frame(&t, &stats);
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        if !cancel.is_cancelled() {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        return;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}

/// A random fraction in (0, 1]: a session's ping phase.
fn phase() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    // `RandomState` is seeded anew per instance: randomness without a dependency.
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    ((bits >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

/// The body of a watch call: `query` with members (the first watcher creates the channel).
pub fn watch_body(members: &[String]) -> String {
    json!({"data": {"members": members}, "state": true, "watch": true, "presence": false})
        .to_string()
}

/// Long-poll sessions per shared HTTP/2 connection: the gateway's default
/// `http2.max_concurrent_streams`, so every session's held poll fits on its connection.
pub const H2_STREAMS_PER_CONNECTION: usize = 100;

/// How a long-poll session reaches the gateway: its own keep-alive HTTP/1.1 connection, or a
/// stream of an HTTP/2 connection it shares with other sessions (h2c with prior knowledge).
pub enum LpConn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Opens an h2c (prior knowledge) connection for long-poll sessions to share.
pub async fn h2_connect(
    src: Option<Ipv4Addr>,
    dst: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>> {
    let stream = connect_from(src, dst).await?;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .context("h2c handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// One long-poll session and its connection (or stream).
pub struct LpSession {
    send: LpConn,
    host: String,
    pub connection_id: String,
}

async fn request(
    send: &mut LpConn,
    method: &str,
    host: &str,
    path_query: &str,
    token: &str,
    body: Option<String>,
) -> anyhow::Result<(u16, Bytes)> {
    let mut b = http::Request::builder().method(method);
    // HTTP/2 carries the authority in the URI (`:authority`), HTTP/1.1 in `Host`.
    b = match send {
        LpConn::H1(_) => b.uri(path_query).header("host", host),
        LpConn::H2(_) => b.uri(format!("http://{host}{path_query}")),
    };
    b = b
        .header("authorization", token)
        .header("stream-auth-type", "jwt");
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = match send {
        LpConn::H1(s) => {
            s.ready().await.context("connection closed")?;
            s.send_request(req).await?
        }
        LpConn::H2(s) => {
            s.ready().await.context("connection closed")?;
            s.send_request(req).await?
        }
    };
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// Opens a long-poll session on its own HTTP/1.1 connection.
pub async fn lp_connect(t: &SessionTarget<'_>) -> anyhow::Result<LpSession> {
    let stream = connect_from(t.src, t.dst).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    lp_connect_over(LpConn::H1(send), t).await
}

/// Opens a long-poll session over `send`: `GET /longpoll?json=…` → `{"event":{…connection_id…}}`.
pub async fn lp_connect_over(mut send: LpConn, t: &SessionTarget<'_>) -> anyhow::Result<LpSession> {
    let host = t.dst.to_string();
    let pq = format!(
        "/longpoll?json={}&api_key={}",
        connect_json(t.user),
        t.api_key
    );
    let (status, body) = request(&mut send, "GET", &host, &pq, t.token, None).await?;
    let text = String::from_utf8_lossy(&body);
    if status != 200 {
        bail!(
            "long-poll connect: HTTP {status}: {}",
            &text[..text.len().min(200)]
        );
    }
    let id =
        connection_id(&text).ok_or_else(|| anyhow!("long-poll connect without connection_id"))?;
    Ok(LpSession {
        send,
        host,
        connection_id: id,
    })
}

impl LpSession {
    /// The watch call over this session's own connection.
    pub async fn watch(
        &mut self,
        api_key: &str,
        user: &str,
        token: &str,
        channel: &str,
        members: &[String],
    ) -> anyhow::Result<()> {
        let pq = format!(
            "/channels/messaging/{channel}/query?user_id={user}&api_key={api_key}&connection_id={}",
            self.connection_id
        );
        let (status, body) = request(
            &mut self.send,
            "POST",
            &self.host.clone(),
            &pq,
            token,
            Some(watch_body(members)),
        )
        .await?;
        if status != 201 && status != 200 {
            bail!(
                "watch: HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
        Ok(())
    }

    /// Polls until `cancel`, recording every `message.new` delivered.
    pub async fn run(
        mut self,
        api_key: String,
        user: String,
        token: String,
        cancel: CancellationToken,
        stats: Arc<Stats>,
    ) {
        let pq = format!(
            "/longpoll?connection_id={}&api_key={api_key}&user_id={user}",
            self.connection_id
        );
        let host = self.host.clone();
        loop {
            let polled = tokio::select! {
                () = cancel.cancelled() => return,
                r = request(&mut self.send, "GET", &host, &pq, &token, None) => r,
            };
            match polled {
                Ok((200, body)) => {
                    stats.frames.fetch_add(1, Ordering::Relaxed);
                    record_poll(&body, &stats);
                }
                Ok(_) | Err(_) => {
                    if !cancel.is_cancelled() {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
            }
        }
    }
}

fn record_poll(body: &[u8], stats: &Stats) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Some(events) = v.get("events").and_then(|e| e.as_array()) else {
        return;
    };
    for ev in events {
        if ev.get("type").and_then(|t| t.as_str()) == Some("message.new") {
            if let Some(sent) = ev
                .pointer("/message/sent_ns")
                .and_then(serde_json::Value::as_u64)
            {
                stats.record(sent);
            }
        }
    }
}

/// A pooled REST client (watch calls of WebSocket sessions, the publisher).
pub type Rest = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

pub fn rest_client() -> Rest {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http()
}

/// One REST call; the status and body are returned.
pub async fn rest_call(
    client: &Rest,
    method: &str,
    url: &str,
    token: &str,
    body: Option<String>,
) -> anyhow::Result<(u16, Bytes)> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", token)
        .header("stream-auth-type", "jwt");
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_sent_ns() {
        let s = Stats::new();
        scan_frame(
            r#"{"cid":"messaging:c","message":{"id":"x","sent_ns":12,"text":"t"},"type":"message.new"}"#,
            &s,
        );
        scan_frame(r#"{"type":"health.check","connection_id":"abc"}"#, &s);
        assert_eq!(s.received.load(Ordering::Relaxed), 1);
        assert_eq!(
            connection_id(r#"{"type":"health.check","connection_id":"abc"}"#).as_deref(),
            Some("abc")
        );
    }
}
