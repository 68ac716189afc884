//! The systems under test, each a real process on loopback: the emulator (upstream, and "direct"),
//! nginx and Pushpin as WebSocket proxies in front of it, and stream-edge in front of it.

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
    Pushpin,
    StreamEdge,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Direct => "direct",
            Peer::Nginx => "nginx",
            Peer::Pushpin => "pushpin",
            Peer::StreamEdge => "stream-edge",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "direct" => Peer::Direct,
            "nginx" => Peer::Nginx,
            "pushpin" => Peer::Pushpin,
            "stream-edge" | "edge" => Peer::StreamEdge,
            _ => bail!("unknown peer {s}"),
        })
    }

    /// Whether the peer's programs are installed.
    pub fn available(self) -> bool {
        match self {
            Peer::Nginx => which("nginx"),
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
    /// Helper processes that belong to the peer (Pushpin's zurl).
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
        Peer::StreamEdge => start_edge(bin, dir, emu, h2c).map(Some),
        Peer::Nginx => start_nginx(dir, emu).map(Some),
        Peer::Pushpin => start_pushpin(dir, emu).map(Some),
    }
}

fn start_edge(bin: &Path, dir: &Path, emu: SocketAddr, h2c: bool) -> anyhow::Result<Running> {
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
    let mut child = Command::new(bin)
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

fn start_pushpin(dir: &Path, emu: SocketAddr) -> anyhow::Result<Running> {
    let base = dir.join("pushpin");
    let run = base.join("run");
    let log = base.join("log");
    std::fs::create_dir_all(&run)?;
    std::fs::create_dir_all(&log)?;
    let port = free_port()?;
    // Pushpin 1.36's proxy reaches backends through a zurl daemon (a system service in Debian,
    // not started by the runner): run our own, with Debian's zurl.conf values except the socket
    // paths, no deny list (the backend is on loopback) and room for every proxied connection.
    let zurl_conf = base.join("zurl.conf");
    let ipc = |name: &str| format!("ipc://{}/zurl-{name}", run.display());
    std::fs::write(
        &zurl_conf,
        format!(
            "[General]\nin_spec={}\nin_stream_spec={}\nout_spec={}\ndefpolicy=allow\nmax_open_requests=20000\n\
             buffer_size=200000\ntimeout=600\nin_hwm=1000\nout_hwm=1000\n",
            ipc("in"),
            ipc("in-stream"),
            ipc("out")
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
    let zurl = Proc::new(zurl, "zurl");
    let packaged = std::fs::read_to_string("/etc/pushpin/pushpin.conf")
        .context("reading /etc/pushpin/pushpin.conf")?;
    // The packaged config with our run/log dirs, port, connection bound, warnings-only logging
    // (nginx runs with access_log off) and our zurl; everything else at Debian's defaults
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
                ipc("in"),
                ipc("in-stream"),
                ipc("out")
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
        extra: vec![zurl],
    };
    wait_port(front, Duration::from_secs(15))?;
    // The proxy, handler and zurl join over ZeroMQ a while after condure listens: wait until a
    // request really reaches the emulator through them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !proxied_ok(front) {
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
