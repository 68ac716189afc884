//! Real corporate proxies between a browser and the gateway (issue 19): Debian's Squid, started
//! here with a generated config in its own scratch directory on a free loopback port, and headless
//! Chromium (`tests/e2e/proxies/`) reaching the gateway only through it: a proxy that blocks
//! WebSockets, one that tunnels them, and one that intercepts TLS (ssl-bump, needs the OpenSSL
//! build, `squid-openssl`). Each skips with one line where its Squid is missing (`tests/run`
//! installs it).

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
/// The tab measurement (`many_tabs_behind_a_blocking_squid`): up to 40 s per tab.
const TABS_BUDGET: Duration = Duration::from_secs(900);

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
        Self::start_with(
            |_, port| (format!("http_port 127.0.0.1:{port}"), rules.to_string()),
            |_| {},
        )
        .await
    }

    /// Squid with the `http_port` line and rules `conf` gives for its directory and port, after
    /// `prepare` set up the directory (certificates, say).
    async fn start_with(
        conf: impl Fn(&Path, u16) -> (String, String),
        prepare: impl Fn(&Path),
    ) -> Option<Squid> {
        if !Path::new(SQUID).exists() {
            return None;
        }
        for _ in 0..START_ATTEMPTS {
            let dir = TempDir::new("squid");
            prepare(&dir.0);
            // Started as root, Squid drops to the `proxy` user, which must write its logs here.
            open_to_all(&dir.0);
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let (http_port, rules) = conf(&dir.0, port);
            let conf = dir.0.join("squid.conf");
            std::fs::write(&conf, config(&dir.0, &http_port, &rules)).unwrap();
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
            let mut seen = Vec::new();
            let ready = tokio::time::timeout(START_BUDGET, async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("HTTP Socket connections at") {
                        return true;
                    }
                    seen.push(line);
                }
                false
            })
            .await;
            let Ok(ready) = ready else {
                panic!(
                    "squid neither started nor exited within {START_BUDGET:?}:\n{}",
                    seen.join("\n")
                );
            };
            if ready {
                // Keep draining its log so Squid never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return Some(Squid {
                    _child: child,
                    dir,
                    url: format!("http://127.0.0.1:{port}"),
                });
            }
            eprintln!(
                "squid did not start on port {port}; trying another:\n{}",
                seen.join("\n")
            );
        }
        panic!("squid did not start in {START_ATTEMPTS} attempts");
    }

    fn access_log(&self) -> PathBuf {
        self.dir.0.join("access.log")
    }
}

/// Squid runs as the `proxy` user when started as root: everything under `dir` is opened to it.
fn open_to_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                open_to_all(&path);
            } else {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666));
            }
        }
    }
}

fn config(dir: &Path, http_port: &str, rules: &str) -> String {
    let d = dir.display();
    format!(
        "{http_port}
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
    let mut cfg = test_config();
    cfg.upstream.linger = Duration::from_secs(1);
    let gw = TestGateway::start_with(cfg).await;
    let base = gw.base.clone();
    run_browser_at(squid, mode, &gw, &base, &[]).await;
}

/// Runs the browser scenario against `gw` at `base`, with extra environment for node.
async fn run_browser_at(
    squid: &Squid,
    mode: &str,
    gw: &TestGateway,
    base: &str,
    env: &[(&str, &Path)],
) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "tests/e2e/node_modules is missing: run `npm ci --prefix tests/e2e` (tests/run does it)"
    );
    // The tab measurement is its own file, with a longer budget.
    let (file, budget) = if mode == "tabs" {
        ("proxies/tabs.test.mjs", TABS_BUDGET)
    } else {
        ("proxies/squid.test.mjs", NODE_BUDGET)
    };
    let child = Command::new("node")
        .args(["--test", "--test-force-exit", file])
        .current_dir(&dir)
        .envs(env.iter().copied())
        .env("GATEWAY_URL", base)
        .env("ADMIN_URL", &gw.admin)
        .env("EMULATOR_URL", gw.emulator_control_url())
        .env("STREAM_API_KEY", DEV_API_KEY)
        .env("STREAM_API_SECRET", DEV_API_SECRET)
        .env("SQUID_URL", &squid.url)
        .env("SQUID_ACCESS_LOG", squid.access_log())
        .env("PROXY_MODE", mode)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(budget, child)
        .await
        .expect("the browser scenario finishes within its budget")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let log = std::fs::read_to_string(squid.dir.0.join("cache.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        eprintln!(
            "squid cache.log (last lines, newest first):\n{}",
            tail.join("\n")
        );
    }
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

/// Squid's certificate generator, shipped only with the OpenSSL build (`squid-openssl`).
const CERTGEN: &str = "/usr/lib/squid/security_file_certgen";

