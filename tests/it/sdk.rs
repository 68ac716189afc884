//! End-to-end with the real `stream-chat` npm package (tests/e2e, pinned with its lockfile): Node
//! drives the SDK against this gateway and an embedded upstream (the emulator crate) on its own
//! port. A validating recorder (`recorder`) sits between them: every upstream answer and event
//! the SDK's traffic produces is checked against Stream's OpenAPI spec, and the test fails
//! listing each violation. The Node files reach the emulator's control routes (and the oracle
//! runs of the differential harness reach the emulator itself) through the recorder too.

use std::path::PathBuf;
use std::time::Duration;

use stream_edge::config::{DEV_API_KEY, DEV_API_SECRET};

use crate::recorder::Recorder;
use crate::support::*;

/// Files that run against their own gateway (see [`stream_chat_sdk_token_lifecycle`] and
/// [`stream_chat_sdk_heartbeat`]).
const OWN_GATEWAY: &[&str] = &["tokens.test.mjs", "heartbeat.test.mjs"];

/// Time the whole Node run gets unless `SDK_TIMEOUT_SECS` says otherwise.
const DEFAULT_SDK_TIMEOUT_SECS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_chat_sdk_end_to_end() {
    let mut cfg = test_config();
    cfg.upstream.linger = Duration::from_secs(1);
    run_sdk_files(cfg, |name| !OWN_GATEWAY.contains(&name)).await;
}

/// Token expiry and revocation with the real SDK. Its own gateway: an app-wide revocation would
/// revoke the other files' tokens (they carry no `iat`). App settings are read every second, so a
/// backend's `revokeTokens` sent straight to the upstream is learned promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_chat_sdk_token_lifecycle() {
    let mut cfg = test_config();
    cfg.upstream.linger = Duration::from_secs(1);
    cfg.auth.app_settings_refresh = Duration::from_secs(1);
    run_sdk_files(cfg, |name| name == "tokens.test.mjs").await;
}

/// The JS SDK's heartbeat in scaled time: the gateway's 25 s interval and 75 s idle timeout as
/// 250 and 750 ms (the file scales the SDK's own timers the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_chat_sdk_heartbeat() {
    let mut cfg = test_config();
    cfg.ws.health_interval = Duration::from_millis(250);
    cfg.ws.client_idle_timeout = Duration::from_millis(750);
    run_sdk_files(cfg, |name| name == "heartbeat.test.mjs").await;
}

/// `SDK_FILES=diff.test.mjs,core.test.mjs` narrows a run to those files (a developer's loop, or a
/// long differential run with `DIFF_SEEDS`); unset runs them all.
fn only(name: &str) -> bool {
    std::env::var("SDK_FILES").map_or(true, |list| list.split(',').any(|f| f.trim() == name))
}

async fn run_sdk_files(cfg: stream_edge::config::Config, pick: impl Fn(&str) -> bool) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    assert!(
        dir.join("node_modules/stream-chat").is_dir(),
        "tests/e2e/node_modules is missing: run `npm ci --prefix tests/e2e` (tests/run does it)"
    );
    let emu = stream_edge_emulator::Emulator::new(vec![stream_edge_emulator::App {
        api_key: DEV_API_KEY.into(),
        secrets: vec![DEV_API_SECRET.into()],
    }]);
    emu.set_control(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let emu_addr = listener.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    tokio::spawn(stream_edge_emulator::serve(listener, emu, stop));
    let recorder = Recorder::start(emu_addr).await;
    let recorder_url = format!("http://{}", recorder.addr);
    let mut cfg = cfg;
    cfg.upstream.target =
        stream_edge::config::UpstreamTarget::Url(recorder_url.parse().expect("recorder URL"));
    let gw = TestGateway::start_with(cfg).await;
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".test.mjs") && pick(n) && only(n))
        .collect();
    files.sort();
    if files.is_empty() {
        eprintln!("no SDK file of this test is in SDK_FILES; nothing to run");
        return;
    }
    let child = tokio::process::Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-force-exit"])
        .args(&files)
        .current_dir(&dir)
        .env("GATEWAY_URL", &gw.base)
        .env("ADMIN_URL", &gw.admin)
        .env("EMULATOR_URL", &recorder_url)
        .env("STREAM_API_KEY", DEV_API_KEY)
        .env("STREAM_API_SECRET", DEV_API_SECRET)
        .kill_on_drop(true)
        .output();
    // A long differential run (`DIFF_SEEDS`) sets its own budget with `SDK_TIMEOUT_SECS`.
    let budget = std::env::var("SDK_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SDK_TIMEOUT_SECS);
    let out = tokio::time::timeout(Duration::from_secs(budget), child)
        .await
        .expect("SDK suite finishes within its time budget (SDK_TIMEOUT_SECS)")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "SDK end-to-end suite failed (output above)"
    );
    assert!(stdout.contains("# fail 0"), "no failures reported");
    gw.running().assert_no_panics();
    check_recorded(&recorder);
}

/// Prints what the SDK's traffic covered of the spec, then fails on any answer or event that
/// breaks it.
fn check_recorded(recorder: &Recorder) {
    if !recorder.validating() {
        return;
    }
    let report = recorder.take();
    let missed = recorder.missed(&report);
    let events: u32 = report.events.values().sum();
    // Straight to stderr: a passing test's captured output would hide the coverage.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "schema-checked: {} of {} client-side spec operations answered ({} answers), {} events of {} types\n\
         spec operations not exercised: {}\n\
         routes the spec has no operation for (not checked): {}",
        report.covered.len(),
        recorder.spec_operations(),
        report.covered.values().sum::<u32>(),
        events,
        report.events.len(),
        missed.join(", "),
        report.unmapped.iter().cloned().collect::<Vec<_>>().join(", "),
    );
    assert!(
        report.violations.is_empty(),
        "{} answers or events break Stream's OpenAPI spec:\n{}",
        report.violations.len(),
        report.violations.join("\n")
    );
}
