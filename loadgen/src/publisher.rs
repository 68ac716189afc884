//! The publisher: sends messages straight to the upstream (the same path for every peer), each
//! carrying `sent_ns` from CLOCK_MONOTONIC, at a fixed rate, round-robin over the channels.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::client::{rest_call, server_token, token, Rest};
use crate::clock::mono_ns;
use crate::peers::{API_KEY, SECRET};

pub const PUBLISHER: &str = "bench-pub";

#[derive(Debug, Default, Clone, Serialize)]
pub struct Published {
    pub ok: u64,
    pub failed: u64,
    pub secs: f64,
    pub first_error: Option<String>,
}

pub struct Publisher {
    rest: Rest,
    emu: SocketAddr,
    token: Arc<String>,
}

impl Publisher {
    pub fn new(emu: SocketAddr) -> Self {
        Self {
            rest: crate::client::rest_client(),
            emu,
            token: Arc::new(token(SECRET, PUBLISHER, None)),
        }
    }

    /// Creates the publisher's user upstream (a server-side upsert), so channels can list it.
    pub async fn ensure_user(&self) -> anyhow::Result<()> {
        let server = server_token(SECRET)?;
        let url = format!("http://{}/users?api_key={API_KEY}", self.emu);
        let body = serde_json::json!({"users": {PUBLISHER: {"id": PUBLISHER}}}).to_string();
        let (status, resp) = rest_call(&self.rest, "POST", &url, &server, Some(body)).await?;
        if status >= 300 {
            anyhow::bail!(
                "upsert {PUBLISHER}: HTTP {status}: {}",
                String::from_utf8_lossy(&resp)
            );
        }
        Ok(())
    }

    /// Sends `rate` messages per second for `secs` seconds; at most 128 in flight.
    pub async fn run(&self, channels: &[String], rate: f64, secs: f64) -> Published {
        let total = (rate * secs).round().max(1.0) as u64;
        let period = Duration::from_secs_f64(1.0 / rate);
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let first_err: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let sem = Arc::new(tokio::sync::Semaphore::new(128));
        let start = tokio::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            let channel = &channels[(i as usize) % channels.len()];
            let url = format!(
                "http://{}/channels/messaging/{channel}/message?user_id={PUBLISHER}&api_key={API_KEY}",
                self.emu
            );
            let (rest, token, ok, failed, first_err) = (
                self.rest.clone(),
                self.token.clone(),
                ok.clone(),
                failed.clone(),
                first_err.clone(),
            );
            tasks.spawn(async move {
                let body = format!(
                    "{{\"message\":{{\"text\":\"bench {i}\",\"sent_ns\":{}}}}}",
                    mono_ns()
                );
                match rest_call(&rest, "POST", &url, &token, Some(body)).await {
                    Ok((201 | 200, _)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut e = first_err
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if e.is_none() {
                            *e = Some(match other {
                                Ok((s, b)) => format!(
                                    "HTTP {s}: {}",
                                    String::from_utf8_lossy(&b[..b.len().min(200)])
                                ),
                                Err(err) => format!("{err:#}"),
                            });
                        }
                    }
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        let first_error = first_err
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Published {
            ok: ok.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
            secs: start.elapsed().as_secs_f64(),
            first_error,
        }
    }
}
