//! `GET /connect`: the WebSocket upgrade. The request is parsed and authenticated before the
//! upgrade, but a refusal is still answered *after* it, as an error frame and close 1000: an HTTP
//! 401 on the upgrade would make the SDK retry forever and never refresh its token
//! (stream-protocol.md 7.1). Over HTTP/2 (`http2.websockets`) the same session starts from an
//! extended CONNECT (RFC 8441): only the handshake differs (no key, 200 instead of 101).

use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::connect::{self, admit_ip, Prepared};
use super::dialect::{self, Dialect, Hints};
pub use super::wire::Wire;
use crate::error::EdgeError;
use crate::http::{empty, json_error, Body, ReqBody};
use crate::state::Shared;

/// How the client asked for the WebSocket.
enum Handshake {
    /// HTTP/1.1 `GET` + `Upgrade: websocket`, answered 101 with this `Sec-WebSocket-Accept`.
    Http1(String),
    /// HTTP/2 extended CONNECT with `:protocol = websocket` (RFC 8441 section 4), answered 200;
    /// the key and accept exchange does not exist there (section 5).
    Http2,
}

fn handshake(req: &Request<ReqBody>) -> Option<Handshake> {
    if req.method() != http::Method::CONNECT {
        return is_upgrade(req).map(Handshake::Http1);
    }
    // hyper sets the extension only on HTTP/2 with extended CONNECT advertised
    // (`http2.websockets`); `front::h2` refuses any other protocol before routing.
    let protocol = req.extensions().get::<hyper::ext::Protocol>()?;
    let version = req.headers().get(header::SEC_WEBSOCKET_VERSION);
    (protocol.as_str().eq_ignore_ascii_case("websocket")
        && version.map(|v| v.as_bytes()) == Some(b"13"))
    .then_some(Handshake::Http2)
}

fn is_upgrade(req: &Request<ReqBody>) -> Option<String> {
    let has = |name: header::HeaderName, want: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
    };
    if !(has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")) {
        return None;
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return None;
    }
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?;
    Some(derive_accept_key(key.as_bytes()))
}

/// An accepted upgrade: the connect's outcome, to be served once hyper hands over the stream.
pub struct Accepted {
    prepared: Result<Prepared, EdgeError>,
    dialect: Dialect,
}

impl Accepted {
    /// Starts the session task on the upgraded stream.
    pub fn start(self, wire: Wire, shared: Arc<Shared>) {
        let pending = Box::new(super::ws_session::Pending {
            wire,
            prepared: self.prepared,
            dialect: self.dialect,
        });
        shared
            .tasks
            .spawn(super::ws_session::run(pending, shared.clone()));
    }
}

/// What `/connect` answered.
pub enum Upgrade {
    /// The 101 answer and the accepted connect, which the connection task starts once hyper hands
    /// over the stream (a refused connect is answered on the socket, after the upgrade).
    Accepted(Response<Body>, Accepted),
    /// Not a WebSocket upgrade at all, or WebSocket disabled: a plain HTTP error.
    Refused(Response<Body>),
}

/// Handles `/connect`.
pub fn upgrade(req: Request<ReqBody>, peer: std::net::SocketAddr, shared: &Shared) -> Upgrade {
    let Some(handshake) = handshake(&req) else {
        shared
            .metrics
            .bad_input
            .with_label_values(&["ws", "not_upgrade"])
            .inc();
        return Upgrade::Refused(json_error(&EdgeError::BadInput(
            "/connect expects a WebSocket upgrade (GET with Upgrade: websocket, or an HTTP/2 extended CONNECT; version 13)".into(),
        )));
    };
    if !shared.config.ws.enabled {
        shared
            .metrics
            .connect_rejected
            .with_label_values(&["ws", "ws_disabled"])
            .inc();
        let mut resp = json_error(&EdgeError::BadInput(
            "WebSocket transport is disabled on this gateway; use long-poll".into(),
        ));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        return Upgrade::Refused(resp);
    }
    let prepared = admit(&req, peer, shared).and_then(|()| prepare(&req, shared));
    let dialect = detect(&req);
    shared
        .metrics
        .ws_dialects
        .with_label_values(&[dialect.label()])
        .inc();
    let mut resp = match handshake {
        Handshake::Http1(accept) => Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept),
        Handshake::Http2 => {
            shared.metrics.ws_h2_sessions.inc();
            // A successful CONNECT answer has no body (hyper resets the stream otherwise).
            Response::builder().status(StatusCode::OK)
        }
    };
    if offers_wss(&req) {
        // Unreal asks for the `wss` subprotocol; a client that offers one may fail a handshake
        // that selects none. It is the only one ever selected (the frames are the same).
        resp = resp.header(header::SEC_WEBSOCKET_PROTOCOL, "wss");
    }
    match resp.body(empty()) {
        Ok(resp) => Upgrade::Accepted(resp, Accepted { prepared, dialect }),
        Err(_) => Upgrade::Refused(json_error(&EdgeError::NotFound)),
    }
}

/// The per-client connect rate limit for an upgrade (its client address from the headers).
///
/// # Errors
/// `RateLimited` (code 9; on WS a retryable close 1013) when the client is over its rate.
fn admit<B>(
    req: &Request<B>,
    peer: std::net::SocketAddr,
    shared: &Shared,
) -> Result<(), EdgeError> {
    let ip = crate::limits::client_ip(peer, req.headers(), &shared.config.limits.trusted_proxies);
    admit_ip(ip, shared)
}

fn offers_wss<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim() == "wss"))
}

/// The client's SDK, from the upgrade's headers and query (see [`dialect::detect`]).
fn detect<B>(req: &Request<B>) -> Dialect {
    let headers = req.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut ua_query = None;
    let mut json = None;
    let mut auth_query = false;
    for (k, v) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*k {
            "X-Stream-Client" | "x-stream-client" => ua_query = Some(v),
            "json" => json = Some(v),
            "authorization" => auth_query |= !v.is_empty(),
            _ => {}
        }
    }
    dialect::detect(&Hints {
        x_stream_client: header("x-stream-client").or(ua_query.as_deref()),
        ws_protocol: header("sec-websocket-protocol"),
        auth_header: header("authorization").is_some_and(|t| !t.is_empty()),
        auth_query,
        json: json.as_deref(),
    })
}

fn prepare(req: &Request<ReqBody>, shared: &Shared) -> Result<Prepared, EdgeError> {
    if shared.shutdown.is_cancelled() {
        return Err(EdgeError::Draining);
    }
    // The Swift SDK (and this gateway, when it is another gateway's upstream) sends the token as
    // the `Authorization` header rather than in the query; a query value wins.
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    connect::prepare(
        req.uri().query().unwrap_or(""),
        header("authorization"),
        header("stream-auth-type"),
        shared,
    )
}
