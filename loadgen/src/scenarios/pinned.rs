//! The pinned run: stream-edge alone on core 0, everything else (emulator, load-generating
//! workers, publisher) on core 1, at 100k deliveries/s. On a shared box the load generator and the
//! gateway compete for the same cores; pinned, the gateway's core shows what the gateway alone
//! can do, and the other core shows whether the generator kept up.

use std::time::Duration;

use anyhow::bail;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::peers::Peer;
use crate::proc_stats;
use crate::rig::{FanRig, Setup};

/// The gateway's core, and the core of everything else.
const GATEWAY_CPU: usize = 0;
const REST_CPU: usize = 1;

/// A core busy at least this share of the run counts as saturated.
const SATURATED: f64 = 0.95;

pub(crate) fn pinned(ctx: &mut Ctx, peer: Peer) -> anyhow::Result<Value> {
    if peer != Peer::StreamEdge {
        bail!("the pinned run is for stream-edge only");
    }
    if std::thread::available_parallelism().map_or(0, |n| n.get()) < 2 {
        bail!("the pinned run needs two cores");
    }
    // This thread runs the publisher and spawns the emulator and the workers, which inherit its
    // affinity: pin it to the other core for the run, and restore it after.
    let me = Pid::from_raw(0);
    let before = sched_getaffinity(me)?;
    let mut rest = CpuSet::new();
    rest.set(REST_CPU)?;
    sched_setaffinity(me, &rest)?;
    let r = run(ctx);
    sched_setaffinity(me, &before)?;
    r
}

fn run(ctx: &mut Ctx) -> anyhow::Result<Value> {
    let s = ctx.sizes.clone();
    let setup = Setup::start_pinned(ctx, GATEWAY_CPU)?;
    let mut rig = FanRig::on(ctx, setup, "pinned")?;
    let rate = s.pinned_deliveries / rig.per_msg as f64;
    let j0 = proc_stats::core_jiffies();
    let load = proc_stats::OtherLoad::start();
    // A long drain: when the generator's core saturates, deliveries queue on the client side;
    // they were delivered by the gateway and count (the latency shows the queueing).
    let r = rig.round(ctx, rate, s.pinned_secs, Duration::from_secs(8))?;
    let busy = proc_stats::core_busy(&j0, &proc_stats::core_jiffies());
    let (secs, _, _, other) = load.since();
    let (user_us, sys_us) = r.cpu_us_per_delivery();
    let saturated: Vec<usize> = busy
        .iter()
        .enumerate()
        .filter(|(_, b)| **b >= SATURATED)
        .map(|(i, _)| i)
        .collect();
    rig.workers.close();
    Ok(json!({
        "gateway_cpu": GATEWAY_CPU, "rest_cpu": REST_CPU,
        "target_deliveries_per_s": s.pinned_deliveries, "secs": s.pinned_secs,
        "expected": r.expected, "received": r.rep.received,
        "deliveries_per_s": r.rep.received as f64 / r.published.secs,
        "published": r.published.ok, "publish_secs": r.published.secs,
        "sustained": r.sustained(rate),
        "p50_us": r.rep.p50_us, "p99_us": r.rep.p99_us, "p999_us": r.rep.p999_us,
        // Over the whole round (publishing and drain), and over the publishing seconds only: the
        // drain can be long when the generator's core is the one behind.
        "gateway_cores": r.cores,
        "gateway_cores_publishing": (r.user_secs + r.sys_secs) / r.published.secs.max(1e-9),
        "user_us_per_delivery": user_us, "sys_us_per_delivery": sys_us,
        "core_busy": busy, "saturated_cores": saturated,
        // CPU of processes outside the suite (the box is shared) over the round, in cores.
        "other_cores": other / secs.max(1e-9),
        "wall_secs": r.wall
    }))
}
