//! The suite: for each scenario and each peer, start the systems under test, drive them with
//! worker processes, measure, stop everything; then write the report, the JSON and the chart.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::client::new_hist;
use crate::peers::{self, Peer, Running, API_KEY, SECRET};
use crate::proc_stats;
use crate::publisher::{Publisher, PUBLISHER};
use crate::worker::{Transport, WorkerSpec};

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
    /// Peers to run (default: direct,nginx,pushpin,stream-edge; missing programs are skipped).
    #[arg(long, value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// Scenarios to run (default: idle,fanout,storm,longpoll,longpoll_h2).
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

/// Sizes of one suite run.
#[derive(Clone, Debug, serde::Serialize)]
struct Sizes {
    repeats: usize,
    idle_users: usize,
    idle_sessions: usize,
    idle_window_secs: f64,
    idle_windows: usize,
    idle_connect_budget_secs: f64,
    storm_connect_budget_secs: f64,
    fan_users: usize,
    fan_sessions: usize,
    fan_channels: usize,
    fan_fixed_deliveries: f64,
    fan_secs: f64,
    ramp_start_msgs: f64,
    ramp_steps: usize,
    /// Bisection steps between the last sustained and the first failed doubling.
    ramp_refine: usize,
    ramp_secs: f64,
    storm_users: usize,
    storm_sessions: usize,
    lp_users: usize,
    lp_sessions: usize,
    lp_channels: usize,
    lp_msgs: f64,
    lp_secs: f64,
    per_worker: usize,
    concurrency: usize,
}

impl Sizes {
    fn new(quick: bool, repeats: Option<usize>) -> Self {
        if quick {
            Sizes {
                repeats: repeats.unwrap_or(1),
                idle_users: 60,
                idle_sessions: 5,
                idle_window_secs: 1.0,
                idle_windows: 2,
                idle_connect_budget_secs: 0.0,
                storm_connect_budget_secs: 0.0,
                fan_users: 20,
                fan_sessions: 5,
                fan_channels: 4,
                fan_fixed_deliveries: 1000.0,
                fan_secs: 1.0,
                ramp_start_msgs: 100.0,
                ramp_steps: 2,
                ramp_refine: 0,
                ramp_secs: 0.5,
                storm_users: 20,
                storm_sessions: 5,
                lp_users: 20,
                lp_sessions: 5,
                lp_channels: 4,
                lp_msgs: 20.0,
                lp_secs: 1.0,
                per_worker: 7000,
                concurrency: 64,
            }
        } else {
            Sizes {
                repeats: repeats.unwrap_or(3),
                idle_users: 1500,
                idle_sessions: 10,
                idle_window_secs: 10.0,
                idle_windows: 3,
                idle_connect_budget_secs: 45.0,
                storm_connect_budget_secs: 10.0,
                fan_users: 200,
                fan_sessions: 10,
                fan_channels: 20,
                fan_fixed_deliveries: 10_000.0,
                fan_secs: 4.0,
                ramp_start_msgs: 250.0,
                ramp_steps: 6,
                ramp_refine: 2,
                ramp_secs: 2.0,
                storm_users: 500,
                storm_sessions: 10,
                lp_users: 1000,
                lp_sessions: 10,
                lp_channels: 100,
                lp_msgs: 20.0,
                lp_secs: 4.0,
                per_worker: 7500,
                concurrency: 256,
            }
        }
    }
}

struct Ctx {
    bin_gateway: PathBuf,
    bin_self: PathBuf,
    dir: PathBuf,
    sizes: Sizes,
    rt: tokio::runtime::Runtime,
    problems: Vec<String>,
    peer_issues: Vec<String>,
    log: std::fs::File,
    /// `Some(data file)` while a profiling pass runs.
    perf_out: Option<PathBuf>,
}

impl Ctx {
    fn note(&mut self, msg: &str) {
        eprintln!("bench: {msg}");
        let _ = writeln!(self.log, "{msg}");
    }

