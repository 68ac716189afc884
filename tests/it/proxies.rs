//! Real corporate proxies between a browser and the gateway (issue 19): Debian's Squid, started
//! here with a generated config in its own scratch directory on a free loopback port, and headless
//! Chromium (`tests/e2e/proxies/squid.test.mjs`) reaching the gateway only through it. Skipped
//! with one line where `squid` is not installed (`tests/run` installs it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use stream_edge::config::{DEV_API_KEY, DEV_API_SECRET};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::deploy::TempDir;
use crate::support::*;

const SQUID: &str = "/usr/sbin/squid";
/// Ports tried: a free port is chosen by binding 127.0.0.1:0 and releasing it, so another process
/// may take it before Squid binds; Squid then exits and the next port is tried.
const START_ATTEMPTS: usize = 5;
/// Squid's start (config parse, memory store) on a loaded 2-core machine.
const START_BUDGET: Duration = Duration::from_secs(30);
/// The whole browser scenario, Chromium's cold start included.
const NODE_BUDGET: Duration = Duration::from_secs(180);

/// An explicit proxy that blocks WebSockets both ways real ones do: `CONNECT` only to 443
/// (Chromium tunnels `ws://` through `CONNECT`) and no request carrying `Upgrade: websocket`
/// (Squid 5 also drops the header by default: `http_upgrade_request_protocols`).
const BLOCK_WEBSOCKETS: &str = "\
acl SSL_ports port 443
acl CONNECT method CONNECT
acl ws_upgrade req_header Upgrade -i websocket
http_access deny CONNECT !SSL_ports
http_access deny ws_upgrade
http_access allow localhost
http_access deny all
";

/// An explicit proxy that tunnels `CONNECT` to any port, so `ws://` passes opaquely.
const TUNNEL_WEBSOCKETS: &str = "\
http_access allow localhost
http_access deny all
";

/// A running Squid, killed on drop.
struct Squid {
    _child: Child,
    dir: TempDir,
    url: String,
}

impl Squid {
    /// `None` when Squid is not installed.
    async fn start(rules: &str) -> Option<Squid> {
        if !Path::new(SQUID).exists() {
            return None;
        }
        for _ in 0..START_ATTEMPTS {
            let dir = TempDir::new("squid");
            // Started as root, Squid drops to the `proxy` user, which must write its logs here.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let conf = dir.0.join("squid.conf");
            std::fs::write(&conf, config(&dir.0, port, rules)).unwrap();
            let mut child = Command::new(SQUID)
                .args(["-N", "-d", "1", "-f"])
                .arg(&conf)
                .current_dir(&dir.0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("squid starts");
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let ready = tokio::time::timeout(START_BUDGET, async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("Accepting HTTP Socket connections") {
                        return true;
                    }
                }
                false
            })
            .await
            .expect("squid starts or exits within its budget");
            if ready {
                // Keep draining its log so Squid never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return Some(Squid {
                    _child: child,
                    dir,
                    url: format!("http://127.0.0.1:{port}"),
                });
            }
            eprintln!("squid did not start on port {port}; trying another");
        }
        panic!("squid did not start in {START_ATTEMPTS} attempts");
    }

    fn access_log(&self) -> PathBuf {
        self.dir.0.join("access.log")
    }
}

fn config(dir: &Path, port: u16, rules: &str) -> String {
    let d = dir.display();
    format!(
        "http_port 127.0.0.1:{port}
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log stdio:{d}/access.log
cache_store_log none
coredump_dir {d}
netdb_filename none
pinger_enable off
shutdown_lifetime 0 seconds
cache_mem 4 MB
cache deny all
{rules}"
    )
}

/// Runs `tests/e2e/proxies/squid.test.mjs` against a fresh gateway behind `squid`.
async fn run_browser(squid: &Squid, mode: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "tests/e2e/node_modules is missing: run `npm ci --prefix tests/e2e` (tests/run does it)"
    );
    let mut cfg = test_config();
    cfg.upstream.linger = Duration::from_secs(1);
    let gw = TestGateway::start_with(cfg).await;
    let child = Command::new("node")
        .args(["--test", "--test-force-exit", "proxies/squid.test.mjs"])
        .current_dir(&dir)
        .env("GATEWAY_URL", &gw.base)
        .env("ADMIN_URL", &gw.admin)
        .env("EMULATOR_URL", gw.emulator_control_url())
        .env("STREAM_API_KEY", DEV_API_KEY)
        .env("STREAM_API_SECRET", DEV_API_SECRET)
        .env("SQUID_URL", &squid.url)
        .env("SQUID_ACCESS_LOG", squid.access_log())
        .env("PROXY_MODE", mode)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(NODE_BUDGET, child)
        .await
        .expect("the browser scenario finishes within its budget")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "browser behind Squid failed (output above)"
    );
    assert!(
        stdout.contains("# pass 1") && stdout.contains("# fail 0"),
        "the scenario ran and passed"
    );
    gw.running().assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_squid_blocking_websockets_the_sdk_chats_over_long_poll() {
    let Some(squid) = Squid::start(BLOCK_WEBSOCKETS).await else {
        eprintln!("skipped: {SQUID} is not installed (apt-get install squid; tests/run does it)");
        return;
    };
    run_browser(&squid, "block").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_squid_tunnelling_connect_the_sdk_stays_on_websocket() {
    let Some(squid) = Squid::start(TUNNEL_WEBSOCKETS).await else {
        eprintln!("skipped: {SQUID} is not installed (apt-get install squid; tests/run does it)");
        return;
    };
    run_browser(&squid, "tunnel").await;
}
