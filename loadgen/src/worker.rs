//! One load-generating process. The suite writes commands on its stdin, one per line:
//! `connect`, `watch`, `reset`, `report`, `close`, `exit`; it answers each with one JSON line on
//! stdout. Closing stdin also ends it, and so does `max_seconds`: a worker never outlives its run.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

use crate::client::{self, SessionTarget, Stats};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ws,
    /// Each session on its own HTTP/1.1 connection (a browser tab's poll).
    Longpoll,
    /// Sessions share h2c connections, `client::H2_STREAMS_PER_CONNECTION` to each.
    LongpollH2,
}

/// The h2c connection long-poll sessions are being put on, and how many it carries.
type H2Slot = Option<(
    hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    usize,
)>;

/// The current shared connection while it has room and is open, else a new one from `src`.
async fn h2_stream(
    slot: &tokio::sync::Mutex<H2Slot>,
    src: Option<Ipv4Addr>,
    dst: SocketAddr,
) -> anyhow::Result<client::LpConn> {
    let mut cur = slot.lock().await;
    if let Some((send, n)) = cur.as_mut() {
        if *n < client::H2_STREAMS_PER_CONNECTION && !send.is_closed() {
            *n += 1;
            return Ok(client::LpConn::H2(send.clone()));
        }
    }
    let send = client::h2_connect(src, dst).await?;
    *cur = Some((send.clone(), 1));
    Ok(client::LpConn::H2(send))
}

/// What a worker holds: `users × sessions_per_user` sessions against `front`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub front: SocketAddr,
    pub api_key: String,
    pub secret: String,
    pub transport: Transport,
    /// (user id, channel it watches or none).
    pub users: Vec<(String, Option<String>)>,
    pub sessions_per_user: usize,
    /// Channel id → members (the first watcher creates the channel with them).
    pub members: HashMap<String, Vec<String>>,
    /// Source addresses, round-robin; empty = the kernel's choice.
    pub src_ips: Vec<Ipv4Addr>,
    /// Connects (and watch calls) in flight at once.
    pub concurrency: usize,
    /// `Some(n)`: every session gets its own token (`jti` = n-user-s), else one per user.
    pub token_nonce: Option<String>,
    /// SDK-style ping interval; 0 = no pings.
    pub ping_seconds: u64,
    /// Hard stop of the process.
    pub max_seconds: u64,
    /// Sessions not started this many seconds after `connect` are skipped (not failures): a
    /// slow peer cannot stretch the suite past its time budget. 0 = no deadline.
    #[serde(default)]
    pub connect_deadline_secs: f64,
}

