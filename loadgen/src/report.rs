//! The report (markdown), the targets of issue 7 checked against the figures, and the chart (PNG).

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;

use plotters::prelude::*;
use plotters::style::FontStyle;
use serde_json::Value;

const PEERS: [&str; 4] = ["direct", "nginx", "pushpin", "stream-edge"];

fn get(r: &Value, scenario: &str, peer: &str, path: &str) -> Option<f64> {
    let mut v = r.get("scenarios")?.get(scenario)?.get(peer)?;
    for k in path.split('.') {
        v = v.get(k)?;
    }
    v.as_f64()
}

fn fmt(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(v) if !v.is_finite() => "–".into(),
        Some(v) if v.abs() >= 1000.0 => format!("{:.0}", v),
        Some(v) if v.abs() >= 100.0 => format!("{:.0}", v),
        Some(v) if v.abs() >= 10.0 => format!("{:.1}", v),
        Some(v) => format!("{:.2}", v),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => {
            format!("{:.2}×", a / b)
        }
        _ => "–".into(),
    }
}

/// One table: a row per figure, a column per peer, then stream-edge's ratio to each other peer.
fn table(out: &mut String, r: &Value, scenario: &str, rows: &[(&str, &str)]) {
    let peers: Vec<&str> = PEERS
        .iter()
        .copied()
        .filter(|p| r["scenarios"][scenario].get(*p).is_some())
        .collect();
    let others: Vec<&str> = peers
        .iter()
        .copied()
        .filter(|p| *p != "stream-edge")
        .collect();
    let _ = write!(out, "| figure |");
    for p in &peers {
        let _ = write!(out, " {p} |");
    }
    for p in &others {
        let _ = write!(out, " stream-edge ÷ {p} |");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "|{}", "---|".repeat(1 + peers.len() + others.len()));
    for (label, path) in rows {
        let _ = write!(out, "| {label} |");
        for p in &peers {
            let _ = write!(out, " {} |", fmt(get(r, scenario, p, path)));
        }
        let edge = get(r, scenario, "stream-edge", path);
        for p in &others {
            let _ = write!(out, " {} |", ratio(edge, get(r, scenario, p, path)));
        }
        let _ = writeln!(out);
    }
    for p in &peers {
        if let Some(e) = r["scenarios"][scenario][*p]
            .get("error")
            .and_then(Value::as_str)
        {
            let _ = writeln!(out, "\n{p}: **failed**: {e}");
        }
    }
    let _ = writeln!(out);
}

