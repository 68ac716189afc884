//! The client listener: accept loop (one task per connection, bounded by a semaphore), HTTP/1.1
//! with upgrades and a header-read timeout, and the router that sends each request to its
//! transport or to the REST proxy. Also the response helpers every layer shares.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::EdgeError;
use crate::gateway::Shared;
use crate::transport::io::{BoxIo, Gate, Gated, Io, Prefixed, ReqBody, Switch, WriteBound};

use crate::upstream::BoxError;

/// Response body used everywhere: full, empty, or streamed from upstream.
pub type Body = BoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON response.
pub fn json(status: http::StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A Stream-shaped JSON error (never an empty body: the SDK reads `code` from it).
pub fn json_error(err: &EdgeError) -> Response<Body> {
    json(err.class().status, err.api_error().to_string())
}

/// Accepts until shutdown; with `tls`, each connection's handshake runs in its own task, bounded by
/// the header timeout.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let limits = &shared.config.limits;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                shared
                    .metrics
                    .limit_hits
                    .with_label_values(&["max_connections"])
                    .inc();
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                    _ = shared.shutdown.cancelled() => return,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(ok) => ok,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shared.shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let Some(slot) = shared.conns_per_ip.admit(peer.ip()) else {
            shared
                .metrics
                .limit_hits
                .with_label_values(&["max_connections_per_ip"])
                .inc();
            // Plain HTTP gets a 429 in Stream's shape; a TLS client (no handshake yet) is closed.
            // The refusal holds its connection permit until it is done (about a second at most).
            if tls.is_none() {
                shared.tasks.spawn(async move {
                    crate::transport::lp_http::refuse(
                        stream,
                        http::StatusCode::TOO_MANY_REQUESTS,
                        9,
                        "too many open connections from this address \
                         (limits.max_connections_per_ip)",
                    )
                    .await;
                    drop(permit);
                });
            }
            continue;
        };
        let stream = WriteBound::new(stream, limits.send_timeout, shared.metrics.clone());
        let conn_shared = shared.clone();
        // Two task types, each sized to its own state: one task for both would make every plain
        // connection (a held poll included) as large as a TLS one, whose handshake and stream
        // state are about 10 KiB.
        match &tls {
            None => shared.tasks.spawn(async move {
                serve_connection(stream, peer, conn_shared).await;
                drop((slot, permit));
            }),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                shared.tasks.spawn(async move {
                    if let Some(s) = Box::pin(handshake(acceptor, stream, &conn_shared)).await {
                        serve_connection(s, peer, conn_shared).await;
                    }
                    drop((slot, permit));
                })
            }
        };
    }
}

/// The TLS handshake, bounded by the header timeout; failures are counted.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: WriteBound<tokio::net::TcpStream>,
    shared: &Shared,
) -> Option<Box<tokio_rustls::server::TlsStream<WriteBound<tokio::net::TcpStream>>>> {
    let budget = shared.config.limits.header_timeout;
    match tokio::time::timeout(budget, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(Box::new(s)),
        Ok(Err(e)) => {
            shared
                .metrics
                .bad_input
                .with_label_values(&["tls", "handshake_failed"])
                .inc();
            tracing::debug!(error = %e, "tls handshake failed");
            None
        }
        Err(_) => {
            shared
                .metrics
                .limit_hits
                .with_label_values(&["tls_handshake_timeout"])
                .inc();
            None
        }
    }
}

/// Every connection starts on the lean long-poll front, which passes other requests to hyper.
async fn serve_connection<S: Io>(stream: S, peer: SocketAddr, shared: Arc<Shared>) {
    crate::transport::lp_http::serve(stream, peer, shared).await;
}

/// A WebSocket upgrade accepted by the router, waiting for hyper to hand over the connection.
pub(crate) type UpgradeSlot = Arc<std::sync::Mutex<Option<crate::transport::ws::Accepted>>>;

