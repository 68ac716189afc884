//! `stream-edge-bench`: the load generator and benchmark suite of stream-edge (README "Benchmarks").
//!
//! One binary, four roles:
//! * `suite` (the default): starts the systems under test (the emulator alone = direct, nginx,
//!   HAProxy and Pushpin in front of it, stream-edge in front of it), runs the scenarios against
//!   each, and writes `report.md`, `results.json` and `chart.png`;
//! * `worker` (internal): a load-generating process the suite re-executes, holding its share of the
//!   client sessions (WebSocket or long-poll) and reporting delivery latencies;
//! * `report` and `chart`: rewrite the report and the PNG, or the PNG only, from a `results.json`.
//!
//! Everything is loopback only, bounded in count and time, and stops by itself.

mod client;
mod clock;
mod ctx;
mod peers;
mod proc_stats;
mod publisher;
mod report;
mod rig;
mod scenarios;
mod suite;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "stream-edge-bench",
    about = "Benchmark suite and load generator for stream-edge"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    suite: suite::SuiteArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the benchmark suite (the default).
    Suite(suite::SuiteArgs),
    /// Internal: one load-generating process (spec as JSON), driven over stdin/stdout.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        spec: String,
    },
    /// Rewrite report.md and chart.png in `out` from a results.json.
    Report {
        #[arg(long)]
        json: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Redraw the chart from a results.json.
    Chart {
        #[arg(long)]
        json: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Worker { spec }) => worker::run(&spec),
        Some(Command::Chart { json, out }) => report::chart_from_file(&json, &out),
        Some(Command::Report { json, out }) => report::report_from_file(&json, &out),
        Some(Command::Suite(args)) => suite::run(args),
        None => suite::run(cli.suite),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stream-edge-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}
