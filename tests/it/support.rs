//! Test harness: the real gateway (with its embedded upstream) on ephemeral loopback ports, a
//! WebSocket client speaking the SDK's connect protocol, a tiny HTTP client, and metric scraping.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use stream_edge::config::{Config, DEV_API_KEY, DEV_API_SECRET};
use stream_edge::gateway::{self, Running};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestGateway {
    pub running: Option<Running>,
    pub base: String,
    pub admin: String,
}

/// The config tests start from: leeway 0 so expiry is exact, short linger.
pub fn test_config() -> Config {
    let mut c = Config::local_dev();
    c.auth.leeway = Duration::ZERO;
    c.upstream.linger = Duration::from_millis(500);
    c.drain_deadline = Duration::from_secs(5);
    // Every test client shares 127.0.0.1; the per-address limits have tests of their own.
    c.limits.connect_rate_per_ip = 0;
    c.limits.max_connections_per_ip = 0;
    c
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(config: Config) -> Self {
        let running = gateway::start(config).await.expect("gateway starts");
        TestGateway {
            base: format!("http://{}", running.addr),
            admin: format!("http://{}", running.admin_addr),
            running: Some(running),
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub fn embedded_url(&self) -> String {
        format!(
            "http://{}",
            self.running().embedded_addr.expect("embedded upstream")
        )
    }

    /// The embedded upstream's URL with its `/_emulator/*` control routes turned on: the tests
    /// that list or drop upstream connections opt in here (they are off by default).
    pub fn emulator_control_url(&self) -> String {
        self.running()
            .embedded
            .as_ref()
            .expect("embedded upstream")
            .set_control(true);
        self.embedded_url()
    }

    /// Signs a user token with the dev secret; `exp` relative to now in seconds.
    pub fn token(&self, user: &str, exp_in: Option<i64>) -> String {
        sign(DEV_API_SECRET, user, exp_in)
    }

    /// The `/connect` URL the SDK would build.
    pub fn connect_url(&self, json: &str, key: &str, token: &str) -> String {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("json", json)
            .append_pair("api_key", key)
            .append_pair("authorization", token)
            .append_pair("stream-auth-type", "jwt")
            .append_pair("X-Stream-Client", "stream-edge-tests")
            .finish();
        format!("ws://{}/connect?{q}", self.running().addr)
    }

    /// Opens a WebSocket and returns it with its first frame.
    pub async fn ws_raw(&self, url: &str) -> (Ws, serde_json::Value) {
        let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("upgrade accepted");
        let first = next_json(&mut ws).await;
        (ws, first)
    }

    /// Connects `user` with a valid token; returns the socket and its connection id.
    pub async fn connect(&self, user: &str) -> (Ws, String) {
        let json = format!(r#"{{"user_id":"{user}","user_details":{{"id":"{user}"}}}}"#);
        let url = self.connect_url(&json, DEV_API_KEY, &self.token(user, None));
        let (ws, first) = self.ws_raw(&url).await;
        assert_eq!(first["type"], "health.check", "{first}");
        let id = first["connection_id"]
            .as_str()
            .expect("connection_id")
            .to_string();
        (ws, id)
    }

    /// Watches `messaging:{channel}` (creating it with `members`) for session `conn` of `user`;
    /// returns the query response.
    pub async fn watch(
        &self,
        user: &str,
        conn: &str,
        channel: &str,
        members: &[&str],
    ) -> serde_json::Value {
        self.watch_with(user, conn, channel, members, false).await
    }

    /// [`TestGateway::watch`], subscribing to the members' presence too when `presence`.
    pub async fn watch_with(
        &self,
        user: &str,
        conn: &str,
        channel: &str,
        members: &[&str],
        presence: bool,
    ) -> serde_json::Value {
        let tok = self.token(user, None);
        let url = format!(
            "{}/channels/messaging/{channel}/query?user_id={user}&api_key={DEV_API_KEY}&connection_id={conn}",
            self.base
        );
        let body =
            serde_json::json!({"data":{"members":members},"state":true,"watch":true,"presence":presence})
                .to_string();
        let (status, text) = http(
            hyper::Method::POST,
            &url,
            Some(&body),
            &[("authorization", &tok)],
        )
        .await;
        assert!(status.is_success(), "{status} {text}");
        serde_json::from_str(&text).expect("JSON response")
    }

    /// Sends a message to `messaging:{channel}` as `user`.
    pub async fn send(&self, user: &str, channel: &str, text: &str) {
        let tok = self.token(user, None);
        let url = format!(
            "{}/channels/messaging/{channel}/message?user_id={user}&api_key={DEV_API_KEY}",
            self.base
        );
        let body = serde_json::json!({"message":{"text":text}}).to_string();
        let (status, t) = http(
            hyper::Method::POST,
            &url,
            Some(&body),
            &[("authorization", &tok)],
        )
        .await;
        assert!(status.is_success(), "{status} {t}");
    }

    /// Like [`TestGateway::connect`] for an owned user id.
    pub async fn connect_named(&self, user: String) -> (Ws, String) {
        self.connect(&user).await
    }

    /// Current value of a metric series (sum over series matching all `labels`), 0 if absent.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, text) = http(
            hyper::Method::GET,
            &format!("{}/metrics", self.admin),
            None,
            &[],
        )
        .await;
        metric_value(&text, name, labels)
    }

    pub async fn stop(mut self) -> bool {
        let running = self.running.take().expect("running");
        running.shutdown();
        tokio::time::timeout(Duration::from_secs(30), running.join())
            .await
            .expect("drain finishes")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            if !std::thread::panicking() {
                r.assert_no_panics();
            }
        }
    }
}

