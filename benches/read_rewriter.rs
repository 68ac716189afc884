//! Throughput and peak memory of the streaming read-state rewriter (`privacy::stream`, issue 13)
//! on a multi-megabyte channel state: many messages with custom fields (some nested 100 deep, so
//! that the tree rewrite it replaces can still parse it, and some named `read`), a few hundred
//! read entries, a thread with participants; a third of the readers hide their read receipts and
//! a sixth their delivery receipts. Run with `cargo bench --bench read_rewriter`.
//!
//! Memory is measured, not estimated: the crate forbids `unsafe`, so no counting allocator; instead
//! each figure comes from a fresh child process of this binary (system allocator), which builds
//! the body, resets the kernel's peak-RSS mark (`/proc/self/clear_refs`), runs the call once and
//! reports peak RSS (`VmHWM`) minus RSS before the call. The body itself is excluded. For
//! comparison, the tree rewrite it replaces (`serde_json::Value`, `visit_reads`, re-serialise) is
//! measured the same way.
// A benchmark measures wall-clock time on purpose (clippy.toml steers the gateway to tokio's
// Instant for testable timers; that does not apply here).
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use stream_edge::privacy::filter::Indicator;
use stream_edge::privacy::rewrite::visit_reads;
use stream_edge::privacy::stream::{rewrite, scan_users, Shape};

/// A `/proc/self/status` field in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs `f` once, returning the peak resident bytes it added (Linux; 0 elsewhere).
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_bytes("VmRSS:");
    let out = std::hint::black_box(f());
    (out, status_bytes("VmHWM:").saturating_sub(before))
}

