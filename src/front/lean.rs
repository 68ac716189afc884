//! A lean HTTP/1.1 front for `GET /longpoll`, tried on every plain connection before hyper.
//!
//! Why: a held poll is idle for up to 20 s, and hyper keeps about 16 KiB of fixed per-connection
//! buffers (an 8 KiB header write buffer and a read buffer that starts at 8 KiB, with no option to
//! shrink them) for the whole hold. Here a request head is read into a small buffer, parsed with
//! `httparse`, reduced to the few values long-poll needs, and the buffer is freed before the poll
//! is held; the response is written directly. Measured by the benchmark's long-poll scenario.
//!
//! A connection that opens with the HTTP/2 preface goes to [`super::h2`] when `http2.cleartext` is
//! on (h2c with prior knowledge).
//!
//! A request that is anything else (another path or method, a body, an upgrade, pipelined bytes,
//! a head that does not parse or is too large) goes to hyper with the bytes already read (an
//! Unreal `/connect` target's raw JSON percent-encoded first, see
//! [`super::head::lenient_connect_target`]); hyper
//! answers errors in its own well-tested way. When hyper is done with a request and the next one
//! has not arrived yet, or is a long-poll, the connection comes back here (see
//! [`super::io::Switch`]), so a browser's pooled connection that carried a REST call keeps none of
//! hyper's buffers while it idles or through its next held poll.

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::head::{head_end, lenient_connect_target, parse_head};
use crate::http::{Body, Io};
use crate::state::Shared;
use crate::transport::longpoll::{self, Held, LpHead, Step};

/// Bytes read per syscall while a head arrives; a poll's head (token, SDK headers, browser
/// headers) is usually 0.5–1.5 KiB.
const READ_CHUNK: usize = 1024;

/// The start of the HTTP/2 connection preface (RFC 9113 3.4), which reads as a request head
/// `PRI * HTTP/2.0` followed by `SM`.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// What the head of a request asks for.
enum Head {
    /// A long-poll request this module answers.
    LongPoll {
        head: LpHead,
        keep_alive: bool,
        http10: bool,
    },
    /// Anything else: hyper takes the connection.
    Other,
}

/// A client connection between requests.
struct Conn<S> {
    /// Taken while hyper serves the connection.
    io: Option<S>,
    /// Bytes of the next request head already read.
    buf: Vec<u8>,
    /// Only a connection's first bytes may be the HTTP/2 preface.
    first: bool,
}

/// Where a request left its connection.
enum Served {
    /// Answered; the connection stays open for the next request.
    Next,
    /// A poll to hold, and how its answer must treat the connection.
    Hold {
        held: Held,
        keep_alive: bool,
        http10: bool,
    },
    /// The connection is over (closed, refused, upgraded, or given to HTTP/2).
    Done,
}

/// Serves a client connection: long-poll requests here, everything else through hyper, until the
/// client closes, the connection idles past the header timeout, or it is upgraded.
///
/// A held poll is all this task keeps for up to 20 s, so everything else a request needs
/// (reading and parsing its head, the connect, hyper) lives in [`serve_one`]'s boxed future, which
/// is freed before the hold (issue 20: memory per held poll).
///
/// Not an `async fn`: its arguments would be stored twice in the task (as the future's captures
/// and as its locals); the block below uses its captures in place.
pub fn serve<S: Io>(
    io: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> impl std::future::Future<Output = ()> + Send {
    let mut conn = Conn {
        io: Some(io),
        buf: Vec::new(),
        first: true,
    };
    async move {
        loop {
            // Boxed in a statement of its own: a temporary future in the awaiting statement would
            // keep its space in this task's state.
            let one = Box::pin(serve_one(&mut conn, peer, &shared));
            let (held, keep_alive, http10) = match one.await {
                Served::Next => continue,
                Served::Done => return,
                Served::Hold {
                    held,
                    keep_alive,
                    http10,
                } => (held, keep_alive, http10),
            };
            let Some(io) = conn.io.as_mut() else {
                return;
            };
            // While it is held, the socket is watched: a client that goes away ends the poll (its
            // events stay queued for the next one), and bytes it sends early are kept for the next
            // head, up to the head limit.
            let buf = &mut conn.buf;
            let max = shared.config.limits.max_header_bytes;
            let end = held
                .ticket
                .hold(&shared.config.longpoll, |cx| watch(io, buf, max, cx))
                .await;
            let Some(end) = end else {
                return;
            };
            let resp = held.finish(end, &shared);
            // Boxed: the response's parts and its writing are not part of a held poll's state.
            let reply = Box::pin(reply(io, resp, keep_alive, http10, &shared));
            if !reply.await {
                return;
            }
        }
    }
}

/// Reads what a client sends while its poll is held, into `buf` (up to `max` bytes): ready when
/// the client closed or the read failed.
fn watch<S: Io>(
    io: &mut S,
    buf: &mut Vec<u8>,
    max: usize,
    cx: &mut std::task::Context<'_>,
) -> Poll<()> {
    // The read buffer lives on the stack only while the hold is polled.
    let mut peek = [0u8; 256];
    while buf.len() < max {
        let mut rb = ReadBuf::new(&mut peek);
        match Pin::new(&mut *io).poll_read(cx, &mut rb) {
            Poll::Pending => break,
            Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                buf.extend_from_slice(rb.filled());
            }
            Poll::Ready(_) => return Poll::Ready(()),
        }
    }
    Poll::Pending
}