/// Serves a connection with hyper (HTTP/1.1 keep-alive, header limits), starting with `read`, the
/// bytes the lean front already took. Returns the stream and the next request's head when the
/// client's next request is a long-poll (the lean front answers it); `None` when the connection
/// is over or became a WebSocket session.
pub(crate) async fn serve_hyper<S: Io>(
    stream: S,
    read: Bytes,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Option<(S, Vec<u8>)> {
    let slot = UpgradeSlot::default();
    let gate = Arc::new(Gate::default());
    let svc_shared = shared.clone();
    let svc_slot = slot.clone();
    let svc_gate = gate.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = svc_shared.clone();
        let slot = svc_slot.clone();
        let gate = svc_gate.clone();
        gate.start(hyper::body::Body::is_end_stream(req.body()));
        let req = req.map(|b| {
            ReqBody::new(
                Gated::request(b, gate.clone()),
                &shared.config.limits,
                shared.metrics.clone(),
            )
        });
        // Boxed: `poll_without_shutdown` needs an `Unpin` connection.
        Box::pin(async move {
            let resp = route(req, peer, shared, &slot).await;
            Ok::<_, Infallible>(resp.map(|b| Gated::response(b, gate)))
        })
    });
    let limits = &shared.config.limits;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    let io = Switch::new(stream, read, limits.max_header_bytes, gate);
    // `poll_without_shutdown` rather than `with_upgrades`: both a WebSocket upgrade and a switch
    // back to the lean front need the stream back from hyper (`into_parts`).
    let mut conn = builder.serve_connection(TokioIo::new(io), svc);
    let done = tokio::select! {
        r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => r,
        _ = shared.shutdown.cancelled() => {
            std::pin::Pin::new(&mut conn).graceful_shutdown();
            std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)).await
        }
    };
    if let Err(e) = done {
        // hyper's own bounds, hit on a request after the first (the front checks the first).
        let limit = if e.is_timeout() {
            Some("header_timeout")
        } else if e.is_parse_too_large() {
            Some("max_header_bytes")
        } else {
            None
        };
        if let Some(limit) = limit {
            shared.metrics.limit_hits.with_label_values(&[limit]).inc();
        }
        tracing::debug!(error = %e, "client connection error");
        return None;
    }
    let parts = conn.into_parts();
    let (mut stream, captured, pending) = parts.io.into_inner().into_parts();
    tracing::trace!(
        read_buf = parts.read_buf.len(),
        captured = captured.is_some(),
        "hyper finished with the connection"
    );

    let accepted = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(accepted) = accepted {
        // Copied, not kept: hyper's read buffer is 8 KiB however little of it is unread.
        let mut read = BytesMut::with_capacity(parts.read_buf.len() + pending.len());
        read.extend_from_slice(&parts.read_buf);
        read.extend_from_slice(&pending);
        let read = if read.is_empty() {
            Bytes::new()
        } else {
            read.freeze()
        };
        let io: BoxIo = Box::new(Prefixed::new(read, stream));
        accepted.start(io, shared);
        return None;
    }
    match captured {
        Some(head) if parts.read_buf.is_empty() => Some((stream, head)),
        _ => {
            let _ = stream.shutdown().await;
            None
        }
    }
}

/// Collapses the leading `//` a trailing-slash `baseURL` produces (stream-protocol.md 1.2).
pub(crate) fn normalize(path: &str) -> &str {
    let trimmed = path.trim_start_matches('/');
    if trimmed.len() + 1 < path.len() {
        &path[path.len() - trimmed.len() - 1..]
    } else {
        path
    }
}

/// `/_emulator/*`, matched as the embedded upstream routes it (its first non-empty segment).
fn is_emulator_control(path: &str) -> bool {
    path.split('/').find(|s| !s.is_empty()) == Some("_emulator")
}

async fn route(
    req: Request<ReqBody>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    upgrade: &UpgradeSlot,
) -> Response<Body> {
    let path = normalize(req.uri().path()).to_string();
    shared
        .proxy_warning
        .check(req.headers(), &shared.config.limits, &shared.metrics);
    let mut resp = if req.method() == Method::OPTIONS {
        crate::rest::cors::preflight(&req)
    } else if path == "/connect" {
        crate::transport::ws::upgrade(req, peer, shared, upgrade)
    } else if path == "/longpoll" {
        // Both branches are boxed: inline, every request's future (a held poll included) would be
        // as large as the largest branch.
        return Box::pin(crate::transport::longpoll::handle(req, peer, shared)).await;
    } else if is_emulator_control(&path) {
        // The embedded upstream's control routes are never reachable through the client port,
        // whatever the upstream: answered like any unknown route.
        json_error(&EdgeError::NotFound)
    } else if shared.shutdown.is_cancelled() {
        json_error(&EdgeError::Draining)
    } else {
        Box::pin(crate::rest::proxy(req, &path, peer, shared)).await
    };
    crate::rest::cors::decorate(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn double_slashes_collapse() {
        assert_eq!(super::normalize("//connect"), "/connect");
        assert_eq!(super::normalize("/channels"), "/channels");
        assert_eq!(super::normalize("///a/b"), "/a/b");
    }

    #[test]
    fn emulator_control_paths_are_recognised_as_upstream_routes_them() {
        for p in ["/_emulator", "/_emulator/connections", "//_emulator//drop"] {
            assert!(super::is_emulator_control(p), "{p}");
        }
        for p in ["/channels", "/users/_emulator", "/_emulatorx"] {
            assert!(!super::is_emulator_control(p), "{p}");
        }
    }
}
