//! Per-app reconnect backoff for upstream connections. When upstream is down, every SDK reconnects
//! on its own schedule; without a shared backoff each reconnect would become an upstream connect
//! attempt. After a failure, new connects of that app wait 250 ms, doubling per consecutive
//! failure up to a cap, with jitter so replicas and apps do not synchronise. A success resets it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use rand::Rng;

use crate::config::DEFAULT_UPSTREAM_BACKOFF_BASE;

#[derive(Default)]
struct State {
    failures: u32,
    until: Option<Instant>,
}

/// Backoff state of every app.
pub struct Backoff {
    max: Duration,
    apps: Mutex<HashMap<String, State>>,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Backoff {
            max,
            apps: Mutex::default(),
        }
    }

    /// How long a connect for `app` must wait now.
    pub fn wait(&self, app: &str) -> Duration {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.get(app)
            .and_then(|s| s.until)
            .map(|u| u.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }

    /// Records a failed connect; returns the delay imposed on the next one.
    pub fn failed(&self, app: &str) -> Duration {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let s = apps.entry(app.to_string()).or_default();
        s.failures = s.failures.saturating_add(1);
        let exp = DEFAULT_UPSTREAM_BACKOFF_BASE
            .saturating_mul(1u32 << s.failures.min(16).saturating_sub(1));
        let capped = exp.min(self.max);
        let delay = capped.mul_f64(rand::rng().random_range(0.5..=1.0));
        s.until = Some(Instant::now() + delay);
        delay
    }

    /// Records a successful connect.
    pub fn succeeded(&self, app: &str) {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.remove(app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_jitters_and_resets() {
        let b = Backoff::new(Duration::from_secs(2));
        assert_eq!(b.wait("a"), Duration::ZERO);
        let d1 = b.failed("a");
        assert!(
            d1 >= Duration::from_millis(125) && d1 <= Duration::from_millis(250),
            "{d1:?}"
        );
        let mut last = d1;
        for _ in 0..10 {
            last = b.failed("a");
        }
        assert!(
            last <= Duration::from_secs(2) && last >= Duration::from_secs(1),
            "{last:?}"
        );
        assert!(b.wait("a") > Duration::ZERO);
        assert_eq!(b.wait("other"), Duration::ZERO, "per app");
        b.succeeded("a");
        assert_eq!(b.wait("a"), Duration::ZERO);
    }
}
