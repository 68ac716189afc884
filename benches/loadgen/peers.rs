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

impl Proc {
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

/// The emulator on its own: the upstream of every peer.
pub fn start_emulator(bin: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let mut child = Command::new(bin)
        .args(["emulator", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let line = first_line(&mut child, Duration::from_secs(10))?;
    let addr = addr_after(&line, "http://")?;
    Ok((
        Proc {
            child,
            name: "emulator",
        },
        addr,
    ))
}

/// A running system under test: its front address, the processes that make it up (measured),
/// and the admin address for stream-edge.
pub struct Running {
    pub front: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub main: Proc,
    pub name: &'static str,
}

impl Running {
    pub fn pids(&self) -> Vec<u32> {
        crate::proc_stats::tree(self.main.pid())
    }
}

pub fn start_peer(
    peer: Peer,
    bin: &Path,
    dir: &Path,
    emu: SocketAddr,
) -> anyhow::Result<Option<Running>> {
    match peer {
        Peer::Direct => Ok(None),
        Peer::StreamEdge => start_edge(bin, dir, emu).map(Some),
        Peer::Nginx => start_nginx(dir, emu).map(Some),
        Peer::Pushpin => start_pushpin(dir, emu).map(Some),
    }
}

fn start_edge(bin: &Path, dir: &Path, emu: SocketAddr) -> anyhow::Result<Running> {
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

[shutdown]
drain_seconds = 1
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
        main: Proc {
            child,
            name: "stream-edge",
        },
        name: "stream-edge",
    })
}

fn start_nginx(dir: &Path, emu: SocketAddr) -> anyhow::Result<Running> {
    let prefix = dir.join("nginx");
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
        main: Proc {
            child,
            name: "nginx",
        },
        name: "nginx",
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
    let packaged = std::fs::read_to_string("/etc/pushpin/pushpin.conf")
        .context("reading /etc/pushpin/pushpin.conf")?;
    // The packaged config with our run/log dirs, port and connection bound; everything else stays
    // at Debian's defaults (client_buffer_size 8192).
    let conf: String = packaged
        .lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            match key {
                "rundir" => format!("rundir={}", run.display()),
                "logdir" => format!("logdir={}", log.display()),
                "http_port" => format!("http_port=127.0.0.1:{port}"),
                "client_maxconn" => "client_maxconn=19000".to_string(),
                "routesfile" => format!("routesfile={}", base.join("routes").display()),
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        base.join("routes"),
        format!("* {}:{}\n", emu.ip(), emu.port()),
    )?;
    let conf_path = base.join("pushpin.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new("pushpin")
        .arg("--config")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting pushpin")?;
    let front: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let running = Running {
        front,
        admin: None,
        main: Proc {
            child,
            name: "pushpin",
        },
        name: "pushpin",
    };
    wait_port(front, Duration::from_secs(15))?;
    // The proxy and handler join over ZeroMQ a moment after condure listens.
    std::thread::sleep(Duration::from_millis(1500));
    Ok(running)
}
