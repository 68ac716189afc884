//! Opening the gateway's own WebSocket to upstream `/connect` for one user, speaking the SDK's
//! protocol: the same query parameters, a gateway-minted user token (as the `Authorization` header,
//! the Swift SDK's shape, so it is in no URL), and the first frame read as the handshake result.

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::{Upstream, UpstreamError};

/// An open upstream socket.
pub type UpstreamSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer of each upstream WebSocket (one per user). Several events fit in one read; the
/// buffer lives as long as the user has a session, so it is kept small (it grows for a larger
/// frame when one arrives).
const UPSTREAM_READ_BUFFER: usize = 4 * 1024;

/// What upstream's handshake frame told us.
#[derive(Debug)]
pub struct Handshake {
    /// Upstream's connection id, substituted for session ids on REST calls.
    pub connection_id: String,
    /// `me` (OwnUserResponse), relayed verbatim in each session's first frame.
    pub me: Box<RawValue>,
}

#[derive(Deserialize)]
struct First {
    connection_id: Option<String>,
    me: Option<Box<RawValue>>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

/// `X-Stream-Client` the gateway identifies itself with.
pub const CLIENT_ID: &str = concat!("stream-edge-v", env!("CARGO_PKG_VERSION"));

impl Upstream {
    /// Connects for `user_id`, sending `user_details` (raw JSON object) as the connect upsert.
    ///
    /// # Errors
    /// Connect, TLS or handshake failure, timeout, or an error frame from upstream.
    pub async fn connect_ws(
        &self,
        api_key: &str,
        user_id: &str,
        user_details: &RawValue,
        not_before_ms: Option<i64>,
    ) -> Result<(UpstreamSocket, Handshake), UpstreamError> {
        let token = self.user_token(api_key, user_id, not_before_ms)?;
        let payload = format!(
            "{{\"user_id\":{},\"user_details\":{}}}",
            serde_json::Value::from(user_id),
            user_details.get()
        );
        let mut url = self.base.clone();
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| UpstreamError::Protocol("bad upstream scheme".into()))?;
        let path = format!("{}/connect", url.path().trim_end_matches('/'));
        url.set_path(&path);
        // The token travels as the `Authorization` header (as the Swift SDK sends it), never in the
        // URL, which proxies and access logs record.
        url.query_pairs_mut()
            .clear()
            .append_pair("json", &payload)
            .append_pair("api_key", api_key)
            .append_pair("stream-auth-type", "jwt")
            .append_pair("X-Stream-Client", CLIENT_ID);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| UpstreamError::Protocol(scrub(&e.to_string())))?;
        let mut auth = http::HeaderValue::from_str(&token)
            .map_err(|_| UpstreamError::Protocol("minted token is not a header value".into()))?;
        auth.set_sensitive(true);
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, auth);
        request
            .headers_mut()
            .insert("stream-auth-type", http::HeaderValue::from_static("jwt"));

        let config = WebSocketConfig::default()
            .read_buffer_size(UPSTREAM_READ_BUFFER)
            .max_message_size(Some(16 << 20))
            .max_frame_size(Some(16 << 20));
        let budget = self.config.connect_timeout;
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(config),
            true,
            Some(Connector::Rustls(self.tls.clone())),
        );
        let (mut socket, _) = match tokio::time::timeout(budget, connect).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) => return Err(UpstreamError::Connect(scrub(&e.to_string()))),
            Ok(Ok(s)) => s,
        };
        let first = loop {
            match tokio::time::timeout(budget, socket.next()).await {
                Err(_) => return Err(UpstreamError::Timeout),
                Ok(None) => return Err(UpstreamError::Connect("closed during handshake".into())),
                Ok(Some(Err(e))) => return Err(UpstreamError::Connect(e.to_string())),
                Ok(Some(Ok(Message::Text(t)))) => break t,
                Ok(Some(Ok(Message::Close(_)))) => {
                    return Err(UpstreamError::Connect("closed during handshake".into()))
                }
                Ok(Some(Ok(_))) => continue,
            }
        };
        let first: First = serde_json::from_str(first.as_str())
            .map_err(|e| UpstreamError::Protocol(format!("handshake frame: {e}")))?;
        if let Some(err) = first.error {
            return Err(UpstreamError::Rejected {
                code: err.code,
                message: err.message,
            });
        }
        match (first.connection_id, first.me) {
            (Some(connection_id), Some(me)) if !connection_id.is_empty() => {
                Ok((socket, Handshake { connection_id, me }))
            }
            _ => Err(UpstreamError::Protocol(
                "handshake frame lacks connection_id or me".into(),
            )),
        }
    }
}

/// Removes the query string (which carries the token) from a URL-bearing error message.
fn scrub(message: &str) -> String {
    match message.find('?') {
        Some(i) => format!("{}?<redacted>", &message[..i]),
        None => message.to_string(),
    }
}
