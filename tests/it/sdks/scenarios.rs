//! The journeys every SDK's test runs against a TLS gateway (each SDK file asserts its own
//! SDK's outcome where they differ): connect and stay up past the watchdog while messages flow,
//! refresh after code 40, a bad signature, and recovery from upstream loss, mid-session expiry
//! and drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stream_edge::config::{TlsConfig, DEV_API_KEY, DEV_API_SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wire::{self, units, Client, Reaction, Sdk};
use crate::support::*;
use crate::tls::{tmpdir, Pki};

/// A gateway terminating TLS with a test certificate, its intervals in SDK time ([`wire::UNIT`]).
pub struct Env {
    pub gw: TestGateway,
    pki: Pki,
    dir: std::path::PathBuf,
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Env {
    pub async fn start() -> Env {
        Env::start_with(|_| {}).await
    }

    /// [`Env::start`] with a config change.
    pub async fn start_with(change: impl FnOnce(&mut stream_edge::config::Config)) -> Env {
        let pki = Pki::new();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = tmpdir(&format!("sdk{n}"));
        let (cert, key, _) = pki.leaf();
        std::fs::write(dir.join("cert.pem"), cert).expect("cert");
        std::fs::write(dir.join("key.pem"), key).expect("key");
        let mut cfg = test_config();
        cfg.tls = Some(TlsConfig {
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            reload_interval: Duration::from_secs(60),
        });
        // Stream's 25 s heartbeat and 75 s idle limit, in SDK time.
        cfg.ws.health_interval = units(25);
        cfg.ws.client_idle_timeout = units(75);
        change(&mut cfg);
        let gw = TestGateway::start_with(cfg).await;
        Env { gw, pki, dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.gw.running().addr
    }

    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.pki.client()
    }

    pub async fn connect(&self, sdk: Sdk, user: &str, token: &str) -> Result<Client, Reaction> {
        Client::connect(sdk, self.addr(), self.tls(), user, token).await
    }

    /// One HTTPS request as the SDKs make it (`Authorization` and `stream-auth-type` headers).
    pub async fn https(
        &self,
        method: &str,
        target: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut io = wire::tls(self.addr(), self.tls()).await;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: {token}\r\n\
             stream-auth-type: jwt\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.addr(),
            body.len()
        );
        io.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(WAIT, io.read_to_end(&mut raw))
            .await
            .expect("answer in time");
        let text = String::from_utf8_lossy(&raw);
        let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let json = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (status, json)
    }

    /// Watches `messaging:{channel}` through `client`'s connection, as the SDKs' channel query.
    pub async fn watch(&self, client: &Client, user: &str, channel: &str, members: &[&str]) {
        let target = format!(
            "/channels/messaging/{channel}/query?api_key={DEV_API_KEY}&user_id={user}&connection_id={}",
            client.conn_id
        );
        let body = json!({"data": {"members": members}, "state": true, "watch": true});
        let (status, v) = self.https("POST", &target, &token(user), Some(body)).await;
        assert!((200..300).contains(&status), "{status} {v}");
    }

    pub async fn post(&self, user: &str, channel: &str, text: &str) -> u16 {
        let target = format!("/channels/messaging/{channel}/message?api_key={DEV_API_KEY}");
        let body = json!({"message": {"text": text}});
        self.https("POST", &target, &token(user), Some(body))
            .await
            .0
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn token(user: &str) -> String {
    sign(DEV_API_SECRET, user, None)
}

fn is_message(text: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| e["type"] == "message.new" && e["message"]["text"] == text
}

fn tag(sdk: Sdk) -> String {
    format!("{sdk:?}").to_lowercase()
}

/// Connects, heartbeats in the SDK's own shape, watches a channel and stays connected past the
/// SDK's watchdog while another user's messages flow; every message arrives.
pub async fn busy(sdk: Sdk) {
    let env = Env::start().await;
    let (user, sender, channel) = (
        format!("{}-u", tag(sdk)),
        format!("{}-s", tag(sdk)),
        format!("busy-{}", tag(sdk)),
    );
    let mut c = env
        .connect(sdk, &user, &token(&user))
        .await
        .expect("connected");
    assert!(!c.conn_id.is_empty());
    // Recognised as itself.
    let label = match sdk {
        Sdk::Kotlin => "android".to_string(),
        other => tag(other),
    };
    let seen = env
        .gw
        .metric("stream_edge_ws_dialect_total", &[("dialect", &label)])
        .await;
    assert_eq!(seen, 1.0, "{sdk:?} recognised as {label}");
    env.watch(&c, &user, &channel, &[&user, &sender]).await;
    let first = format!("hello {}", tag(sdk));
    assert_eq!(env.post(&sender, &channel, &first).await, 201);
    c.until(is_message(&first))
        .await
        .expect("message on the watched channel");

    // Another user posts every 2 SDK seconds while the SDK runs past its watchdog.
    let sending = {
        let env_addr = (env.addr(), env.tls());
        let (channel, sender) = (channel.clone(), sender.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let mut io = wire::tls(env_addr.0, env_addr.1.clone()).await;
                let body = json!({"message": {"text": format!("m{i}")}}).to_string();
                let req = format!(
                    "POST /channels/messaging/{channel}/message?api_key={DEV_API_KEY} HTTP/1.1\r\n\
                     Host: x\r\nAuthorization: {}\r\nstream-auth-type: jwt\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    token(&sender),
                    body.len()
                );
                let _ = io.write_all(req.as_bytes()).await;
                let mut sink = Vec::new();
                let _ = io.read_to_end(&mut sink).await;
                tokio::time::sleep(units(2)).await;
            }
        })
    };
    let events = c.run(sdk.watchdog_time(), |_| false).await;
    sending.abort();
    let events = events.unwrap_or_else(|r| panic!("{sdk:?} left a busy session: {r:?}"));
    let messages = events.iter().filter(|e| e["type"] == "message.new").count();
    assert!(messages >= 5, "{sdk:?}: only {messages} messages flowed");
    // Unreal's empty keep-alive wants no answer (an error frame would have ended the run).
    if sdk != Sdk::Unreal {
        assert!(
            c.health_checks >= 1,
            "{sdk:?}: no health check answered its heartbeat"
        );
    }
}