/// Writes an answer; whether the connection stays open for another request.
async fn reply<S: Io>(
    io: &mut S,
    resp: http::Response<Body>,
    keep_alive: bool,
    http10: bool,
    shared: &Shared,
) -> bool {
    let keep_alive = keep_alive && !shared.shutdown.is_cancelled();
    let conn = match (keep_alive, http10) {
        (false, _) => Some("close"),
        (true, true) => Some("keep-alive"),
        (true, false) => None,
    };
    if respond(io, resp, conn).await.is_err() || !keep_alive {
        let _ = io.shutdown().await;
        return false;
    }
    true
}

/// Reads the next request head and serves it: a long-poll here (a poll is returned to be held),
/// anything else through hyper or HTTP/2.
async fn serve_one<S: Io>(conn: &mut Conn<S>, peer: SocketAddr, shared: &Arc<Shared>) -> Served {
    let limits = &shared.config.limits;
    let Some(mut io) = conn.io.take() else {
        return Served::Done;
    };
    let mut buf = std::mem::take(&mut conn.buf);
    if head_end(&buf).is_none() {
        let read = tokio::select! {
            r = tokio::time::timeout(limits.header_timeout, read_head(&mut io, &mut buf, limits.max_header_bytes)) => r,
            _ = shared.shutdown.cancelled() => return Served::Done,
        };
        match read {
            Ok(Ok(true)) => {}
            Ok(_) => return Served::Done,
            // Idle past the header timeout: a keep-alive connection nobody reuses closes
            // quietly; a head begun and not finished (slowloris) is counted.
            Err(_) => {
                if !buf.is_empty() {
                    shared
                        .metrics
                        .limit_hit(crate::metrics::Limit::HeaderTimeout);
                }
                return Served::Done;
            }
        }
    }
    if head_end(&buf).unwrap_or(buf.len()) > limits.max_header_bytes {
        // Refused here: handed to hyper whole, a head over the limit would parse.
        refuse_large_head(io, shared).await;
        return Served::Done;
    }
    let fresh = std::mem::replace(&mut conn.first, false);
    let (head, keep_alive, http10) = match parse(&buf, peer, shared) {
        Head::LongPoll {
            head,
            keep_alive,
            http10,
        } => (head, keep_alive, http10),
        Head::Other if fresh && buf.starts_with(H2_PREFACE) && shared.config.http2.cleartext => {
            // h2c with prior knowledge (`http2.cleartext`): an ingress speaking HTTP/2 to us.
            let io = super::io::Prefixed::new(Bytes::from(buf), io);
            Box::pin(super::h2::serve(io, peer, shared.clone())).await;
            return Served::Done;
        }
        Head::Other => {
            if let Some(fixed) = lenient_connect_target(&buf) {
                // Unreal's raw JSON target, percent-encoded; the escapes must still fit.
                if head_end(&fixed).unwrap_or(fixed.len()) > limits.max_header_bytes {
                    refuse_large_head(io, shared).await;
                    return Served::Done;
                }
                buf = fixed;
            }
            let read = Bytes::from(buf);
            let back = Box::pin(super::hyper::serve_hyper(io, read, peer, shared.clone()));
            return match back.await {
                Some((io, next)) => {
                    conn.io = Some(io);
                    conn.buf = next;
                    Served::Next
                }
                None => Served::Done,
            };
        }
    };
    // The poll may be held for 20 s: none of the request's bytes are kept while it is.
    drop(buf);
    // A connect is watched like a held poll: a client that leaves mid-connect ends it.
    let max = limits.max_header_bytes;
    let mut start = std::pin::pin!(longpoll::start(head, shared.clone()));
    let step = std::future::poll_fn(|cx| {
        if let Poll::Ready(step) = start.as_mut().poll(cx) {
            return Poll::Ready(Some(step));
        }
        watch(&mut io, &mut conn.buf, max, cx).map(|()| None)
    })
    .await;
    let Some(step) = step else {
        return Served::Done;
    };
    let served = match step {
        Step::Answer(resp) => {
            if reply(&mut io, resp, keep_alive, http10, shared).await {
                Served::Next
            } else {
                Served::Done
            }
        }
        Step::Hold(held) => Served::Hold {
            held,
            keep_alive,
            http10,
        },
    };
    conn.io = Some(io);
    served
}

