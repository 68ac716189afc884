//! HTTP/2 (opt-in, `[http2]`): a TLS connection whose ALPN chose `h2` (`http2.tls`), or a plain one
//! that opens with the HTTP/2 preface (h2c with prior knowledge, `http2.cleartext`), is served
//! by hyper's HTTP/2 server with edge-sized windows, stream count and send buffer
//! (`config::Http2Config`), through the same router as HTTP/1.1, so REST and long-poll behave the
//! same (a `GET /longpoll` goes straight to its handler, as the router would send it, unless
//! `[cluster]` must route it; see the service below). Why: a browser's tabs then share one
//! connection instead of competing for six HTTP/1.1 connections per host, which long-polls
//! exhaust. WebSockets are offered over HTTP/2 only with
//! `http2.websockets` (extended CONNECT, RFC 8441, advertised; [`super::h2_ws`]); without it
//! browsers keep an HTTP/1.1 connection for `wss:`.
//! The lean long-poll front is HTTP/1.1 only; HTTP/1.1 connections are served as before.
//!
//! hyper enforces `http2.max_concurrent_streams` inside its HTTP/2 layer with no hook, so this
//! module counts the streams of each connection itself, from a request's arrival until its
//! response body is sent or dropped, and counts a limit hit (`h2_max_concurrent_streams`) each
//! time a stream fills the connection: from then on the client must queue (browsers do) or is
//! refused (`REFUSED_STREAM`) until a stream ends.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::body::{Frame, SizeHint};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::http::body::{Gate, Gated};
use crate::http::{Body, Io, ReqBody};
use crate::metrics::{Limit, Metrics};
use crate::state::Shared;

/// One open stream of a connection; dropping it ends the stream's count.
struct StreamGuard(Arc<AtomicU32>);

impl StreamGuard {
    /// Counts a new stream on `open`, and a limit hit when it fills the connection (`max`).
    fn open(open: &Arc<AtomicU32>, max: u32, metrics: &Metrics) -> StreamGuard {
        let now = open.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if now >= max {
            metrics.limit_hit(Limit::H2Streams);
        }
        StreamGuard(open.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its stream counted until it is sent or dropped. It forwards the
/// size hint, so a complete body still gets its `content-length`.
struct Counted {
    body: Body,
    _stream: StreamGuard,
}

impl hyper::body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = crate::upstream::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The stream stays open until its body is sent: the body keeps the guard till then.
fn counted(resp: Response<Body>, guard: StreamGuard) -> Response<Body> {
    resp.map(|body| {
        Counted {
            body,
            _stream: guard,
        }
        .boxed()
    })
}

/// A boxed future, its type erased: the service answers a long-poll and any other request with
/// the same type.
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Serves one HTTP/2 connection until the client closes it, a keep-alive ping goes unanswered, or
/// shutdown (a GOAWAY, then in-flight streams finish).
pub async fn serve<S: Io>(stream: S, peer: SocketAddr, shared: Arc<Shared>) {
    let h2 = &shared.config.http2;
    let limits = &shared.config.limits;
    let svc_shared = shared.clone();
    let open_streams = Arc::new(AtomicU32::new(0));
    let max_streams = h2.max_concurrent_streams;
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = svc_shared.clone();
        let guard = StreamGuard::open(&open_streams, max_streams, &shared.metrics);
        // A long-poll skips the router: its stream task then holds only the poll's small future
        // for the whole hold, not the router's (about 1.8 KiB; issue 20). With `[cluster]` the
        // router decides where a poll belongs, so polls take it too.
        let lp = req.method() == http::Method::GET
            && crate::http::normalize(req.uri().path()) == "/longpoll"
            && shared.cluster.is_none();
        if lp {
            shared
                .proxy_warning
                .check(req.headers(), &shared.config.limits, &shared.metrics);
            // Boxed twice: the outer block then holds only the inner box, not the poll's future.
            let poll = Box::pin(crate::transport::longpoll::handle(req, peer, shared));
            let answer: BoxFuture<Result<Response<Body>, Infallible>> =
                Box::pin(async move { Ok(counted(poll.await, guard)) });
            return answer;
        }
        let routed: BoxFuture<Result<Response<Body>, Infallible>> = Box::pin(async move {
            let mut req = req;
            let mut upgrade = None;
            if req.method() == http::Method::CONNECT {
                if let Some(resp) = super::h2_ws::refuse(&req, &shared) {
                    return Ok(counted(resp, guard));
                }
                upgrade = Some(hyper::upgrade::on(&mut req));
            }
            // The gate is HTTP/1.1's hand-back to the lean front; an h2 stream has none to tell.
            let gate = Arc::new(Gate::default());
            let req = req.map(|b| {
                ReqBody::new(
                    Gated::request(b, gate),
                    &shared.config.limits,
                    shared.metrics.clone(),
                )
            });
            // Filled only by an accepted extended CONNECT (`http2.websockets`): HTTP/1.1's upgrade
            // headers are connection-specific and refused by the h2 layer.
            let slot = super::hyper::UpgradeSlot::default();
            let resp: Response<Body> = super::hyper::route(req, peer, shared.clone(), &slot).await;
            let accepted = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let (Some(accepted), Some(upgrade)) = (accepted, upgrade) {
                // The WebSocket session keeps the stream counted while it lives.
                super::h2_ws::start(upgrade, accepted, guard, shared);
                return Ok(resp);
            }
            Ok::<_, Infallible>(counted(resp, guard))
        });
        routed
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
    if h2.websockets {
        // SETTINGS_ENABLE_CONNECT_PROTOCOL: from here on browsers open `wss:` on this connection
        // and do not fall back to HTTP/1.1 (hence its own flag).
        builder.enable_connect_protocol();
    }
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
