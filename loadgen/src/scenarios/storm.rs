//! Connect storm: new sessions per second with many handshakes in flight at once.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::peers::Peer;
use crate::proc_stats;
use crate::rig::{median, specs, Setup, Workers};
use crate::worker::{Transport, WorkerSpec};

/// Connect storm: sessions per second, cold token cache (fresh tokens) then warm (same tokens),
/// at each `storm_in_flight` level (handshakes in flight across all workers). One anchor session
/// per user stays open, so upstream connections exist before the storm. The first level runs
/// `storm_repeats` times, the others once (the time budget).
pub(crate) fn storm(ctx: &mut Ctx, peer: Peer) -> anyhow::Result<Value> {
    let s = ctx.sizes.clone();
    let setup = Setup::start(ctx, peer)?;
    let name = peer.name();
    let users: Vec<(String, Option<String>)> = (0..s.storm_users)
        .map(|i| (format!("storm-{i}"), None))
        .collect();
    let n = (s.storm_users * s.storm_sessions) as u64;
    let anchor_specs = specs(
        ctx,
        setup.front(),
        Transport::Ws,
        &users,
        1,
        &HashMap::new(),
        Some("anchor".into()),
        0,
    );
    let budget = |specs: Vec<WorkerSpec>, in_flight: usize| -> Vec<WorkerSpec> {
        let k = specs.len().max(1);
        specs
            .into_iter()
            .map(|mut sp| {
                sp.connect_deadline_secs = s.storm_connect_budget_secs;
                sp.concurrency = (in_flight / k).max(1);
                sp
            })
            .collect()
    };
    let mut anchors = Workers::spawn(ctx, budget(anchor_specs, 64))?;
    let (aok, _, _, aerr) = Workers::tally(&anchors.cmd("connect", Duration::from_secs(120))?);
    if aok != s.storm_users as u64 {
        ctx.problem(format!(
            "storm/{name}: {aok} of {} anchors: {}",
            s.storm_users,
            aerr.unwrap_or_default()
        ));
    }
    let pids = setup.measured();
    let mut levels = Vec::new();
    for (li, &in_flight) in s.storm_in_flight.iter().enumerate() {
        let repeats = if li == 0 { s.storm_repeats } else { 1 };
        let (mut cold, mut warm, mut cold_cpu, mut warm_cpu) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut failed_total, mut first_err) = (0u64, None::<String>);
        for r in 0..repeats {
            let sp = specs(
                ctx,
                setup.front(),
                Transport::Ws,
                &users,
                s.storm_sessions,
                &HashMap::new(),
                Some(format!("cold{in_flight}-{r}")),
                0,
            );
            let mut workers = Workers::spawn(ctx, budget(sp, in_flight))?;
            for (label, rates, cpus) in [
                ("cold", &mut cold, &mut cold_cpu),
                ("warm", &mut warm, &mut warm_cpu),
            ] {
                let c0 = proc_stats::cpu_secs(&pids);
                let (ok, failed, secs, err) =
                    Workers::tally(&workers.cmd("connect", Duration::from_secs(300))?);
                let c1 = proc_stats::cpu_secs(&pids);
                if failed > 0 || ok != n {
                    let why = err.clone().unwrap_or_else(|| {
                        format!(
                            "the {} s connect budget ran out; the rest were not attempted",
                            s.storm_connect_budget_secs
                        )
                    });
                    ctx.problem(format!(
                        "storm/{name}: {in_flight} in flight, {label}: {ok} of {n} connected: {why}"
                    ));
                }
                failed_total += failed;
                if first_err.is_none() {
                    first_err = err;
                }
                rates.push(ok as f64 / secs.max(1e-6));
                cpus.push((c1 - c0) / ok.max(1) as f64 * 1e6);
                workers.cmd("close", Duration::from_secs(120))?;
                std::thread::sleep(Duration::from_millis(300));
            }
            workers.close();
        }
        levels.push(json!({
            "in_flight": in_flight, "repeats": repeats,
            "cold_sessions_per_s": median(&cold), "warm_sessions_per_s": median(&warm),
            "cold_cpu_us_per_session": median(&cold_cpu), "warm_cpu_us_per_session": median(&warm_cpu),
            "failed": failed_total, "attempted": n * 2 * repeats as u64, "first_error": first_err,
            "cold_runs": cold, "warm_runs": warm,
        }));
    }
    anchors.close();
    // The first level's figures at the top (the target rows read them).
    let mut out = json!({
        "sessions": n, "users": s.storm_users,
        "levels": levels,
    });
    if let Some(first) = levels_first(&out) {
        for k in [
            "in_flight",
            "cold_sessions_per_s",
            "warm_sessions_per_s",
            "cold_cpu_us_per_session",
            "warm_cpu_us_per_session",
            "cold_runs",
            "warm_runs",
        ] {
            out[k] = first[k].clone();
        }
    }
    Ok(out)
}

fn levels_first(v: &Value) -> Option<Value> {
    v["levels"].as_array()?.first().cloned()
}
