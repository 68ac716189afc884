//! The benchmark suite's quick mode (`stream-edge-bench --quick --strict`) against the real
//! binaries, with sanity assertions only: every expected event arrived, no connect, watch or
//! publish failed, no session ended early. Never a timing threshold: CI machines vary.
//!
//! The load generator is its own package of the workspace (`loadgen/`), so cargo gives this test
//! no path to its binary: the test builds it first ([`loadgen_binary`]). Peers whose programs are
//! missing (nginx, pushpin) are skipped by the suite and listed in its results.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;

/// Builds `stream-edge-bench` with cargo (a no-op once built) in the profile of the gateway binary
/// under test, and returns its path, next to that binary.
fn loadgen_binary() -> PathBuf {
    let gateway = Path::new(env!("CARGO_BIN_EXE_stream-edge"));
    let profile_dir = gateway.parent().expect("target/<profile>/stream-edge");
    // The `dev` profile's directory is `debug`; every other profile's is its name.
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    // Building into the parent of the profile directory puts the binary beside the gateway's, also
    // when the test binary was built for an explicit `--target`.
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--package", "stream-edge-bench"])
        .args(["--bin", "stream-edge-bench", "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "cargo build --package stream-edge-bench failed"
    );
    profile_dir.join("stream-edge-bench")
}

#[test]
fn quick_suite_sees_every_event_and_no_error() {
    // Built before the clock starts: the bound below is on the suite, not on compiling it.
    let loadgen = loadgen_binary();
    let out: PathBuf =
        std::env::temp_dir().join(format!("stream-edge-bench-quick-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("output dir");
    // The suite's progress log goes to a file, shown when the test fails.
    let log = std::fs::File::create(out.join("suite.err")).expect("log file");
    let started = Instant::now();
    let mut child = Command::new(&loadgen)
        .args(["--quick", "--strict", "--out"])
        .arg(&out)
        .arg("--gateway-bin")
        .arg(env!("CARGO_BIN_EXE_stream-edge"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start stream-edge-bench");
    // Bounded: the suite stops by itself, this only guards against a hang.
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > Duration::from_secs(300) {
            // SIGKILL would leave its peers behind; SIGTERM makes the suite stop them.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
            panic!("quick suite still running after 300 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let progress = std::fs::read_to_string(out.join("suite.err")).unwrap_or_default();
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json"))
            .unwrap_or_else(|e| panic!("results.json not written ({e}):\n{progress}")),
    )
    .expect("results.json parses");
    assert!(
        status.success() && results["sanity"]["ok"] == serde_json::json!(true),
        "quick suite failed ({status}): {}\n{progress}",
        results["sanity"]
    );
    let scenarios = results["scenarios"].as_object().expect("scenarios");
    for name in ["idle", "fanout", "storm", "longpoll", "longpoll_h2"] {
        let peers = scenarios[name].as_object().expect("scenario ran");
        assert!(peers.contains_key("stream-edge"), "{name}: stream-edge ran");
        for (peer, figures) in peers {
            assert!(figures.get("error").is_none(), "{name}/{peer}: {figures}");
        }
    }
    // Multiplexing: one upstream connection per user, whatever the sessions.
    let idle = &scenarios["idle"]["stream-edge"];
    assert_eq!(idle["upstream_connections"], idle["users"], "{idle}");
    assert!(out.join("report.md").is_file(), "report.md written");
    // The chart needs a TrueType font (Debian's fonts-dejavu-core, which benches/run.sh installs).
    if std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").is_file() {
        assert!(out.join("chart.png").is_file(), "chart.png written");
    }
    let _ = std::fs::remove_dir_all(&out);
}
