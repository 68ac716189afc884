//! What every scenario is given: the run's sizes ([`Sizes`]) and its context ([`Ctx`]: binaries,
//! output directory, runtime, the log and the problems found). Its own module so that the suite
//! (which runs the scenarios) and the scenarios (which use it) do not import each other.

use std::io::Write;
use std::path::PathBuf;

/// Sizes of one suite run. The full suite must stay within 12 minutes on 2 cores (issue 20), with
/// five peers: rounds are short (1 s) and many rather than long and few.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Sizes {
    pub(crate) repeats: usize,
    pub(crate) idle_users: usize,
    pub(crate) idle_sessions: usize,
    pub(crate) idle_window_secs: f64,
    pub(crate) idle_windows: usize,
    pub(crate) idle_connect_budget_secs: f64,
    pub(crate) storm_connect_budget_secs: f64,
    pub(crate) fan_users: usize,
    pub(crate) fan_sessions: usize,
    pub(crate) fan_channels: usize,
    /// The fixed rate of issue 7 (deliveries/s), and the low one every peer sustains (issue 20).
    pub(crate) fan_fixed_deliveries: f64,
    pub(crate) fan_low_deliveries: f64,
    /// Seconds of publishing per fixed-rate round.
    pub(crate) fan_secs: f64,
    /// Paired (direct, peer) rounds at the fixed rate, and at the low rate.
    pub(crate) pairs: usize,
    pub(crate) low_pairs: usize,
    /// Rates (deliveries/s) at which CPU per delivery is measured, and each round's seconds.
    pub(crate) cpu_rates: Vec<f64>,
    pub(crate) cpu_secs: f64,
    pub(crate) ramp_start_msgs: f64,
    /// Pushpin's ramp starts here: its sustained rate is a few thousand deliveries/s.
    pub(crate) ramp_start_low_msgs: f64,
    pub(crate) ramp_steps: usize,
    /// Bisection steps between the last sustained and the first failed doubling.
    pub(crate) ramp_refine: usize,
    pub(crate) ramp_secs: f64,
    pub(crate) storm_users: usize,
    pub(crate) storm_sessions: usize,
    /// Handshakes in flight across all workers: the first level runs `storm_repeats` times, the
    /// others once.
    pub(crate) storm_in_flight: Vec<usize>,
    pub(crate) storm_repeats: usize,
    pub(crate) lp_users: usize,
    pub(crate) lp_sessions: usize,
    pub(crate) lp_channels: usize,
    pub(crate) lp_msgs: f64,
    pub(crate) lp_secs: f64,
    /// The pinned run: deliveries/s and seconds of publishing.
    pub(crate) pinned_deliveries: f64,
    pub(crate) pinned_secs: f64,
    pub(crate) per_worker: usize,
    pub(crate) concurrency: usize,
}

impl Sizes {
    pub(crate) fn new(quick: bool, repeats: Option<usize>) -> Self {
        if quick {
            Sizes {
                repeats: repeats.unwrap_or(1),
                idle_users: 60,
                idle_sessions: 5,
                idle_window_secs: 1.0,
                idle_windows: 2,
                idle_connect_budget_secs: 0.0,
                storm_connect_budget_secs: 0.0,
                fan_users: 20,
                fan_sessions: 5,
                fan_channels: 4,
                fan_fixed_deliveries: 1000.0,
                fan_low_deliveries: 500.0,
                fan_secs: 0.5,
                pairs: 2,
                low_pairs: 1,
                cpu_rates: vec![2000.0, 5000.0],
                cpu_secs: 0.5,
                ramp_start_msgs: 40.0,
                ramp_start_low_msgs: 10.0,
                ramp_steps: 2,
                ramp_refine: 0,
                ramp_secs: 0.5,
                storm_users: 20,
                storm_sessions: 5,
                storm_in_flight: vec![128, 16],
                storm_repeats: 1,
                lp_users: 20,
                lp_sessions: 5,
                lp_channels: 4,
                lp_msgs: 20.0,
                lp_secs: 1.0,
                pinned_deliveries: 5000.0,
                pinned_secs: 1.0,
                per_worker: 7000,
                concurrency: 64,
            }
        } else {
            Sizes {
                repeats: repeats.unwrap_or(3),
                idle_users: 1500,
                idle_sessions: 10,
                // 3 × 8.5 s still spans one 25 s ping cycle.
                idle_window_secs: 8.5,
                idle_windows: 3,
                idle_connect_budget_secs: 20.0,
                storm_connect_budget_secs: 5.0,
                fan_users: 200,
                fan_sessions: 10,
                fan_channels: 20,
                fan_fixed_deliveries: 10_000.0,
                fan_low_deliveries: 2_000.0,
                fan_secs: 1.0,
                pairs: 10,
                low_pairs: 3,
                cpu_rates: vec![20_000.0, 50_000.0],
                cpu_secs: 2.0,
                ramp_start_msgs: 100.0,
                ramp_start_low_msgs: 10.0,
                ramp_steps: 6,
                ramp_refine: 3,
                ramp_secs: 1.0,
                storm_users: 500,
                storm_sessions: 10,
                storm_in_flight: vec![512, 64],
                storm_repeats: 2,
                lp_users: 1000,
                lp_sessions: 10,
                lp_channels: 100,
                lp_msgs: 20.0,
                lp_secs: 4.0,
                pinned_deliveries: 100_000.0,
                pinned_secs: 5.0,
                per_worker: 7500,
                concurrency: 256,
            }
        }
    }
}

pub(crate) struct Ctx {
    pub(crate) bin_gateway: PathBuf,
    pub(crate) bin_self: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) sizes: Sizes,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) problems: Vec<String>,
    pub(crate) peer_issues: Vec<String>,
    pub(crate) log: std::fs::File,
    /// `Some(data file)` while a profiling pass runs.
    pub(crate) perf_out: Option<PathBuf>,
}

impl Ctx {
    pub(crate) fn note(&mut self, msg: &str) {
        eprintln!("bench: {msg}");
        let _ = writeln!(self.log, "{msg}");
    }

    /// A failure of the load generator, the emulator or stream-edge fails the sanity check; one of
    /// a peer under test (nginx, HAProxy, Pushpin refusing or dropping sessions, or falling
    /// behind a rate) is a result, reported as such.
    pub(crate) fn problem(&mut self, msg: String) {
        if ["/nginx", "/haproxy", "/pushpin"]
            .iter()
            .any(|p| msg.contains(p))
        {
            self.note(&format!("PEER: {msg}"));
            self.peer_issues.push(msg);
        } else {
            self.note(&format!("SANITY: {msg}"));
            self.problems.push(msg);
        }
    }
}