/// (target, measured text, met?) for every target of issue 7 that this run measured.
pub fn targets(r: &Value) -> Vec<(String, String, Option<bool>)> {
    let mut t = Vec::new();
    let e = "stream-edge";
    let rss = get(r, "idle", e, "rss_per_session_kib");
    t.push((
        "RSS per idle WebSocket session ≤ 6 KiB (stretch 4 KiB)".into(),
        format!("{} KiB", fmt(rss)),
        rss.map(|v| v <= 6.0),
    ));
    let lp = get(r, "longpoll", e, "rss_per_held_poll_kib");
    t.push((
        "RSS per held long-poll ≤ 8 KiB".into(),
        format!("{} KiB", fmt(lp)),
        lp.map(|v| v <= 8.0),
    ));
    let up = get(r, "idle", e, "upstream_connections");
    let users = get(r, "idle", e, "users");
    t.push((
        "Upstream connections = users, not sessions".into(),
        format!(
            "{} upstream for {} users / {} sessions",
            fmt(up),
            fmt(users),
            fmt(get(r, "idle", e, "sessions"))
        ),
        up.zip(users).map(|(u, n)| u <= n),
    ));
    let cpu = get(r, "idle", e, "cpu_us_per_session_s");
    t.push((
        "Idle CPU ≤ 2.5 µs per session per second".into(),
        format!("{} µs", fmt(cpu)),
        cpu.map(|v| v <= 2.5),
    ));
    let d50 = get(r, "fanout", "direct", "fixed.p50_us");
    let d99 = get(r, "fanout", "direct", "fixed.p99_us");
    // Paired rounds when the run has them (see the fan-out section), else unpaired medians.
    let added = |peer: &str, k: &str, d: Option<f64>| {
        let pk = format!(
            "fixed.paired_direct.added_{}",
            k.trim_start_matches("fixed.")
        );
        get(r, "fanout", peer, &pk).or_else(|| get(r, "fanout", peer, k).zip(d).map(|(a, b)| a - b))
    };
    let a50 = added(e, "fixed.p50_us", d50);
    let a99 = added(e, "fixed.p99_us", d99);

    t.push((
        "Added latency over direct at the fixed rate: p50 ≤ 100 µs".into(),
        format!("{} µs", fmt(a50)),
        a50.map(|v| v <= 100.0),
    ));
    t.push((
        "Added latency over direct at the fixed rate: p99 ≤ 1 ms".into(),
        format!("{} µs", fmt(a99)),
        a99.map(|v| v <= 1000.0),
    ));
    for peer in ["nginx", "pushpin"] {
        let p50 = added(peer, "fixed.p50_us", d50);
        let p99 = added(peer, "fixed.p99_us", d99);
        if p50.is_some() {
            t.push((
                format!("Added latency lower than {peer}'s (p50 and p99)"),
                format!(
                    "stream-edge +{} / +{} µs, {peer} +{} / +{} µs",
                    fmt(a50),
                    fmt(a99),
                    fmt(p50),
                    fmt(p99)
                ),
                a50.zip(p50)
                    .zip(a99.zip(p99))
                    .map(|((a, b), (c, d))| a < b && c < d),
            ));
        }
    }
    let max = get(r, "fanout", e, "max.deliveries_per_s");
    let cores = get(r, "fanout", e, "max.cpu_cores");
    // The lowest rate that failed the p99 rule: what the gateway did when the box saturated.
    let first_failed = r
        .pointer(&format!("/scenarios/fanout/{e}/max/ramp"))
        .and_then(Value::as_array)
        .and_then(|steps| {
            steps
                .iter()
                .filter(|s| s["sustained"] == Value::Bool(false))
                .min_by(|a, b| {
                    let k = |v: &Value| v["msgs_per_s"].as_f64().unwrap_or(f64::MAX);
                    k(a).total_cmp(&k(b))
                })
        });
    let failed_note = first_failed.map_or(String::new(), |s| {
        format!(
            "; the first step over it: {} of {} deliveries/s arrived, gateway at {} cores, p99 {} µs",
            fmt(s["deliveries_per_s"].as_f64()),
            fmt(s["target_deliveries_per_s"].as_f64()),
            fmt(s["cpu_cores"].as_f64()),
            fmt(s["p99_us"].as_f64())
        )
    });
    t.push((
        "≥ 100,000 deliveries/s with the gateway on ≤ 1 core".into(),
        format!(
            "sustained (p99 ≤ 50 ms): {} deliveries/s at {} cores{failed_note}",
            fmt(max),
            fmt(cores)
        ),
        max.zip(cores).map(|(m, c)| m >= 100_000.0 && c <= 1.0),
    ));

    let cold = get(r, "storm", e, "cold_sessions_per_s");
    t.push((
        "≥ 5,000 new sessions/s, cold token cache".into(),
        format!("{} sessions/s", fmt(cold)),
        cold.map(|v| v >= 5000.0),
    ));
    let nrss = get(r, "idle", "nginx", "rss_per_session_kib");
    t.push((
        "Memory per session ≤ ⅓ of nginx's per proxied connection".into(),
        format!(
            "{} KiB vs nginx {} KiB ({})",
            fmt(rss),
            fmt(nrss),
            ratio(rss, nrss)
        ),
        rss.zip(nrss).map(|(a, b)| a <= b / 3.0),
    ));
    t
}

