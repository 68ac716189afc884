//! The peer listener (`cluster.peer_listen`): calls other replicas forwarded here because this
//! replica owns their session, over cleartext HTTP/2 (each replica's forwarded calls, held polls
//! included, share one connection). Each is checked for a replica's signature
//! ([`crate::cluster::forward::verify`]), marked [`Forwarded`], and served by the same router as
//! the client port, so the owner re-checks the token and the session's ownership exactly as for a
//! direct call. WebSockets are never forwarded. One task per connection, bounded by
//! `cluster.max_peer_connections`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::cluster::forward::{verify, CLIENT_IP, SIGNATURE};
use crate::cluster::{Cluster, Forwarded};
use crate::error::EdgeError;
use crate::http::body::{Gate, Gated};
use crate::http::{json_error, normalize, Body, ReqBody};
use crate::metrics::Limit;
use crate::state::Shared;

/// Accepts peer connections until shutdown.
pub async fn serve(listener: TcpListener, cluster: Arc<Cluster>, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(cluster.config.max_peer_connections));
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                shared.metrics.limit_hit(Limit::PeerConnections);
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
                    tracing::warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shared.shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        shared.tasks.clone().spawn(async move {
            serve_connection(stream, peer, shared).await;
            drop(permit);
        });
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let svc_shared = shared.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = svc_shared.clone();
        async move { Ok::<_, Infallible>(handle(req, peer, shared).await) }
    });
    let limits = &shared.config.limits;
    let streams = shared
        .cluster
        .as_ref()
        .map_or(1, |c| c.config.max_forwards_in_flight);
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        // A peer forwards at most this many calls at once.
        .max_concurrent_streams(u32::try_from(streams).unwrap_or(u32::MAX))
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(shared.config.http2.keepalive_interval);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let done = tokio::select! {
        r = conn.as_mut() => r,
        _ = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = done {
        tracing::debug!(error = %e, "peer connection error");
    }
}

async fn handle(req: Request<Incoming>, peer: SocketAddr, shared: Arc<Shared>) -> Response<Body> {
    let m = &shared.metrics;
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    // Verified with the keys of the app the call names alone: one app's secret never vouches
    // for a call about another app's session.
    let app = crate::cluster::Names::of(req.uri().query()).app;
    let signed = req
        .headers()
        .get(SIGNATURE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            verify(
                &shared.hubs.ids().peer_keys(app.as_deref()),
                v,
                req.method().as_str(),
                target,
            )
        });
    if !signed {
        m.bad_input
            .with_label_values(&["peer", "bad_signature"])
            .inc();
        tracing::warn!(
            "peer listener: a call not signed by a replica (clock skew, or secrets out of step)"
        );
        // Code 46, which the forwarding replica relays: the SDK reconnects and recovers, rather
        // than treating another error as fatal and leaving the tab deaf.
        return json_error(&EdgeError::ConnectionNotFound);
    }
    if normalize(req.uri().path()) == "/connect" {
        return json_error(&EdgeError::NotFound);
    }
    m.forwarded_received.inc();
    // The address the forwarding replica took the call from, so client-address rules (trusted
    // proxies, per-address limits) apply as if it had come here directly.
    let client = req
        .headers()
        .get(CLIENT_IP)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<IpAddr>().ok())
        .map_or(peer, |ip| SocketAddr::new(ip, 0));
    let gate = Arc::new(Gate::default());
    let mut req = req.map(|b| {
        ReqBody::new(
            Gated::request(b, gate),
            &shared.config.limits,
            shared.metrics.clone(),
        )
    });
    req.headers_mut().remove(SIGNATURE);
    req.headers_mut().remove(CLIENT_IP);
    req.extensions_mut().insert(Forwarded);
    let slot = super::hyper::UpgradeSlot::default();
    super::hyper::route(req, client, shared, &slot).await
}