/// Writes a long-poll answer.
async fn respond<S: AsyncWrite + Unpin>(
    io: &mut S,
    resp: http::Response<Body>,
    connection: Option<&str>,
) -> std::io::Result<()> {
    let (parts, body) = resp.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    write_response(io, parts.status, &parts.headers, &body, connection).await
}

/// How long a refused connection's unread bytes are drained after the answer, so closing it does
/// not reset the connection before the client read the answer.
const REFUSE_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);
/// Bytes drained at most after a refusal.
const REFUSE_DRAIN_BYTES: usize = 64 * 1024;

/// 431 with a Stream error body, counted, and the connection closed.
async fn refuse_large_head<S: Io>(io: S, shared: &Shared) {
    shared
        .metrics
        .limit_hit(crate::metrics::Limit::MaxHeaderBytes);
    let message = format!(
        "request head over {} bytes (limits.max_header_bytes)",
        shared.config.limits.max_header_bytes
    );
    refuse(io, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, 4, &message).await;
}

/// Answers a connection that will not be served with a Stream error body and closes it. Its
/// unread bytes are drained for a moment (at most [`REFUSE_DRAIN`] and [`REFUSE_DRAIN_BYTES`]),
/// so the close does not reset the connection before the client read the answer.
pub(crate) async fn refuse<S: Io>(mut io: S, status: StatusCode, code: i32, message: &str) {
    let body = crate::error::api_error(code, status, message).to_string();
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    let written = tokio::time::timeout(
        REFUSE_DRAIN,
        write_response(&mut io, status, &headers, body.as_bytes(), Some("close")),
    )
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let _ = io.shutdown().await;
    let mut sink = [0u8; 1024];
    let mut drained = 0;
    let _ = tokio::time::timeout(REFUSE_DRAIN, async {
        while drained < REFUSE_DRAIN_BYTES {
            match io.read(&mut sink).await {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
    })
    .await;
}

/// Reads until a complete head (see [`head_end`]) is buffered. `Ok(false)` on EOF; a head over `max`
/// bytes returns `Ok(true)` so the caller hands it to hyper, which refuses it.
async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    loop {
        // A terminator is at most 3 bytes (`\n\r\n`): look from 2 bytes before the new ones.
        let scan_from = buf.len().saturating_sub(2);
        // Read through a buffer that lives on the stack only while the read is polled: an idle
        // keep-alive connection holds no read buffer while it waits.
        let n = std::future::poll_fn(|cx| {
            let mut chunk = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(rb.filled());
                    Poll::Ready(Ok(rb.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if n == 0 {
            return Ok(false);
        }
        if head_end(&buf[scan_from..]).is_some() || buf.len() > max {
            return Ok(true);
        }
    }
}

fn parse(buf: &[u8], peer: SocketAddr, shared: &Shared) -> Head {
    let Some(raw) = parse_head(buf) else {
        return Head::Other;
    };
    let limits = &shared.config.limits;
    shared
        .proxy_warning
        .check(&raw.forwarded, limits, &shared.metrics);
    let client_ip = crate::limits::client_ip(peer, &raw.forwarded, &limits.trusted_proxies);
    // A poll or close for another replica's session is forwarded by the router (`[cluster]`),
    // which also counts ids no replica minted.
    if let Some(cluster) = &shared.cluster {
        if cluster.needs_routing(&crate::cluster::Names::of(Some(&raw.query))) {
            return Head::Other;
        }
    }
    Head::LongPoll {
        head: LpHead {
            query: raw.query,
            token: raw.token,
            auth_type: raw.auth_type,
            client_ip,
            forwarded: false,
        },
        keep_alive: raw.keep_alive,
        http10: raw.http10,
    }
}

async fn write_response<S: AsyncWrite + Unpin>(
    io: &mut S,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    connection: Option<&str>,
) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\ndate: {}\r\ncontent-length: {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        body.len()
    );
    for (name, value) in headers {
        if let Ok(v) = value.to_str() {
            let _ = write!(head, "{name}: {v}\r\n");
        }
    }
    if let Some(c) = connection {
        let _ = write!(head, "connection: {c}\r\n");
    }

    head.push_str("\r\n");
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    io.write_all(&out).await?;
    io.flush().await
}
