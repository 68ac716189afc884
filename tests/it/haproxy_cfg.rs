//! The shipped `deploy/haproxy/haproxy.cfg` on its own (issue 18): Debian's HAProxy runs the file
//! unmodified in front of four stand-in servers that answer every request with their own name, so
//! the placement rules are checked without the gateway: the three places a user's key can come
//! from (the token in the `Authorization` header, in the `authorization` query parameter, the
//! URL-decoded `user_id` fallback) pick the same server; sequential user ids spread over the
//! servers; enabling the fourth slot moves only users onto it (consistent hashing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

use crate::deploy::TempDir;
use crate::support::sign;

const HAPROXY: &str = "/usr/sbin/haproxy";
/// Users whose placement is checked.
const USERS: usize = 90;
/// Tries at a free port for HAProxy's frontend (another process may take it in between).
const BIND_ATTEMPTS: usize = 5;
/// Budget for HAProxy to start and see its servers up.
const START_BUDGET: Duration = Duration::from_secs(15);

/// A stand-in replica: answers any request (including HAProxy's `/readyz` check) with `name`.
async fn stand_in(name: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// One plain HTTP/1.1 GET through HAProxy; the body names the server that answered.
async fn served_by(port: u16, target: &str, authorization: Option<&str>) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let auth = authorization.map_or(String::new(), |a| format!("authorization: {a}\r\n"));
    let req = format!("GET {target} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    out.rsplit("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

async fn runtime_api(socket: &Path, command: &str) -> String {
    let mut s = UnixStream::connect(socket).await.expect("stats socket");
    s.write_all(format!("{command}\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

/// `show stat` status of server `name` in the `stream_edge` backend.
async fn status(socket: &Path, name: &str) -> String {
    let csv = runtime_api(socket, "show stat").await;
    csv.lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"stream_edge") && f.get(1) == Some(&name))
        .and_then(|f| f.get(17).map(|s| s.to_string()))
        .unwrap_or_default()
}

struct Haproxy {
    child: tokio::process::Child,
    port: u16,
    socket: PathBuf,
    _dir: TempDir,
}

/// HAProxy on a free loopback port with the shipped file and the test's environment. It cannot
/// report a port it chose itself, so one is reserved, released and handed over; a lost race
/// (the port taken meanwhile) is retried with another.
async fn start(servers: &[u16]) -> Haproxy {
    let cfg = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy/haproxy.cfg");
    for _ in 0..BIND_ATTEMPTS {
        let dir = TempDir::new("haproxy");
        let socket = dir.0.join("stats.sock");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut cmd = tokio::process::Command::new(HAPROXY);
        cmd.arg("-db")
            .arg("-f")
            .arg(&cfg)
            .env("EDGE_FRONTEND_BIND", format!("127.0.0.1:{port}"))
            .env("EDGE_STATS_SOCKET", &socket)
            .env("EDGE_CHECK_INTER", "200ms")
            .env("EDGE_MAXCONN", "1000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (i, p) in servers.iter().enumerate() {
            cmd.env(format!("EDGE_SERVER_{}", i + 1), format!("127.0.0.1:{p}"))
                .env(format!("EDGE_CHECK_PORT_{}", i + 1), p.to_string());
        }
        let mut child = cmd.spawn().expect("haproxy starts");
        let deadline = tokio::time::Instant::now() + START_BUDGET;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break; // exited: most likely the port was taken; try another
            }
            if socket.exists()
                && status(&socket, "edge1").await == "UP"
                && status(&socket, "edge2").await == "UP"
                && status(&socket, "edge3").await == "UP"
            {
                return Haproxy {
                    child,
                    port,
                    socket,
                    _dir: dir,
                };
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "haproxy did not see its servers up within {START_BUDGET:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("haproxy did not start in {BIND_ATTEMPTS} attempts");
}

/// Where each user goes, asserting that all three key sources agree.
async fn placement(h: &Haproxy, users: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for u in users {
        let token = sign("any-secret-the-balancer-does-not-check", u, Some(3600));
        let by_header = served_by(h.port, "/channels?api_key=k", Some(&token)).await;
        let by_query = served_by(
            h.port,
            &format!("/connect?api_key=k&authorization={token}"),
            None,
        )
        .await;
        let encoded: String = url::form_urlencoded::byte_serialize(u.as_bytes()).collect();
        let by_user_id = served_by(h.port, &format!("/channels?user_id={encoded}"), None).await;
        assert!(by_header.starts_with("edge"), "{u}: {by_header}");
        assert_eq!(
            by_header, by_query,
            "{u}: header token vs WebSocket query token"
        );
        assert_eq!(by_header, by_user_id, "{u}: token vs URL-decoded user_id");
        out.insert(u.clone(), by_header);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_haproxy_cfg_places_each_user_on_one_server_consistently() {
    if !Path::new(HAPROXY).exists() {
        eprintln!(
            "skipped: {HAPROXY} is not installed (apt-get install haproxy; tests/run does it)"
        );
        return;
    }
    let servers = [
        stand_in("edge1").await,
        stand_in("edge2").await,
        stand_in("edge3").await,
        stand_in("edge4").await,
    ];
    let mut h = start(&servers).await;
    // Sequential ids and ids with characters that need URL encoding.
    let users: Vec<String> = (0..USERS)
        .map(|i| {
            if i % 3 == 0 {
                format!("user{i}@example.com")
            } else {
                format!("user-{i}")
            }
        })
        .collect();

    let before = placement(&h, &users).await;
    let mut per_server: BTreeMap<&str, usize> = BTreeMap::new();
    for s in before.values() {
        *per_server.entry(s.as_str()).or_default() += 1;
    }
    println!("placement of {USERS} users: {per_server:?}");
    assert_eq!(
        per_server.get("edge4"),
        None,
        "the fourth slot starts disabled"
    );
    for s in ["edge1", "edge2", "edge3"] {
        let n = per_server.get(s).copied().unwrap_or(0);
        assert!(
            n >= USERS / 6,
            "sequential ids spread over the servers: {per_server:?}"
        );
    }

    // Scale-up: only users that now go to edge4 move; everyone else stays put.
    runtime_api(&h.socket, "enable server stream_edge/edge4").await;
    let deadline = tokio::time::Instant::now() + START_BUDGET;
    while status(&h.socket, "edge4").await != "UP" {
        assert!(tokio::time::Instant::now() < deadline, "edge4 came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = placement(&h, &users).await;
    let moved: Vec<&String> = users.iter().filter(|u| before[*u] != after[*u]).collect();
    assert!(
        moved.iter().all(|u| after[*u] == "edge4"),
        "users only move onto the new server: {moved:?}"
    );
    assert!(
        !moved.is_empty() && moved.len() <= USERS / 2,
        "about a quarter of the users move ({} of {USERS})",
        moved.len()
    );
    println!(
        "{} of {USERS} users moved to edge4 on scale-up",
        moved.len()
    );
    let _ = h.child.kill().await;
}
