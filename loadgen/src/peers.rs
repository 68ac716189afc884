//! The systems under test, each a real process on loopback: the emulator (upstream, and "direct"),
//! nginx, HAProxy and Pushpin as WebSocket proxies in front of it, and stream-edge in front of it.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

pub const API_KEY: &str = "stream-edge-dev";
pub const SECRET: &str = "stream-edge-dev-secret-do-not-use-in-production";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    Direct,
    Nginx,
    Haproxy,
    Pushpin,
    StreamEdge,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Direct => "direct",
            Peer::Nginx => "nginx",
            Peer::Haproxy => "haproxy",
            Peer::Pushpin => "pushpin",
            Peer::StreamEdge => "stream-edge",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "direct" => Peer::Direct,
            "nginx" => Peer::Nginx,
            "haproxy" => Peer::Haproxy,
            "pushpin" => Peer::Pushpin,
            "stream-edge" | "edge" => Peer::StreamEdge,
            _ => bail!("unknown peer {s}"),
        })
    }

    /// Whether the peer's programs are installed.
    pub fn available(self) -> bool {
        match self {
            Peer::Nginx => which("nginx"),
            Peer::Haproxy => which("haproxy"),
            Peer::Pushpin => which("pushpin") && which("condure") && which("zurl"),
            _ => true,
        }
    }
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        || Path::new("/usr/sbin").join(bin).is_file()
}

/// A started process; stopped (TERM, then KILL) on drop.
pub struct Proc {
    child: Child,
    name: &'static str,
}

/// Every child process the suite started and has not stopped yet: on SIGINT/SIGTERM the suite
/// stops them all before it exits, so nothing outlives an interrupted run.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Set once the suite is interrupted: a child started after that is killed at once.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn track(pid: u32) {
    if STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = kill(
            Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
            Signal::SIGKILL,
        );
    }
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(pid);
}

pub fn untrack(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain(|p| *p != pid);
}

/// SIGTERM to every tracked child, then SIGKILL to those still there after 3 s.
pub fn stop_all() {
    STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
    let pids = CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let as_pid = |p: u32| Pid::from_raw(i32::try_from(p).unwrap_or(i32::MAX));
    for p in &pids {
        let _ = kill(as_pid(*p), Signal::SIGTERM);
    }
    std::thread::sleep(Duration::from_secs(3));
    // Including any started while we waited.
    let pids = CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for p in &pids {
        let _ = kill(as_pid(*p), Signal::SIGKILL);
    }
}

impl Proc {
    fn new(child: Child, name: &'static str) -> Self {
        track(child.id());
        Proc { child, name }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "bench: {} did not stop on SIGTERM within 5 s; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
        untrack(self.child.id());
    }
}

/// Reads the first stdout line (the listening banner) within `timeout`.
fn first_line(child: &mut Child, timeout: Duration) -> anyhow::Result<String> {
    let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the child never blocks on a full pipe.
        let mut sink = String::new();
        while r.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    rx.recv_timeout(timeout).context("no banner line in time")
}

