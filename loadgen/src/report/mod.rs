//! The report (markdown) and the chart (PNG) of one suite run, and the targets of issues 7 and 20
//! checked against its figures.

mod chart;
mod targets;

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

pub use chart::{chart, chart_from_file};
pub use targets::targets;
use targets::{best_peer, cpu_round_kept_up, Better};

const PEERS: [&str; 5] = ["direct", "nginx", "haproxy", "pushpin", "stream-edge"];

/// A figure of one peer in one scenario: `path` is dot-separated keys (numbers index arrays).
fn get(r: &Value, scenario: &str, peer: &str, path: &str) -> Option<f64> {
    let mut v = r.get("scenarios")?.get(scenario)?.get(peer)?;
    for k in path.split('.') {
        v = match v {
            Value::Array(a) => a.get(k.parse::<usize>().ok()?)?,
            _ => v.get(k)?,
        };
    }
    v.as_f64()
}

fn fmt(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(v) if !v.is_finite() => "–".into(),
        // Counts (sessions, rounds, pairs) print as integers.
        Some(v) if v.abs() >= 100.0 || v.fract() == 0.0 => format!("{:.0}", v),
        Some(v) if v.abs() >= 10.0 => format!("{:.1}", v),
        Some(v) => format!("{:.2}", v),
    }
}

