//! Per-event cost of routing and privacy filtering (issue 5): the light parse of an upstream frame,
//! the routing decision, and the privacy verdict with the sender's settings cached, for an event
//! that passes untouched and one that is dropped. Run with `cargo bench --bench filter_cost`.
//! Prints nanoseconds per event; the frame itself is never re-serialised on either path.
// A benchmark measures wall-clock time on purpose (clippy.toml steers the gateway to tokio's
// Instant for testable timers; that does not apply here).
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Instant;

use stream_edge::config::{AppConfig, Config, OnLookupFailure, Secret};
use stream_edge::metrics::Metrics;
use stream_edge::privacy::filter::{indicator, verdict, Known, Verdict};
use stream_edge::privacy::{Privacy, Settings};
use stream_edge::session::event::EventHead;
use stream_edge::upstream::Upstream;

const MESSAGE: &str = r#"{"type":"message.new","cid":"messaging:general","channel_type":"messaging","channel_id":"general","message":{"id":"m1","text":"hello there, how are you doing today?","type":"regular","user":{"id":"bob","name":"Bob"},"created_at":"2026-01-01T00:00:00Z","attachments":[],"latest_reactions":[],"mentioned_users":[]},"user":{"id":"bob","name":"Bob","role":"user"},"created_at":"2026-01-01T00:00:00Z","watcher_count":3}"#;
const TYPING: &str = r#"{"type":"typing.start","cid":"messaging:general","channel_type":"messaging","channel_id":"general","user":{"id":"alice","name":"Alice","role":"user"},"created_at":"2026-01-01T00:00:00Z"}"#;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = Config::local_dev();
    let apps = vec![AppConfig {
        api_key: "k".into(),
        secrets: vec![Secret("bench-secret".into())],
    }];
    let metrics = Arc::new(Metrics::new());
    let upstream = Arc::new(
        Upstream::new(
            "http://127.0.0.1:9".parse().expect("url"),
            config.upstream.clone(),
            &apps,
            metrics.clone(),
        )
        .expect("upstream"),
    );
    let privacy = Privacy::new(config.privacy.clone(), upstream, metrics);
    rt.block_on(async {
        privacy
            .set(
                "k",
                "alice",
                Settings {
                    typing: false,
                    read: false,
                    delivery: true,
                },
            )
            .await;
        privacy.set("k", "bob", Settings::default()).await;
    });
    let receiver = "carol";
    // `cargo test --all-targets` also runs this (unoptimised) as a smoke test: keep that short.
    let n = if cfg!(debug_assertions) {
        10_000u32
    } else {
        1_000_000
    };
    for (name, frame, expect_drop) in [
        ("message.new (passes)", MESSAGE, false),
        ("typing.start from a hidden user (dropped)", TYPING, true),
    ] {
        let started = Instant::now();
        let mut dropped = 0u32;
        rt.block_on(async {
            for _ in 0..n {
                let head = EventHead::parse(std::hint::black_box(frame)).expect("valid frame");
                let _ = std::hint::black_box(head.audience("u"));
                let sender = head.user.as_ref().map(|u| u.id.as_ref());
                if indicator(&head.kind).is_some() && sender.is_some_and(|s| s != receiver) {
                    let known = match privacy.get("k", sender.unwrap_or_default()).await {
                        Ok(s) => Known::Settings(s),
                        Err(_) => Known::Unknown,
                    };
                    if let Verdict::Drop(_) = verdict(
                        &head.kind,
                        sender,
                        receiver,
                        || known,
                        OnLookupFailure::Drop,
                    ) {
                        dropped += 1;
                    }
                }
            }
        });
        let ns = started.elapsed().as_nanos() as f64 / f64::from(n);
        assert_eq!(dropped > 0, expect_drop, "{name}");
        println!("{name}: {ns:.0} ns per event ({} bytes)", frame.len());
    }
}
