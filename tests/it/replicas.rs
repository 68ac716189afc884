//! Issue 18's multi-replica test: Debian's HAProxy running the shipped `deploy/haproxy/haproxy.cfg`
//! in front of stream-edge replicas and one `stream-edge emulator`, driven by the real SDK. Node
//! (`tests/e2e/replicas/replicas.test.mjs`) starts and kills every process; this test only finds
//! the binaries, bounds the run and reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stream_edge::config::{DEV_API_KEY, DEV_API_SECRET};

/// Debian's package path (`tests/run` installs it).
const HAPROXY: &str = "/usr/sbin/haproxy";
/// The whole node run: five scenarios of at most 90 s each, typically about 2 minutes together.
const NODE_BUDGET: Duration = Duration::from_secs(420);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_behind_haproxy_with_the_real_sdk() {
    if !Path::new(HAPROXY).exists() {
        eprintln!(
            "skipped: {HAPROXY} is not installed (apt-get install haproxy; tests/run does it)"
        );
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    assert!(
        dir.join("node_modules/stream-chat").is_dir(),
        "tests/e2e/node_modules is missing: run `npm ci --prefix tests/e2e` (tests/run does it)"
    );
    let mut node = tokio::process::Command::new("node");
    node.args(["--test", "--test-force-exit"]);
    // `REPLICAS_PATTERN='\(d\)'` runs only the matching scenarios (a developer's loop).
    if let Ok(p) = std::env::var("REPLICAS_PATTERN") {
        node.arg(format!("--test-name-pattern={p}"));
    }
    let child = node
        .arg("replicas/replicas.test.mjs")
        .current_dir(&dir)
        .env("STREAM_EDGE_BIN", env!("CARGO_BIN_EXE_stream-edge"))
        .env("HAPROXY_BIN", HAPROXY)
        .env("STREAM_API_KEY", DEV_API_KEY)
        .env("STREAM_API_SECRET", DEV_API_SECRET)
        // Node and everything it starts (replicas, emulator, HAProxy) share a new process group,
        // so a run killed at the budget takes its children with it instead of orphaning them.
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let group = child.id().expect("node's pid");
    let out = match tokio::time::timeout(NODE_BUDGET, child.wait_with_output()).await {
        Ok(out) => out.expect("node's output"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &format!("-{group}")])
                .status();
            panic!("the multi-replica run did not finish within {NODE_BUDGET:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("# fail 0"),
        "multi-replica scenarios failed (output above)"
    );
}
