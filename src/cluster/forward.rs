//! Forwarding a call to the replica that owns its session, and checking that a call on the peer
//! listener came from a replica.
//!
//! The call goes over cleartext HTTP/2 (prior knowledge) to the owner's peer listener, so a
//! replica's forwarded calls, held polls included, share one connection per owner; it goes as it
//! came: method, path and query, headers (the client's token included: the owner re-checks it),
//! and the body, streamed (never buffered here) and bounded by `limits.max_body_bytes`. Two headers are added: [`SIGNATURE`], an HMAC-SHA256 over a timestamp, the method and
//! the path and query, keyed from the app secret (`session::id::PeerKey`); and [`CLIENT_IP`]. The
//! body is not signed: the signature proves the caller is a replica, and the peer listener grants
//! a caller nothing the client port does not, beyond marking the call forwarded (never forwarded
//! again; a convergence hint), while the owner re-checks the token as for a direct call.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, HeaderMap, HeaderValue, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::config::ClusterConfig;
use crate::error::EdgeError;
use crate::http::{Body, ReqBody};
use crate::metrics::{Limit, Metrics};
use crate::session::id::PeerKey;

/// The peer signature header: `<unix seconds>.<base64url HMAC>`.
pub const SIGNATURE: &str = "x-stream-edge-peer";
/// The client's address as the forwarding replica saw it (trusted only with a valid signature).
pub const CLIENT_IP: &str = "x-stream-edge-client-ip";
/// How far a signature's timestamp may be from this replica's clock (replays and skew).
const MAX_SKEW_SECS: u64 = 30;

/// Headers that describe one hop's connection, never passed on (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac(key: &PeerKey, ts: u64, method: &str, target: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.0)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(format!("{ts}\n{method}\n{target}").as_bytes());
    m
}

/// The signature header value for a call.
pub fn sign(key: &PeerKey, ts: u64, method: &str, target: &str) -> String {
    let tag = mac(key, ts, method, target).finalize().into_bytes();
    format!(
        "{ts}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
    )
}

/// Whether `value` signs this call with one of `keys`, within the allowed clock skew.
pub fn verify(keys: &[PeerKey], value: &str, method: &str, target: &str) -> bool {
    let Some((ts, tag)) = value.split_once('.') else {
        return false;
    };
    let (Ok(ts), Ok(tag)) = (
        ts.parse::<u64>(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tag),
    ) else {
        return false;
    };
    if now_secs().abs_diff(ts) > MAX_SKEW_SECS {
        return false;
    }
    keys.iter()
        .any(|k| mac(k, ts, method, target).verify_slice(&tag).is_ok())
}

/// Sends calls to their owners.
/// A forwarded request's body: the client's, streamed and bounded.
type FwdBody = UnsyncBoxBody<Bytes, crate::upstream::BoxError>;

pub struct Forwarder {
    client: Client<HttpConnector, FwdBody>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    pub fn new(config: &ClusterConfig, metrics: Arc<Metrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Forwarder {
            client,
            permits: Arc::new(Semaphore::new(config.max_forwards_in_flight)),
            timeout: config.forward_timeout,
            metrics,
        }
    }

    fn count(&self, result: &str) {
        self.metrics.forwarded.with_label_values(&[result]).inc();
    }

