//! Long-poll (stream-edge only): held polls over HTTP/1.1 or shared h2c connections.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::peers::Peer;
use crate::proc_stats;
use crate::publisher::Publisher;
use crate::rig::{connect_and_watch, fan_users, kib, median, publish_round, specs, Setup};
use crate::worker::Transport;

/// Long-poll (stream-edge only): held polls, memory per held poll, event-to-delivery latency.
/// `h2`: the sessions share h2c connections (`client::H2_STREAMS_PER_CONNECTION` each) instead of
/// one HTTP/1.1 connection each, as a browser's tabs share one HTTP/2 connection.
pub(crate) fn longpoll(ctx: &mut Ctx, peer: Peer, h2: bool) -> anyhow::Result<Value> {
    let s = ctx.sizes.clone();
    let setup = Setup::start_with(ctx, peer, h2)?;
    let name = peer.name();
    let pubr = Publisher::new(setup.emu_addr);
    ctx.rt.block_on(pubr.ensure_user())?;
    let (users, members) = fan_users(s.lp_users, s.lp_channels, "lp");
    let mut channels: Vec<String> = members.keys().cloned().collect();
    channels.sort();
    let per_msg = (s.lp_users / s.lp_channels * s.lp_sessions) as u64;
    let n = (s.lp_users * s.lp_sessions) as u64;
    let pids = setup.measured();
    let rss0 = proc_stats::rss_kib(&pids) as f64;
    let slab0 = proc_stats::slab_kib() as f64;
    let specs = specs(
        ctx,
        setup.front(),
        if h2 {
            Transport::LongpollH2
        } else {
            Transport::Longpoll
        },
        &users,
        s.lp_sessions,
        &members,
        None,
        0,
    );
    // Connections the clients hold: one per session over HTTP/1.1, shared ones over h2.
    let client_connections: usize = specs
        .iter()
        .map(|sp| {
            let k = sp.users.len() * sp.sessions_per_user;
            if h2 {
                k.div_ceil(crate::client::H2_STREAMS_PER_CONNECTION)
            } else {
                k
            }
        })
        .sum();
    let label = if h2 { "longpoll_h2" } else { "longpoll" };
    let mut workers = connect_and_watch(ctx, &format!("{label}/{name}"), specs, n)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut held = 0.0;
    while Instant::now() < deadline {
        held = setup
            .edge_metric(ctx, "stream_edge_longpoll_held_requests")
            .unwrap_or(0.0);
        if held >= n as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss1 = proc_stats::rss_kib(&pids) as f64;
    let slab1 = proc_stats::slab_kib() as f64;
    let upstream = setup.upstream_connections(ctx)?;
    let mut runs = Vec::new();
    for _ in 0..s.repeats {
        let r = publish_round(
            ctx,
            &setup,
            &mut workers,
            &pubr,
            &channels,
            per_msg,
            s.lp_msgs,
            s.lp_secs,
            Duration::from_secs(5),
        )?;
        let (p, rep, expected, cores) = (r.published, r.rep, r.expected, r.cores);
        if rep.received != expected || rep.errors > 0 || p.failed > 0 {
            ctx.problem(format!(
                "{label}/{name}: {} of {expected} deliveries, {} errors, {} publishes failed",
                rep.received, rep.errors, p.failed
            ));
        }
        runs.push(json!({
            "deliveries_per_s": rep.received as f64 / p.secs, "expected": expected, "received": rep.received,
            "p50_us": rep.p50_us, "p99_us": rep.p99_us, "p999_us": rep.p999_us, "cpu_cores": cores,
        }));
    }
    workers.close();
    let med = |k: &str| {
        median(
            &runs
                .iter()
                .filter_map(|r| r[k].as_f64())
                .collect::<Vec<_>>(),
        )
    };
    Ok(json!({
        "sessions": n, "held_polls": held, "upstream_connections": upstream,
        "client_connections": client_connections,
        "rss_per_held_poll_kib": kib((rss1 - rss0) / n as f64),
        "slab_per_held_poll_kib": kib((slab1 - slab0) / n as f64),
        "deliveries_per_s": med("deliveries_per_s"),
        "p50_us": med("p50_us"), "p99_us": med("p99_us"), "p999_us": med("p999_us"), "cpu_cores": med("cpu_cores"),
        "runs": runs,
    }))
}
