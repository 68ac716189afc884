//! HTTP/2 (opt-in, `[http2]`): a TLS connection whose ALPN chose `h2` (`http2.tls`), or a plain one
//! that opens with the HTTP/2 preface (h2c with prior knowledge, `http2.cleartext`), is served
//! by hyper's HTTP/2 server with edge-sized windows, stream count and send buffer
//! (`config::Http2Config`), through the same router as HTTP/1.1, so REST and long-poll behave the
//! same. Why: a browser's tabs then share one connection instead of competing for six HTTP/1.1
//! connections per host, which long-polls exhaust. WebSockets are not offered over HTTP/2 (no
//! extended CONNECT, RFC 8441, is advertised), so browsers keep an HTTP/1.1 connection for `wss:`.
//! The lean long-poll front is HTTP/1.1 only; HTTP/1.1 connections are served as before.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::http::body::{Gate, Gated};
use crate::http::{Body, Io, ReqBody};
use crate::state::Shared;

/// Serves one HTTP/2 connection until the client closes it, a keep-alive ping goes unanswered, or
/// shutdown (a GOAWAY, then in-flight streams finish).
pub async fn serve<S: Io>(stream: S, peer: SocketAddr, shared: Arc<Shared>) {
    let h2 = &shared.config.http2;
    let limits = &shared.config.limits;
    let svc_shared = shared.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = svc_shared.clone();
        async move {
            // The gate is HTTP/1.1's hand-back to the lean front; an h2 stream has none to tell.
            let gate = Arc::new(Gate::default());
            let req = req.map(|b| {
                ReqBody::new(
                    Gated::request(b, gate),
                    &shared.config.limits,
                    shared.metrics.clone(),
                )
            });
            // A WebSocket upgrade cannot be asked for over h2 (its headers are connection-specific
            // and refused by the h2 layer), so nothing is ever put in this slot.
            let slot = super::hyper::UpgradeSlot::default();
            let resp: Response<Body> = super::hyper::route(req, peer, shared, &slot).await;
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(h2.max_concurrent_streams)
        .initial_stream_window_size(h2.stream_window_bytes)
        .initial_connection_window_size(h2.connection_window_bytes)
        .max_send_buf_size(h2.max_send_buffer_bytes)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(h2.keepalive_interval);
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
        // An unanswered keep-alive ping ends here too (`is_timeout`).
        tracing::debug!(error = %e, timeout = e.is_timeout(), "h2 client connection error");
    }
}