pub fn sign(secret: &str, user: &str, exp_in: Option<i64>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut claims = serde_json::json!({"user_id": user});
    if let Some(e) = exp_in {
        claims["exp"] = (now + e).into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Next text frame as JSON (skipping control frames), bounded by [`WAIT`]. These helpers take a
/// WebSocket over any stream: over TCP, or over an HTTP/2 stream (`h2_ws`).
pub async fn next_json<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> serde_json::Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame in time")
            .expect("socket open")
            .expect("no socket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("frames are JSON"),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

/// Waits for the close frame, returning its code (or 1006 for a drop without one).
pub async fn close_code<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> u16 {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(f)))) => return f.code.into(),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return 1006,
            Some(Ok(_)) => continue,
        }
    }
}

/// Next `message.new`, skipping other events.
pub async fn next_message<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> serde_json::Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == "message.new" {
            return v;
        }
    }
}

/// Sends the SDK's ping and returns the reply.
pub async fn ping<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> serde_json::Value {
    ws.send(Message::text(
        r#"[{"type":"health.check","client_id":"u--1"}]"#,
    ))
    .await
    .unwrap();
    next_json(ws).await
}

/// One HTTP request; returns status and body text.
pub async fn http(
    method: hyper::Method,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (hyper::StatusCode, String) {
    let (status, _, text) = http_full(method, url, body, headers).await;
    (status, text)
}

pub async fn http_full(
    method: hyper::Method,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (hyper::StatusCode, hyper::HeaderMap, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("response in time")
        .expect("request ok");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Parses Prometheus text for a metric, summing series that match every label pair.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Polls `f` until it returns true, at most [`WAIT`]; for state that has no event to await (a
/// metric, a count behind another process's API).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The environment variable naming Stream's client-side OpenAPI spec.
pub const OPENAPI_ENV: &str = "STREAM_EDGE_OPENAPI";

/// Where Stream's client-side OpenAPI spec is, for the tests that validate against it. The spec is
/// not part of this repository: it is `$STREAM_EDGE_OPENAPI` when set, else
/// `../shared/reference/stream-api/chat-openapi-clientside.yaml` beside the repository (as in CI).
/// `None` when it is not there (a fresh clone): those tests report themselves skipped.
///
/// # Panics
/// `STREAM_EDGE_OPENAPI` is set but names no file: asking for a spec and silently skipping its
/// tests would hide a broken CI setup.
pub fn openapi_spec() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(OPENAPI_ENV).filter(|p| !p.is_empty()) {
        let p = std::path::PathBuf::from(p);
        assert!(
            p.is_file(),
            "{OPENAPI_ENV}={} names no file: fix or unset it",
            p.display()
        );
        return Some(p);
    }
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/stream-api/chat-openapi-clientside.yaml");
    default.is_file().then_some(default)
}

/// True (after printing one line saying so) when the OpenAPI spec is missing and the calling
/// test, named `test`, must return as skipped.
pub fn skip_without_openapi(test: &str) -> bool {
    if openapi_spec().is_some() {
        return false;
    }
    // Straight to the process's stderr: the test harness captures `println!` of passing tests,
    // and a skip must show in the run's output.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: Stream's OpenAPI spec is not at ../shared/reference/stream-api/\
         chat-openapi-clientside.yaml; set {OPENAPI_ENV} to its path to run this test"
    );
    true
}

/// A gateway config whose upstream is `addr`.
pub fn upstream_at(addr: SocketAddr) -> stream_edge::config::Config {
    let mut c = test_config();
    c.upstream.target =
        stream_edge::config::UpstreamTarget::Url(format!("http://{addr}").parse().unwrap());
    c.upstream.request_timeout = Duration::from_secs(5);
    c
}

/// The embedded upstream on its own port.
pub async fn emulator() -> (SocketAddr, tokio_util::sync::CancellationToken) {
    let emu = stream_edge_emulator::Emulator::new(vec![stream_edge_emulator::App {
        api_key: DEV_API_KEY.into(),
        secrets: vec![DEV_API_SECRET.into()],
    }]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(stream_edge_emulator::serve(listener, emu, stop.clone()));
    (addr, stop)
}
