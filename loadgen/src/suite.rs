//! The suite: for each scenario and each peer, start the systems under test, drive them with
//! worker processes, measure, stop everything; then write the report, the JSON and the chart.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{anyhow, bail};
use serde_json::{json, Value};

use crate::ctx::{Ctx, Sizes};
use crate::peers::{self, Peer};
use crate::scenarios;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct SuiteArgs {
    /// Small sizes and short holds (< 60 s); what CI runs.
    #[arg(long)]
    pub quick: bool,
    /// Output directory.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// The stream-edge binary (default: `stream-edge` next to this binary).
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// Peers to run (default: direct,nginx,haproxy,pushpin,stream-edge; missing programs are
    /// skipped).
    #[arg(long, value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// Scenarios to run (default: idle,fanout,storm,longpoll,longpoll_h2,pinned).
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Option<Vec<String>>,
    /// Repeats per measurement (default 3, quick 1).
    #[arg(long)]
    pub repeats: Option<usize>,
    /// Exit 2 when a sanity check fails (an expected event missing, an error).
    #[arg(long)]
    pub strict: bool,
    /// After the measurements, run idle and fan-out once more against stream-edge with
    /// `perf record` attached, and add where its CPU goes to the report.
    #[arg(long)]
    pub profile: bool,
}

/// On SIGINT/SIGTERM: stop every child process, then exit 130.
fn stop_children_on_signal() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        });
        eprintln!("bench: interrupted; stopping every process the suite started");
        peers::stop_all();
        std::process::exit(130);
    });
}

pub fn run(args: SuiteArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let load = crate::proc_stats::OtherLoad::start();
    stop_children_on_signal();
    let bin_self = std::env::current_exe()?;
    let bin_gateway = match &args.gateway_bin {
        Some(p) => p.clone(),
        None => bin_self.with_file_name("stream-edge"),
    };
    if !bin_gateway.is_file() {
        bail!(
            "gateway binary {} not found (build it, or pass --gateway-bin)",
            bin_gateway.display()
        );
    }
    std::fs::create_dir_all(&args.out)?;
    let dir = args.out.join("work");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let peers: Vec<Peer> = match &args.peers {
        Some(list) => list
            .iter()
            .map(|s| Peer::parse(s))
            .collect::<anyhow::Result<_>>()?,
        None => vec![
            Peer::Direct,
            Peer::Nginx,
            Peer::Haproxy,
            Peer::Pushpin,
            Peer::StreamEdge,
        ],
    };
    let mut skipped = Vec::new();
    let peers: Vec<Peer> = peers
        .into_iter()
        .filter(|p| {
            let ok = p.available();
            if !ok {
                skipped.push(p.name());
            }
            ok
        })
        .collect();
    let scenarios: Vec<String> = args.scenarios.clone().unwrap_or_else(|| {
        [
            "idle",
            "fanout",
            "storm",
            "longpoll",
            "longpoll_h2",
            "pinned",
        ]
        .map(String::from)
        .to_vec()
    });
    let sizes = Sizes::new(args.quick, args.repeats);
    let mut ctx = Ctx {
        bin_gateway,
        bin_self,
        log: std::fs::File::create(args.out.join("bench.log"))?,
        dir,
        sizes: sizes.clone(),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        problems: Vec::new(),
        peer_issues: Vec::new(),
        perf_out: None,
    };
    for s in &skipped {
        ctx.note(&format!("peer {s} skipped: its programs are not installed"));
    }
    let mut results = json!({
        "quick": args.quick,
        "machine": machine(),
        "sizes": sizes,
        "peers": peers.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "skipped_peers": skipped,
        "scenarios": {},
    });
    for sc in &scenarios {
        let mut per_peer = serde_json::Map::new();
        for &peer in &peers {
            // Only stream-edge speaks long-poll; the pinned run is about the gateway alone.
            if (sc.starts_with("longpoll") || sc == "pinned") && peer != Peer::StreamEdge {
                continue;
            }
            ctx.note(&format!("== {sc} / {}", peer.name()));
            let t0 = Instant::now();
            let r = match sc.as_str() {
                "idle" => scenarios::idle(&mut ctx, peer),
                "fanout" => scenarios::fanout(&mut ctx, peer),
                "storm" => scenarios::storm(&mut ctx, peer),
                "longpoll" => scenarios::longpoll(&mut ctx, peer, false),
                "longpoll_h2" => scenarios::longpoll(&mut ctx, peer, true),
                "pinned" => scenarios::pinned(&mut ctx, peer),
                other => Err(anyhow!("unknown scenario {other}")),
            };
            let v = match r {
                Ok(v) => v,
                Err(e) => {
                    ctx.problem(format!("{sc}/{}: {e:#}", peer.name()));
                    json!({"error": format!("{e:#}")})
                }
            };
            ctx.note(&format!(
                "   {sc}/{} took {:.1} s: {v}",
                peer.name(),
                t0.elapsed().as_secs_f64()
            ));
            per_peer.insert(peer.name().to_string(), v);
        }
        results["scenarios"][sc] = Value::Object(per_peer);
    }
    if args.profile && peers.contains(&Peer::StreamEdge) {
        results["profile"] = scenarios::profile_pass(&mut ctx, &args.out);
    }
    results["sanity"] = json!({"ok": ctx.problems.is_empty(), "problems": ctx.problems});
    results["peer_issues"] = json!(ctx.peer_issues);
    results["suite_seconds"] = json!(started.elapsed().as_secs_f64());
    let (secs, busy, own, other) = load.since();
    results["machine_load"] = json!({
        "secs": secs, "busy_core_secs": busy, "suite_core_secs": own, "other_core_secs": other,
        "other_cores_mean": other / secs.max(1e-9),
    });
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    let md = crate::report::markdown(&results);
    std::fs::write(args.out.join("report.md"), &md)?;
    if let Err(e) = crate::report::chart(&results, &args.out.join("chart.png")) {
        ctx.note(&format!("chart not drawn: {e:#}"));
    }
    let _ = std::fs::remove_dir_all(&ctx.dir);
    println!("{md}");
    println!(
        "bench: wrote {}/report.md, results.json, chart.png in {:.0} s; sanity {}",
        args.out.display(),
        started.elapsed().as_secs_f64(),
        if ctx.problems.is_empty() {
            "OK"
        } else {
            "FAILED"
        }
    );
    if args.strict && !ctx.problems.is_empty() {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let version = |cmd: &str, arg: &str| -> String {
        Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                let s = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                s.lines().next().unwrap_or("").trim().to_string()
            })
            .unwrap_or_default()
    };
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "mem_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "nofile_limit": nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(s, _)| s).unwrap_or(0),
        "nginx": version("nginx", "-v"),
        "haproxy": version("haproxy", "-v"),
        "pushpin": version("pushpin", "--version"),
    })
}