struct Sess {
    user: String,
    channel: Option<String>,
    token: Arc<String>,
    src: Option<Ipv4Addr>,
    connection_id: Option<String>,
    cancel: CancellationToken,
    lp: Option<client::LpSession>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The error text of a session not started because the connect deadline passed.
const SKIPPED: &str = "skipped: connect deadline passed";

fn emit(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

pub fn run(spec: &str) -> anyhow::Result<ExitCode> {
    let spec: WorkerSpec = serde_json::from_str(spec).context("worker spec")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let deadline = Duration::from_secs(spec.max_seconds.max(1));
        tokio::select! {
            r = drive(spec) => r,
            () = tokio::time::sleep(deadline) => {
                eprintln!("worker: max_seconds reached, stopping");
                Ok(())
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn drive(spec: WorkerSpec) -> anyhow::Result<()> {
    let spec = Arc::new(spec);
    let stats = Arc::new(Stats::new());
    let mut sessions = build_sessions(&spec);
    let rest = client::rest_client();
    emit(&json!({"ev": "ready", "sessions": sessions.len()}));
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "connect" => {
                let t0 = Instant::now();
                let (ok, failed, skipped, err) = connect_all(&spec, &mut sessions, &stats).await;
                let secs = t0.elapsed().as_secs_f64();
                emit(
                    &json!({"ev": "connected", "ok": ok, "failed": failed, "skipped": skipped, "secs": secs, "err": err}),
                );
            }
            "watch" => {
                let t0 = Instant::now();
                let (ok, failed, err) = watch_all(&spec, &mut sessions, &rest).await;
                // Long-poll sessions start polling once they watch.
                start_lp(&spec, &mut sessions, &stats);
                emit(
                    &json!({"ev": "watched", "ok": ok, "failed": failed, "secs": t0.elapsed().as_secs_f64(), "err": err}),
                );
            }
            "reset" => {
                *stats
                    .hist
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = client::new_hist();
                stats.received.store(0, Ordering::Relaxed);
                emit(&json!({"ev": "reset"}));
            }
            "report" => {
                let h = stats
                    .hist
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let recorded: Vec<(u64, u64)> = h
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value()))
                    .collect();
                let open = sessions
                    .iter()
                    .filter(|s| s.task.as_ref().is_some_and(|t| !t.is_finished()))
                    .count();
                emit(&json!({
                    "ev": "report",
                    "received": stats.received.load(Ordering::Relaxed),
                    "errors": stats.errors.load(Ordering::Relaxed),
                    "frames": stats.frames.load(Ordering::Relaxed),
                    "open": open,
                    "hist": recorded,
                }));
            }
            "close" => {
                close_all(&mut sessions).await;
                emit(&json!({"ev": "closed"}));
            }
            "exit" => break,
            other => emit(&json!({"ev": "error", "err": format!("unknown command {other}")})),
        }
    }
    close_all(&mut sessions).await;
    Ok(())
}

fn build_sessions(spec: &WorkerSpec) -> Vec<Sess> {
    let mut out = Vec::with_capacity(spec.users.len() * spec.sessions_per_user);
    let mut i = 0usize;
    for (user, channel) in &spec.users {
        let shared = Arc::new(client::token(&spec.secret, user, None));
        for s in 0..spec.sessions_per_user {
            let token = match &spec.token_nonce {
                Some(n) => Arc::new(client::token(
                    &spec.secret,
                    user,
                    Some(&format!("{n}-{user}-{s}")),
                )),
                None => shared.clone(),
            };
            let src = if spec.src_ips.is_empty() {
                None
            } else {
                Some(spec.src_ips[i % spec.src_ips.len()])
            };
            i += 1;
            out.push(Sess {
                user: user.clone(),
                channel: channel.clone(),
                token,
                src,
                connection_id: None,
                cancel: CancellationToken::new(),
                lp: None,
                task: None,
            });
        }
    }
    out
}

enum Opened {
    Ws(Box<client::WsSession>),
    Lp(client::LpSession),
}

async fn connect_all(
    spec: &Arc<WorkerSpec>,
    sessions: &mut [Sess],
    stats: &Arc<Stats>,
) -> (usize, usize, usize, Option<String>) {
    let todo: Vec<(usize, String, Arc<String>, Option<Ipv4Addr>)> = sessions
        .iter()
        .enumerate()
        .filter(|(_, s)| s.task.is_none() && s.lp.is_none())
        .map(|(i, s)| (i, s.user.clone(), s.token.clone(), s.src))
        .collect();
    let started = std::time::Instant::now();
    let deadline = (spec.connect_deadline_secs > 0.0)
        .then(|| Duration::from_secs_f64(spec.connect_deadline_secs));
    let h2 = Arc::new(tokio::sync::Mutex::new(H2Slot::None));
    let jobs = todo.into_iter().map(|(i, user, token, src)| {
        let spec = spec.clone();
        let h2 = h2.clone();
        async move {
            if deadline.is_some_and(|d| started.elapsed() > d) {
                return (i, Err(anyhow::anyhow!(SKIPPED)));
            }
            let t = SessionTarget {
                src,
                dst: spec.front,
                api_key: &spec.api_key,
                user: &user,
                token: &token,
            };
            let r = match spec.transport {
                Transport::Ws => client::ws_connect(&t)
                    .await
                    .map(|w| Opened::Ws(Box::new(w))),
                Transport::Longpoll => client::lp_connect(&t).await.map(Opened::Lp),
                Transport::LongpollH2 => match h2_stream(&h2, src, spec.front).await {
                    Ok(conn) => client::lp_connect_over(conn, &t).await.map(Opened::Lp),
                    Err(e) => Err(e),
                },
            };
            (i, r)
        }
    });
    let mut results = futures_util::stream::iter(jobs).buffer_unordered(spec.concurrency.max(1));
    let (mut ok, mut failed, mut first_err) = (0, 0, None);
    let mut skipped = 0;
    while let Some((i, r)) = results.next().await {
        match r {
            Err(e) if e.to_string() == SKIPPED => skipped += 1,
            Ok(opened) => {
                ok += 1;
                let s = &mut sessions[i];
                s.cancel = CancellationToken::new();
                match opened {
                    Opened::Ws(ws) => {
                        s.connection_id = Some(ws.connection_id.clone());
                        let ping =
                            (spec.ping_seconds > 0).then(|| Duration::from_secs(spec.ping_seconds));
                        s.task = Some(tokio::spawn((*ws).run(
                            s.user.clone(),
                            ping,
                            s.cancel.clone(),
                            stats.clone(),
                        )));
                    }
                    Opened::Lp(lp) => {
                        s.connection_id = Some(lp.connection_id.clone());
                        s.lp = Some(lp);
                    }
                }
            }
            Err(e) => {
                failed += 1;
                if first_err.is_none() {
                    first_err = Some(format!("{e:#}"));
                }
            }
        }
    }
    (ok, failed, skipped, first_err)
}

async fn watch_all(
    spec: &Arc<WorkerSpec>,
    sessions: &mut [Sess],
    rest: &client::Rest,
) -> (usize, usize, Option<String>) {
    let (mut ok, mut failed, mut first_err) = (0, 0, None);
    let mut note = |r: anyhow::Result<()>| match r {
        Ok(()) => ok += 1,
        Err(e) => {
            failed += 1;
            if first_err.is_none() {
                first_err = Some(format!("{e:#}"));
            }
        }
    };
    match spec.transport {
        Transport::Ws => {
            let jobs = sessions.iter().filter_map(|s| {
                let channel = s.channel.clone()?;
                let conn = s.connection_id.clone()?;
                let members = spec.members.get(&channel).cloned().unwrap_or_default();
                let url = format!(
                    "http://{}/channels/messaging/{channel}/query?user_id={}&api_key={}&connection_id={conn}",
                    spec.front, s.user, spec.api_key
                );
                let token = s.token.clone();
                let rest = rest.clone();
                Some(async move {
                    let (status, body) = client::rest_call(&rest, "POST", &url, &token, Some(client::watch_body(&members))).await?;
                    if status != 201 && status != 200 {
                        anyhow::bail!("watch: HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]));
                    }
                    Ok(())
                })
            });
            let mut results =
                futures_util::stream::iter(jobs).buffer_unordered(spec.concurrency.clamp(1, 64));
            while let Some(r) = results.next().await {
                note(r);
            }
        }
        Transport::Longpoll | Transport::LongpollH2 => {
            let jobs = sessions.iter_mut().filter_map(|s| {
                let channel = s.channel.clone()?;
                let mut lp = s.lp.take()?;
                let members = spec.members.get(&channel).cloned().unwrap_or_default();
                let (user, token, key) = (s.user.clone(), s.token.clone(), spec.api_key.clone());
                Some(async move {
                    let r = lp.watch(&key, &user, &token, &channel, &members).await;
                    (lp, r)
                })
            });
            let done: Vec<_> = futures_util::stream::iter(jobs)
                .buffer_unordered(spec.concurrency.clamp(1, 64))
                .collect()
                .await;
            // Give each connection back to its session (matched by connection id).
            let mut by_id: HashMap<String, client::LpSession> = HashMap::new();
            for (lp, r) in done {
                note(r);
                by_id.insert(lp.connection_id.clone(), lp);
            }
            for s in sessions.iter_mut() {
                if let Some(id) = &s.connection_id {
                    if let Some(lp) = by_id.remove(id) {
                        s.lp = Some(lp);
                    }
                }
            }
        }
    }
    (ok, failed, first_err)
}

fn start_lp(spec: &Arc<WorkerSpec>, sessions: &mut [Sess], stats: &Arc<Stats>) {
    for s in sessions.iter_mut() {
        if let Some(lp) = s.lp.take() {
            s.task = Some(tokio::spawn(lp.run(
                spec.api_key.clone(),
                s.user.clone(),
                s.token.to_string(),
                s.cancel.clone(),
                stats.clone(),
            )));
        }
    }
}

async fn close_all(sessions: &mut [Sess]) {
    for s in sessions.iter() {
        s.cancel.cancel();
    }
    for s in sessions.iter_mut() {
        s.lp = None;
        if let Some(t) = s.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
        s.connection_id = None;
    }
}
