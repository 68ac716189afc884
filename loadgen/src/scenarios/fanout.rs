//! Fan-out: events to many watching sessions. Fixed rates with paired direct rounds (the added
//! latency), CPU per delivery at set rates, and a ramp to the highest sustained rate.

use std::time::Duration;

use serde_json::{json, Value};

use crate::ctx::{Ctx, Sizes};
use crate::peers::Peer;
use crate::rig::{median, spread, FanRig};

/// Fan-out against `peer`:
/// 1. the low fixed rate (2k deliveries/s, inside every peer's capacity), then the fixed rate of
///    issue 7 (10k/s), each in rounds paired with a direct baseline;
/// 2. the ramp to the highest sustained rate;
/// 3. CPU per delivery (user and kernel) at each of `cpu_rates`, last: a peer that cannot keep
///    up leaves a backlog behind.
///
/// For every proxy peer a direct baseline (its own emulator and sessions) stays up beside it, and
/// their rounds alternate. The added latency is then taken from differences of rounds measured
/// seconds apart; this box's drift between runs minutes apart is larger than the 100 µs being
/// measured. Each round is short (1.5 s) so that ten pairs fit the time budget.
pub(crate) fn fanout(ctx: &mut Ctx, peer: Peer) -> anyhow::Result<Value> {
    let s = ctx.sizes.clone();
    let name = peer.name();
    let mut baseline = if peer != Peer::Direct && ctx.perf_out.is_none() {
        Some(FanRig::start(
            ctx,
            Peer::Direct,
            &format!("direct beside {name}"),
        )?)
    } else {
        None
    };
    let mut rig = FanRig::start(ctx, peer, name)?;
    let low = fixed_rate(
        ctx,
        &mut rig,
        baseline.as_mut(),
        s.fan_low_deliveries,
        s.low_pairs,
        &s,
    )?;
    let fixed = fixed_rate(
        ctx,
        &mut rig,
        baseline.as_mut(),
        s.fan_fixed_deliveries,
        s.pairs,
        &s,
    )?;
    // The baseline is stopped before the ramp, which needs the whole box.
    if let Some(b) = baseline {
        b.workers.close();
    }
    let max = ramp(ctx, &mut rig, peer, &s)?;
    let mut cpu = Vec::new();
    for &d in &s.cpu_rates {
        let (v, _) = rig.rate_round(ctx, d, s.cpu_secs, Duration::from_secs(2))?;
        let kept_up = v["kept_up"] == json!(true);
        cpu.push(v);
        if !kept_up {
            rig.settle(Duration::from_secs(6))?;
        }
    }
    let final_rep = rig.workers.report()?;
    if final_rep.errors > 0 {
        ctx.problem(format!(
            "fanout/{name}: {} sessions ended early",
            final_rep.errors
        ));
    }
    let n = (s.fan_users * s.fan_sessions) as u64;
    let per_msg = rig.per_msg;
    rig.workers.close();
    Ok(json!({
        "sessions": n, "channels": s.fan_channels, "watchers_per_channel": per_msg,
        "fixed": fixed,
        "fixed_low": low,
        "cpu_per_delivery": cpu,
        "max": max,
    }))
}

/// Rounds at `deliveries`/s, each after a direct baseline round when there is a baseline: the
/// medians of the peer's rounds, and the per-pair differences (added latency) with their spread.
/// When the first round shows the peer cannot sustain the rate, it is not repeated.
fn fixed_rate(
    ctx: &mut Ctx,
    rig: &mut FanRig,
    mut baseline: Option<&mut FanRig>,
    deliveries: f64,
    pairs: usize,
    s: &Sizes,
) -> anyhow::Result<Value> {
    let drain = Duration::from_secs(3);
    let (mut runs, mut direct) = (Vec::new(), Vec::new());
    let mut all_sustained = true;
    for i in 0..pairs.max(1) {
        if let Some(b) = baseline.as_deref_mut() {
            direct.push(b.rate_round(ctx, deliveries, s.fan_secs, drain)?.0);
        }
        let (v, sustained) = rig.rate_round(ctx, deliveries, s.fan_secs, drain)?;
        runs.push(v);
        all_sustained &= sustained;
        if !sustained {
            rig.settle(Duration::from_secs(8))?;
            if i == 0 {
                ctx.note(&format!(
                    "{}: {deliveries} deliveries/s not sustained; not repeated",
                    rig.name
                ));
                break;
            }
        }
    }
    let med = |runs: &[Value], k: &str| {
        median(
            &runs
                .iter()
                .filter_map(|r| r[k].as_f64())
                .collect::<Vec<_>>(),
        )
    };
    let sum = |k: &str| runs.iter().filter_map(|r| r[k].as_u64()).sum::<u64>();
    let paired = (!direct.is_empty()).then(|| {
        let diffs = |k: &str| -> Vec<f64> {
            runs.iter()
                .zip(&direct)
                .filter_map(|(p, d)| Some(p[k].as_f64()? - d[k].as_f64()?))
                .collect()
        };
        let mut o = json!({"pairs": runs.len().min(direct.len()), "direct_runs": direct});
        for (k, key) in [("p50", "p50_us"), ("p99", "p99_us"), ("p999", "p999_us")] {
            let d = diffs(key);
            o[format!("added_{key}")] = json!(median(&d));
            o[format!("added_{k}_spread_us")] = json!(spread(&d));
            o[format!("added_{k}_diffs_us")] = json!(d);
        }
        o
    });
    Ok(json!({
        "target_deliveries_per_s": deliveries,
        "sustained": all_sustained,
        "rounds": runs.len(),
        "expected": sum("expected"), "received": sum("received"),
        "deliveries_per_s": med(&runs, "deliveries_per_s"),
        "p50_us": med(&runs, "p50_us"), "p99_us": med(&runs, "p99_us"), "p999_us": med(&runs, "p999_us"),
        "cpu_cores": med(&runs, "cpu_cores"), "upstream_cpu_cores": med(&runs, "upstream_cpu_cores"),
        "user_us_per_delivery": med(&runs, "user_us_per_delivery"),
        "sys_us_per_delivery": med(&runs, "sys_us_per_delivery"),
        "runs": runs,
        "paired_direct": paired,
    }))
}

