//! Request and response bodies as the front door hands them on: [`Gated`] bodies tell the
//! connection's [`Gate`] when the request hyper serves is over (so the connection may move back to
//! the lean front, see `front::io::Switch`), and [`ReqBody`], the request body every handler
//! reads, is bounded in time and size with failures typed as the client's
//! ([`ClientBodyError`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Instant;

use crate::config::Limits;
use crate::error::EdgeError;
use crate::metrics::{Limit, Metrics};

/// Whether the request hyper is serving is over: its body read to the end and its response body
/// produced to the end. Reset when hyper hands the service a new request.
#[derive(Default)]
pub struct Gate {
    request_done: AtomicBool,
    response_done: AtomicBool,
}

impl Gate {
    /// A new request: `body_done` when it has no body.
    pub fn start(&self, body_done: bool) {
        self.response_done.store(false, Ordering::Release);
        self.request_done.store(body_done, Ordering::Release);
    }

    /// The response body was produced to its end.
    pub fn response_finished(&self) {
        self.response_done.store(true, Ordering::Release);
    }

    /// Both the request and its response are over: the next bytes are a new request.
    pub fn ready(&self) -> bool {
        self.request_done.load(Ordering::Acquire) && self.response_done.load(Ordering::Acquire)
    }
}

/// A body that tells the [`Gate`] when it reached its end: a request body read to its end by a
/// handler, or a response body produced to its end for hyper.
pub struct Gated<B> {
    inner: B,
    gate: Arc<Gate>,
    response: bool,
}

/// Why a client's request body could not be read. Always the client's doing (never the
/// upstream's), so it is answered as a client error and logged at debug level.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("request body not received within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("request body over the {0} byte limit")]
    TooLarge(usize),
    #[error("request body could not be read: {0}")]
    Read(#[source] hyper::Error),
}

impl ClientBodyError {
    /// A client body failure somewhere in `err`'s source chain. The REST proxy streams a body to
    /// upstream, so a body that fails surfaces as the upstream client's send error; this tells
    /// it apart from an upstream failure.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientBodyError> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(c) = e.downcast_ref::<ClientBodyError>() {
                return Some(c);
            }
            cur = e.source();
        }
        None
    }
}

impl From<&ClientBodyError> for EdgeError {
    fn from(e: &ClientBodyError) -> Self {
        match e {
            ClientBodyError::Timeout(d) => EdgeError::BodyTimeout(d.as_secs()),
            ClientBodyError::TooLarge(_) => EdgeError::PayloadTooLarge(e.to_string()),
            ClientBodyError::Read(_) => EdgeError::BadInput(e.to_string()),
        }
    }
}

/// A request body as handlers see it: [`Gated`], and bounded in time (`limits.body_timeout_seconds`,
/// from the request head to the body's last byte) and size (`limits.max_body_bytes`, also for
/// chunked bodies that declare no length). Both hits are counted in `limit_hits`.
pub struct ReqBody {
    inner: Gated<Incoming>,
    deadline: Instant,
    budget: Duration,
    /// Created on the first wait, so requests whose body is ready (or absent) need no timer.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    read: usize,
    max: usize,
    metrics: Arc<Metrics>,
    failed: bool,
}

impl ReqBody {
    pub fn new(inner: Gated<Incoming>, limits: &Limits, metrics: Arc<Metrics>) -> Self {
        ReqBody {
            inner,
            deadline: Instant::now() + limits.body_timeout,
            budget: limits.body_timeout,
            timer: None,
            read: 0,
            max: limits.max_body_bytes,
            metrics,
            failed: false,
        }
    }

    fn fail(
        &mut self,
        limit: Limit,
        e: ClientBodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        self.failed = true;
        self.metrics.limit_hit(limit);
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        // Checked before reading too: a body dripped a byte at a time is always ready.
        if Instant::now() >= this.deadline {
            return this.fail(Limit::BodyTimeout, ClientBodyError::Timeout(this.budget));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len());
                    if this.read > this.max {
                        return this.fail(Limit::MaxBodyBytes, ClientBodyError::TooLarge(this.max));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.failed = true;
                Poll::Ready(Some(Err(ClientBodyError::Read(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.fail(Limit::BodyTimeout, ClientBodyError::Timeout(this.budget))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body + Unpin> Gated<B> {
    pub fn request(inner: B, gate: Arc<Gate>) -> Self {
        Gated {
            inner,
            gate,
            response: false,
        }
    }

    pub fn response(inner: B, gate: Arc<Gate>) -> Self {
        let g = Gated {
            inner,
            gate,
            response: true,
        };
        // An empty body may never be polled.
        if g.inner.is_end_stream() {
            g.mark_done();
        }
        g
    }

    fn mark_done(&self) {
        let flag = if self.response {
            &self.gate.response_done
        } else {
            &self.gate.request_done
        };
        flag.store(true, Ordering::Release);
    }
}

impl<B: Body + Unpin> Body for Gated<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        // Readers may stop at `is_end_stream` without polling for the final `None`.
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.mark_done();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
