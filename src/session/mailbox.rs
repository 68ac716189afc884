//! A session's inbox: the events its hub routed to it (bounded) and, once set, the reason the
//! session must close (slow consumer, upstream lost). The hub pushes; the session's transport
//! takes.
//!
//! Why not a tokio mpsc channel plus a cancellation token: that pair cost about 2.3 KiB per session
//! even when idle (the channel's first 32-slot block and its cache-padded state, plus a token tree
//! node), measured with heaptrack on 15,000 idle sessions. This is one allocation of about 150
//! bytes; its queue allocates only while events wait and is given back once drained.
//!
//! A session on a plain TCP socket also gives its mailbox a [`Direct`] writer: an event pushed
//! while nothing waits before it is written to the socket right there, from the hub's routing
//! step, without waking the session's task (issue 20: the wake-up, the queue and the task's poll
//! were about half of the CPU per delivery). Whatever the socket does not take at once (the rest
//! of a frame, later events) waits here, in order, and the session's task flushes it when the
//! socket is writable again. The session's own frames (health checks, pongs, the close) go
//! through the same lock, so frames never interleave.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::time::Instant;

use tokio::sync::Notify;

use super::end::SessionEnd;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A drained queue keeps its buffer up to this many slots. None: a long-poll session's queue fills
/// between polls and is drained by each, and a WebSocket on plain TCP queues only when its socket
/// is full, so a kept buffer (about 0.3 KiB per held poll, heaptrack) would sit idle.
const KEEP_SLOTS: usize = 0;

/// An event on its way to one session, stamped with when it arrived from upstream.
pub struct Delivery {
    pub frame: Utf8Bytes,
    pub received: Instant,
}

/// What the transport gets next.
pub enum Next {
    Event(Delivery),
    /// The session must end, and why.
    Closed(SessionEnd),
}

/// The outcome of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue is at capacity: the caller decides (the hub closes the session).
    Full,
    /// The session is closing; the event is not needed.
    Closed,
    /// Written to the socket at once (in whole, or its rest kept for the session to flush).
    Written,
}

/// A socket a mailbox may write frames to without waiting (non-blocking writes only).
pub trait Direct: Send + Sync {
    /// Writes as much as the socket takes now of the frame that carries `event`: the bytes
    /// written (`WouldBlock` when none).
    fn try_write_event(&self, event: &[u8]) -> io::Result<usize>;
    /// The frame that carries `event`, from byte `from` on.
    fn rest_of_event(&self, event: &[u8], from: usize) -> Vec<u8>;
    /// The frame's length for an event of `len` bytes.
    fn framed_len(&self, len: usize) -> usize;
    /// Writes as much of `bytes` as the socket takes now.
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize>;
}

/// What a flush left.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Nothing waits to be written.
    Done,
    /// The socket is full: wait until it is writable, then flush again.
    Blocked,
    /// The write failed; the session is over.
    Failed,
}

struct State {
    queue: VecDeque<Delivery>,
    closed: Option<SessionEnd>,
    /// With a direct writer: bytes of frames the socket took in part, written before anything else.
    tail: Vec<u8>,
    direct: Option<Arc<dyn Direct>>,
    /// When the latest event taken or written had arrived from upstream (the session's
    /// `health.check` clock counts events as traffic).
    last_event: Option<Instant>,
    /// A consumer that waits through [`Mailbox::poll_next`] (a held long-poll): woken, and
    /// forgotten, by the next push, close or [`Mailbox::wake_consumer`].
    consumer: Option<Waker>,
}

/// One session's inbox.
pub struct Mailbox {
    state: Mutex<State>,
    /// Woken on every push into an empty queue and on close: the transport's [`Mailbox::next`].
    /// Waiters enable their `Notified` before checking the state, so no wake-up is lost between
    /// check and wait.
    notify: Notify,
    capacity: usize,
}

