//! A connection's time in hyper: HTTP/1.1 keep-alive with header limits, the router that sends
//! each request to its transport or to the REST proxy, and the hand-back of the stream when the
//! connection goes idle between requests or its next request is a long-poll (to the lean front),
//! or it became a WebSocket (to its session).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;

use super::io::{Prefixed, Switch, WriteBound};
use crate::error::EdgeError;
use crate::http::body::{Gate, Gated};
use crate::http::{cors, json_error, normalize, Body, Io, ReqBody};
use crate::metrics::Limit;
use crate::state::Shared;
use crate::transport::ws::{self, Accepted, Upgrade, Wire};

/// A WebSocket upgrade the router accepted, kept until hyper hands over the connection (hyper
/// answers the 101 from inside its service; the stream comes back only when it is done).
pub(super) type UpgradeSlot = Arc<std::sync::Mutex<Option<Accepted>>>;

/// Serves a connection with hyper (HTTP/1.1 keep-alive, header limits), starting with `read`, the
/// bytes the lean front already took. Returns the stream and what was read of the next request
/// (a long-poll's whole head, or nothing yet when the connection went idle) for the lean front;
/// `None` when the connection is over or became a WebSocket session.
pub(super) async fn serve_hyper<S: Io>(
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
        if e.is_incomplete_message() {
            // The connection went idle (the switch reported end-of-stream) while hyper held part
            // of a pipelined head: the front takes that part back and reads the rest.
            let parts = conn.into_parts();
            let read_buf = parts.read_buf;
            let (stream, captured, pending) = parts.io.into_inner().into_parts();
            if captured.is_some_and(|c| c.is_empty()) {
                let mut next = Vec::with_capacity(read_buf.len() + pending.len());
                next.extend_from_slice(&read_buf);
                next.extend_from_slice(&pending);
                return Some((stream, next));
            }
            tracing::debug!(error = %e, "client connection error");
            return None;
        }
        // hyper's own bounds, hit on a request after the first (the front checks the first).
        let limit = if e.is_timeout() {
            Some(Limit::HeaderTimeout)
        } else if e.is_parse_too_large() {
            Some(Limit::MaxHeaderBytes)
        } else {
            None
        };
        if let Some(limit) = limit {
            shared.metrics.limit_hit(limit);
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
        accepted.start(wire(stream, read), shared);
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

/// The upgraded connection as a WebSocket session's socket: a plain TCP stream with nothing read
/// past the upgrade is taken out of its wrappers, so the hub can write events to it directly
/// ([`Wire::Tcp`]); anything else (TLS, bytes already read) stays a boxed stream.
fn wire<S: Io>(stream: S, read: Bytes) -> Wire {
    let mut slot = Some(stream);
    if read.is_empty() {
        let any: &mut dyn std::any::Any = &mut slot;
        if let Some(tcp) = any
            .downcast_mut::<Option<WriteBound<tokio::net::TcpStream>>>()
            .and_then(Option::take)
        {
            return Wire::tcp(tcp.into_inner());
        }
    }
    match slot {
        Some(s) => Wire::Boxed(Box::new(Prefixed::new(read, s))),
        // Not reached: the slot is emptied only on the return above.
        None => Wire::Boxed(Box::new(tokio::io::empty())),
    }
}

/// `/_emulator/*`, matched as the embedded upstream routes it (its first non-empty segment).
fn is_emulator_control(path: &str) -> bool {
    path.split('/').find(|s| !s.is_empty()) == Some("_emulator")
}

pub(super) async fn route(
    req: Request<ReqBody>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    upgrade: &UpgradeSlot,
) -> Response<Body> {
    let path = normalize(req.uri().path()).to_string();
    shared
        .proxy_warning
        .check(req.headers(), &shared.config.limits, &shared.metrics);
    let is_preflight = req.method() == Method::OPTIONS;
    let mut req = req;
    // With `[cluster]`: a call naming another replica's session is forwarded to it, and the
    // answer to one naming a session here tells convergence where the balancer routes its user.
    let names = match &shared.cluster {
        Some(_) if !is_preflight && path != "/connect" => {
            Some(crate::cluster::Names::of(req.uri().query())).filter(|n| n.id.is_some())
        }
        _ => None,
    };
    let forwarded = req
        .extensions()
        .get::<crate::cluster::Forwarded>()
        .is_some();
    if let (Some(cluster), Some(n)) = (&shared.cluster, &names) {
        req.extensions_mut()
            .insert(crate::cluster::forward::ClientIp(peer.ip()));
        // Boxed: a forwarded call's future would otherwise size every request's.
        match Box::pin(cluster.route(req, n)).await {
            crate::cluster::Routed::Here(r) => req = *r,
            // The owner's answer, CORS and cache headers included.
            crate::cluster::Routed::Answered(mut resp) => {
                cors::decorate(&mut resp);
                crate::http::no_store(&mut resp);
                return resp;
            }
        }
    }
    // Kept for the answer only when the call names a session.
    let cluster = names.as_ref().and(shared.cluster.clone());
    let mut resp = if is_preflight {
        cors::preflight(&req)
    } else if path == "/connect" {
        match ws::upgrade(req, peer, &shared) {
            Upgrade::Accepted(resp, accepted) => {
                *upgrade.lock().unwrap_or_else(|p| p.into_inner()) = Some(accepted);
                resp
            }
            Upgrade::Refused(resp) => resp,
        }
    } else if path == "/longpoll" {
        // Both branches are boxed: inline, every request's future (a held poll included) would be
        // as large as the largest branch.
        // (It tells convergence about the call itself, for the lean front's polls too.)
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
    if let (Some(cluster), Some(id)) = (cluster, names.and_then(|n| n.id)) {
        cluster.settle(&id, forwarded, resp.status());
    }
    cors::decorate(&mut resp);
    // Not on a preflight (browsers cache those by `access-control-max-age`) nor on a 101.
    if !is_preflight && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        crate::http::no_store(&mut resp);
    }
    resp
}

#[cfg(test)]
mod tests {
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