/// An expired token: the SDK refreshes and its next connect succeeds.
pub async fn refresh(sdk: Sdk) {
    let env = Env::start().await;
    let user = format!("{}-exp", tag(sdk));
    let expired = sign(DEV_API_SECRET, &user, Some(-10));
    let r = env.connect(sdk, &user, &expired).await.err();
    assert_eq!(r, Some(Reaction::Reconnect { refresh: true }), "{sdk:?}");
    env.connect(sdk, &user, &token(&user))
        .await
        .expect("connected after refresh");
}

/// What the SDK does with a token signed by the wrong secret (code 43).
pub async fn bad_signature(sdk: Sdk) -> Reaction {
    let env = Env::start().await;
    let user = format!("{}-sig", tag(sdk));
    let forged = sign("not-the-secret", &user, None);
    env.connect(sdk, &user, &forged)
        .await
        .err()
        .expect("refused")
}

/// Connects again after a reaction as the SDK would (a refreshed token when it asks for one,
/// else the same token, then a refresh if that is refused with code 40).
async fn reconnect(env: &Env, sdk: Sdk, user: &str, old: &str, r: Reaction) -> Client {
    let Reaction::Reconnect { refresh } = r else {
        panic!("{sdk:?} does not reconnect promptly: {r:?}");
    };
    let fresh = token(user);
    match env
        .connect(sdk, user, if refresh { &fresh } else { old })
        .await
    {
        Ok(c) => c,
        Err(Reaction::Reconnect { refresh: true }) => env
            .connect(sdk, user, &fresh)
            .await
            .expect("connected with a refreshed token"),
        Err(other) => panic!("{sdk:?} reconnect: {other:?}"),
    }
}

/// Upstream loss, mid-session expiry and drain each make the SDK reconnect at once (never an
/// end it ignores until its watchdog), and the reconnect succeeds.
pub async fn recovery(sdk: Sdk) {
    let env = Env::start().await;
    let user = format!("{}-rec", tag(sdk));
    let channel = format!("rec-{}", tag(sdk));
    let tok = token(&user);

    // Upstream loss.
    let mut c = env.connect(sdk, &user, &tok).await.expect("connected");
    env.watch(&c, &user, &channel, &[&user]).await;
    let emu = env.gw.running().embedded.clone().expect("embedded");
    assert_eq!(emu.drop_connections_of(DEV_API_KEY, &user), 1);
    let r = c.reaction().await;
    let mut c = reconnect(&env, sdk, &user, &tok, r).await;
    env.watch(&c, &user, &channel, &[&user]).await;
    assert_eq!(env.post(&user, &channel, "after loss").await, 201);
    c.until(is_message("after loss")).await.expect("recovered");
    drop(c);

    // Mid-session expiry (leeway 0): the session ends just after `exp`.
    let short = sign(DEV_API_SECRET, &user, Some(2));
    let mut c = env.connect(sdk, &user, &short).await.expect("connected");
    let r = c.reaction().await;
    let c = reconnect(&env, sdk, &user, &short, r).await;
    assert!(!c.conn_id.is_empty());
    drop(c);

    // Drain: reconnect to another replica.
    let draining = Env::start().await;
    let mut c = draining.connect(sdk, &user, &tok).await.expect("connected");
    draining.gw.running().shutdown();
    let r = c.reaction().await;
    let c = reconnect(&env, sdk, &user, &tok, r).await;
    assert!(!c.conn_id.is_empty());
}
