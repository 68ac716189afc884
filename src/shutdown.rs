//! Shutdown: a cancellation token every task watches, a tracker that knows every task, a readiness
//! latch, and the record of any task that panicked (so test harnesses can re-raise it).
//!
//! Sequence on SIGTERM/SIGINT: readiness goes false (`/readyz` 503), accept loops stop, every
//! session closes with 1001 (reconnect now), in-flight requests finish, and the process exits when
//! all tasks are done or the drain deadline passes, whichever is first.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shared shutdown state.
#[derive(Clone, Default)]
pub struct Shutdown {
    pub token: CancellationToken,
    pub tracker: TaskTracker,
    ready: Arc<AtomicBool>,
    /// Upstream answered the last probe; readiness needs it.
    upstream_up: Arc<AtomicBool>,
    panics: Arc<Mutex<Vec<String>>>,
}

impl Shutdown {
    /// Taking traffic: started, not draining, and upstream reachable.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && self.upstream_up.load(Ordering::Acquire)
            && !self.token.is_cancelled()
    }

    pub fn set_upstream_up(&self, up: bool) {
        self.upstream_up.store(up, Ordering::Release);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Spawns a tracked task whose panic is recorded instead of vanishing.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let panics = self.panics.clone();
        // A combinator, not an `async move` block: the block would store `fut` twice (as its
        // captured variable and inside the awaited `CatchUnwind`), doubling every task's memory;
        // heaptrack showed 27.6 KiB per upstream task for a 13.8 KiB future.
        self.tracker
            .spawn(AssertUnwindSafe(fut).catch_unwind().map(move |r| {
                if let Err(p) = r {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    tracing::error!(panic = %msg, "task panicked");
                    if let Ok(mut v) = panics.lock() {
                        v.push(msg);
                    }
                }
            }));
    }

    /// Panics recorded so far.
    pub fn panics(&self) -> Vec<String> {
        self.panics.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Resolves on SIGTERM or SIGINT, naming it.
pub async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut t), Ok(mut i)) => tokio::select! {
                _ = t.recv() => "SIGTERM",
                _ = i.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