pub fn markdown(r: &Value) -> String {
    let mut o = String::new();
    let m = &r["machine"];
    let quick = r["quick"].as_bool().unwrap_or(false);
    let _ = writeln!(
        o,
        "# stream-edge benchmark{}\n",
        if quick {
            " (quick mode: small sizes, sanity only)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "Machine: {} CPUs ({}), {} GiB RAM, Linux {}, open-file limit {} per process; {}; Pushpin {}. \
         Everything on loopback, load generator on the same 2 cores. Suite time {:.0} s. \
         Figures are medians over {} repeated runs unless noted; ratios are stream-edge ÷ peer (lower is better for memory, CPU and latency; higher for rates).\n",
        m["cpus"], m["cpu_model"].as_str().unwrap_or(""), m["mem_gib"], m["kernel"].as_str().unwrap_or(""), m["nofile_limit"],
        m["nginx"].as_str().unwrap_or("nginx ?"), m["pushpin"].as_str().unwrap_or("?"),
        r["suite_seconds"].as_f64().unwrap_or(0.0), r["sizes"]["repeats"]
    );
    if let Some(s) = r["skipped_peers"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(o, "Skipped peers (not installed): {s:?}\n");
    }
    let _ = writeln!(
        o,
        "## Targets (issue 7)\n\n| target | measured | met |\n|---|---|---|"
    );
    for (name, measured, met) in targets(r) {
        let mark = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(o, "| {name} | {measured} | {mark} |");
    }
    let z = &r["sizes"];
    let _ = writeln!(o);
    if r["scenarios"].get("idle").is_some() {
        let _ = writeln!(
            o,
            "## Idle: {} users × {} WebSocket sessions held {} × {} s\n\nRSS is of the process(es) holding the client connections \
             (the emulator itself for direct; nginx master+workers; all Pushpin processes; the stream-edge process), slope over the \
             baseline before any session. Kernel slab is machine-wide (client, proxy and upstream sockets together), noted separately. \
             Clients ping every 25 s like the JS SDK. \
             CPU per session per second is the mean over the whole hold (it spans one ping cycle); memory is one measurement per peer (the hold is not repeated: the 10-minute budget).\n",
            z["idle_users"], z["idle_sessions"], z["idle_windows"], z["idle_window_secs"]
        );
        table(
            &mut o,
            r,
            "idle",
            &[
                ("sessions held", "sessions"),
                ("sessions not attempted (connect budget)", "not_attempted"),
                ("RSS per session (KiB)", "rss_per_session_kib"),
                (
                    "kernel slab per session, all sockets (KiB)",
                    "slab_per_session_kib",
                ),
                (
                    "upstream (emulator) RSS per session (KiB)",
                    "upstream_rss_per_session_kib",
                ),
                ("upstream connections opened", "upstream_connections"),
                ("CPU per session per second (µs)", "cpu_us_per_session_s"),
                ("time to connect all (s)", "connect_secs"),
            ],
        );
    }
    if r["scenarios"].get("fanout").is_some() {
        let _ = writeln!(
            o,
            "## Fan-out: {} users × {} sessions, {} channels ({} watching sessions per channel)\n\n\
             The publisher posts messages straight to the upstream with `sent_ns` (CLOCK_MONOTONIC); every client records \
             receive − sent. Fixed rate: {} deliveries/s for {} s. Max: message rate doubled from {}/s, then bisected {} times \
             between the last rate that passed and the first that failed; a rate passes when every delivery arrived with \
             p99 ≤ 50 ms. CPU is the measured process(es), in cores.\n",
            z["fan_users"], z["fan_sessions"], z["fan_channels"],
            r["scenarios"]["fanout"]["direct"]["watchers_per_channel"], z["fan_fixed_deliveries"], z["fan_secs"], z["ramp_start_msgs"], z["ramp_refine"]
        );
        let _ = writeln!(o, "### Fixed rate\n");
        table(
            &mut o,
            r,
            "fanout",
            &[
                ("deliveries/s", "fixed.deliveries_per_s"),
                ("latency p50 (µs)", "fixed.p50_us"),
                ("latency p99 (µs)", "fixed.p99_us"),
                ("latency p99.9 (µs)", "fixed.p999_us"),
                ("CPU (cores)", "fixed.cpu_cores"),
                ("upstream CPU (cores)", "fixed.upstream_cpu_cores"),
            ],
        );
        let _ = writeln!(
            o,
            "Added latency over direct (µs). Paired: a direct baseline ran beside the peer and their \
             rounds alternated; the median of the per-pair differences (the target rows use it). \
             Unpaired: the peer's medians minus direct's own run, minutes apart.\n\n\
             | peer | paired p50 | paired p99 | paired p99.9 | unpaired p50 | unpaired p99 | unpaired p99.9 |\n\
             |---|---|---|---|---|---|---|"
        );
        for p in ["nginx", "pushpin", "stream-edge"] {
            let add = |k: &str| {
                get(r, "fanout", p, k)
                    .zip(get(r, "fanout", "direct", k))
                    .map(|(a, b)| a - b)
            };
            let paired = |k: &str| get(r, "fanout", p, &format!("fixed.paired_direct.{k}"));
            if get(r, "fanout", p, "fixed.p50_us").is_some() {
                let _ = writeln!(
                    o,
                    "| {p} | {} | {} | {} | {} | {} | {} |",
                    fmt(paired("added_p50_us")),
                    fmt(paired("added_p99_us")),
                    fmt(paired("added_p999_us")),
                    fmt(add("fixed.p50_us")),
                    fmt(add("fixed.p99_us")),
                    fmt(add("fixed.p999_us"))
                );
            }
        }
        let _ = writeln!(o, "\n### Maximum sustained rate\n");
        table(
            &mut o,
            r,
            "fanout",
            &[
                ("messages/s sustained", "max.msgs_per_s"),
                ("deliveries/s", "max.deliveries_per_s"),
                ("latency p50 (µs)", "max.p50_us"),
                ("latency p99 (µs)", "max.p99_us"),
                ("CPU (cores)", "max.cpu_cores"),
                ("upstream CPU (cores)", "max.upstream_cpu_cores"),
            ],
        );
    }
    if r["scenarios"].get("storm").is_some() {
        let _ = writeln!(
            o,
            "## Connect storm: {} users × {} sessions\n\nOne anchor session per user stays open (upstream connections exist). \
             Cold: every session presents a token never seen before (unique `jti`); warm: the same tokens again. \
             Rate = sessions ÷ time until the last handshake frame arrived.\n",
            z["storm_users"], z["storm_sessions"]
        );
        table(
            &mut o,
            r,
            "storm",
            &[
                ("cold: sessions/s", "cold_sessions_per_s"),
                ("warm: sessions/s", "warm_sessions_per_s"),
                ("cold: CPU per session (µs)", "cold_cpu_us_per_session"),
                ("warm: CPU per session (µs)", "warm_cpu_us_per_session"),
            ],
        );
    }
    if r["scenarios"].get("longpoll").is_some() {
        let _ = writeln!(
            o,
            "## Long-poll (stream-edge only): {} users × {} sessions, {} channels\n\n\
             The emulator, nginx and Pushpin do not speak Stream's long-poll protocol, so there is no peer to compare with \
             (nginx as a plain HTTP proxy in front of stream-edge was not measured).\n",
            z["lp_users"], z["lp_sessions"], z["lp_channels"]
        );
        table(
            &mut o,
            r,
            "longpoll",
            &[
                ("held polls", "held_polls"),
                (
                    "RSS per held poll, incl. its session (KiB)",
                    "rss_per_held_poll_kib",
                ),
                (
                    "kernel slab per held poll, all sockets (KiB)",
                    "slab_per_held_poll_kib",
                ),
                ("upstream connections", "upstream_connections"),
                ("deliveries/s", "deliveries_per_s"),
                ("event-to-delivery p50 (µs)", "p50_us"),
                ("event-to-delivery p99 (µs)", "p99_us"),
                ("event-to-delivery p99.9 (µs)", "p999_us"),
            ],
        );
    }
    if r["scenarios"].get("longpoll_h2").is_some() {
        let _ = writeln!(
            o,
            "## Long-poll over HTTP/2 (stream-edge only): the same sessions as streams of shared h2c connections\n\n\
             The same users, sessions and channels as above, but the sessions share h2c (prior knowledge) connections, \
             100 sessions to each (the gateway's default `http2.max_concurrent_streams`), as a browser's tabs share one \
             HTTP/2 connection. The gateway runs with `http2.cleartext = true`.\n"
        );
        table(
            &mut o,
            r,
            "longpoll_h2",
            &[
                ("held polls", "held_polls"),
                ("client connections", "client_connections"),
                (
                    "RSS per held poll, incl. its session (KiB)",
                    "rss_per_held_poll_kib",
                ),
                (
                    "kernel slab per held poll, all sockets (KiB)",
                    "slab_per_held_poll_kib",
                ),
                ("deliveries/s", "deliveries_per_s"),
                ("event-to-delivery p50 (µs)", "p50_us"),
                ("event-to-delivery p99 (µs)", "p99_us"),
            ],
        );
    }
    if let Some(prof) = r.get("profile").and_then(Value::as_object) {
        let _ = writeln!(
            o,
            "## Where stream-edge's CPU goes (perf)\n\nA separate pass after the measurements: idle and fan-out again with \
             `perf record -g -F 499` attached to the gateway. Self time per symbol (dso, symbol), top entries; \
             full reports in `profile-*.txt`.\n"
        );
        for (name, top) in prof {
            let _ = writeln!(o, "### {name}\n\n| self % | where |\n|---|---|");
            for e in top.as_array().into_iter().flatten().take(15) {
                let _ = writeln!(
                    o,
                    "| {} | `{}` |",
                    fmt(e[0].as_f64()),
                    e[1].as_str().unwrap_or("")
                );
            }
            if let Some(err) = top.get("error") {
                let _ = writeln!(o, "| – | not profiled: {err} |");
            }
            let _ = writeln!(o);
        }
    }
    if let Some(issues) = r["peer_issues"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(o, "## What the peers did under load\n");
        for i in issues {
            let _ = writeln!(o, "- {}", i.as_str().unwrap_or(""));
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "## Sanity\n");
    if r["sanity"]["ok"].as_bool() == Some(true) {
        let _ = writeln!(o, "Every expected event arrived; no connect, watch or publish failed; no session ended early.");
    } else {
        for p in r["sanity"]["problems"].as_array().into_iter().flatten() {
            let _ = writeln!(o, "- {}", p.as_str().unwrap_or(""));
        }
    }
    o
}

fn load_font() -> Result<(), Box<dyn std::error::Error>> {
    for path in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ] {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| "invalid font")?;
            return Ok(());
        }
    }
    Err("no TrueType font found (install fonts-dejavu-core)".into())
}