impl Mailbox {
    /// An empty inbox holding at most `capacity` (at least 1) events.
    pub fn new(capacity: usize) -> Self {
        Mailbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: None,
                tail: Vec::new(),
                direct: None,
                last_event: None,
                consumer: None,
            }),
            notify: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; recovering keeps a bug from wedging the hub.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event for the session.
    pub fn push(&self, d: Delivery) -> Pushed {
        let mut st = self.lock();
        if st.closed.is_some() {
            return Pushed::Closed;
        }
        if st.queue.is_empty() && st.tail.is_empty() {
            if let Some(direct) = st.direct.clone() {
                let frame = d.frame.as_bytes();
                match direct.try_write_event(frame) {
                    Ok(n) => {
                        st.last_event = Some(d.received);
                        if n < direct.framed_len(frame.len()) {
                            st.tail = direct.rest_of_event(frame, n);
                            wake(st);
                            self.notify.notify_waiters();
                        }
                        return Pushed::Written;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        st.closed = Some(SessionEnd::WriteError);
                        wake(st);
                        self.notify.notify_waiters();
                        return Pushed::Closed;
                    }
                }
            }
        }
        if st.queue.len() >= self.capacity {
            return Pushed::Full;
        }
        st.queue.push_back(d);
        let first = st.queue.len() == 1;
        wake(st);
        if first {
            self.notify.notify_waiters();
        }
        Pushed::Queued
    }

    /// Asks the session to end; the first reason wins.
    pub fn close(&self, end: SessionEnd) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.closed = Some(end);
        }
        wake(st);
        self.notify.notify_waiters();
    }

    /// Wakes the consumer waiting in [`Mailbox::poll_next`], if any, so it looks again at what
    /// else it waits for (a long-poll's preemption or end).
    pub fn wake_consumer(&self) {
        wake(self.lock());
    }

    /// The next event, or the close reason (which wins over queued events); when there is
    /// neither, the task is woken by the next push, the close or [`Mailbox::wake_consumer`].
    ///
    /// One consumer at a time, the one `current` (asked under the mailbox's lock) says is: a
    /// consumer that has been superseded gets `Pending` and leaves the current one's waker in
    /// place. A newer consumer must make `current` false for the older one before it calls
    /// [`Mailbox::wake_consumer`], so an older one that looks after that wake-up sees it.
    pub fn poll_next(&self, cx: &mut Context<'_>, current: impl FnOnce() -> bool) -> Poll<Next> {
        let mut st = self.lock();
        if let Some(end) = st.closed {
            return Poll::Ready(Next::Closed(end));
        }
        if !current() {
            return Poll::Pending;
        }
        if let Some(d) = pop(&mut st) {
            return Poll::Ready(Next::Event(d));
        }
        match &mut st.consumer {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The close reason, once [`Mailbox::close`] was called.
    pub fn close_reason(&self) -> Option<SessionEnd> {
        self.lock().closed
    }

    /// Waits for the next event, or for the close reason (which wins over queued events).
    pub async fn next(&self) -> Next {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if let Some(end) = st.closed {
                    return Next::Closed(end);
                }
                if let Some(d) = pop(&mut st) {
                    return Next::Event(d);
                }
            }
            notified.await;
        }
    }

    /// Makes `direct` this mailbox's writer, with `first` written before anything else (the
    /// session's opening frame: events already queued follow it). Later pushes write to it when
    /// nothing waits.
    pub fn set_direct(&self, direct: Arc<dyn Direct>, first: &[u8]) {
        let mut st = self.lock();
        st.direct = Some(direct);
        st.tail.splice(0..0, first.iter().copied());
    }

    /// Forgets the direct writer (the session is over: its socket must close now, not when the
    /// hub lets go of the mailbox).
    pub fn clear_direct(&self) {
        let mut st = self.lock();
        st.direct = None;
        st.tail = Vec::new();
    }

    /// Waits until there is something to write (queued events, or a frame's rest with a direct
    /// writer), or the close reason (which wins).
    pub async fn ready(&self) -> Result<(), SessionEnd> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.lock();
                if let Some(end) = st.closed {
                    return Err(end);
                }
                if !st.queue.is_empty() || !st.tail.is_empty() {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// With a direct writer: writes what waits (a frame's rest, then queued events in order)
    /// until the socket is full; `sent` sees each event written.
    pub fn flush(&self, mut sent: impl FnMut(&Delivery)) -> Flushed {
        let mut st = self.lock();
        let Some(direct) = st.direct.clone() else {
            return Flushed::Done;
        };
        loop {
            if !st.tail.is_empty() {
                match direct.try_write(&st.tail) {
                    Ok(n) if n >= st.tail.len() => st.tail = Vec::new(),
                    Ok(n) => {
                        st.tail.drain(..n);
                        return Flushed::Blocked;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flushed::Blocked,
                    Err(_) => return Flushed::Failed,
                }
            }
            if st.closed.is_some() {
                // Queued events are not needed any more; only the close frame follows.
                return Flushed::Done;
            }
            let Some(d) = pop(&mut st) else {
                return Flushed::Done;
            };
            let frame = d.frame.as_bytes();
            match direct.try_write_event(frame) {
                Ok(n) => {
                    if n < direct.framed_len(frame.len()) {
                        st.tail = direct.rest_of_event(frame, n);
                    }
                    sent(&d);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    st.queue.push_front(d);
                    return Flushed::Blocked;
                }
                Err(_) => return Flushed::Failed,
            }
        }
    }

    /// With a direct writer: queues the session's own frame after what waits, and writes what it
    /// can now (see [`Mailbox::flush`]).
    pub fn send_own(&self, frame: &[u8], sent: impl FnMut(&Delivery)) -> Flushed {
        {
            let mut st = self.lock();
            if st.direct.is_none() {
                return Flushed::Failed;
            }
            st.tail.extend_from_slice(frame);
        }
        self.flush(sent)
    }

    /// When the latest event written or taken had arrived from upstream.
    pub fn last_event(&self) -> Option<Instant> {
        self.lock().last_event
    }

    /// The next queued event, if any, without waiting.
    pub fn try_next(&self) -> Option<Delivery> {
        let mut st = self.lock();
        if st.closed.is_some() {
            return None;
        }
        pop(&mut st)
    }
}

/// Wakes the [`Mailbox::poll_next`] consumer, outside the lock.
fn wake(mut st: MutexGuard<'_, State>) {
    let consumer = st.consumer.take();
    drop(st);
    if let Some(w) = consumer {
        w.wake();
    }
}

fn pop(st: &mut State) -> Option<Delivery> {
    let d = st.queue.pop_front();
    if let Some(d) = &d {
        st.last_event = Some(d.received);
    }
    if st.queue.is_empty() && st.queue.capacity() > KEEP_SLOTS {
        st.queue = VecDeque::new();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Delivery {
        Delivery {
            frame: Utf8Bytes::from(s.to_string()),
            received: Instant::now(),
        }
    }

    #[tokio::test]
    async fn bounded_ordered_and_close_wins() {
        let m = Mailbox::new(2);
        assert_eq!(m.push(d("a")), Pushed::Queued);
        assert_eq!(m.push(d("b")), Pushed::Queued);
        assert_eq!(m.push(d("c")), Pushed::Full);
        match m.next().await {
            Next::Event(e) => assert_eq!(e.frame.as_str(), "a"),
            Next::Closed(..) => panic!("closed"),
        }
        m.close(SessionEnd::SlowConsumer);
        m.close(SessionEnd::UpstreamLost);
        assert!(matches!(
            m.next().await,
            Next::Closed(SessionEnd::SlowConsumer)
        ));
        assert!(m.try_next().is_none());
        assert_eq!(m.push(d("d")), Pushed::Closed);
        assert_eq!(m.close_reason(), Some(SessionEnd::SlowConsumer));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_push_and_by_close() {
        let m = std::sync::Arc::new(Mailbox::new(4));
        let rx = m.clone();
        let (got_tx, got_rx) = tokio::sync::oneshot::channel();
        let waiter = tokio::spawn(async move {
            let first = match rx.next().await {
                Next::Event(e) => e.frame.to_string(),
                Next::Closed(..) => String::new(),
            };
            let _ = got_tx.send(first);
            rx.next().await
        });
        // Let the waiter park on an empty queue first, so the push has to wake it.
        tokio::task::yield_now().await;
        m.push(d("x"));
        assert_eq!(got_rx.await.expect("first event"), "x");
        m.close(SessionEnd::UpstreamLost);
        let last = waiter.await.expect("waiter");
        assert!(matches!(last, Next::Closed(SessionEnd::UpstreamLost)));
    }

    #[test]
    fn a_burst_buffer_is_released_once_drained() {
        let m = Mailbox::new(1000);
        for _ in 0..200 {
            m.push(d("e"));
        }
        while m.try_next().is_some() {}
        assert_eq!(m.lock().queue.capacity(), 0);
    }

    #[test]
    fn a_polling_consumer_is_woken_once_by_push_close_or_wake_consumer() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || count.0.load(SeqCst);
        let m = Mailbox::new(4);
        assert!(m.poll_next(&mut cx, || true).is_pending());
        m.wake_consumer();
        m.wake_consumer();
        assert_eq!(woken(), 1, "a waker is forgotten once woken");
        assert!(m.poll_next(&mut cx, || true).is_pending());
        // A superseded consumer neither takes an event nor replaces the current one's waker.
        let mut stale = Context::from_waker(Waker::noop());
        assert!(m.poll_next(&mut stale, || false).is_pending());
        m.push(d("a"));
        assert_eq!(woken(), 2);
        assert!(m.poll_next(&mut stale, || false).is_pending(), "not taken");
        match m.poll_next(&mut cx, || true) {
            Poll::Ready(Next::Event(e)) => assert_eq!(e.frame.as_str(), "a"),
            _ => panic!("the pushed event"),
        }
        assert!(m.poll_next(&mut cx, || true).is_pending());
        m.close(SessionEnd::SlowConsumer);
        assert_eq!(woken(), 3);
        assert!(matches!(
            m.poll_next(&mut cx, || true),
            Poll::Ready(Next::Closed(SessionEnd::SlowConsumer))
        ));
    }

    /// A socket that takes at most `room` bytes until given more, framing each event as `<event>`.
    struct Socket {
        out: Mutex<Vec<u8>>,
        room: Mutex<usize>,
        broken: std::sync::atomic::AtomicBool,
    }

    impl Socket {
        fn new(room: usize) -> Arc<Self> {
            Arc::new(Socket {
                out: Mutex::new(Vec::new()),
                room: Mutex::new(room),
                broken: false.into(),
            })
        }
        fn give(&self, n: usize) {
            *self.room.lock().expect("room") += n;
        }
        fn written(&self) -> String {
            String::from_utf8(self.out.lock().expect("out").clone()).expect("utf8")
        }
    }

    impl Direct for Socket {
        fn try_write_event(&self, event: &[u8]) -> io::Result<usize> {
            self.try_write(&[b"<", event, b">"].concat())
        }
        fn rest_of_event(&self, event: &[u8], from: usize) -> Vec<u8> {
            [b"<", event, b">"].concat()[from..].to_vec()
        }
        fn framed_len(&self, len: usize) -> usize {
            len + 2
        }
        fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
            if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let mut room = self.room.lock().expect("room");
            if *room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = bytes.len().min(*room);
            *room -= n;
            self.out.lock().expect("out").extend_from_slice(&bytes[..n]);
            Ok(n)
        }
    }

    #[test]
    fn direct_writes_keep_order_through_partial_writes_and_a_full_socket() {
        let m = Mailbox::new(8);
        let sock = Socket::new(10);
        m.set_direct(sock.clone(), b"[hello]");
        // The opening frame waits until the session flushes it; events queue behind it.
        assert_eq!(m.push(d("a")), Pushed::Queued);
        let mut sent = Vec::new();
        assert_eq!(m.flush(|d| sent.push(d.frame.to_string())), Flushed::Done);
        assert_eq!(sock.written(), "[hello]<a>");
        // Written at once, no queue: the socket has no room left, so the next event queues.
        assert_eq!(m.push(d("b")), Pushed::Queued);
        sock.give(4);
        assert_eq!(m.flush(|d| sent.push(d.frame.to_string())), Flushed::Done);
        // Part of a frame: its rest waits, and later events queue behind it.
        sock.give(3);
        assert_eq!(m.push(d("cdef")), Pushed::Written);
        assert_eq!(m.push(d("g")), Pushed::Queued);
        assert_eq!(m.send_own(b"[ping]", |_| {}), Flushed::Blocked);
        sock.give(100);
        assert_eq!(m.flush(|d| sent.push(d.frame.to_string())), Flushed::Done);
        assert_eq!(sock.written(), "[hello]<a><b><cdef>[ping]<g>");
        assert_eq!(sent, ["a", "b", "g"]);
        assert!(m.last_event().is_some());
        // With nothing waiting, a push writes straight through.
        assert_eq!(m.push(d("h")), Pushed::Written);
        assert_eq!(sock.written(), "[hello]<a><b><cdef>[ping]<g><h>");
    }

    #[test]
    fn a_closed_mailbox_writes_only_its_tail_and_a_failed_write_closes_it() {
        let m = Mailbox::new(8);
        let sock = Socket::new(0);
        m.set_direct(sock.clone(), b"");
        assert_eq!(m.push(d("queued")), Pushed::Queued);
        m.close(SessionEnd::SlowConsumer);
        assert_eq!(m.send_own(b"[close]", |_| {}), Flushed::Blocked);
        sock.give(100);
        assert_eq!(m.flush(|_| {}), Flushed::Done);
        assert_eq!(
            sock.written(),
            "[close]",
            "queued events do not follow the close"
        );

        let m = Mailbox::new(8);
        let sock = Socket::new(100);
        m.set_direct(sock.clone(), b"");
        sock.broken.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(m.push(d("x")), Pushed::Closed);
        assert_eq!(m.close_reason(), Some(SessionEnd::WriteError));
    }
}
