//! Client connection I/O of the front door: a stream that first replays bytes already read
//! ([`Prefixed`]), the [`Switch`] that lets a connection move from hyper back to the lean front,
//! and [`WriteBound`], which bounds how long any write waits for a client that stopped reading.
//!
//! How the switch works: hyper serves a request (REST, say). Once that request's body was read to
//! its end and its response body produced to its end (the [`Gate`], told by
//! [`crate::http::body::Gated`] bodies), the next read hyper makes after writing is the start of
//! the next request. hyper also reads in the middle of a request (a body after `100 Continue`,
//! draining an unread body, watching for a close while a response streams), and those reads always
//! pass through. `Switch` looks at what arrives: if it is the head of `GET /longpoll`, it keeps
//! the head and reports end-of-stream, so hyper, idle, finishes cleanly; the caller takes the
//! stream and the head back (`poll_without_shutdown` + `into_parts`) and answers on the lean
//! front. If nothing has arrived yet (a keep-alive connection between requests), it reports
//! end-of-stream at once, with an empty head: the lean front waits for the next request without
//! hyper's buffers (8 KiB each for reading and writing, kept for a connection's whole life). Anything
//! else is handed to hyper unchanged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http::body::Gate;
use crate::metrics::Metrics;

/// A client stream whose writes wait at most `limits.send_timeout_seconds` for the client to take
/// bytes. Every client connection is one (under TLS, the TCP stream is), so the bound holds for
/// every writer: hyper's responses, the lean front's answers, TLS handshakes and WebSocket
/// sessions. A hit is counted in `limit_hits{limit="send_timeout"}` and fails the write, which
/// ends the connection.
pub struct WriteBound<S> {
    io: S,
    budget: Duration,
    /// Running while a write waits; created when one starts waiting, dropped when it progresses.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    metrics: Arc<Metrics>,
}

impl<S> WriteBound<S> {
    pub fn new(io: S, budget: Duration, metrics: Arc<Metrics>) -> Self {
        WriteBound {
            io,
            budget,
            stalled: None,
            metrics,
        }
    }

    /// The stream itself, for a writer that bounds its own waits (a WebSocket on plain TCP).
    pub fn into_inner(self) -> S {
        self.io
    }

    fn bound<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let budget = self.budget;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(budget)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.stalled = None;
        self.metrics.limit_hit(crate::metrics::Limit::SendTimeout);
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client took no bytes within limits.send_timeout_seconds",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteBound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteBound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.bound(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.bound(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.bound(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.bound(cx, r)
    }
}