/// [`fmt`] with an explicit sign on positive values (added latency: `+329`, `-263`).
fn signed(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() && v > 0.0 => format!("+{}", fmt(Some(v))),
        _ => fmt(x),
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

/// One table row: label, path, and which way is better (`None`: not a figure of merit).
type Row<'a> = (&'a str, &'a str, Option<Better>);

/// One table: a row per figure, a column per peer, then the best proxy peer on that figure and
/// stream-edge's ratio to it.
fn table(out: &mut String, r: &Value, scenario: &str, rows: &[Row]) {
    let peers: Vec<&str> = PEERS
        .iter()
        .copied()
        .filter(|p| r["scenarios"][scenario].get(*p).is_some())
        .collect();
    // Tables with nothing to compare (stream-edge only) have no best-peer columns.
    let compare = rows.iter().any(|(_, _, b)| b.is_some());
    let _ = write!(out, "| figure |");
    for p in &peers {
        let _ = write!(out, " {p} |");
    }
    if compare {
        let _ = write!(out, " best peer | stream-edge ÷ best peer |");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "|{}",
        "---|".repeat(1 + peers.len() + if compare { 2 } else { 0 })
    );
    for (label, path, better) in rows {
        let _ = write!(out, "| {label} |");
        for p in &peers {
            let _ = write!(out, " {} |", fmt(get(r, scenario, p, path)));
        }
        if !compare {
            let _ = writeln!(out);
            continue;
        }
        let best = better.and_then(|b| best_peer(r, scenario, path, b, |_| true));
        let edge = get(r, scenario, "stream-edge", path);
        match best {
            Some((p, v)) => {
                let _ = writeln!(out, " {p} | {} |", ratio(edge, Some(v)));
            }
            None => {
                let _ = writeln!(out, " – | – |");
            }
        }
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

const LOWER: Option<Better> = Some(Better::Lower);
const HIGHER: Option<Better> = Some(Better::Higher);

/// What this box can and cannot show (issue 20): stated in every full report.
const SHARED_CORES: &str = "**What two shared cores can and cannot show.** The load generator (workers holding every \
client session, the publisher), the upstream emulator and the system under test share the same two cores. So: \
CPU-time figures (CPU per delivery, per session, per connect; each process's CPU-time clock, split into user and kernel \
time as /proc/PID/stat's ticks split it) are the \
meaningful ones, as they count only the measured processes' own work. Absolute latency near saturation is mostly the \
load generator's own queueing, and a maximum rate is where the box (generator included) saturates, not where the \
peer would on its own hardware. Added latency is only meaningful at rates every side sustains, and only as paired \
differences with their spread. The pinned run separates the gateway from the rest (one core each) to show what the \
gateway alone does at 100k deliveries/s.";

pub fn markdown(r: &Value) -> String {
    let mut o = String::new();
    let m = &r["machine"];
    let quick = r["quick"].as_bool().unwrap_or(false);
    let z = &r["sizes"];
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
        "Machine: {} CPUs ({}), {} GiB RAM, Linux {}, open-file limit {} per process; {}; {}; \
         Pushpin {} (**plain WebSocket proxying via zurl**, two zurl daemons). \
         Everything on loopback, load generator on the same 2 cores. Suite time {:.0} s. \
         To fit five peers into 12 minutes: fixed-rate rounds last {} s (many short paired rounds rather than a few long ones), \
         ramp steps {} s, CPU-per-delivery rounds {} s and run once per rate, the idle hold {} × {} s with a {} s connect budget, \
         the first connect-storm level runs {} times and the second once. Figures are medians over {} repeated runs unless noted.\n",
        m["cpus"], m["cpu_model"].as_str().unwrap_or(""), m["mem_gib"], m["kernel"].as_str().unwrap_or(""), m["nofile_limit"],
        m["nginx"].as_str().unwrap_or("nginx ?"), m["haproxy"].as_str().unwrap_or("HAProxy ?"), m["pushpin"].as_str().unwrap_or("?"),
        r["suite_seconds"].as_f64().unwrap_or(0.0), z["fan_secs"], z["ramp_secs"], z["cpu_secs"],
        z["idle_windows"], z["idle_window_secs"], z["idle_connect_budget_secs"], z["storm_repeats"], z["repeats"]
    );
    let _ = writeln!(o, "{SHARED_CORES}\n");
    if let Some(other) = r["machine_load"]["other_cores_mean"].as_f64() {
        let _ = writeln!(
            o,
            "**Other load on the box during this run:** processes outside the suite used {:.2} cores on average \
             ({:.0} core-seconds over {:.0} s; /proc/stat busy time minus the suite's own process tree). \
             Anything well above 0 means the measured systems had less than two cores.\n",
            other,
            r["machine_load"]["other_core_secs"].as_f64().unwrap_or(0.0),
            r["machine_load"]["secs"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(
        o,
        "**The peers.** Each a WebSocket proxy in front of the same emulator, configured for this load and fairly: \
         **nginx** with 2 worker processes (one per core), `worker_rlimit_nofile 19900`, `access_log off`, 3600 s proxy timeouts. \
         **HAProxy** as 2 single-threaded processes sharing the port (SO_REUSEPORT), 2 threads in all like nginx's 2 workers; \
         not one process with `nbthread 2`, because each proxied WebSocket holds 2 fds and this sandbox caps every process at \
         20,000 open files, so one process could not hold the idle scenario's 15,000 sessions (nginx lives under the same cap \
         with its 2 workers). `maxconn 9800` per process, `timeout tunnel`/`client`/`server` 3600 s (longer than any hold), \
         no `log` directive (nothing logged). \
         **Pushpin 1.36** (Debian) proxies plain WebSockets through zurl, one backend connection per client (it is built for \
         GRIP, not for plain proxying); it runs here with two zurl daemons (the proxy's `zurl_*_specs` list both), \
         `client_maxconn 19000`, logging at warnings. RSS and CPU are summed over all of a peer's processes (nginx master and \
         workers, both HAProxy processes, Pushpin's condure, proxy, handler and both zurls).\n"
    );
    if let Some(s) = r["skipped_peers"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(o, "Skipped peers (not installed): {s:?}\n");
    }
    let _ = writeln!(
        o,
        "## Targets (issues 7 and 20)\n\nEvery comparison with the peers is against the best proxy peer on that figure \
         (nginx, HAProxy or Pushpin, whichever did best; for CPU per delivery only peers that kept up with the rate, for added \
         latency only peers that sustained it).\n\n\
         | target | measured | met |\n|---|---|---|"
    );
    for (name, measured, met) in targets(r) {
        let mark = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(o, "| {name} | {measured} | {mark} |");
    }
    let _ = writeln!(o);
    if r["scenarios"].get("idle").is_some() {
        idle_section(&mut o, r);
    }
    if r["scenarios"].get("fanout").is_some() {
        fanout_section(&mut o, r);
    }
    if r["scenarios"].get("storm").is_some() {
        storm_section(&mut o, r);
    }
    if let Some(p) = r.pointer("/scenarios/pinned/stream-edge") {
        pinned_section(&mut o, p);
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
                ("held polls", "held_polls", None),
                (
                    "RSS per held poll, incl. its session (KiB)",
                    "rss_per_held_poll_kib",
                    None,
                ),
                (
                    "kernel slab per held poll, all sockets (KiB)",
                    "slab_per_held_poll_kib",
                    None,
                ),
                ("upstream connections", "upstream_connections", None),
                ("deliveries/s", "deliveries_per_s", None),
                ("event-to-delivery p50 (µs)", "p50_us", None),
                ("event-to-delivery p99 (µs)", "p99_us", None),
                ("event-to-delivery p99.9 (µs)", "p999_us", None),
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
                ("held polls", "held_polls", None),
                ("client connections", "client_connections", None),
                (
                    "RSS per held poll, incl. its session (KiB)",
                    "rss_per_held_poll_kib",
                    None,
                ),
                (
                    "kernel slab per held poll, all sockets (KiB)",
                    "slab_per_held_poll_kib",
                    None,
                ),
                ("deliveries/s", "deliveries_per_s", None),
                ("event-to-delivery p50 (µs)", "p50_us", None),
                ("event-to-delivery p99 (µs)", "p99_us", None),
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

fn idle_section(o: &mut String, r: &Value) {
    let z = &r["sizes"];
    let _ = writeln!(
        o,
        "## Idle: {} users × {} WebSocket sessions held {} × {} s\n\nRSS is of the process(es) holding the client connections \
         (the emulator itself for direct; all of a peer's processes; the stream-edge process), slope over the \
         baseline before any session. Kernel slab is machine-wide (client, proxy and upstream sockets together), noted separately. \
         Clients ping every 25 s like the JS SDK, each starting at a random point of the interval (as if connected at its own moment). \
         CPU per session per second is the mean over the whole hold (it spans one ping cycle); memory is one measurement per peer \
         (the hold is not repeated: the time budget). A peer that could not connect every session within the connect budget \
         is measured over the sessions it held.\n",
        z["idle_users"], z["idle_sessions"], z["idle_windows"], z["idle_window_secs"]
    );
    table(
        o,
        r,
        "idle",
        &[
            ("sessions held", "sessions", None),
            (
                "sessions not attempted (connect budget)",
                "not_attempted",
                None,
            ),
            ("RSS per session (KiB)", "rss_per_session_kib", LOWER),
            (
                "kernel slab per session, all sockets (KiB)",
                "slab_per_session_kib",
                LOWER,
            ),
            (
                "upstream (emulator) RSS per session (KiB)",
                "upstream_rss_per_session_kib",
                None,
            ),
            // Not a per-session figure: a peer that held fewer sessions opened fewer.
            ("upstream connections opened", "upstream_connections", None),
            (
                "CPU per session per second (µs)",
                "cpu_us_per_session_s",
                LOWER,
            ),
            ("time to connect all (s)", "connect_secs", LOWER),
        ],
    );
}

fn fanout_section(o: &mut String, r: &Value) {
    let z = &r["sizes"];
    let _ = writeln!(
        o,
        "## Fan-out: {} users × {} sessions, {} channels ({} watching sessions per channel)\n\n\
         The publisher posts messages straight to the upstream with `sent_ns` (CLOCK_MONOTONIC); every client records \
         receive − sent. A rate is **sustained** when every delivery arrived, the publisher kept the rate and p99 ≤ 50 ms; \
         a peer that does not sustain a fixed rate is reported as such with its delivered count, and that rate is not repeated \
         for it. CPU is the measured process(es), in cores.\n",
        z["fan_users"], z["fan_sessions"], z["fan_channels"],
        r["scenarios"]["fanout"]["stream-edge"]["watchers_per_channel"]
    );
    for (key, title) in [
        ("fixed_low", "Low fixed rate (inside every peer's capacity)"),
        ("fixed", "Fixed rate (issue 7)"),
    ] {
        let rate = PEERS
            .iter()
            .find_map(|p| get(r, "fanout", p, &format!("{key}.target_deliveries_per_s")));
        if rate.is_none() {
            continue;
        }
        let _ = writeln!(
            o,
            "### {title}: {} deliveries/s, {} s rounds\n",
            fmt(rate),
            z["fan_secs"]
        );
        let path = |k: &str| format!("{key}.{k}");
        let rows: Vec<(String, String, Option<Better>)> = vec![
            ("rounds".into(), path("rounds"), None),
            (
                "deliveries expected (all rounds)".into(),
                path("expected"),
                None,
            ),
            (
                "deliveries arrived (all rounds)".into(),
                path("received"),
                HIGHER,
            ),
            ("deliveries/s".into(), path("deliveries_per_s"), HIGHER),
            ("latency p50 (µs)".into(), path("p50_us"), LOWER),
            ("latency p99 (µs)".into(), path("p99_us"), LOWER),
            ("latency p99.9 (µs)".into(), path("p999_us"), LOWER),
            ("CPU (cores)".into(), path("cpu_cores"), LOWER),
            (
                "upstream CPU (cores)".into(),
                path("upstream_cpu_cores"),
                None,
            ),
        ];
        let rows: Vec<Row> = rows
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
            .collect();
        table(o, r, "fanout", &rows);
        let not: Vec<&str> = PEERS
            .iter()
            .copied()
            .filter(|p| {
                r.pointer(&format!("/scenarios/fanout/{p}/{key}/sustained"))
                    .and_then(Value::as_bool)
                    == Some(false)
            })
            .collect();
        if !not.is_empty() {
            let _ = writeln!(
                o,
                "Not sustained at this rate: {} (see the deliveries arrived; its latency here is its backlog, not its added latency).\n",
                not.join(", ")
            );
        }
        added_latency(o, r, key);
    }
    cpu_per_delivery(o, r);
    let _ = writeln!(
        o,
        "### Maximum sustained rate\n\nMessage rate doubled from {}/s (Pushpin from {}/s: it sustains a few thousand deliveries/s), \
         then bisected {} times between the last rate that passed and the first that failed, then the best rate confirmed \
         {} times (median reported); {} s steps.\n",
        z["ramp_start_msgs"], z["ramp_start_low_msgs"], z["ramp_refine"], z["repeats"], z["ramp_secs"]
    );
    table(
        o,
        r,
        "fanout",
        &[
            ("messages/s sustained", "max.msgs_per_s", HIGHER),
            ("deliveries/s", "max.deliveries_per_s", HIGHER),
            ("latency p50 (µs)", "max.p50_us", None),
            ("latency p99 (µs)", "max.p99_us", None),
            ("CPU (cores)", "max.cpu_cores", None),
            ("upstream CPU (cores)", "max.upstream_cpu_cores", None),
        ],
    );
}

/// Added latency over direct from paired rounds: median of the per-pair differences and their
/// spread (min, quartiles, max).
fn added_latency(o: &mut String, r: &Value, key: &str) {
    let rows: Vec<&str> = PEERS
        .iter()
        .copied()
        .filter(|p| {
            r.pointer(&format!("/scenarios/fanout/{p}/{key}/paired_direct/pairs"))
                .is_some()
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "Added latency over direct (µs), from paired rounds: a direct baseline (its own emulator and sessions) ran beside the \
         peer and their rounds alternated; each pair gives peer − direct. Median of the pairs, then min / Q1 / Q3 / max of \
         the per-pair differences.\n\n\
         | peer | pairs | p50 median | p50 min / Q1 / Q3 / max | p99 median | p99 min / Q1 / Q3 / max |\n|---|---|---|---|---|---|"
    );
    for p in rows {
        let pd = &r["scenarios"]["fanout"][p][key]["paired_direct"];
        let sp = |k: &str| {
            pd[format!("added_{k}_spread_us")]
                .as_array()
                .map(|a| {
                    [0, 1, 3, 4]
                        .iter()
                        .map(|&i| fmt(a[i].as_f64()))
                        .collect::<Vec<_>>()
                        .join(" / ")
                })
                .unwrap_or_else(|| "–".into())
        };
        let _ = writeln!(
            o,
            "| {p} | {} | {} | {} | {} | {} |",
            pd["pairs"],
            fmt(pd["added_p50_us"].as_f64()),
            sp("p50"),
            fmt(pd["added_p99_us"].as_f64()),
            sp("p99")
        );
    }
    let _ = writeln!(o);
}

/// CPU per delivery (user and kernel µs) at each CPU rate, every peer, with what arrived.
fn cpu_per_delivery(o: &mut String, r: &Value) {
    let rates: Vec<f64> = r["sizes"]["cpu_rates"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    if rates.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "### CPU per delivery\n\nOne {} s round per rate, after the ramp: CPU time of the measured process(es) (their CPU-time clocks, in ns; split into user and kernel as /proc/PID/stat's ticks split it) \
         ÷ deliveries that arrived. A peer that did not keep up (not every delivery arrived within 2 s \
         of the last publish) is marked, with what arrived: its figure is CPU per delivery while falling behind, and it is not \
         a candidate for best peer. Latency is not a criterion here (at these rates it is mostly the shared box's).\n",
        r["sizes"]["cpu_secs"]
    );
    let peers: Vec<&str> = PEERS
        .iter()
        .copied()
        .filter(|p| r["scenarios"]["fanout"].get(*p).is_some())
        .collect();
    let _ = write!(o, "| deliveries/s | figure |");
    for p in &peers {
        let _ = write!(o, " {p} |");
    }
    let _ = writeln!(o, " best peer | stream-edge ÷ best peer |");
    let _ = writeln!(o, "|{}", "---|".repeat(4 + peers.len()));
    for (i, rate) in rates.iter().enumerate() {
        for (label, k, better) in [
            ("user µs/delivery", "user_us_per_delivery", None),
            ("kernel µs/delivery", "sys_us_per_delivery", None),
            ("total µs/delivery", "cpu_us_per_delivery", LOWER),
            ("arrived of expected", "", None),
        ] {
            let _ = write!(o, "| {} | {label} |", fmt(Some(*rate)));
            for p in &peers {
                let c = &r["scenarios"]["fanout"][*p]["cpu_per_delivery"][i];
                let cell = if k.is_empty() {
                    format!(
                        "{} / {}{}",
                        fmt(c["received"].as_f64()),
                        fmt(c["expected"].as_f64()),
                        if c["kept_up"] == Value::Bool(false) {
                            " (**did not keep up**)"
                        } else {
                            ""
                        }
                    )
                } else {
                    fmt(c[k].as_f64())
                };
                let _ = write!(o, " {cell} |");
            }
            let path = format!("cpu_per_delivery.{i}.{k}");
            let best = better
                .and_then(|b| best_peer(r, "fanout", &path, b, |p| cpu_round_kept_up(r, p, i)));
            match best {
                Some((p, v)) => {
                    let _ = writeln!(
                        o,
                        " {p} | {} |",
                        ratio(get(r, "fanout", "stream-edge", &path), Some(v))
                    );
                }
                None => {
                    let _ = writeln!(o, " – | – |");
                }
            }
        }
    }
    let _ = writeln!(o);
}

fn storm_section(o: &mut String, r: &Value) {
    let z = &r["sizes"];
    let _ = writeln!(
        o,
        "## Connect storm: {} users × {} sessions\n\nOne anchor session per user stays open (upstream connections exist). \
         Cold: every session presents a token never seen before (unique `jti`); warm: the same tokens again. \
         Rate = sessions ÷ time until the last handshake frame arrived. Each level of handshakes in flight (across all \
         workers) has its own rows. A peer's failed handshakes are counted.\n",
        z["storm_users"], z["storm_sessions"]
    );
    let levels: Vec<usize> = z["storm_in_flight"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64().map(|n| n as usize))
                .collect()
        })
        .unwrap_or_default();
    let mut rows: Vec<(String, String, Option<Better>)> = Vec::new();
    for (i, n) in levels.iter().enumerate() {
        for (label, k, b) in [
            ("cold: sessions/s", "cold_sessions_per_s", HIGHER),
            ("warm: sessions/s", "warm_sessions_per_s", HIGHER),
            (
                "cold: CPU per session (µs)",
                "cold_cpu_us_per_session",
                LOWER,
            ),
            (
                "warm: CPU per session (µs)",
                "warm_cpu_us_per_session",
                LOWER,
            ),
            ("failed handshakes", "failed", LOWER),
            ("handshakes attempted", "attempted", None),
        ] {
            rows.push((
                format!("{n} in flight, {label}"),
                format!("levels.{i}.{k}"),
                b,
            ));
        }
    }
    let rows: Vec<Row> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), *c))
        .collect();
    table(o, r, "storm", &rows);
    if r["scenarios"]["storm"].get("pushpin").is_some() {
        let _ = writeln!(
            o,
            "**Pushpin's failed handshakes** are 502 Bad Gateway answers from pushpin-proxy, not refused connections: its \
             ZeroMQ PUSH socket towards zurl has a high-water mark hard-coded at 100 messages (`#define OUT_HWM 100`, \
             src/corelib/zhttpmanager.cpp of Pushpin 1.36, set in `setupClientOut`). When a new backend WebSocket finds that \
             queue full, `ZWebSocket` fails it at once with `ErrorUnavailable` (src/corelib/zwebsocket.cpp: \
             `if(!manager->canWriteImmediately())`), which `WsProxySession` answers with 502 (src/proxy/wsproxysession.cpp). \
             So beyond ~100 handshakes queued per zurl the excess are refused rather than delayed (ZeroMQ's high-water mark \
             is per connected peer: with two zurls there are two such queues). In this run: {}.\n",
            levels
                .iter()
                .enumerate()
                .map(|(i, n)| format!(
                    "{} of {} handshakes failed at {n} in flight",
                    fmt(get(r, "storm", "pushpin", &format!("levels.{i}.failed"))),
                    fmt(get(r, "storm", "pushpin", &format!("levels.{i}.attempted")))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn pinned_section(o: &mut String, p: &Value) {
    let _ = writeln!(
        o,
        "## Pinned run: the gateway alone on one core\n\nstream-edge runs under `taskset -c {}` (its runtime sizes itself to \
         that one core); the emulator, the load-generating workers and the publisher all run on core {}. {} deliveries/s \
         for {} s through the fan-out rig. Each core's busy share comes from /proc/stat over the round (machine-wide: it \
         counts any other process on the box too).\n",
        p["gateway_cpu"], p["rest_cpu"], fmt(p["target_deliveries_per_s"].as_f64()), p["secs"]
    );
    if let Some(e) = p.get("error").and_then(Value::as_str) {
        let _ = writeln!(o, "**failed**: {e}\n");
        return;
    }
    let busy: Vec<String> = p["core_busy"]
        .as_array()
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(i, b)| format!("core {i} {:.0}%", b.as_f64().unwrap_or(0.0) * 100.0))
                .collect()
        })
        .unwrap_or_default();
    let saturated: Vec<String> = p["saturated_cores"]
        .as_array()
        .map(|a| a.iter().map(|c| format!("core {c}")).collect())
        .unwrap_or_default();
    let f = |k: &str| fmt(p[k].as_f64());
    let _ = writeln!(
        o,
        "| figure | value |\n|---|---|\n\
         | deliveries arrived / expected | {} / {} |\n| deliveries/s | {} |\n| sustained (p99 ≤ 50 ms) | {} |\n\
         | gateway CPU (cores), over the round / over the publishing seconds | {} / {} |\n| gateway CPU per delivery, user + kernel (µs) | {} + {} |\n\
         | latency p50 / p99 / p99.9 (µs) | {} / {} / {} |\n| busy share per core | {} |\n| saturated (≥ 95% busy) | {} |\n\
         | CPU of processes outside the suite (cores) | {} |\n",
        f("received"), f("expected"), f("deliveries_per_s"), p["sustained"],
        f("gateway_cores"), f("gateway_cores_publishing"), f("user_us_per_delivery"), f("sys_us_per_delivery"),
        f("p50_us"), f("p99_us"), f("p999_us"), busy.join(", "),
        if saturated.is_empty() { "none".to_string() } else { saturated.join(", ") },
        f("other_cores")
    );
    let _ = writeln!(o, "{}\n", pinned_verdict(p));
}

/// Which core saturated, and what that means for the figures above.
fn pinned_verdict(p: &Value) -> String {
    let sat: Vec<u64> = p["saturated_cores"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let (gw, rest) = (
        p["gateway_cpu"].as_u64().unwrap_or(0),
        p["rest_cpu"].as_u64().unwrap_or(1),
    );
    let gw_cores = p["gateway_cores"].as_f64().unwrap_or(0.0);
    let other = p["other_cores"].as_f64().unwrap_or(0.0);
    let mut v = Vec::new();
    if sat.contains(&rest) {
        v.push(format!(
            "Core {rest} (emulator, load generator, publisher) was saturated: the latency above is mostly the \
             generator's queueing, not the gateway's; the gateway's own figure is its CPU."
        ));
    }
    if sat.contains(&gw) {
        if gw_cores >= 0.9 {
            v.push(format!(
                "Core {gw} was saturated by the gateway itself ({gw_cores:.2} cores): its core is the limit at this rate."
            ));
        } else {
            v.push(format!(
                "Core {gw} was saturated, but the gateway used only {gw_cores:.2} of it: other processes on the box \
                 ({other:.2} cores outside the suite) took the rest."
            ));
        }
    } else {
        v.push(format!(
            "The gateway's core {gw} was not saturated: the gateway needed {gw_cores:.2} core for this rate."
        ));
    }
    v.join(" ")
}

pub fn report_from_file(json: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let r: Value = serde_json::from_str(&std::fs::read_to_string(json)?)?;
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("report.md"), markdown(&r))?;
    chart(&r, &out.join("chart.png"))?;
    Ok(ExitCode::SUCCESS)
}