pub fn chart(r: &Value, path: &Path) -> anyhow::Result<()> {
    draw(r, path).map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn chart_from_file(json: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let r: Value = serde_json::from_str(&std::fs::read_to_string(json)?)?;
    chart(&r, out)?;
    Ok(ExitCode::SUCCESS)
}

fn draw(r: &Value, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    load_font()?;
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(760);
    let colors = [
        RGBColor(70, 130, 180),
        RGBColor(230, 140, 40),
        RGBColor(200, 60, 60),
    ];

    // Left: delivery latency at the fixed rate, per peer, log scale.
    let peers: Vec<&str> = PEERS
        .iter()
        .copied()
        .filter(|p| get(r, "fanout", p, "fixed.p50_us").is_some())
        .collect();
    let keys = [
        ("p50", "fixed.p50_us"),
        ("p99", "fixed.p99_us"),
        ("p99.9", "fixed.p999_us"),
    ];
    let ymax = peers
        .iter()
        .flat_map(|p| keys.iter().filter_map(move |(_, k)| get(r, "fanout", p, k)))
        .fold(10.0_f64, f64::max)
        * 2.0;
    let mut c = ChartBuilder::on(&left)
        .caption(
            "Delivery latency at the fixed fan-out rate (µs, log)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..peers.len().max(1) as f64, (1f64..ymax).log_scale())?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(peers.len().max(1) * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 {
                peers.get(i).map(|s| (*s).to_string()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("µs")
        .label_style(("sans-serif", 16))
        .draw()?;
    for (k, (label, key)) in keys.iter().enumerate() {
        let color = colors[k];
        c.draw_series(peers.iter().enumerate().filter_map(|(i, p)| {
            let v = get(r, "fanout", p, key)?;
            let x0 = i as f64 + 0.15 + k as f64 * 0.23;
            Some(Rectangle::new(
                [(x0, 1.0), (x0 + 0.21, v.max(1.0))],
                color.filled(),
            ))
        }))?
        .label(*label)
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .label_font(("sans-serif", 16))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;

    // Right: memory per idle session (user space) and kernel slab per session, per peer.
    let peers: Vec<&str> = PEERS
        .iter()
        .copied()
        .filter(|p| get(r, "idle", p, "rss_per_session_kib").is_some())
        .collect();
    let ymax = peers
        .iter()
        .flat_map(|p| {
            [
                get(r, "idle", p, "rss_per_session_kib"),
                get(r, "idle", p, "slab_per_session_kib"),
            ]
        })
        .flatten()
        .fold(8.0_f64, f64::max)
        * 1.15;
    let mut c = ChartBuilder::on(&right)
        .caption(
            "Memory per idle WebSocket session (KiB)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..peers.len().max(1) as f64, 0f64..ymax)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(peers.len().max(1) * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 {
                peers.get(i).map(|s| (*s).to_string()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("KiB per session")
        .label_style(("sans-serif", 16))
        .draw()?;
    for (k, (label, key)) in [
        ("process RSS", "rss_per_session_kib"),
        ("kernel slab (all sockets)", "slab_per_session_kib"),
    ]
    .iter()
    .enumerate()
    {
        let color = colors[k];
        c.draw_series(peers.iter().enumerate().filter_map(|(i, p)| {
            let v = get(r, "idle", p, key)?.max(0.0);
            let x0 = i as f64 + 0.15 + k as f64 * 0.35;
            Some(Rectangle::new([(x0, 0.0), (x0 + 0.33, v)], color.filled()))
        }))?
        .label(*label)
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    let target = 6.0;
    c.draw_series(LineSeries::new(
        [(0.0, target), (peers.len() as f64, target)],
        BLACK.stroke_width(1),
    ))?
    .label("target 6 KiB")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK));
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .label_font(("sans-serif", 16))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
