//! The socket under a WebSocket session: reads into a per-thread buffer, and writes either
//! through the session's mailbox (plain TCP: the hub may write events to it directly) or from the
//! session's task alone (TLS, HTTP/2 streams, and a socket with bytes already read after its
//! upgrade).
//!
//! Why a per-thread read buffer: an idle session's socket is read only every 25 s (a ping), so a
//! buffer of its own would sit unused; here only a frame that arrives in part is kept
//! ([`super::wsframe::Inbound`]).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::wsframe::{self, Header, Inbound, Msg};
use crate::http::BoxIo;
use crate::session::{Delivery, Direct, Flushed, Mailbox};

/// Bytes read per syscall into the per-thread buffer.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_CHUNK].into_boxed_slice());
}

/// Reads what the socket holds into `buf`. A read that leaves room in `buf` emptied the socket's
/// receive queue (TCP copies until the queue or the buffer runs out), so the socket's readiness
/// is cleared at once: the next read waits for epoll instead of making a `recv` that can only
/// answer `EAGAIN` (one syscall saved per ping or burst). Bytes that arrive after the read set
/// readiness again with a newer tick, which the clear leaves alone.
fn read_drained(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut drained = None;
    let read = tcp.try_io(Interest::READABLE, || {
        let n = tcp.try_read(buf)?;
        if n > 0 && n < buf.len() {
            drained = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match drained {
        Some(n) => Ok(n),
        None => read,
    }
}

/// How a write or a read ended a session.
#[derive(Debug)]
pub enum WireError {
    /// The client's bytes broke the protocol.
    Frame(wsframe::FrameError),
    /// The socket failed, or the client closed it.
    Io,
    /// A write waited longer than `limits.send_timeout_seconds`.
    SendTimeout,
}

/// A plain TCP socket, shared by the session's task (reads, flushes) and its mailbox (direct
/// writes from the hub).
pub struct TcpWire {
    tcp: TcpStream,
}

impl Direct for TcpWire {
    /// The frame's header and the event go out in one `sendmsg`, not `writev`: both are one
    /// syscall without a copy, but `writev` first passes through the file layer (`vfs_writev`,
    /// `fdget_pos`, `sock_write_iter`: about 5 % of the gateway's CPU in the fan-out profile),
    /// which a socket does not need. A loopback microbenchmark on this box put the
    /// difference at about 0.2 µs of a 5–6 µs send.
    fn try_write_event(&self, event: &[u8]) -> io::Result<usize> {
        let h = Header::text(event.len());
        let parts = [IoSlice::new(h.as_slice()), IoSlice::new(event)];
        // `try_io` writes only while tokio holds the socket writable, and clears that on
        // `WouldBlock`, as `try_write_vectored` does.
        self.tcp.try_io(Interest::WRITABLE, || {
            socket2::SockRef::from(&self.tcp).send_vectored(&parts)
        })
    }

    fn rest_of_event(&self, event: &[u8], from: usize) -> Vec<u8> {
        // Rare (the socket took part of a frame): the frame is built whole, then cut.
        let mut frame = wsframe::text(event);
        frame.drain(..from.min(frame.len()));
        frame
    }

    fn framed_len(&self, len: usize) -> usize {
        Header::text(len).as_slice().len() + len
    }

    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        self.tcp.try_write(bytes)
    }
}

/// The session's socket.
pub enum Wire {
    /// Plain TCP: writes go through the mailbox.
    Tcp(Arc<TcpWire>),
    /// Any other stream: the session's task writes, through the stream's own bounds.
    Boxed(BoxIo),
}

impl Wire {
    /// A plain TCP socket, with its mailbox writer to be set once the session is attached.
    pub fn tcp(tcp: TcpStream) -> Self {
        Wire::Tcp(Arc::new(TcpWire { tcp }))
    }

    /// Writes the session's opening frame, and from then on lets the hub write events to a plain
    /// TCP socket directly (events it queued meanwhile follow the opening frame).
    pub async fn open(
        &mut self,
        mailbox: &Mailbox,
        first: &[u8],
        budget: Duration,
    ) -> Result<(), WireError> {
        match self {
            Wire::Tcp(w) => {
                mailbox.set_direct(w.clone(), first);
                let state = mailbox.flush(|_| {});
                drain(w, mailbox, state, budget, |_| {}).await
            }
            Wire::Boxed(io) => Box::pin(io.write_all(first))
                .await
                .map_err(|_| WireError::Io),
        }
    }

    /// Waits for the client's bytes and parses them into `out`; `Ok(false)` at end of stream.
    pub async fn read(
        &mut self,
        inbound: &mut Inbound,
        out: &mut Vec<Msg>,
    ) -> Result<bool, WireError> {
        match self {
            Wire::Tcp(w) => loop {
                // `poll_read_ready`, not `readable()`: it takes the socket's reader waker slot,
                // which still holds the waker of the connection task that read the upgrade;
                // left there, that waker would keep the finished task's memory (about 1.3 KiB)
                // allocated for the session's lifetime.
                poll_fn(|cx| w.tcp.poll_read_ready(cx))
                    .await
                    .map_err(|_| WireError::Io)?;
                let read = READ_BUF.with_borrow_mut(|buf| match read_drained(&w.tcp, buf) {
                    Ok(0) => Ok(false),
                    Ok(n) => inbound
                        .feed(&buf[..n], out)
                        .map(|()| true)
                        .map_err(WireError::Frame),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
                    Err(_) => Err(WireError::Io),
                });
                match read {
                    Ok(true) if out.is_empty() => continue,
                    other => return other,
                }
            },
            Wire::Boxed(io) => loop {
                let read = poll_fn(|cx| {
                    READ_BUF.with_borrow_mut(|buf| {
                        let mut rb = ReadBuf::new(buf);
                        match Pin::new(&mut *io).poll_read(cx, &mut rb) {
                            std::task::Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                                std::task::Poll::Ready(Ok(false))
                            }
                            std::task::Poll::Ready(Ok(())) => std::task::Poll::Ready(
                                inbound
                                    .feed(rb.filled(), out)
                                    .map(|()| true)
                                    .map_err(WireError::Frame),
                            ),
                            std::task::Poll::Ready(Err(_)) => {
                                std::task::Poll::Ready(Err(WireError::Io))
                            }
                            std::task::Poll::Pending => std::task::Poll::Pending,
                        }
                    })
                })
                .await;
                match read {
                    Ok(true) if out.is_empty() => continue,
                    other => return other,
                }
            },
        }
    }

    /// Writes one of the session's own frames (after whatever waits before it).
    pub async fn send(
        &mut self,
        mailbox: &Mailbox,
        frame: &[u8],
        budget: Duration,
        mut sent: impl FnMut(&Delivery),
    ) -> Result<(), WireError> {
        match self {
            Wire::Tcp(w) => {
                let state = mailbox.send_own(frame, &mut sent);
                drain(w, mailbox, state, budget, sent).await
            }
            // Boxed: a write that waits has a large state, which would otherwise sit in every
            // session task's future. Flushed, as `deliver` is: TLS may keep a record it accepted
            // while the socket was full, and a ping's answer or a probe must not wait there for
            // the next write.
            Wire::Boxed(io) => Box::pin(async move {
                io.write_all(frame).await?;
                io.flush().await
            })
            .await
            .map_err(|_| WireError::Io),
        }
    }

    /// Writes the events waiting in the mailbox, in order; `sent` sees each one written.
    pub async fn deliver(
        &mut self,
        mailbox: &Mailbox,
        budget: Duration,
        mut sent: impl FnMut(&Delivery),
        batch: usize,
    ) -> Result<(), WireError> {
        match self {
            Wire::Tcp(w) => {
                let state = mailbox.flush(&mut sent);
                drain(w, mailbox, state, budget, sent).await
            }
            Wire::Boxed(io) => {
                Box::pin(async move {
                    for _ in 0..batch {
                        let Some(d) = mailbox.try_next() else { break };
                        let h = Header::text(d.frame.len());
                        let mut bufs =
                            [IoSlice::new(h.as_slice()), IoSlice::new(d.frame.as_bytes())];
                        write_all_vectored(io, &mut bufs).await?;
                        sent(&d);
                    }
                    io.flush().await.map_err(|_| WireError::Io)
                })
                .await
            }
        }
    }

    /// Writes the closing frame and shuts the socket, within `budget`.
    pub async fn close(&mut self, mailbox: &Mailbox, frame: &[u8], budget: Duration) {
        let _ = tokio::time::timeout(budget, async {
            self.send(mailbox, frame, budget, |_| {}).await?;
            match self {
                Wire::Tcp(_) => Ok(()),
                Wire::Boxed(io) => io.shutdown().await.map_err(|_| WireError::Io),
            }
        })
        .await;
    }
}

/// Waits for the socket to take what the mailbox holds, each wait bounded by `budget` (the send
/// timeout a stalled client gets). Only a blocked socket waits, in a boxed future: the wait's
/// timer does not sit in every session task's future.
async fn drain(
    w: &TcpWire,
    mailbox: &Mailbox,
    state: Flushed,
    budget: Duration,
    sent: impl FnMut(&Delivery),
) -> Result<(), WireError> {
    match state {
        Flushed::Done => Ok(()),
        Flushed::Failed => Err(WireError::Io),
        Flushed::Blocked => Box::pin(wait_and_flush(w, mailbox, budget, sent)).await,
    }
}

async fn wait_and_flush(
    w: &TcpWire,
    mailbox: &Mailbox,
    budget: Duration,
    mut sent: impl FnMut(&Delivery),
) -> Result<(), WireError> {
    loop {
        // `poll_write_ready` for the same reason as `poll_read_ready` in `read`.
        match tokio::time::timeout(budget, poll_fn(|cx| w.tcp.poll_write_ready(cx))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(WireError::Io),
            Err(_) => return Err(WireError::SendTimeout),
        }
        match mailbox.flush(&mut sent) {
            Flushed::Done => return Ok(()),
            Flushed::Failed => return Err(WireError::Io),
            Flushed::Blocked => {}
        }
    }
}

async fn write_all_vectored(io: &mut BoxIo, mut bufs: &mut [IoSlice<'_>]) -> Result<(), WireError> {
    while !bufs.is_empty() {
        let n = io.write_vectored(bufs).await.map_err(|_| WireError::Io)?;
        if n == 0 {
            return Err(WireError::Io);
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}
