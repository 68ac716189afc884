//! A wire-level model of each native SDK's socket (sdk-wire-shapes.md and the SDK sources it
//! cites): the exact request line and upgrade headers, payload encoding, ping shape and cadence,
//! watchdog, and what the SDK does with each error frame and close. Time is scaled: one SDK
//! second is [`UNIT`] here, and the gateway's intervals are set in the same units.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::support::WAIT;

/// One SDK second of test time.
pub const UNIT: Duration = Duration::from_millis(50);

pub fn units(n: u32) -> Duration {
    UNIT * n
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sdk {
    Swift,
    Kotlin,
    Flutter,
    Unity,
    Unreal,
}

/// What the SDK does when its socket ends or it reads an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// Reconnects at once (after its backoff), fetching a new token first when `refresh`.
    Reconnect { refresh: bool },
    /// Gives up: the app sees the error and nothing reconnects.
    Final { code: i64 },
    /// Ignores the end (a clean close Unreal or Android do not act on): offline until its
    /// watchdog fires tens of seconds later.
    Offline,
    /// Its own watchdog fired: it reconnects, but only because the gateway failed it.
    Watchdog,
}

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

/// Percent-encodes every byte outside `keep` and the RFC 3986 unreserved set.
fn pct(s: &str, keep: &[u8]) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn form(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Sdk {
    /// The `X-Stream-Client` value the SDK sends, where it sends one.
    fn client_header(self) -> Option<&'static str> {
        match self {
            Sdk::Swift => Some("stream-chat-swift-v4.62.0|app=SdkTest|app_version=1.0|os=iOS 17.0|device_model=iPhone15,2"),
            Sdk::Kotlin => Some("stream-chat-android-6.5.0|os=Android 14|api_version=34|device_vendor=Google|device_model=Pixel 8|offline_enabled=false"),
            Sdk::Flutter => Some("stream-chat-dart-client-android-10.2.0"),
            Sdk::Unity | Sdk::Unreal => None,
        }
    }

    /// The request target and upgrade headers of the SDK's `/connect`, byte for byte.
    pub fn connect_request(self, user: &str, token: &str, key: &str) -> (String, Vec<String>) {
        let details = json!({"id": user, "name": format!("{user} name")});
        match self {
            Sdk::Swift => {
                // URLComponents: api_key first, `+` and `;` encoded by hand; token only in headers.
                let payload = json!({"user_id": user, "user_details": details,
                    "server_determines_connection_id": true});
                let q = format!(
                    "api_key={key}&json={}",
                    pct(&payload.to_string(), b":,/?@!$'()*=")
                );
                let headers = vec![
                    format!("X-Stream-Client: {}", self.client_header().unwrap_or("")),
                    format!("Authorization: {token}"),
                    "Stream-Auth-Type: jwt".to_string(),
                ];
                (format!("/connect?{q}"), headers)
            }
            Sdk::Kotlin => {
                let payload = json!({"user_details": details, "user_id": user,
                    "server_determines_connection_id": true});
                let ua = self.client_header().unwrap_or("");
                let q = format!(
                    "json={}&api_key={key}&X-Stream-Client={}&authorization={token}&stream-auth-type=jwt",
                    form(&payload.to_string()),
                    form(ua)
                );
                let headers = vec![
                    format!("X-Stream-Client: {ua}"),
                    "User-Agent: okhttp/4.12.0".to_string(),
                    "Accept-Encoding: gzip".to_string(),
                    "Sec-WebSocket-Extensions: permessage-deflate".to_string(),
                ];
                (format!("/connect?{q}"), headers)
            }
            Sdk::Flutter => {
                let payload = json!({"user_id": user, "user_details": details,
                    "user_token": token, "server_determines_connection_id": true});
                // X-Stream-Client is `jsonEncode(ua)`: a quoted string.
                let ua = Value::from(self.client_header().unwrap_or("")).to_string();
                let q = format!(
                    "json={}&api_key={key}&authorization={token}&stream-auth-type=jwt&X-Stream-Client={}",
                    form(&payload.to_string()),
                    form(&ua)
                );
                let headers = vec![
                    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
                        .to_string(),
                ];
                (format!("/connect?{q}"), headers)
            }
            Sdk::Unity => {
                let payload = json!({"user_id": user, "user_details": {"id": user},
                    "user_token": token, "server_determines_connection_id": true});
                let q = format!(
                    "json={}&api_key={key}&authorization={token}&stream-auth-type=jwt",
                    pct(&payload.to_string(), b"")
                );
                (format!("/connect?{q}"), Vec::new())
            }
            Sdk::Unreal => {
                // The condensed JSON inserted raw, only spaces encoded; no user_id.
                let payload = json!({"user_details": details})
                    .to_string()
                    .replace(' ', "%20");
                let q = format!(
                    "json={payload}&api_key={key}&authorization={token}&stream-auth-type=jwt"
                );
                (
                    format!("/connect?{q}"),
                    vec!["Sec-WebSocket-Protocol: wss".to_string()],
                )
            }
        }
    }

    /// How often the SDK pings, in SDK seconds (Android: 11 s after each acknowledgement).
    fn ping_every(self) -> u32 {
        match self {
            Sdk::Swift => 25,
            Sdk::Kotlin => 11,
            Sdk::Flutter | Sdk::Unreal => 20,
            Sdk::Unity => 29,
        }
    }

    /// (seconds, counts only health checks): the watchdog. Swift's is its 3 s pong timer.
    fn watchdog(self) -> (u32, bool) {
        match self {
            Sdk::Swift => (3, true),
            Sdk::Kotlin | Sdk::Unity => (30, true),
            Sdk::Flutter | Sdk::Unreal => (40, false),
        }
    }

    /// The longest watchdog, for "stay connected past it".
    pub fn watchdog_time(self) -> Duration {
        match self {
            // Swift's pong timer restarts with every ping: stay past several pings.
            Sdk::Swift => units(60),
            _ => units(self.watchdog().0 * 3 / 2),
        }
    }

    /// Whether the SDK considers itself connected by this first frame.
    fn connected_by(self, f: &Value) -> bool {
        if f["type"] != "health.check" {
            return false;
        }
        let me = &f["me"];
        match self {
            Sdk::Swift => {
                f["connection_id"].is_string()
                    && ["role", "created_at", "updated_at", "online"]
                        .iter()
                        .all(|k| me.get(*k).is_some_and(|v| !v.is_null()))
            }
            Sdk::Kotlin => {
                f["created_at"].is_string() && f["connection_id"].is_string() && me.is_object()
            }
            Sdk::Flutter => me.is_object(),
            Sdk::Unity => true,
            Sdk::Unreal => me["id"].as_str().is_some_and(|id| !id.is_empty()),
        }
    }

    /// What the SDK does with an error it reads; `None` when it does not read this frame as one.
    fn on_error(self, f: &Value, connecting: bool) -> Option<Reaction> {
        let err = f.get("error").filter(|e| e.is_object())?;
        let code = err["code"].as_i64().unwrap_or(-1);
        let typed = f.get("type").is_some();
        match self {
            Sdk::Swift => {
                // Only a decodable `connection.error` with every APIError key.
                let keys = [
                    "code",
                    "details",
                    "duration",
                    "message",
                    "more_info",
                    "StatusCode",
                ];
                if f["type"] != "connection.error" || !keys.iter().all(|k| err.get(*k).is_some()) {
                    return None;
                }
                let status = err["StatusCode"].as_i64().unwrap_or(0);
                Some(match code {
                    40 => Reaction::Reconnect { refresh: true },
                    2 | 41..=43 => Reaction::Final { code },
                    _ if (400..500).contains(&status) => Reaction::Final { code },
                    _ => Reaction::Reconnect { refresh: false },
                })
            }
            Sdk::Kotlin => {
                if typed && f["type"] != "connection.error" {
                    return None;
                }
                Some(match code {
                    5 | 40..=43 => Reaction::Reconnect { refresh: true },
                    2 | 4 => Reaction::Final { code },
                    _ => Reaction::Reconnect { refresh: false },
                })
            }
            Sdk::Flutter => Some(match code {
                40 => Reaction::Reconnect { refresh: true },
                _ if connecting => Reaction::Final { code },
                _ => Reaction::Reconnect { refresh: false },
            }),
            // Logged only.
            Sdk::Unity => None,
            Sdk::Unreal => (!typed).then_some(Reaction::Reconnect {
                refresh: code == 40,
            }),
        }
    }

    /// What the SDK does when the socket ends: `close` is the close frame's (code, reason), or
    /// `None` for a TCP end without one (unclean).
    fn on_close(self, close: Option<(u16, &str)>) -> Reaction {
        let again = Reaction::Reconnect { refresh: false };
        match (self, close) {
            (Sdk::Swift, Some((1000, reason))) if !reason.is_empty() => {
                Reaction::Final { code: 1000 }
            }
            (Sdk::Kotlin, Some((1000, _))) => Reaction::Offline,
            // Every Unity reconnect asks its token provider again.
            (Sdk::Unity, _) => Reaction::Reconnect { refresh: true },
            (Sdk::Unreal, Some(_)) => Reaction::Offline,
            _ => again,
        }
    }

    /// The SDK's text ping for a session (Swift pings with RFC 6455 ping frames instead).
    fn ping(self, connected: &Value) -> Message {
        match self {
            Sdk::Swift => Message::Ping(Vec::new().into()),
            Sdk::Kotlin => Message::text(
                json!({"type": "health.check", "created_at": connected["created_at"],
                    "me": connected["me"], "connection_id": connected["connection_id"]})
                .to_string(),
            ),
            Sdk::Flutter => Message::text(
                json!({"type": "health.check", "connection_id": connected["connection_id"],
                    "created_at": "2026-01-01T00:00:00.000Z", "is_local": true})
                .to_string(),
            ),
            Sdk::Unity => Message::text(r#"{"Type":"health.check"}"#),
            Sdk::Unreal => Message::text(""),
        }
    }
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
