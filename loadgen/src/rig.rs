//! The suite's rigging, shared by every scenario: the load-generating worker processes and their
//! merged reports, the systems under test (emulator and peer), the fan-out rig with its publisher,
//! and small statistics helpers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::client::new_hist;
use crate::ctx::Ctx;
use crate::peers::{self, Peer, Running, API_KEY, SECRET};
use crate::proc_stats;
use crate::publisher::{Publisher, PUBLISHER};
use crate::worker::{Transport, WorkerSpec};

pub(crate) struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

pub(crate) struct Workers {
    ws: Vec<Worker>,
}

impl Workers {
    /// Spawns one process per spec and waits for each to say it is ready.
    pub(crate) fn spawn(ctx: &Ctx, specs: Vec<WorkerSpec>) -> anyhow::Result<Self> {
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

    pub(crate) fn read_all(&mut self, timeout: Duration) -> anyhow::Result<Vec<Value>> {
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

    pub(crate) fn cmd(&mut self, cmd: &str, timeout: Duration) -> anyhow::Result<Vec<Value>> {
        for w in &mut self.ws {
            writeln!(w.stdin, "{cmd}")?;
            w.stdin.flush()?;
        }
        self.read_all(timeout)
    }

    /// Sums `ok`/`failed`, the slowest `secs`, the first error.
    pub(crate) fn tally(vals: &[Value]) -> (u64, u64, f64, Option<String>) {
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
    pub(crate) fn report(&mut self) -> anyhow::Result<Report> {
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

    pub(crate) fn close(mut self) {
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
pub(crate) struct Report {
    pub(crate) received: u64,
    pub(crate) errors: u64,
    pub(crate) open: u64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
}

pub(crate) fn src_ips() -> Vec<Ipv4Addr> {
    (2..=9).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect()
}

/// The JS SDK's ping interval (stream-chat 9.53.0 src/connection.ts `pingInterval`): the fan-out
/// and idle sessions ping as it does, so no peer sees silent clients (which stream-edge would
/// probe) and every peer carries the same ping traffic.
pub(crate) const SDK_PING_SECS: u64 = 25;

/// Splits users over enough workers (at least two, one per core) for the sessions.
#[allow(clippy::too_many_arguments)]
pub(crate) fn specs(
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

pub(crate) struct Setup {
    /// `perf record` on the gateway (profiling pass only); stopped first.
    _perf: Option<peers::Proc>,
    pub(crate) emu: peers::Proc,
    pub(crate) emu_addr: SocketAddr,
    pub(crate) peer: Option<Running>,
}

impl Setup {
    pub(crate) fn start(ctx: &Ctx, peer: Peer) -> anyhow::Result<Self> {
        Self::start_with(ctx, peer, false)
    }

    /// The emulator, and stream-edge alone on CPU `cpu` (the pinned run).
    pub(crate) fn start_pinned(ctx: &Ctx, cpu: usize) -> anyhow::Result<Self> {
        let (emu, emu_addr) = peers::start_emulator(&ctx.bin_gateway)?;
        let peer = peers::start_edge(&ctx.bin_gateway, &ctx.dir, emu_addr, false, Some(cpu))?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(Setup {
            _perf: None,
            emu,
            emu_addr,
            peer: Some(peer),
        })
    }

    /// `h2c`: stream-edge also serves h2c with prior knowledge (`http2.cleartext`).
    pub(crate) fn start_with(ctx: &Ctx, peer: Peer, h2c: bool) -> anyhow::Result<Self> {
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

    pub(crate) fn front(&self) -> SocketAddr {
        self.peer.as_ref().map_or(self.emu_addr, |p| p.front)
    }

    /// The processes that hold the client connections: the peer, or the emulator when direct.
    pub(crate) fn measured(&self) -> Vec<u32> {
        match &self.peer {
            Some(p) => p.pids(),
            None => proc_stats::tree(self.emu.pid()),
        }
    }

    pub(crate) fn emu_pids(&self) -> Vec<u32> {
        proc_stats::tree(self.emu.pid())
    }

    pub(crate) fn upstream_connections(&self, ctx: &Ctx) -> anyhow::Result<u64> {
        let v = http_get_json(
            ctx,
            &format!("http://{}/_emulator/connections", self.emu_addr),
        )?;
        v["total"]
            .as_u64()
            .ok_or_else(|| anyhow!("no total in {v}"))
    }

    pub(crate) fn edge_metric(&self, ctx: &Ctx, name: &str) -> Option<f64> {
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

pub(crate) fn http_get(ctx: &Ctx, url: &str) -> anyhow::Result<String> {
    ctx.rt.block_on(async {
        let rest = crate::client::rest_client();
        let (status, body) = crate::client::rest_call(&rest, "GET", url, "", None).await?;
        if status != 200 {
            bail!("GET {url}: HTTP {status}");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    })
}

pub(crate) fn http_get_json(ctx: &Ctx, url: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&http_get(ctx, url)?)?)
}

pub(crate) fn median(v: &[f64]) -> f64 {
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

pub(crate) fn kib(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A user id and the channel it watches.
pub(crate) type UserChannel = (String, Option<String>);

pub(crate) fn fan_users(
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
pub(crate) fn connect_and_watch(
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

/// What one publishing round saw.
pub(crate) struct Round {
    pub(crate) published: crate::publisher::Published,
    pub(crate) rep: Report,
    pub(crate) expected: u64,
    /// CPU of the measured process(es) over the round, in cores, and split in seconds.
    pub(crate) cores: f64,
    pub(crate) user_secs: f64,
    pub(crate) sys_secs: f64,
    pub(crate) emu_cores: f64,
    pub(crate) wall: f64,
}

impl Round {
    /// Every delivery arrived (before the drain ended), none failed, the publisher kept the
    /// rate, and p99 ≤ 50 ms: the ramp's rule for a rate the peer sustains.
    pub(crate) fn sustained(&self, rate: f64) -> bool {
        let achieved = self.published.ok as f64 / self.published.secs;
        self.rep.received >= self.expected
            && self.rep.p99_us <= 50_000.0
            && achieved >= 0.9 * rate
            && self.published.failed == 0
            && self.rep.errors == 0
    }

    /// Every delivery arrived before the drain ended and the publisher kept the rate: the peer
    /// kept up, whatever the latency. A CPU-per-delivery figure counts only when it did.
    pub(crate) fn kept_up(&self, rate: f64) -> bool {
        let achieved = self.published.ok as f64 / self.published.secs;
        self.rep.received >= self.expected && achieved >= 0.9 * rate && self.published.failed == 0
    }

    /// Microseconds of (user, kernel) CPU per delivery that arrived.
    pub(crate) fn cpu_us_per_delivery(&self) -> (f64, f64) {
        let n = self.rep.received.max(1) as f64;
        (self.user_secs / n * 1e6, self.sys_secs / n * 1e6)
    }
}

/// Publishes, waits for the deliveries to arrive (or `drain` to pass), returns what was seen.
#[allow(clippy::too_many_arguments)]
pub(crate) fn publish_round(
    ctx: &Ctx,
    setup: &Setup,
    workers: &mut Workers,
    pubr: &Publisher,
    channels: &[String],
    per_msg: u64,
    rate: f64,
    secs: f64,
    drain: Duration,
) -> anyhow::Result<Round> {
    workers.cmd("reset", Duration::from_secs(10))?;
    let pids = setup.measured();
    let emu = setup.emu_pids();
    let cpu0 = proc_stats::CpuSnap::of(&pids);
    let e0 = proc_stats::cpu_secs(&emu);
    let t0 = Instant::now();
    let published = ctx.rt.block_on(pubr.run(channels, rate, secs));
    let expected = published.ok * per_msg;
    let deadline = Instant::now() + drain;
    let mut rep = workers.report()?;
    while rep.received < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        rep = workers.report()?;
    }
    let wall = t0.elapsed().as_secs_f64();
    let (user_secs, sys_secs) = proc_stats::CpuSnap::of(&pids).since(&cpu0);
    let emu_cores = (proc_stats::cpu_secs(&emu) - e0) / wall;
    Ok(Round {
        published,
        rep,
        expected,
        cores: (user_secs + sys_secs) / wall,
        user_secs,
        sys_secs,
        emu_cores,
        wall,
    })
}

/// One peer's fan-out setup: its processes, 2,000 connected and watching sessions, a publisher.
pub(crate) struct FanRig {
    pub(crate) setup: Setup,
    pub(crate) pubr: Publisher,
    pub(crate) channels: Vec<String>,
    pub(crate) per_msg: u64,
    pub(crate) workers: Workers,
    pub(crate) name: String,
}

impl FanRig {
    /// Starts `peer` with its own emulator, connects and watches every session, and warms up.
    pub(crate) fn start(ctx: &mut Ctx, peer: Peer, label: &str) -> anyhow::Result<Self> {
        let setup = Setup::start(ctx, peer)?;
        Self::on(ctx, setup, label)
    }

    /// Connects and watches every session through an already started `setup`, and warms up.
    pub(crate) fn on(ctx: &mut Ctx, setup: Setup, label: &str) -> anyhow::Result<Self> {
        let s = ctx.sizes.clone();
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
            SDK_PING_SECS,
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
        // Warm-up (connections, allocators), not measured; at the low fixed rate, which every
        // peer sustains, so no backlog is left behind.
        let rate = s.fan_low_deliveries / rig.per_msg as f64;
        let _ = rig.round(ctx, rate, 0.5, Duration::from_secs(3))?;
        Ok(rig)
    }

    pub(crate) fn round(
        &mut self,
        ctx: &Ctx,
        rate: f64,
        secs: f64,
        drain: Duration,
    ) -> anyhow::Result<Round> {
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

    /// Waits until deliveries stop arriving (at most `cap`): after a rate the peer could not keep
    /// up with, its backlog would otherwise count in the next round.
    pub(crate) fn settle(&mut self, cap: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + cap;
        let mut last = self.workers.report()?.received;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.workers.report()?.received;
            if now == last {
                break;
            }
            last = now;
        }
        Ok(())
    }

    /// One round at `deliveries` per second for `secs`, as JSON; problems are noted.
    pub(crate) fn rate_round(
        &mut self,
        ctx: &mut Ctx,
        deliveries: f64,
        secs: f64,
        drain: Duration,
    ) -> anyhow::Result<(Value, bool)> {
        let rate = deliveries / self.per_msg as f64;
        let r = self.round(ctx, rate, secs, drain)?;
        let name = &self.name;
        if r.published.failed > 0 {
            ctx.problem(format!(
                "{name}: {} publishes failed: {}",
                r.published.failed,
                r.published.first_error.clone().unwrap_or_default()
            ));
        }
        if r.rep.received != r.expected || r.rep.errors > 0 {
            ctx.problem(format!(
                "{name}: {deliveries} deliveries/s: {} of {} deliveries arrived, {} errors",
                r.rep.received, r.expected, r.rep.errors
            ));
        }
        let sustained = r.sustained(rate);
        let (user_us, sys_us) = r.cpu_us_per_delivery();
        Ok((
            json!({
                "target_deliveries_per_s": deliveries,
                "deliveries_per_s": r.rep.received as f64 / r.published.secs,
                "expected": r.expected, "received": r.rep.received, "sustained": sustained,
                "kept_up": r.kept_up(rate),
                "p50_us": r.rep.p50_us, "p99_us": r.rep.p99_us, "p999_us": r.rep.p999_us, "max_us": r.rep.max_us,
                "cpu_cores": r.cores, "upstream_cpu_cores": r.emu_cores,
                "user_us_per_delivery": user_us, "sys_us_per_delivery": sys_us,
                "cpu_us_per_delivery": user_us + sys_us,
            }),
            sustained,
        ))
    }
}

/// (min, first quartile, median, third quartile, max) of `v`, linear interpolation.
pub(crate) fn spread(v: &[f64]) -> Option<[f64; 5]> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let x = p * (s.len() - 1) as f64;
        let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
        s[lo] + (s[hi] - s[lo]) * (x - lo as f64)
    };
    Some([s[0], q(0.25), q(0.5), q(0.75), s[s.len() - 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_ten_pairs() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(spread(&v), Some([1.0, 3.25, 5.5, 7.75, 10.0]));
        assert_eq!(spread(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }
}