    /// A failure of the load generator, the emulator or stream-edge fails the sanity check; one of
    /// a peer under test (nginx, Pushpin refusing or dropping sessions under load) is a result,
    /// reported as such.
    fn problem(&mut self, msg: String) {
        if msg.contains("/nginx") || msg.contains("/pushpin") {
            self.note(&format!("PEER: {msg}"));
            self.peer_issues.push(msg);
        } else {
            self.note(&format!("SANITY: {msg}"));
            self.problems.push(msg);
        }
    }
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
        None => vec![Peer::Direct, Peer::Nginx, Peer::Pushpin, Peer::StreamEdge],
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
        ["idle", "fanout", "storm", "longpoll", "longpoll_h2"]
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
            if sc.starts_with("longpoll") && peer != Peer::StreamEdge {
                continue;
            }
            ctx.note(&format!("== {sc} / {}", peer.name()));
            let t0 = Instant::now();
            let r = match sc.as_str() {
                "idle" => idle(&mut ctx, peer),
                "fanout" => fanout(&mut ctx, peer),
                "storm" => storm(&mut ctx, peer),
                "longpoll" => longpoll(&mut ctx, peer, false),
                "longpoll_h2" => longpoll(&mut ctx, peer, true),
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
        results["profile"] = profile_pass(&mut ctx, &args.out);
    }
    results["sanity"] = json!({"ok": ctx.problems.is_empty(), "problems": ctx.problems});
    results["peer_issues"] = json!(ctx.peer_issues);
    results["suite_seconds"] = json!(started.elapsed().as_secs_f64());
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
        "pushpin": version("pushpin", "--version"),
    })
}

// ---------------------------------------------------------------- workers

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

struct Workers {
    ws: Vec<Worker>,
}

impl Workers {
    /// Spawns one process per spec and waits for each to say it is ready.
    fn spawn(ctx: &Ctx, specs: Vec<WorkerSpec>) -> anyhow::Result<Self> {
        let mut ws = Vec::new();
        for spec in specs {
            let mut child = Command::new(&ctx.bin_self)
                .arg("worker")
                .arg("--spec")
                .arg(serde_json::to_string(&spec)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting a worker")?;
            peers::track(child.id());
            let stdin = child.stdin.take().ok_or_else(|| anyhow!("worker stdin"))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("worker stdout"))?;
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            ws.push(Worker {
                child,
                stdin,
                lines: rx,
            });
        }
        let mut me = Workers { ws };
        me.read_all(Duration::from_secs(60))?;
        Ok(me)
    }