/// Whether the installed Squid can intercept TLS.
async fn squid_bumps() -> bool {
    let Ok(out) = Command::new(SQUID).arg("-v").output().await else {
        return false;
    };
    Path::new(CERTGEN).exists() && String::from_utf8_lossy(&out.stdout).contains("--with-openssl")
}

/// The gateway's CA and its leaf for 127.0.0.1: (CA PEM, cert PEM, key PEM). The names differ
/// (OpenSSL, in Squid and Node, takes a leaf whose subject equals its issuer for self-signed).
pub(crate) fn gateway_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "stream-edge test gateway CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    // Squid 5 matches an IP host against the common name, not the IP address SAN.
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = leaf.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A CA for Squid to mint the certificates it shows the browser: (cert PEM, key PEM).
fn bump_ca() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "stream-edge test interception CA");
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A TLS-intercepting Squid (ssl-bump) in front of a TLS-terminating gateway: it decrypts the
/// browser's `CONNECT`, sees the `wss://` upgrade inside and refuses it; the SDK falls back to
/// long-poll over the intercepted HTTPS and chats both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_tls_intercepting_squid_the_sdk_chats_over_long_poll() {
    if !squid_bumps().await {
        eprintln!(
            "skipped: this Squid cannot intercept TLS (apt-get install squid-openssl; tests/run does it)"
        );
        return;
    }
    // The gateway terminates TLS with a certificate from its own CA, which Squid and Node trust.
    let gw_dir = TempDir::new("bump-gw");
    let (gw_ca_pem, cert, key) = gateway_pki();
    std::fs::write(gw_dir.0.join("cert.pem"), &cert).unwrap();
    std::fs::write(gw_dir.0.join("key.pem"), &key).unwrap();
    let gw_ca = gw_dir.0.join("ca.pem");
    std::fs::write(&gw_ca, &gw_ca_pem).unwrap();
    let mut cfg = test_config();
    cfg.upstream.linger = Duration::from_secs(1);
    cfg.tls = Some(stream_edge::config::TlsConfig {
        cert_file: gw_dir.0.join("cert.pem"),
        key_file: gw_dir.0.join("key.pem"),
        reload_interval: Duration::from_secs(60),
    });
    let gw = TestGateway::start_with(cfg).await;
    let base = format!("https://{}", gw.running().addr);

    let (ca_cert, ca_key) = bump_ca();
    let gw_ca_for_squid = gw_ca.clone();
    let squid = Squid::start_with(
        move |dir, port| {
            let d = dir.display();
            (
                format!(
                    "http_port 127.0.0.1:{port} ssl-bump tls-cert={d}/bump-ca.pem tls-key={d}/bump-ca.key generate-host-certificates=on dynamic_cert_mem_cache_size=4MB"
                ),
                format!(
                    "sslcrtd_program {CERTGEN} -s {d}/ssl_db -M 4MB
sslcrtd_children 2 startup=1 idle=1
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile={}
acl ws_upgrade req_header Upgrade -i websocket
http_access deny ws_upgrade
http_access allow localhost
http_access deny all
",
                    gw_ca_for_squid.display()
                ),
            )
        },
        |dir| {
            std::fs::write(dir.join("bump-ca.pem"), &ca_cert).unwrap();
            std::fs::write(dir.join("bump-ca.key"), &ca_key).unwrap();
            let db = dir.join("ssl_db");
            let out = std::process::Command::new(CERTGEN)
                .args(["-c", "-s"])
                .arg(&db)
                .args(["-M", "4MB"])
                .output()
                .expect("certgen runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        },
    )
    .await
    .expect("squid is installed");
    // Node (the WebSocket user) trusts the gateway's CA; Chromium accepts Squid's minted
    // certificates (`--ignore-certificate-errors` in bump mode).
    run_browser_at(
        &squid,
        "bump",
        &gw,
        &base,
        &[("NODE_EXTRA_CA_CERTS", &gw_ca)],
    )
    .await;
}

/// A measurement, not a check (README, "Corporate networks"): how many tabs of one browser keep
/// receiving in long-poll mode behind the WebSocket-blocking Squid. Prints one line per tab count.
/// `TABS=10 cargo test --test it -- --ignored --nocapture proxies::many_tabs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement of a few minutes; run by hand"]
async fn many_tabs_behind_a_blocking_squid() {
    let Some(squid) = Squid::start(BLOCK_WEBSOCKETS).await else {
        eprintln!("skipped: {SQUID} is not installed (apt-get install squid-openssl)");
        return;
    };
    run_browser(&squid, "tabs").await;
}
