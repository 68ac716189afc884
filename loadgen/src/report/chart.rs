//! The chart (PNG): delivery latency at the fixed fan-out rate, and memory per idle session, for
//! every peer.

use std::path::Path;
use std::process::ExitCode;

use plotters::prelude::*;
use plotters::style::FontStyle;
use serde_json::Value;

use super::{get, PEERS};

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

    // Left: delivery latency per peer, log scale, at the low fixed rate when the run has it: every
    // peer is inside its capacity there (Pushpin is not at 10k/s, where its bar would be its
    // backlog).
    let key = if PEERS
        .iter()
        .any(|p| get(r, "fanout", p, "fixed_low.p50_us").is_some())
    {
        "fixed_low"
    } else {
        "fixed"
    };
    let rate = PEERS
        .iter()
        .find_map(|p| get(r, "fanout", p, &format!("{key}.target_deliveries_per_s")))
        .unwrap_or(0.0);
    let peers: Vec<&str> = PEERS
        .iter()
        .copied()
        .filter(|p| get(r, "fanout", p, &format!("{key}.p50_us")).is_some())
        .collect();
    let keys = [
        ("p50", format!("{key}.p50_us")),
        ("p99", format!("{key}.p99_us")),
        ("p99.9", format!("{key}.p999_us")),
    ];
    let ymax = peers
        .iter()
        .flat_map(|p| keys.iter().filter_map(move |(_, k)| get(r, "fanout", p, k)))
        .fold(10.0_f64, f64::max)
        * 2.0;
    let mut c = ChartBuilder::on(&left)
        .caption(
            format!("Delivery latency at {rate:.0} deliveries/s (µs, log)"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..peers.len().max(1) as f64, (1f64..ymax).log_scale())?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(peers.len().max(1) * 2 + 1)
        .x_label_formatter(&|x| peer_label(&peers, *x))
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
        .x_label_formatter(&|x| peer_label(&peers, *x))
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
    // Issue 20's target.
    let target = 3.5;
    c.draw_series(LineSeries::new(
        [(0.0, target), (peers.len() as f64, target)],
        BLACK.stroke_width(1),
    ))?
    .label("target 3.5 KiB")
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

/// The x-axis label at `x`: a peer's name at the middle of its slot, nothing elsewhere.
fn peer_label(peers: &[&str], x: f64) -> String {
    let i = x.floor() as usize;
    if (x - x.floor() - 0.5).abs() < 0.01 {
        peers.get(i).map(|s| (*s).to_string()).unwrap_or_default()
    } else {
        String::new()
    }
}
