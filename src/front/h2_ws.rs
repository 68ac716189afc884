//! WebSockets over HTTP/2 (RFC 8441, `http2.websockets`): which CONNECT streams [`super::h2`]
//! routes (only `:protocol = websocket` on `/connect`; any other CONNECT is refused with a Stream
//! error and counted), and the hand-off of an accepted one to the same WebSocket session an
//! HTTP/1.1 upgrade gets, once hyper has sent the 200 and fulfilled the upgrade. The session's
//! stream stays counted against its connection's stream limit while the session lives.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::EdgeError;
use crate::http::{json_error, normalize, Body};
use crate::state::Shared;
use crate::transport::ws::{Accepted, Wire};

/// The answer to a CONNECT that is not a WebSocket on `/connect`; `None` for one that is.
pub(super) fn refuse<B>(req: &Request<B>, shared: &Shared) -> Option<Response<Body>> {
    let websocket = req
        .extensions()
        .get::<hyper::ext::Protocol>()
        .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    let count = |reason| {
        shared
            .metrics
            .bad_input
            .with_label_values(&["ws", reason])
            .inc();
    };
    if !websocket {
        // A plain CONNECT (a tunnel) or another protocol: the gateway is not a proxy.
        count("h2_connect_protocol");
        return Some(json_error(&EdgeError::BadInput(
            "CONNECT is served only as an HTTP/2 extended CONNECT with :protocol websocket on /connect"
                .into(),
        )));
    }
    if normalize(req.uri().path()) != "/connect" {
        count("h2_connect_path");
        return Some(json_error(&EdgeError::NotFound));
    }
    None
}

/// Starts the accepted session once hyper fulfils the upgrade (after the 200 is sent); `keep`
/// (the stream's count in [`super::h2`]) lives as long as the session's stream.
pub(super) fn start<K: Send + Unpin + 'static>(
    upgrade: OnUpgrade,
    accepted: Accepted,
    keep: K,
    shared: Arc<Shared>,
) {
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let io = Held {
                    io: TokioIo::new(upgraded),
                    _keep: keep,
                };
                accepted.start(Wire::Boxed(Box::new(io)), shared);
            }
            // The client reset the stream before the answer went out.
            Err(e) => tracing::debug!(error = %e, "h2 WebSocket upgrade failed"),
        }
    });
}

/// An upgraded h2 stream that keeps `K` (its connection's stream count) until the session drops
/// it.
struct Held<T, K> {
    io: T,
    _keep: K,
}

impl<T: AsyncRead + Unpin, K: Unpin> AsyncRead for Held<T, K> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin, K: Unpin> AsyncWrite for Held<T, K> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