fn addr_after(line: &str, marker: &str) -> anyhow::Result<SocketAddr> {
    let at = line
        .find(marker)
        .ok_or_else(|| anyhow!("banner without {marker}: {line}"))?
        + marker.len();
    let rest = &line[at..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .with_context(|| format!("address in banner: {line}"))
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{addr} did not accept connections within {timeout:?}")
}

/// The emulator on its own: the upstream of every peer. With its control routes on: the
/// benchmark counts upstream connections through `/_emulator/connections`.
pub fn start_emulator(bin: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let mut child = Command::new(bin)
        .args(["emulator", "--control", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let line = first_line(&mut child, Duration::from_secs(10))?;
    let addr = addr_after(&line, "http://")?;
    Ok((Proc::new(child, "emulator"), addr))
}

/// A running system under test: its front address, the processes that make it up (measured),
/// and the admin address for stream-edge.
pub struct Running {
    pub front: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub main: Proc,
    /// Helper processes that belong to the peer (Pushpin's zurls, HAProxy's second process).
    pub extra: Vec<Proc>,
}

impl Running {
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = crate::proc_stats::tree(self.main.pid());
        for p in &self.extra {
            pids.extend(crate::proc_stats::tree(p.pid()));
        }
        pids
    }
}

/// Starts `peer` in front of the emulator; `h2c` turns on stream-edge's `http2.cleartext`.
pub fn start_peer(
    peer: Peer,
    bin: &Path,
    dir: &Path,
    emu: SocketAddr,
    h2c: bool,
) -> anyhow::Result<Option<Running>> {
    match peer {
        Peer::Direct => Ok(None),
        Peer::StreamEdge => start_edge(bin, dir, emu, h2c, None).map(Some),
        Peer::Nginx => start_nginx(dir, emu).map(Some),
        Peer::Haproxy => start_haproxy(dir, emu).map(Some),
        Peer::Pushpin => start_pushpin(dir, emu).map(Some),
    }
}

/// stream-edge in front of the emulator; `pin`: run it on that one CPU only (`taskset -c`), so
/// its runtime sizes itself to one core.
pub fn start_edge(
    bin: &Path,
    dir: &Path,
    emu: SocketAddr,
    h2c: bool,
    pin: Option<usize>,
) -> anyhow::Result<Running> {
    let conf = dir.join("stream-edge.toml");
    std::fs::write(
        &conf,
        format!(
            r#"listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[apps]]
api_key = "{API_KEY}"
secrets = ["{SECRET}"]

[upstream]
url = "http://{emu}"

[limits]
max_connections = 19000
# All load comes from 8 loopback addresses standing for ~15,000 clients: no per-IP limits.
connect_rate_per_ip = 0
max_connections_per_ip = 0

[shutdown]
drain_seconds = 1

[http2]
# Only the long-poll-over-h2 scenario (h2c with prior knowledge); HTTP/1.1 is served either way.
cleartext = {h2c}
"#
        ),
    )?;
    let mut cmd = match pin {
        // taskset execs the gateway in place: the pid it reports is the gateway's.
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(["serve", "--config"])
        .arg(&conf)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let line = first_line(&mut child, Duration::from_secs(10))?;
    let front = addr_after(&line, "listening on http://")?;
    let admin = addr_after(&line, "admin http://").ok();
    Ok(Running {
        front,
        admin,
        main: Proc::new(child, "stream-edge"),
        extra: Vec::new(),
    })
}

fn start_nginx(dir: &Path, emu: SocketAddr) -> anyhow::Result<Running> {
    // Absolute: nginx resolves `-c` and the temp paths against `-p`, so a relative `--out`
    // (as `benches/run.sh` passes) would be applied twice.
    let prefix = std::path::absolute(dir.join("nginx"))?;
    std::fs::create_dir_all(prefix.join("logs"))?;

    let port = free_port()?;
    // Two workers (one per core), each may hold 2 fds per proxied connection: 19,900 is this
    // sandbox's hard limit. reuseport spreads the accepts over both workers.
    let conf = format!(
        r#"user root;
worker_processes 2;
worker_rlimit_nofile 19900;
pid {p}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 19800; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {p}/body;
  proxy_temp_path {p}/proxy;
  fastcgi_temp_path {p}/fastcgi;
  uwsgi_temp_path {p}/uwsgi;
  scgi_temp_path {p}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  upstream emu {{ server {emu}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{
      proxy_pass http://emu;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
      proxy_buffering off;
    }}
  }}
}}
"#,
        p = prefix.display()
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    let front: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let running = Running {
        front,
        admin: None,
        main: Proc::new(child, "nginx"),
        extra: Vec::new(),
    };
    wait_port(front, Duration::from_secs(10))?;
    Ok(running)
}

/// How many processes HAProxy runs as, and nginx's worker count: one per core.
pub const PROXY_PROCESSES: usize = 2;

fn start_haproxy(dir: &Path, emu: SocketAddr) -> anyhow::Result<Running> {
    let base = std::path::absolute(dir.join("haproxy"))?;
    std::fs::create_dir_all(&base)?;
    let port = free_port()?;
    // Two single-threaded processes sharing the port (HAProxy binds with SO_REUSEPORT by
    // default), not one process with `nbthread 2`: a proxied WebSocket holds two fds, and this
    // sandbox caps every process at 20,000 open files (RLIMIT_NOFILE, hard), so one process could
    // hold at most ~9,900 of the idle scenario's 15,000 sessions. nginx's two worker processes
    // (`worker_processes 2`) live under the same cap; both peers get two cores' worth of
    // processes. The timeouts outlast every hold (`timeout tunnel` governs an upgraded
    // WebSocket), and there is no `log` line: nothing is logged, like nginx's `access_log off`.
    let conf = format!(
        "global\n  nbthread 1\n  maxconn 9800\n\n\
         defaults\n  mode http\n  maxconn 9800\n  timeout connect 5s\n  timeout client 3600s\n  \
         timeout server 3600s\n  timeout tunnel 3600s\n  timeout http-keep-alive 60s\n\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend emu\n\n\
         backend emu\n  server emu {emu}\n"
    );
    let conf_path = base.join("haproxy.cfg");
    std::fs::write(&conf_path, conf)?;
    let spawn = || {
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting haproxy")
    };
    let main = Proc::new(spawn()?, "haproxy");
    let mut extra = Vec::new();
    for _ in 1..PROXY_PROCESSES {
        extra.push(Proc::new(spawn()?, "haproxy"));
    }
    let front: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let running = Running {
        front,
        admin: None,
        main,
        extra,
    };
    wait_port(front, Duration::from_secs(10))?;
    // The second process binds a moment after the first: wait until both are up and listening.
    std::thread::sleep(Duration::from_millis(300));
    Ok(running)
}

/// How many zurl daemons Pushpin's proxy spreads its backend connections over (issue 20: one
/// zurl capped Pushpin at ~1.3k deliveries/s, two at ~5k).
pub const ZURLS: usize = 2;

fn start_pushpin(dir: &Path, emu: SocketAddr) -> anyhow::Result<Running> {
    let base = dir.join("pushpin");
    let run = base.join("run");
    let log = base.join("log");
    std::fs::create_dir_all(&run)?;
    std::fs::create_dir_all(&log)?;
    let port = free_port()?;
    // Pushpin 1.36's proxy reaches backends through zurl daemons (a system service in Debian,
    // not started by the runner): run our own, with Debian's zurl.conf values except the socket
    // paths, no deny list (the backend is on loopback) and room for every proxied connection.
    // `instance_id` stays blank, so each zurl picks a random routing id and the proxy's ROUTER
    // socket can tell them apart.
    let ipc = |name: &str, i: usize| format!("ipc://{}/zurl{i}-{name}", run.display());
    let mut zurls = Vec::new();
    for i in 0..ZURLS {
        let zurl_conf = base.join(format!("zurl{i}.conf"));
        std::fs::write(
            &zurl_conf,
            format!(
                "[General]\nin_spec={}\nin_stream_spec={}\nout_spec={}\ndefpolicy=allow\nmax_open_requests=20000\n\
                 buffer_size=200000\ntimeout=600\nin_hwm=1000\nout_hwm=1000\n",
                ipc("in", i),
                ipc("in-stream", i),
                ipc("out", i)
            ),
        )?;
        let zurl = Command::new("zurl")
            .arg(format!("--config={}", zurl_conf.display()))
            .arg("--loglevel=1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting zurl")?;
        zurls.push(Proc::new(zurl, "zurl"));
    }
    // The proxy's zurl specs are lists (src/proxy/app.cpp reads them with `toStringList()`, and
    // Pushpin's own internal.conf lists two m2a specs the same way): it connects its PUSH socket
    // to every zurl (new requests round-robin), its ROUTER to every zurl's stream socket (a
    // session's continuation goes to the zurl that owns it) and its SUB to every zurl's PUB.
    let list = |name: &str| {
        (0..ZURLS)
            .map(|i| ipc(name, i))
            .collect::<Vec<_>>()
            .join(",")
    };
    let packaged = std::fs::read_to_string("/etc/pushpin/pushpin.conf")
        .context("reading /etc/pushpin/pushpin.conf")?;
    // The packaged config with our run/log dirs, port, connection bound, warnings-only logging
    // (nginx runs with access_log off) and our zurls; everything else at Debian's defaults
    // (client_buffer_size 8192).
    let mut conf = String::new();
    for l in packaged.lines() {
        let key = l.split('=').next().unwrap_or("").trim();
        let line = match key {
            "rundir" => format!("rundir={}", run.display()),
            "logdir" => format!("logdir={}", log.display()),
            "http_port" => format!("http_port=127.0.0.1:{port}"),
            "client_maxconn" => "client_maxconn=19000".to_string(),
            "log_level" => "log_level=1".to_string(),
            _ => l.to_string(),
        };
        conf.push_str(&line);
        conf.push('\n');
        if l.trim() == "[proxy]" {
            conf.push_str(&format!(
                "zurl_out_specs={}\nzurl_out_stream_specs={}\nzurl_in_specs={}\n",
                list("in"),
                list("in-stream"),
                list("out")
            ));
        }
    }
    let conf_path = base.join("pushpin.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new("pushpin")
        .arg("--config")
        .arg(&conf_path)
        .arg("--route")
        .arg(format!("* {}:{}", emu.ip(), emu.port()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting pushpin")?;
    let front: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let running = Running {
        front,
        admin: None,
        main: Proc::new(child, "pushpin"),
        extra: zurls,
    };
    wait_port(front, Duration::from_secs(15))?;
    // The proxy, handler and zurls join over ZeroMQ a while after condure listens: wait until
    // requests really reach the emulator through them (a few, so both zurls have joined).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ok = 0;
    while ok < 4 * ZURLS {
        if proxied_ok(front) {
            ok += 1;
            continue;
        }
        if Instant::now() > deadline {
            bail!("pushpin did not proxy a request to the emulator within 20 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(running)
}

/// `GET /_emulator/connections` through `front` answers 200.
fn proxied_ok(front: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = TcpStream::connect_timeout(&front, Duration::from_millis(500)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "GET /_emulator/connections HTTP/1.1\r\nHost: {front}\r\nConnection: close\r\n\r\n"
    );
    if c.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    c.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
}

/// `perf record -g` attached to `pid`, writing `out` (stopped with SIGTERM, which perf handles).
pub fn start_perf(pid: u32, out: &Path) -> anyhow::Result<Proc> {
    let child = Command::new("perf")
        .args(["record", "-F", "499", "-g", "-q", "-o"])
        .arg(out)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record (install linux-perf)")?;
    Ok(Proc::new(child, "perf"))
}

/// The symbols with the most self time in a perf data file: ([(percent, symbol)], full text).
pub fn perf_top(data: &Path) -> anyhow::Result<(Vec<(f64, String)>, String)> {
    let out = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "dso,symbol",
            "-g",
            "none",
            "--percent-limit",
            "0.7",
            "-i",
        ])
        .arg(data)
        .output()
        .context("perf report")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let top: Vec<(f64, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('%'))
        .filter_map(|l| {
            let t = l.trim();
            let pct: f64 = t.split('%').next()?.trim().parse().ok()?;
            let rest = t
                .split_once('%')?
                .1
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            Some((pct, rest))
        })
        .take(25)
        .collect();
    if top.is_empty() {
        bail!("perf report found no samples in {}", data.display());
    }
    Ok((top, text))
}