    /// Forwards `req` to the replica at `owner`; its answer is returned as it came.
    ///
    /// # Errors
    /// Over `cluster.max_forwards_in_flight` (429, code 9), a body over `limits.max_body_bytes`
    /// (413) or broken (400), the owner gone (code 46: the SDK reconnects), or the owner failing
    /// (502, code -1) or too slow (504, code 23).
    pub async fn forward(
        &self,
        req: Request<ReqBody>,
        owner: SocketAddrV4,
        key: &PeerKey,
        max_body: usize,
    ) -> Result<Response<Body>, EdgeError> {
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.limit_hit(Limit::ForwardsInFlight);
            self.count("busy");
            return Err(EdgeError::RateLimited(
                "too many calls forwarded to other replicas (cluster.max_forwards_in_flight)"
                    .into(),
            ));
        };
        let (mut parts, body) = req.into_parts();
        let body: FwdBody = Limited::new(body, max_body).boxed_unsync();
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let client_ip = parts.extensions.get::<ClientIp>().map(|c| c.0);
        strip_hop_by_hop(&mut parts.headers);
        let signature = sign(key, now_secs(), parts.method.as_str(), &target);
        let headers = &mut parts.headers;
        if let Ok(v) = HeaderValue::from_str(&signature) {
            headers.insert(SIGNATURE, v);
        }
        if let Some(Ok(v)) = client_ip.map(|ip| HeaderValue::from_str(&ip.to_string())) {
            headers.insert(CLIENT_IP, v);
        }
        parts.uri = match format!("http://{owner}{target}").parse() {
            Ok(u) => u,
            Err(_) => return Err(EdgeError::BadInput("request target does not parse".into())),
        };
        parts.version = http::Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        let out = Request::from_parts(parts, body);
        match tokio::time::timeout(self.timeout, self.client.request(out)).await {
            Ok(Ok(resp)) => {
                self.count("ok");
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let body = body.map_err(crate::upstream::BoxError::from).boxed();
                Ok(Response::from_parts(parts, body))
            }
            Ok(Err(e)) if e.is_connect() => {
                // The owner is gone (killed, or scaled down and its address not yet reused): the
                // session is lost, and code 46 makes the SDK reconnect and recover.
                self.count("owner_gone");
                tracing::debug!(owner = %owner, error = %e, "session owner unreachable");
                Err(EdgeError::ConnectionNotFound)
            }
            Ok(Err(e)) => {
                self.count("error");
                // The client's body broke or ran over the limit while it streamed: its error.
                if let Some(client) = client_side(&e) {
                    return Err(client);
                }
                tracing::warn!(owner = %owner, error = %e, "forwarding to the session owner failed");
                Err(EdgeError::UpstreamUnavailable(
                    "the replica that holds this session did not answer".into(),
                ))
            }
            Err(_) => {
                self.count("error");
                tracing::warn!(owner = %owner, "forwarding to the session owner timed out");
                Err(EdgeError::UpstreamTimeout)
            }
        }
    }
}

/// The client's part in a failed forward: its body broken, or over `max_body`.
fn client_side(e: &(dyn std::error::Error + 'static)) -> Option<EdgeError> {
    if let Some(c) = crate::http::body::ClientBodyError::find(e) {
        return Some(c.into());
    }
    std::iter::successors(Some(e), |err| err.source())
        .any(|err| err.is::<LengthLimitError>())
        .then(|| EdgeError::PayloadTooLarge("body over the limits.max_body_bytes limit".into()))
}

/// The client's address, put on a request by the front for [`Forwarder::forward`].
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub std::net::IpAddr);

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Names listed in `Connection` are hop-by-hop too.
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(listed.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_same_call_and_key() {
        let k = PeerKey([7; 32]);
        let other = PeerKey([8; 32]);
        let now = now_secs();
        let s = sign(&k, now, "GET", "/longpoll?connection_id=x");
        assert!(verify(
            &[other.clone(), k.clone()],
            &s,
            "GET",
            "/longpoll?connection_id=x"
        ));
        assert!(!verify(&[other], &s, "GET", "/longpoll?connection_id=x"));
        assert!(!verify(
            std::slice::from_ref(&k),
            &s,
            "POST",
            "/longpoll?connection_id=x"
        ));
        assert!(!verify(
            std::slice::from_ref(&k),
            &s,
            "GET",
            "/longpoll?connection_id=y"
        ));
        let old = sign(&k, now - 120, "GET", "/");
        assert!(
            !verify(std::slice::from_ref(&k), &old, "GET", "/"),
            "outside the skew window"
        );
        for bad in ["", ".", "1.", "x.y", "1.!!!"] {
            assert!(!verify(std::slice::from_ref(&k), bad, "GET", "/"), "{bad}");
        }
    }

    #[test]
    fn hop_by_hop_headers_are_not_passed_on() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("authorization", HeaderValue::from_static("t"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("authorization"));
    }
}