/// Peak extra memory of one call, measured in a fresh child process.
fn peak_in_child(what: &str) -> usize {
    let Ok(exe) = std::env::current_exe() else {
        return 0;
    };
    let out = std::process::Command::new(exe)
        .arg(format!("--measure={what}"))
        .output()
        .expect("child runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn hidden(id: &str, ind: Indicator) -> bool {
    let n: usize = id.trim_start_matches("user-").parse().unwrap_or(0);
    match ind {
        Indicator::Read => n % 3 == 0,
        Indicator::Delivery => n % 3 == 0 || n % 6 == 1,
        Indicator::Typing => false,
    }
}

fn read_entry(i: usize) -> String {
    format!(
        r#"{{"user":{{"id":"user-{i}","name":"User {i}","role":"user","online":false,"image":"https://example.com/u/{i}.png"}},"last_read":"2026-01-01T00:00:00Z","last_read_message_id":"m-{i}","unread_messages":{},"last_delivered_at":"2026-01-01T00:00:00Z","last_delivered_message_id":"m-{i}"}}"#,
        i % 17
    )
}

/// A channel state of about `target` bytes.
fn channel_state(target: usize, readers: usize) -> Vec<u8> {
    let mut s = String::with_capacity(target + 4096);
    s.push_str(r#"{"channel":{"id":"general","type":"messaging","cid":"messaging:general","read":"a custom field","member_count":300},"messages":["#);
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let mut i = 0usize;
    while s.len() < target {
        if i > 0 {
            s.push(',');
        }
        let custom = if i % 50 == 0 {
            format!(r#","nested":{deep},"read":[{}]"#, read_entry(i % readers))
        } else {
            String::new()
        };
        s.push_str(&format!(
            r#"{{"id":"m-{i}","text":"message number {i}: the quick brown fox jumps over the lazy dog, \"quoted\" and caf\u00e9 \ud83d\ude00 — a fairly ordinary chat message of a realistic length to fill the body","type":"regular","user":{{"id":"user-{}","name":"User","role":"user"}},"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","attachments":[],"latest_reactions":[],"own_reactions":[],"reaction_counts":{{"like":{}}},"mentioned_users":[],"reply_count":0,"silent":false{custom}}}"#,
            i % readers,
            i % 5
        ));
        i += 1;
    }
    s.push_str(r#"],"members":[],"read":["#);
    for r in 0..readers {
        if r > 0 {
            s.push(',');
        }
        s.push_str(&read_entry(r));
    }
    s.push_str(r#"],"threads":[{"parent_message_id":"m-1","read":["#);
    for r in 0..readers.min(50) {
        if r > 0 {
            s.push(',');
        }
        s.push_str(&read_entry(r));
    }
    s.push_str(r#"],"thread_participants":["#);
    for r in 0..readers.min(50) {
        if r > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"user_id":"user-{r}","user":{{"id":"user-{r}"}},"last_read_at":"2026-01-01T00:00:00Z"}}"#
        ));
    }
    s.push_str(r#"]}],"duration":"12.3ms"}"#);
    s.into_bytes()
}

fn main() {
    // `cargo test --all-targets` also runs this (unoptimised) as a smoke test: keep that short.
    let (size, rounds) = if cfg!(debug_assertions) {
        (1 << 20, 1)
    } else {
        (8_400_000, 20)
    };
    let body = channel_state(size, 300);
    if let Some(what) =
        std::env::args().find_map(|a| a.strip_prefix("--measure=").map(String::from))
    {
        let (_, peak) = match what.as_str() {
            "scan" => measured(|| {
                scan_users(&body, Shape::Response)
                    .map(|u| u.len())
                    .expect("valid")
            }),
            "rewrite" => measured(|| {
                let mut out = Vec::new();
                rewrite(&body, Shape::Response, &hidden, &mut out).expect("valid");
                out.len()
            }),
            _ => measured(|| {
                let mut v: serde_json::Value = serde_json::from_slice(&body).expect("valid");
                visit_reads(&mut v, &mut |u| hidden(u, Indicator::Read));
                serde_json::to_vec(&v).expect("serialises").len()
            }),
        };
        println!("{peak}");
        return;
    }
    let mb = body.len() as f64 / 1e6;

    let users = scan_users(&body, Shape::Response).expect("valid");
    let mut out = Vec::new();
    let removed = rewrite(&body, Shape::Response, &hidden, &mut out).expect("valid");
    assert!(removed.read_entries > 0 && removed.delivery_fields > 0);
    assert_eq!(out.capacity(), body.len(), "output reserved once, exactly");
    drop(out);

    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(scan_users(std::hint::black_box(&body), Shape::Response))
            .expect("valid");
    }
    let scan_s = started.elapsed().as_secs_f64() / f64::from(rounds);
    let started = Instant::now();
    for _ in 0..rounds {
        let mut out = Vec::new();
        rewrite(
            std::hint::black_box(&body),
            Shape::Response,
            &hidden,
            &mut out,
        )
        .expect("valid");
        std::hint::black_box(out);
    }
    let rewrite_s = started.elapsed().as_secs_f64() / f64::from(rounds);
    let started = Instant::now();
    let mut v: serde_json::Value = serde_json::from_slice(&body).expect("valid");
    visit_reads(&mut v, &mut |u| hidden(u, Indicator::Read));
    std::hint::black_box(serde_json::to_vec(&v).expect("serialises"));
    drop(v);
    let tree_s = started.elapsed().as_secs_f64();

    let (scan_peak, rewrite_peak, tree_peak) = (
        peak_in_child("scan"),
        peak_in_child("rewrite"),
        peak_in_child("tree"),
    );
    let ratio = |peak: usize| peak as f64 / body.len() as f64;
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!(
        "body {mb:.1} MB, 350 read entries, 50 participants, {} carrier users; removed {:?}",
        users.len(),
        removed
    );
    println!(
        "scan_users: {:.0} MB/s, peak extra memory {:.2} MiB ({:.2}x body)",
        mb / scan_s,
        mib(scan_peak),
        ratio(scan_peak)
    );
    println!(
        "rewrite:    {:.0} MB/s, peak extra memory {:.2} MiB ({:.2}x body)",
        mb / rewrite_s,
        mib(rewrite_peak),
        ratio(rewrite_peak)
    );
    println!(
        "both passes {:.0} MB/s; tree rewrite it replaces: {:.0} MB/s, peak extra memory {:.1} MiB ({:.1}x body)",
        mb / (scan_s + rewrite_s),
        mb / tree_s,
        mib(tree_peak),
        ratio(tree_peak)
    );
    assert!(
        ratio(rewrite_peak) <= 2.0,
        "peak extra memory over 2x the body"
    );
}