/// A stream that first yields `prefix`.
pub struct Prefixed<S> {
    prefix: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Bytes, io: S) -> Self {
        Prefixed { prefix, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            let chunk = self.prefix.split_to(n);
            out.put_slice(&chunk);
            if self.prefix.is_empty() {
                // An empty `Bytes` split from a buffer still holds that buffer.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

/// The request-line start that makes [`Switch`] take a connection back.
const LONGPOLL_PREFIXES: [&[u8]; 2] = [b"GET /longpoll", b"GET //longpoll"];

/// The stream hyper serves; see the module docs.
pub struct Switch<S> {
    io: S,
    /// Bytes read (before hyper or by sniffing) that hyper has not consumed yet.
    pending: Bytes,
    /// Set when hyper wrote since it last got data: its next read starts a new request.
    wrote: bool,
    /// Set when hyper flushed after its last write. hyper flushes the stream only once its own
    /// write buffer is empty, so a connection may go idle only then: while a response's rest
    /// still waits for a slow reader, the connection stays with hyper.
    flushed: bool,
    /// Bytes looked at while deciding whether a new request is a long-poll.
    sniff: Vec<u8>,
    /// A complete long-poll head (or none yet, empty, when the connection went idle), kept for
    /// the lean front; hyper sees end-of-stream.
    captured: Option<Vec<u8>>,
    /// Bound on `sniff`: a head larger than this is left to hyper (which refuses it).
    max_head: usize,
    /// Whether hyper is between requests; see the module docs.
    gate: Arc<Gate>,
}

impl<S> Switch<S> {
    pub fn new(io: S, pending: Bytes, max_head: usize, gate: Arc<Gate>) -> Self {
        Switch {
            io,
            pending,
            wrote: false,
            flushed: true,
            sniff: Vec::new(),
            captured: None,
            max_head,
            gate,
        }
    }

    /// The stream, the long-poll head to answer next when the switch captured one, and bytes
    /// read that hyper did not take.
    pub fn into_parts(self) -> (S, Option<Vec<u8>>, Bytes) {
        let pending = if self.sniff.is_empty() {
            self.pending
        } else {
            let mut all = Vec::with_capacity(self.pending.len() + self.sniff.len());
            all.extend_from_slice(&self.pending);
            all.extend_from_slice(&self.sniff);
            Bytes::from(all)
        };
        (self.io, self.captured, pending)
    }
}

/// Whether `b` may still become, or already is, a long-poll request line.
fn longpoll_start(b: &[u8]) -> Option<bool> {
    let mut undecided = false;
    for p in LONGPOLL_PREFIXES {
        let n = b.len().min(p.len());
        if b[..n] == p[..n] {
            if b.len() >= p.len() {
                return Some(true);
            }
            undecided = true;
        }
    }
    if undecided {
        None
    } else {
        Some(false)
    }
}

impl<S: AsyncRead + Unpin> Switch<S> {
    /// Hands buffered bytes to hyper.
    fn give(&mut self, out: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = self.pending.len().min(out.remaining());
        let chunk = self.pending.split_to(n);
        out.put_slice(&chunk);
        if self.pending.is_empty() {
            self.pending = Bytes::new();
        }
        self.wrote = false;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Switch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.captured.is_some() {
            return Poll::Ready(Ok(()));
        }
        if !this.pending.is_empty() {
            return this.give(out);
        }
        if !this.wrote || !this.gate.ready() {
            return Pin::new(&mut this.io).poll_read(cx, out);
        }
        loop {
            this.sniff.reserve(1024);
            let n = match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.sniff)
            {
                // Idle between requests: the connection goes back to the lean front, which waits
                // for the next head without hyper's buffers (about 16 KiB per idle keep-alive
                // connection; issue 20).
                Poll::Pending if this.sniff.is_empty() && this.flushed => {
                    this.captured = Some(Vec::new());
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(n)) => n,
            };
            if n == 0 {
                // End of stream: whatever was sniffed goes to hyper, then the EOF.
                this.pending = Bytes::from(std::mem::take(&mut this.sniff));
                if this.pending.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                return this.give(out);
            }
            let complete = super::head::head_end(&this.sniff).is_some();
            match longpoll_start(&this.sniff) {
                Some(true) if complete => {
                    this.captured = Some(std::mem::take(&mut this.sniff));
                    return Poll::Ready(Ok(()));
                }
                Some(false) => {}
                _ if this.sniff.len() <= this.max_head => continue,
                _ => {}
            }
            this.pending = Bytes::from(std::mem::take(&mut this.sniff));
            return this.give(out);
        }
    }
}

macro_rules! delegate_write {
    ($t:ident, $on_write:expr, $on_flushed:expr) => {
        impl<S: AsyncWrite + Unpin> AsyncWrite for $t<S> {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<std::io::Result<usize>> {
                $on_write(&mut *self);
                Pin::new(&mut self.io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> Poll<std::io::Result<usize>> {
                $on_write(&mut *self);
                Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                let flushed = Pin::new(&mut self.io).poll_flush(cx);
                if matches!(flushed, Poll::Ready(Ok(()))) {
                    $on_flushed(&mut *self);
                }
                flushed
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                Pin::new(&mut self.io).poll_shutdown(cx)
            }
        }
    };
}

delegate_write!(Prefixed, |_: &mut Prefixed<S>| {}, |_: &mut Prefixed<S>| {});
delegate_write!(
    Switch,
    |s: &mut Switch<S>| {
        s.wrote = true;
        s.flushed = false;
    },
    |s: &mut Switch<S>| s.flushed = true
);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn longpoll_start_decides_as_soon_as_it_can() {
        assert_eq!(longpoll_start(b"GE"), None);
        assert_eq!(longpoll_start(b"GET //long"), None);
        assert_eq!(longpoll_start(b"GET /longpoll?x"), Some(true));
        assert_eq!(longpoll_start(b"GET //longpoll?x"), Some(true));
        assert_eq!(longpoll_start(b"POST /channels"), Some(false));
        assert_eq!(longpoll_start(b"GET /channels"), Some(false));
    }

    #[tokio::test]
    async fn after_a_response_a_longpoll_head_is_captured_and_hyper_sees_eof() {
        let (client, server) = tokio::io::duplex(4096);
        let gate = Arc::new(Gate::default());
        let mut sw = Switch::new(
            server,
            Bytes::from_static(b"GET /a HTTP/1.1\r\n\r\n"),
            8192,
            gate.clone(),
        );
        let mut first = [0u8; 64];
        let n = sw.read(&mut first).await.expect("prefix");
        assert_eq!(&first[..n], b"GET /a HTTP/1.1\r\n\r\n");
        gate.start(true);
        gate.response_finished();
        sw.write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .expect("write");
        let (mut c_read, mut c_write) = tokio::io::split(client);
        c_write
            .write_all(b"GET /longpoll?connection_id=1 HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("client");
        let mut rest = [0u8; 64];
        assert_eq!(sw.read(&mut rest).await.expect("eof"), 0);
        let (_, captured, pending) = sw.into_parts();
        assert!(pending.is_empty());
        let head = captured.expect("captured");
        assert!(head.starts_with(b"GET /longpoll?connection_id=1"));
        let mut resp = [0u8; 19];
        c_read.read_exact(&mut resp).await.expect("response");
    }

    #[tokio::test]
    async fn other_requests_pass_through_unchanged() {
        let (mut client, server) = tokio::io::duplex(4096);
        let gate = Arc::new(Gate::default());
        gate.start(true);
        gate.response_finished();
        let mut sw = Switch::new(server, Bytes::new(), 8192, gate);
        sw.write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .expect("write");
        client
            .write_all(b"POST /channels HTTP/1.1\r\n\r\n")
            .await
            .expect("client");
        let mut got = [0u8; 64];
        let n = sw.read(&mut got).await.expect("read");
        assert_eq!(&got[..n], b"POST /channels HTTP/1.1\r\n\r\n");
        assert!(sw.into_parts().1.is_none());
    }

    #[tokio::test]
    async fn a_longpoll_head_inside_an_unfinished_request_passes_through() {
        let (mut client, server) = tokio::io::duplex(4096);
        let gate = Arc::new(Gate::default());
        // A request with a body the handler has not read to its end (say, refused early).
        gate.start(false);
        gate.response_finished();
        let mut sw = Switch::new(server, Bytes::new(), 8192, gate);
        sw.write_all(b"HTTP/1.1 401 Unauthorized\r\n\r\n")
            .await
            .expect("write");
        let smuggled = b"GET /longpoll?connection_id=1 HTTP/1.1\r\n\r\n";
        client.write_all(smuggled).await.expect("client");
        let mut got = [0u8; 64];
        let n = sw.read(&mut got).await.expect("read");
        assert_eq!(&got[..n], smuggled);
        assert!(sw.into_parts().1.is_none());
    }

    #[tokio::test]
    async fn an_idle_connection_goes_back_only_once_its_response_is_flushed() {
        use futures_util::FutureExt as _;
        let (_client, server) = tokio::io::duplex(4096);
        let gate = Arc::new(Gate::default());
        gate.start(true);
        gate.response_finished();
        let mut sw = Switch::new(server, Bytes::new(), 8192, gate);
        sw.write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .expect("write");
        // Written but not flushed (hyper may still hold the response's rest): hyper's read
        // waits on the socket as usual.
        let mut got = [0u8; 64];
        assert!(sw.read(&mut got).now_or_never().is_none(), "still hyper's");
        sw.flush().await.expect("flush");
        // Flushed and nothing arrived: end-of-stream for hyper, an empty head for the front.
        assert_eq!(sw.read(&mut got).await.expect("eof"), 0);
        let (_, captured, pending) = sw.into_parts();
        assert_eq!(captured.as_deref(), Some(&b""[..]));
        assert!(pending.is_empty());
    }
}
