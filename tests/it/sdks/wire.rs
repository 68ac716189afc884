//! A wire-level client for each native SDK: a TLS socket to the gateway, the SDK's own upgrade
//! request written byte for byte (so Unreal's raw JSON reaches the wire as libwebsockets sends
//! it), then the SDK's socket loop (pings, watchdog, reading) by the rules in
//! [`super::model`]. Time is scaled: one SDK second is [`super::model::UNIT`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub use super::model::{units, Reaction, Sdk};
use crate::support::WAIT;

/// A TLS connection to the gateway (the native SDKs speak only `wss`/`https`).
pub type Tls = TlsStream<TcpStream>;

pub async fn tls(addr: SocketAddr, client: Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .expect("tls handshake")
}

/// Sends a raw upgrade (request line as given, so Unreal's raw JSON reaches the wire as it
/// does from libwebsockets) and reads the answer head.
async fn upgrade(io: &mut Tls, addr: SocketAddr, target: &str, headers: &[String]) -> String {
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    io.write_all(req.as_bytes()).await.expect("write upgrade");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = tokio::time::timeout(WAIT, io.read_u8())
            .await
            .expect("answer in time")
            .expect("answer head");
        head.push(b);
        assert!(head.len() < 16 * 1024, "head too long");
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A connected SDK socket.
pub struct Client {
    pub sdk: Sdk,
    ws: WebSocketStream<Tls>,
    /// The frame that completed the connect.
    pub connected: Value,
    pub conn_id: String,
    last_health: Instant,
    last_frame: Instant,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    /// `health.check` frames received after the connect.
    pub health_checks: usize,
    /// Whether the SDK's pings are sent (off: what the gateway sends by itself).
    pub pings: bool,
}

impl Client {
    /// Connects as the SDK does; `Err` is the SDK's reaction when the connect did not complete.
    pub async fn connect(
        sdk: Sdk,
        addr: SocketAddr,
        tls_client: Arc<rustls::ClientConfig>,
        user: &str,
        token: &str,
    ) -> Result<Client, Reaction> {
        let mut io = tls(addr, tls_client).await;
        let (target, headers) = sdk.connect_request(user, token, stream_edge::config::DEV_API_KEY);
        let head = upgrade(&mut io, addr, &target, &headers).await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "{sdk:?} upgrade refused: {head}"
        );
        if sdk == Sdk::Unreal {
            assert!(
                head.to_ascii_lowercase()
                    .contains("sec-websocket-protocol: wss"),
                "the requested subprotocol is selected: {head}"
            );
        }
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Client, None).await;
        let deadline = Instant::now() + WAIT;
        loop {
            match read(&mut ws, deadline).await {
                Some(Message::Text(t)) => {
                    let f: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if sdk.connected_by(&f) {
                        return Ok(Client::new(sdk, ws, f));
                    }
                    if let Some(r) = sdk.on_error(&f, true) {
                        return Err(r);
                    }
                }
                Some(Message::Close(c)) => {
                    let c = c.map(|c| (u16::from(c.code), c.reason.to_string()));
                    return Err(sdk.on_close(
                        c.as_ref()
                            .map(|(code, r)| (*code, r.as_str()))
                            .or(Some((1005, ""))),
                    ));
                }
                Some(_) => {}
                None => return Err(sdk.on_close(None)),
            }
        }
    }

    fn new(sdk: Sdk, ws: WebSocketStream<Tls>, connected: Value) -> Client {
        let now = Instant::now();
        let conn_id = connected["connection_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        // Swift and Flutter ping right after connecting; the others after their interval.
        let first = match sdk {
            Sdk::Swift | Sdk::Flutter => now,
            _ => now + units(sdk.ping_every()),
        };
        Client {
            sdk,
            ws,
            connected,
            conn_id,
            last_health: now,
            last_frame: now,
            next_ping: first,
            pong_deadline: None,
            health_checks: 0,
            pings: true,
        }
    }

    /// Runs the SDK's socket loop (pings, watchdog, reading) for `dur`, or until `stop` matches
    /// an event. Returns the events read (health checks excluded), or the SDK's reaction when it
    /// would leave this socket.
    pub async fn run(
        &mut self,
        dur: Duration,
        stop: impl Fn(&Value) -> bool,
    ) -> Result<Vec<Value>, Reaction> {
        let end = Instant::now() + dur;
        let mut events = Vec::new();
        let (dog, health_only) = self.sdk.watchdog();
        let dog = units(dog);
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(events);
            }
            let fed = if health_only {
                self.last_health
            } else {
                self.last_frame
            };
            if self.sdk != Sdk::Swift && now >= fed + dog {
                return Err(Reaction::Watchdog);
            }
            if self.pong_deadline.is_some_and(|d| now >= d) {
                return Err(Reaction::Watchdog);
            }
            if now >= self.next_ping && !self.pings {
                self.next_ping = end;
            }
            if now >= self.next_ping {
                let ping = self.sdk.ping(&self.connected);
                self.ws
                    .send(ping)
                    .await
                    .map_err(|_| self.sdk.on_close(None))?;
                self.next_ping = match self.sdk {
                    // Android echoes once per acknowledgement.
                    Sdk::Kotlin => end + WAIT,
                    _ => now + units(self.sdk.ping_every()),
                };
                if self.sdk == Sdk::Swift {
                    self.pong_deadline = Some(now + units(3));
                }
            }
            let mut wake = end.min(self.next_ping).min(fed + dog);
            if let Some(d) = self.pong_deadline {
                wake = wake.min(d);
            }
            let msg = match tokio::time::timeout_at(wake, self.ws.next()).await {
                Err(_) => continue,
                Ok(m) => m,
            };
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let now = Instant::now();
                    self.last_frame = now;
                    let Ok(f) = serde_json::from_str::<Value>(t.as_str()) else {
                        // Android cannot parse it: a socket error, which reconnects.
                        if self.sdk == Sdk::Kotlin {
                            return Err(Reaction::Reconnect { refresh: false });
                        }
                        continue;
                    };
                    if f["type"] == "health.check" {
                        self.health_checks += 1;
                        self.last_health = now;
                        self.pong_deadline = None;
                        if self.sdk == Sdk::Kotlin {
                            self.next_ping = now + units(11);
                        }
                        continue;
                    }
                    if let Some(r) = self.sdk.on_error(&f, false) {
                        return Err(r);
                    }
                    let done = stop(&f);
                    events.push(f);
                    if done {
                        return Ok(events);
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    let c = c.map(|c| (u16::from(c.code), c.reason.to_string()));
                    let close = c.as_ref().map(|(code, r)| (*code, r.as_str()));
                    return Err(self.sdk.on_close(close.or(Some((1005, "")))));
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return Err(self.sdk.on_close(None)),
            }
        }
    }

    /// Runs until an event matches, bounded by [`WAIT`].
    pub async fn until(&mut self, what: impl Fn(&Value) -> bool) -> Result<Value, Reaction> {
        let events = self.run(WAIT, &what).await?;
        match events.last() {
            Some(e) if what(e) => Ok(e.clone()),
            _ => panic!("{:?}: no matching event within {WAIT:?}", self.sdk),
        }
    }

    /// Runs until the SDK leaves the socket, bounded by [`WAIT`].
    pub async fn reaction(&mut self) -> Reaction {
        match self.run(WAIT, |_| false).await {
            Err(r) => r,
            Ok(_) => panic!("{:?}: the socket stayed up for {WAIT:?}", self.sdk),
        }
    }
}

async fn read(ws: &mut WebSocketStream<Tls>, deadline: Instant) -> Option<Message> {
    match tokio::time::timeout_at(deadline, ws.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        Ok(_) => None,
        Err(_) => panic!("no frame in time"),
    }
}
