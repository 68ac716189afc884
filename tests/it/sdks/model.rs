//! What each native SDK sends and how it reacts (sdk-wire-shapes.md and the SDK sources it
//! cites): the request line and upgrade headers of its `/connect`, payload encoding, ping shape
//! and cadence, watchdog, when it counts itself connected, and what it does with each error
//! frame and close. [`super::wire`] drives a socket by these rules.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// One SDK second of test time.
pub const UNIT: Duration = Duration::from_millis(100);

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
    pub(super) fn client_header(self) -> Option<&'static str> {
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
    pub(super) fn ping_every(self) -> u32 {
        match self {
            Sdk::Swift => 25,
            Sdk::Kotlin => 11,
            Sdk::Flutter | Sdk::Unreal => 20,
            Sdk::Unity => 29,
        }
    }

    /// (seconds, counts only health checks): the watchdog. Swift's is its 3 s pong timer.
    pub(super) fn watchdog(self) -> (u32, bool) {
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
    pub(super) fn connected_by(self, f: &Value) -> bool {
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
    pub(super) fn on_error(self, f: &Value, connecting: bool) -> Option<Reaction> {
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
    pub(super) fn on_close(self, close: Option<(u16, &str)>) -> Reaction {
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
    pub(super) fn ping(self, connected: &Value) -> Message {
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