    fn read_all(&mut self, timeout: Duration) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        for w in &mut self.ws {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match w.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(RecvTimeoutError::Timeout) => {
                    bail!("a worker did not answer within {timeout:?}")
                }
                Err(RecvTimeoutError::Disconnected) => bail!("a worker exited"),
            };
            out.push(serde_json::from_str(&line).with_context(|| format!("worker said: {line}"))?);
        }
        Ok(out)
    }

    fn cmd(&mut self, cmd: &str, timeout: Duration) -> anyhow::Result<Vec<Value>> {
        for w in &mut self.ws {
            writeln!(w.stdin, "{cmd}")?;
            w.stdin.flush()?;
        }
        self.read_all(timeout)
    }

    /// Sums `ok`/`failed`, the slowest `secs`, the first error.
    fn tally(vals: &[Value]) -> (u64, u64, f64, Option<String>) {
        let ok = vals.iter().map(|v| v["ok"].as_u64().unwrap_or(0)).sum();
        let failed = vals.iter().map(|v| v["failed"].as_u64().unwrap_or(0)).sum();
        let secs = vals
            .iter()
            .map(|v| v["secs"].as_f64().unwrap_or(0.0))
            .fold(0.0, f64::max);
        let err = vals
            .iter()
            .find_map(|v| v["err"].as_str().map(String::from));
        (ok, failed, secs, err)
    }

    /// Merged report: received, errors, open sessions and the merged latency histogram.
    fn report(&mut self) -> anyhow::Result<Report> {
        let vals = self.cmd("report", Duration::from_secs(30))?;
        let mut h = new_hist();
        let mut r = Report::default();
        for v in &vals {
            r.received += v["received"].as_u64().unwrap_or(0);
            r.errors += v["errors"].as_u64().unwrap_or(0);
            r.open += v["open"].as_u64().unwrap_or(0);
            if let Some(arr) = v["hist"].as_array() {
                for pair in arr {
                    let (val, n) = (pair[0].as_u64().unwrap_or(1), pair[1].as_u64().unwrap_or(0));
                    let _ = h.record_n(val.max(1), n);
                }
            }
        }
        if !h.is_empty() {
            r.p50_us = h.value_at_quantile(0.5) as f64 / 1000.0;
            r.p99_us = h.value_at_quantile(0.99) as f64 / 1000.0;
            r.p999_us = h.value_at_quantile(0.999) as f64 / 1000.0;
            r.max_us = h.max() as f64 / 1000.0;
        }
        Ok(r)
    }

    fn close(mut self) {
        let _ = self.cmd("close", Duration::from_secs(60));
        let _ = self.cmd("exit", Duration::from_millis(1));
        for w in &mut self.ws {
            peers::untrack(w.child.id());
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(_)) = w.child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Report {
    received: u64,
    errors: u64,
    open: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

fn src_ips() -> Vec<Ipv4Addr> {
    (2..=9).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect()
}

/// Splits users over enough workers (at least two, one per core) for the sessions.
#[allow(clippy::too_many_arguments)]
fn specs(
    ctx: &Ctx,
    front: SocketAddr,
    transport: Transport,
    users: &[(String, Option<String>)],
    sessions: usize,
    members: &HashMap<String, Vec<String>>,
    nonce: Option<String>,
    ping: u64,
) -> Vec<WorkerSpec> {
    let total = users.len() * sessions;
    let n = total
        .div_ceil(ctx.sizes.per_worker)
        .max(2)
        .min(users.len().max(1));
    let chunk = users.len().div_ceil(n);
    users
        .chunks(chunk.max(1))
        .map(|part| WorkerSpec {
            front,
            api_key: API_KEY.into(),
            secret: SECRET.into(),
            transport,
            users: part.to_vec(),
            sessions_per_user: sessions,
            members: members.clone(),
            src_ips: src_ips(),
            concurrency: ctx.sizes.concurrency,
            token_nonce: nonce.clone(),
            ping_seconds: ping,
            max_seconds: 600,
            connect_deadline_secs: 0.0,
        })
        .collect()
}

// ---------------------------------------------------------------- systems under test

struct Setup {
    /// `perf record` on the gateway (profiling pass only); stopped first.
    _perf: Option<peers::Proc>,
    emu: peers::Proc,
    emu_addr: SocketAddr,
    peer: Option<Running>,
}

impl Setup {
    fn start(ctx: &Ctx, peer: Peer) -> anyhow::Result<Self> {
        Self::start_with(ctx, peer, false)
    }

    /// `h2c`: stream-edge also serves h2c with prior knowledge (`http2.cleartext`).
    fn start_with(ctx: &Ctx, peer: Peer, h2c: bool) -> anyhow::Result<Self> {
        let (emu, emu_addr) = peers::start_emulator(&ctx.bin_gateway)?;
        let peer = peers::start_peer(peer, &ctx.bin_gateway, &ctx.dir, emu_addr, h2c)?;
        let perf = match (&ctx.perf_out, &peer) {
            (Some(out), Some(p)) => Some(peers::start_perf(p.main.pid(), out)?),
            _ => None,
        };
        std::thread::sleep(Duration::from_millis(300));
        Ok(Setup {
            _perf: perf,
            emu,
            emu_addr,
            peer,
        })
    }

    fn front(&self) -> SocketAddr {
        self.peer.as_ref().map_or(self.emu_addr, |p| p.front)
    }

    /// The processes that hold the client connections: the peer, or the emulator when direct.
    fn measured(&self) -> Vec<u32> {
        match &self.peer {
            Some(p) => p.pids(),
            None => proc_stats::tree(self.emu.pid()),
        }
    }

    fn emu_pids(&self) -> Vec<u32> {
        proc_stats::tree(self.emu.pid())
    }

    fn upstream_connections(&self, ctx: &Ctx) -> anyhow::Result<u64> {
        let v = http_get_json(
            ctx,
            &format!("http://{}/_emulator/connections", self.emu_addr),
        )?;
        v["total"]
            .as_u64()
            .ok_or_else(|| anyhow!("no total in {v}"))
    }

    fn edge_metric(&self, ctx: &Ctx, name: &str) -> Option<f64> {
        let admin = self.peer.as_ref()?.admin?;
        let text = http_get(ctx, &format!("http://{admin}/metrics")).ok()?;
        let vals: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
            .collect();
        (!vals.is_empty()).then(|| vals.iter().sum())
    }
}

fn http_get(ctx: &Ctx, url: &str) -> anyhow::Result<String> {
    ctx.rt.block_on(async {
        let rest = crate::client::rest_client();
        let (status, body) = crate::client::rest_call(&rest, "GET", url, "", None).await?;
        if status != 200 {
            bail!("GET {url}: HTTP {status}");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    })
}

fn http_get_json(ctx: &Ctx, url: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&http_get(ctx, url)?)?)
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn kib(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

// ---------------------------------------------------------------- scenarios

/// Idle: users × sessions WebSockets held; RSS slope, slab slope, upstream connections, CPU.
fn idle(ctx: &mut Ctx, peer: Peer) -> anyhow::Result<Value> {
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
        25,
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

/// A user id and the channel it watches.
type UserChannel = (String, Option<String>);

fn fan_users(
    users: usize,
    channels: usize,
    prefix: &str,
) -> (Vec<UserChannel>, HashMap<String, Vec<String>>) {
    let mut members: HashMap<String, Vec<String>> = HashMap::new();
    let list: Vec<(String, Option<String>)> = (0..users)
        .map(|i| {
            let u = format!("{prefix}-u{i}");
            let c = format!("{prefix}-c{}", i % channels);
            members.entry(c.clone()).or_default().push(u.clone());
            (u, Some(c))
        })
        .collect();
    for m in members.values_mut() {
        m.push(PUBLISHER.to_string());
    }
    (list, members)
}

/// Connects and watches; returns the workers.
fn connect_and_watch(
    ctx: &mut Ctx,
    name: &str,
    specs: Vec<WorkerSpec>,
    expect: u64,
) -> anyhow::Result<Workers> {
    // These scenarios measure delivery, not connecting: connect gently (Pushpin answers 502 to
    // part of a burst of hundreds of concurrent handshakes; the storm scenario measures that).
    let specs = specs
        .into_iter()
        .map(|mut sp| {
            sp.concurrency = sp.concurrency.min(16);
            sp
        })
        .collect();
    let mut workers = Workers::spawn(ctx, specs)?;
    let (ok, failed, _, err) = Workers::tally(&workers.cmd("connect", Duration::from_secs(300))?);
    if failed > 0 || ok != expect {
        ctx.problem(format!(
            "{name}: {ok} of {expect} connected: {}",
            err.clone().unwrap_or_default()
        ));
    }
    if ok == 0 {
        workers.close();
        bail!("no session connected: {}", err.unwrap_or_default());
    }
    let (wok, wfailed, _, werr) = Workers::tally(&workers.cmd("watch", Duration::from_secs(300))?);
    if wfailed > 0 || wok != ok {
        ctx.problem(format!(
            "{name}: {wok} of {ok} watch calls succeeded: {}",
            werr.unwrap_or_default()
        ));
    }
    Ok(workers)
}

/// Publishes, waits for the deliveries to arrive (or `drain` to pass), returns what was seen.
#[allow(clippy::too_many_arguments)]
fn publish_round(
    ctx: &Ctx,
    setup: &Setup,
    workers: &mut Workers,
    pubr: &Publisher,
    channels: &[String],
    per_msg: u64,
    rate: f64,
    secs: f64,
    drain: Duration,
) -> anyhow::Result<(crate::publisher::Published, Report, u64, f64, f64)> {
    workers.cmd("reset", Duration::from_secs(10))?;
    let pids = setup.measured();
    let emu = setup.emu_pids();
    let c0 = proc_stats::cpu_secs(&pids);
    let e0 = proc_stats::cpu_secs(&emu);
    let t0 = Instant::now();
    let published = ctx.rt.block_on(pubr.run(channels, rate, secs));
    let expected = published.ok * per_msg;
    let deadline = Instant::now() + drain;
    let mut rep = workers.report()?;
    while rep.received < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        rep = workers.report()?;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cores = (proc_stats::cpu_secs(&pids) - c0) / wall;
    let emu_cores = (proc_stats::cpu_secs(&emu) - e0) / wall;
    Ok((published, rep, expected, cores, emu_cores))
}

/// One peer's fan-out setup: its processes, 2,000 connected and watching sessions, a publisher.
struct FanRig {
    setup: Setup,
    pubr: Publisher,
    channels: Vec<String>,
    per_msg: u64,
    workers: Workers,
    name: String,
}

impl FanRig {
    /// Starts `peer` with its own emulator, connects and watches every session, and warms up.
    fn start(ctx: &mut Ctx, peer: Peer, label: &str) -> anyhow::Result<Self> {
        let s = ctx.sizes.clone();
        let setup = Setup::start(ctx, peer)?;
        let pubr = Publisher::new(setup.emu_addr);
        ctx.rt.block_on(pubr.ensure_user())?;
        let (users, members) = fan_users(s.fan_users, s.fan_channels, "fan");
        let mut channels: Vec<String> = members.keys().cloned().collect();
        channels.sort();
        let per_msg = (s.fan_users / s.fan_channels * s.fan_sessions) as u64;
        let n = (s.fan_users * s.fan_sessions) as u64;
        let specs = specs(
            ctx,
            setup.front(),
            Transport::Ws,
            &users,
            s.fan_sessions,
            &members,
            None,
            0,
        );
        let name = format!("fanout/{label}");
        let workers = connect_and_watch(ctx, &name, specs, n)?;
        let mut rig = FanRig {
            setup,
            pubr,
            channels,
            per_msg,
            workers,
            name,
        };
        // Warm-up (connections, allocators), not measured.
        let rate = rig.fixed_rate(&s);
        let _ = rig.round(ctx, rate, 0.5, Duration::from_secs(3))?;
        Ok(rig)
    }

    fn fixed_rate(&self, s: &Sizes) -> f64 {
        s.fan_fixed_deliveries / self.per_msg as f64
    }

    fn round(
        &mut self,
        ctx: &Ctx,
        rate: f64,
        secs: f64,
        drain: Duration,
    ) -> anyhow::Result<(crate::publisher::Published, Report, u64, f64, f64)> {
        publish_round(
            ctx,
            &self.setup,
            &mut self.workers,
            &self.pubr,
            &self.channels,
            self.per_msg,
            rate,
            secs,
            drain,
        )
    }

    /// One fixed-rate round; problems are noted.
    fn fixed_round(&mut self, ctx: &mut Ctx, s: &Sizes) -> anyhow::Result<Value> {
        let rate = self.fixed_rate(s);
        let (p, rep, expected, cores, emu_cores) =
            self.round(ctx, rate, s.fan_secs, Duration::from_secs(5))?;
        let name = &self.name;
        if p.failed > 0 {
            ctx.problem(format!(
                "{name}: {} publishes failed: {}",
                p.failed,
                p.first_error.clone().unwrap_or_default()
            ));
        }
        if rep.received != expected || rep.errors > 0 {
            ctx.problem(format!(
                "{name}: fixed rate: {} of {expected} deliveries, {} errors",
                rep.received, rep.errors
            ));
        }
        Ok(json!({
            "deliveries_per_s": rep.received as f64 / p.secs,
            "expected": expected, "received": rep.received,
            "p50_us": rep.p50_us, "p99_us": rep.p99_us, "p999_us": rep.p999_us, "max_us": rep.max_us,
            "cpu_cores": cores, "upstream_cpu_cores": emu_cores,
        }))
    }
}

/// Fan-out: a fixed delivery rate (repeated), then a ramp to the highest sustained rate.
///
/// For nginx and stream-edge a direct baseline (its own emulator and sessions) stays up beside the
/// peer, and their fixed-rate rounds alternate. The added latency is then the median of the
/// differences of rounds measured seconds apart; this box's drift between runs minutes apart is
/// larger than the 100 µs being measured. Pushpin is not paired: its added latency is ~1 s.
fn fanout(ctx: &mut Ctx, peer: Peer) -> anyhow::Result<Value> {
    let s = ctx.sizes.clone();
    let mut baseline = match peer {
        Peer::Nginx | Peer::StreamEdge if ctx.perf_out.is_none() => Some(FanRig::start(
            ctx,
            Peer::Direct,
            &format!("direct beside {}", peer.name()),
        )?),
        _ => None,
    };
    let mut rig = FanRig::start(ctx, peer, peer.name())?;
    let name = peer.name();
    let mut fixed = Vec::new();
    let mut paired = Vec::new();
    for _ in 0..s.repeats {
        if let Some(b) = baseline.as_mut() {
            paired.push(b.fixed_round(ctx, &s)?);
        }
        fixed.push(rig.fixed_round(ctx, &s)?);
    }
    // The baseline is stopped before the ramp, which needs the whole box.
    if let Some(b) = baseline {
        b.workers.close();
    }

    let n = (s.fan_users * s.fan_sessions) as u64;

    let added = |k: &str| {
        median(
            &fixed
                .iter()
                .zip(&paired)
                .filter_map(|(p, d)| Some(p[k].as_f64()? - d[k].as_f64()?))
                .collect::<Vec<_>>(),
        )
    };
    let paired_json = (!paired.is_empty()).then(|| {
        json!({
            "added_p50_us": added("p50_us"), "added_p99_us": added("p99_us"), "added_p999_us": added("p999_us"),
            "direct_runs": paired,
        })
    });
    let FanRig {
        setup,
        pubr,
        channels,
        per_msg,
        mut workers,
        ..
    } = rig;
    // Ramp: double the message rate while every delivery arrives with p99 ≤ 50 ms, then bisect
    // between the last sustained and the first failed rate.
    let mut ramp = Vec::new();
    let mut best: Option<f64> = None;
    let mut failed: Option<f64> = None;
    let mut rate = s.ramp_start_msgs;
    let step = |ctx: &Ctx, workers: &mut Workers, rate: f64, ramp: &mut Vec<Value>| {
        let (p, rep, expected, cores, emu_cores) = publish_round(
            ctx,
            &setup,
            workers,
            &pubr,
            &channels,
            per_msg,
            rate,
            s.ramp_secs,
            Duration::from_secs(2),
        )?;
        let achieved = p.ok as f64 / p.secs;
        let sustained = rep.received >= expected
            && rep.p99_us <= 50_000.0
            && achieved >= 0.9 * rate
            && p.failed == 0
            && rep.errors == 0;
        ramp.push(json!({
            "msgs_per_s": rate, "achieved_msgs_per_s": achieved, "target_deliveries_per_s": rate * per_msg as f64,
            "deliveries_per_s": rep.received as f64 / p.secs, "expected": expected, "received": rep.received,
            "p50_us": rep.p50_us, "p99_us": rep.p99_us, "p999_us": rep.p999_us,
            "cpu_cores": cores, "upstream_cpu_cores": emu_cores, "sustained": sustained,
        }));
        anyhow::Ok(sustained)
    };
    for _ in 0..s.ramp_steps {
        if !step(ctx, &mut workers, rate, &mut ramp)? {
            failed = Some(rate);
            break;
        }
        best = Some(rate);
        rate *= 2.0;
    }
    if let (Some(mut lo), Some(mut hi)) = (best, failed) {
        for _ in 0..s.ramp_refine {
            let mid = ((lo + hi) / 2.0).round();
            if step(ctx, &mut workers, mid, &mut ramp)? {
                lo = mid;
                best = Some(mid);
            } else {
                hi = mid;
            }
        }
    }
    // Confirm the best step with repeats (the median is reported).
    let mut max_runs = Vec::new();
    if let Some(b) = best {
        if let Some(last) = ramp
            .iter()
            .find(|r| r["sustained"] == json!(true) && r["msgs_per_s"].as_f64() == Some(b))
        {
            max_runs.push(last.clone());
        }
        for _ in 1..s.repeats {
            let (p, rep, _expected, cores, emu_cores) = publish_round(
                ctx,
                &setup,
                &mut workers,
                &pubr,
                &channels,
                per_msg,
                b,
                s.ramp_secs,
                Duration::from_secs(2),
            )?;
            max_runs.push(json!({
                "msgs_per_s": b, "deliveries_per_s": rep.received as f64 / p.secs,
                "p50_us": rep.p50_us, "p99_us": rep.p99_us, "p999_us": rep.p999_us,
                "cpu_cores": cores, "upstream_cpu_cores": emu_cores,
            }));
        }
    }
    let final_rep = workers.report()?;
    if final_rep.errors > 0 {
        ctx.problem(format!(
            "fanout/{name}: {} sessions ended early",
            final_rep.errors
        ));
    }
    workers.close();
    let med = |runs: &[Value], k: &str| {
        median(
            &runs
                .iter()
                .filter_map(|r| r[k].as_f64())
                .collect::<Vec<_>>(),
        )
    };
    Ok(json!({
        "sessions": n, "channels": s.fan_channels, "watchers_per_channel": per_msg,
        "fixed": {
            "target_deliveries_per_s": s.fan_fixed_deliveries,
            "deliveries_per_s": med(&fixed, "deliveries_per_s"),
            "p50_us": med(&fixed, "p50_us"), "p99_us": med(&fixed, "p99_us"), "p999_us": med(&fixed, "p999_us"),
            "cpu_cores": med(&fixed, "cpu_cores"), "upstream_cpu_cores": med(&fixed, "upstream_cpu_cores"),
            "runs": fixed,
            "paired_direct": paired_json,

        },
        "max": {
            "limited_by_ramp_end": best.is_some() && failed.is_none(),

            "msgs_per_s": best,
            "deliveries_per_s": med(&max_runs, "deliveries_per_s"),
            "p50_us": med(&max_runs, "p50_us"), "p99_us": med(&max_runs, "p99_us"), "p999_us": med(&max_runs, "p999_us"),
            "cpu_cores": med(&max_runs, "cpu_cores"), "upstream_cpu_cores": med(&max_runs, "upstream_cpu_cores"),
            "runs": max_runs, "ramp": ramp,
        },
    }))
}

/// Connect storm: sessions per second, cold token cache (fresh tokens) then warm (same tokens).
/// One anchor session per user stays open, so upstream connections exist before the storm.
fn storm(ctx: &mut Ctx, peer: Peer) -> anyhow::Result<Value> {
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
    let budget = |specs: Vec<WorkerSpec>| -> Vec<WorkerSpec> {
        specs
            .into_iter()
            .map(|mut sp| {
                sp.connect_deadline_secs = s.storm_connect_budget_secs;
                sp
            })
            .collect()
    };
    let mut anchors = Workers::spawn(ctx, budget(anchor_specs))?;
    let (aok, _, _, aerr) = Workers::tally(&anchors.cmd("connect", Duration::from_secs(120))?);
    if aok != s.storm_users as u64 {
        ctx.problem(format!(
            "storm/{name}: {aok} of {} anchors: {}",
            s.storm_users,
            aerr.unwrap_or_default()
        ));
    }
    let pids = setup.measured();
    let (mut cold, mut warm, mut cold_cpu, mut warm_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..s.repeats {
        let sp = specs(
            ctx,
            setup.front(),
            Transport::Ws,
            &users,
            s.storm_sessions,
            &HashMap::new(),
            Some(format!("cold{r}")),
            0,
        );
        let mut workers = Workers::spawn(ctx, budget(sp))?;
        for (label, rates, cpus) in [
            ("cold", &mut cold, &mut cold_cpu),
            ("warm", &mut warm, &mut warm_cpu),
        ] {
            let c0 = proc_stats::cpu_secs(&pids);
            let (ok, failed, secs, err) =
                Workers::tally(&workers.cmd("connect", Duration::from_secs(300))?);
            let c1 = proc_stats::cpu_secs(&pids);
            if failed > 0 || ok != n {
                ctx.problem(format!(
                    "storm/{name}: {label}: {ok} of {n} connected: {}",
                    err.unwrap_or_default()
                ));
            }
            rates.push(ok as f64 / secs.max(1e-6));
            cpus.push((c1 - c0) / ok.max(1) as f64 * 1e6);
            workers.cmd("close", Duration::from_secs(120))?;
            std::thread::sleep(Duration::from_millis(300));
        }
        workers.close();
    }
    anchors.close();
    Ok(json!({
        "sessions": n, "users": s.storm_users,
        "cold_sessions_per_s": median(&cold), "warm_sessions_per_s": median(&warm),
        "cold_cpu_us_per_session": median(&cold_cpu), "warm_cpu_us_per_session": median(&warm_cpu),
        "cold_runs": cold, "warm_runs": warm,
    }))
}

/// Long-poll (stream-edge only): held polls, memory per held poll, event-to-delivery latency.
/// `h2`: the sessions share h2c connections (`client::H2_STREAMS_PER_CONNECTION` each) instead of
/// one HTTP/1.1 connection each, as a browser's tabs share one HTTP/2 connection.
fn longpoll(ctx: &mut Ctx, peer: Peer, h2: bool) -> anyhow::Result<Value> {
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
        let (p, rep, expected, cores, _) = publish_round(
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

/// Idle and fan-out once more against stream-edge under `perf record -g`; the top symbols (self
/// time) of each go into the results.
fn profile_pass(ctx: &mut Ctx, out: &std::path::Path) -> Value {
    let mut res = serde_json::Map::new();
    let keep = ctx.sizes.clone();
    ctx.sizes.repeats = 1;
    for (name, f) in [
        ("idle", idle as fn(&mut Ctx, Peer) -> anyhow::Result<Value>),
        ("fanout", fanout),
    ] {
        let data = out.join(format!("profile-{name}.data"));
        ctx.note(&format!(
            "== profile: {name} / stream-edge under perf record"
        ));
        ctx.perf_out = Some(data.clone());
        let r = f(ctx, Peer::StreamEdge);
        ctx.perf_out = None;
        if let Err(e) = r {
            ctx.note(&format!("profile {name}: {e:#}"));
        }
        match peers::perf_top(&data) {
            Ok(top) => {
                let _ = std::fs::write(out.join(format!("profile-{name}.txt")), &top.1);
                res.insert(name.into(), json!(top.0));
            }
            Err(e) => {
                res.insert(name.into(), json!({"error": format!("{e:#}")}));
            }
        }
    }
    ctx.sizes = keep;
    Value::Object(res)
}