/// Ramp: double the message rate while it is sustained (every delivery arrives, p99 ≤ 50 ms),
/// then bisect between the last sustained and the first failed rate, then confirm the best rate
/// with repeats (the median is reported). Pushpin's ramp starts low: it sustains a few thousand
/// deliveries/s, below where the others start.
fn ramp(ctx: &mut Ctx, rig: &mut FanRig, peer: Peer, s: &Sizes) -> anyhow::Result<Value> {
    let mut steps = Vec::new();
    let mut best: Option<f64> = None;
    let mut failed: Option<f64> = None;
    let start = if peer == Peer::Pushpin {
        s.ramp_start_low_msgs
    } else {
        s.ramp_start_msgs
    };
    let per_msg = rig.per_msg as f64;
    let mut step = |ctx: &mut Ctx, rig: &mut FanRig, rate: f64| -> anyhow::Result<bool> {
        let r = rig.round(ctx, rate, s.ramp_secs, Duration::from_secs(2))?;
        let sustained = r.sustained(rate);
        steps.push(json!({
            "msgs_per_s": rate, "achieved_msgs_per_s": r.published.ok as f64 / r.published.secs,
            "target_deliveries_per_s": rate * per_msg,
            "deliveries_per_s": r.rep.received as f64 / r.published.secs, "expected": r.expected, "received": r.rep.received,
            "p50_us": r.rep.p50_us, "p99_us": r.rep.p99_us, "p999_us": r.rep.p999_us,
            "cpu_cores": r.cores, "upstream_cpu_cores": r.emu_cores, "sustained": sustained,
        }));
        if !sustained {
            rig.settle(Duration::from_secs(8))?;
        }
        Ok(sustained)
    };
    let mut rate = start;
    for _ in 0..s.ramp_steps {
        if !step(ctx, rig, rate)? {
            failed = Some(rate);
            break;
        }
        best = Some(rate);
        rate *= 2.0;
    }
    // Not even the start rate: halve (three times at most) until a rate passes.
    let mut down = start;
    for _ in 0..3 {
        if best.is_some() {
            break;
        }
        down /= 2.0;
        if step(ctx, rig, down)? {
            best = Some(down);
        } else {
            failed = Some(down);
        }
    }
    if let (Some(mut lo), Some(mut hi)) = (best, failed) {
        for _ in 0..s.ramp_refine {
            let mid = ((lo + hi) / 2.0).round();
            if mid <= lo || mid >= hi {
                break;
            }
            if step(ctx, rig, mid)? {
                lo = mid;
                best = Some(mid);
            } else {
                hi = mid;
            }
        }
    }
    let mut max_runs = Vec::new();
    if let Some(b) = best {
        if let Some(last) = steps
            .iter()
            .find(|r| r["sustained"] == json!(true) && r["msgs_per_s"].as_f64() == Some(b))
        {
            max_runs.push(last.clone());
        }
        for _ in 1..s.repeats {
            let r = rig.round(ctx, b, s.ramp_secs, Duration::from_secs(2))?;
            max_runs.push(json!({
                "msgs_per_s": b, "deliveries_per_s": r.rep.received as f64 / r.published.secs,
                "p50_us": r.rep.p50_us, "p99_us": r.rep.p99_us, "p999_us": r.rep.p999_us,
                "cpu_cores": r.cores, "upstream_cpu_cores": r.emu_cores, "sustained": r.sustained(b),
            }));
        }
    }
    let med = |k: &str| {
        median(
            &max_runs
                .iter()
                .filter_map(|r| r[k].as_f64())
                .collect::<Vec<_>>(),
        )
    };
    Ok(json!({
        "limited_by_ramp_end": best.is_some() && failed.is_none(),
        "start_msgs_per_s": start,
        "msgs_per_s": best,
        "deliveries_per_s": med("deliveries_per_s"),
        "p50_us": med("p50_us"), "p99_us": med("p99_us"), "p999_us": med("p999_us"),
        "cpu_cores": med("cpu_cores"), "upstream_cpu_cores": med("upstream_cpu_cores"),
        "runs": max_runs, "ramp": steps,
    }))
}
