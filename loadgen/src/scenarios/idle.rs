//! Idle: many WebSocket sessions held; memory and CPU per session, upstream connections.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::peers::Peer;
use crate::proc_stats;
use crate::rig::{kib, specs, Setup, Workers, SDK_PING_SECS};
use crate::worker::Transport;

/// Idle: users × sessions WebSockets held; RSS slope, slab slope, upstream connections, CPU.
pub(crate) fn idle(ctx: &mut Ctx, peer: Peer) -> anyhow::Result<Value> {
    let s = ctx.sizes.clone();
    let setup = Setup::start(ctx, peer)?;
    let users: Vec<(String, Option<String>)> = (0..s.idle_users)
        .map(|i| (format!("idle-{i}"), None))
        .collect();
    let n = (s.idle_users * s.idle_sessions) as f64;
    let pids = setup.measured();
    let rss0 = proc_stats::rss_kib(&pids) as f64;
    let emu_rss0 = proc_stats::rss_kib(&setup.emu_pids()) as f64;
    let slab0 = proc_stats::slab_kib() as f64;
    let specs = specs(
        ctx,
        setup.front(),
        Transport::Ws,
        &users,
        s.idle_sessions,
        &HashMap::new(),
        None,
        SDK_PING_SECS,
    )
    .into_iter()
    .map(|mut sp| {
        sp.connect_deadline_secs = s.idle_connect_budget_secs;
        sp
    })
    .collect();
    let mut workers = Workers::spawn(ctx, specs)?;
    let connected = workers.cmd("connect", Duration::from_secs(300))?;
    let skipped: u64 = connected
        .iter()
        .map(|v| v["skipped"].as_u64().unwrap_or(0))
        .sum();
    let (ok, failed, secs, err) = Workers::tally(&connected);
    if skipped > 0 {
        ctx.note(&format!(
            "idle/{}: connect budget ({} s) reached: {skipped} sessions not attempted",
            peer.name(),
            s.idle_connect_budget_secs
        ));
    }
    if failed > 0 {
        ctx.problem(format!(
            "idle/{}: {failed} of {n} connects failed: {}",
            peer.name(),
            err.clone().unwrap_or_default()
        ));
    }
    if ok == 0 {
        workers.close();
        bail!("no session connected: {}", err.unwrap_or_default());
    }
    std::thread::sleep(Duration::from_secs(2));
    let pids = setup.measured();
    let rss1 = proc_stats::rss_kib(&pids) as f64;
    let emu_rss1 = proc_stats::rss_kib(&setup.emu_pids()) as f64;
    let slab1 = proc_stats::slab_kib() as f64;
    let upstream = setup.upstream_connections(ctx)?;
    let mut cpu_us = Vec::new();
    for _ in 0..s.idle_windows {
        let c0 = proc_stats::cpu_secs(&pids);
        std::thread::sleep(Duration::from_secs_f64(s.idle_window_secs));
        let c1 = proc_stats::cpu_secs(&pids);
        cpu_us.push((c1 - c0) / s.idle_window_secs / (ok.max(1) as f64) * 1e6);
    }
    let rep = workers.report()?;
    if rep.errors > 0 || rep.open != ok {
        ctx.problem(format!(
            "idle/{}: {} sessions ended early ({} of {ok} open)",
            peer.name(),
            rep.errors,
            rep.open
        ));
    }
    let rss_end = proc_stats::rss_kib(&pids) as f64;
    workers.close();
    let okf = ok.max(1) as f64;
    Ok(json!({
        "sessions": ok,
        "not_attempted": skipped,
        "users": s.idle_users,
        "failed": failed,
        "connect_secs": secs,
        "rss_base_kib": rss0,
        "rss_held_kib": rss1,
        "rss_end_kib": rss_end,
        "rss_per_session_kib": kib((rss1 - rss0) / okf),
        "slab_per_session_kib": kib((slab1 - slab0) / okf),
        "upstream_rss_per_session_kib": kib((emu_rss1 - emu_rss0) / okf),
        "upstream_connections": upstream,
        // The mean over the whole hold: it spans one 25 s ping cycle, which the median of the
        // windows would leave out.
        "cpu_us_per_session_s": cpu_us.iter().sum::<f64>() / cpu_us.len().max(1) as f64,
        "cpu_us_per_session_s_runs": cpu_us,
    }))
}
