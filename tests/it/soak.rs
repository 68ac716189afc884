//! The bounded soak (issue 8, point 5): 100,000 session connects and disconnects over both
//! transports, then every table, task, file descriptor, cache and the process RSS must return to
//! their baseline. Too long for the test suite, so it is `#[ignore]`d and run by the benchmark
//! command (`benches/run.sh`), in release mode:
//! `SOAK_SESSIONS=100000 cargo test --release --test it soak -- --ignored --nocapture`.
//! It writes its figures to `bench-results/soak.json`.

use tokio::time::Instant;

use futures_util::StreamExt;
use hyper::Method;
use stream_edge::config::DEV_API_KEY;

use crate::support::*;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn churn(gw: &TestGateway, sessions: usize, users: usize) -> usize {
    let base = gw.base.clone();
    let lp_every = 5; // one in five sessions is long-poll
    let done = futures_util::stream::iter(0..sessions)
        .map(|i| {
            let user = format!("soak-{}", i % users);
            let base = base.clone();
            async move {
                if i % lp_every == 0 {
                    let tok = gw.token(&user, None);
                    let q = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("api_key", DEV_API_KEY)
                        .append_pair("json", &format!(r#"{{"user_id":"{user}"}}"#))
                        .finish();
                    let (_, body) = http(
                        Method::GET,
                        &format!("{base}/longpoll?{q}"),
                        None,
                        &[("authorization", &tok)],
                    )
                    .await;
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let id = v["event"]["connection_id"].as_str().unwrap().to_string();
                    let url = format!(
                        "{base}/longpoll?connection_id={id}&api_key={DEV_API_KEY}&close=true"
                    );
                    http(Method::GET, &url, None, &[("authorization", &tok)])
                        .await
                        .0
                        == 200
                } else {
                    let (ws, _) = gw.connect(&user).await;
                    drop(ws);
                    true
                }
            }
        })
        .buffer_unordered(64)
        .filter(|ok| futures_util::future::ready(*ok))
        .count()
        .await;
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run by benches/run.sh in release mode"]
async fn soak_churn_returns_to_baseline() {
    let sessions: usize = std::env::var("SOAK_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let users = 1_000;
    let gw = TestGateway::start().await;
    let shared = gw.running().shared.clone();
    let settle = || async {
        eventually("sessions released", || async {
            shared.hubs.session_count() == 0 && shared.longpolls.is_empty()
        })
        .await;
        eventually("upstreams retired", || async {
            shared.hubs.hub_count() == 0
        })
        .await;
    };
    // Warm-up: allocator pools, connection pools and caches reach their working size.
    churn(&gw, 5_000, users).await;
    settle().await;
    let (rss0, fds0, tasks0) = (rss_kib(), open_fds(), shared.tasks.tracker.len());
    let started = Instant::now();
    let ok = churn(&gw, sessions, users).await;
    let elapsed = started.elapsed();
    settle().await;
    eventually("tasks back to baseline", || async {
        shared.tasks.tracker.len() <= tasks0
    })
    .await;
    eventually("fds back to baseline", || async { open_fds() <= fds0 + 8 }).await;
    let (rss1, fds1, tasks1) = (rss_kib(), open_fds(), shared.tasks.tracker.len());
    let cache = shared.auth.cache_len();
    let report = serde_json::json!({
        "sessions": sessions,
        "completed": ok,
        "users": users,
        "elapsed_seconds": elapsed.as_secs_f64(),
        "sessions_per_second": ok as f64 / elapsed.as_secs_f64(),
        "rss_kib": {"baseline": rss0, "after": rss1, "growth": rss1 as i64 - rss0 as i64},
        "open_fds": {"baseline": fds0, "after": fds1},
        "tasks": {"baseline": tasks0, "after": tasks1},
        "auth_cache_entries": cache,
        "privacy_cache_entries": shared.privacy.len(),
        "rate_limiter_entries": shared.connect_limiter.tracked(),
        "note": "RSS is the test process: gateway, embedded upstream and the churning clients together",
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("soak.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    );
    assert_eq!(ok, sessions, "every session connected and closed");
    assert!(
        cache <= users as u64 + 1,
        "validation cache bounded by distinct tokens: {cache}"
    );
    // A leak of even 500 bytes per session would show as ~50 MB here.
    assert!(
        rss1 < rss0 + 32 * 1024,
        "RSS grew from {rss0} KiB to {rss1} KiB over {sessions} sessions"
    );
}
