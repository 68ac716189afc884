//! The main dashboard's "Replicas" row (issue 18): it shows every cluster metric, each selector
//! filtered by `$job` and `$instance` like the rest of the dashboard. That every expression of the
//! dashboard returns data from a live Prometheus scraping a fresh gateway is checked in
//! `observability` (the cluster metrics are exported, at 0, by every gateway).

use std::path::PathBuf;

use serde_json::Value;

/// The cluster metrics of issue 18 the row must show.
const CLUSTER_METRICS: &[&str] = &[
    "stream_edge_forwarded_requests_total",
    "stream_edge_forwarded_received_total",
    "stream_edge_owner_misses_total",
    "stream_edge_convergence_closes_total",
    "stream_edge_convergence_pending",
    "stream_edge_connection_id_refused_total",
];

fn dashboard() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/stream-edge.json");
    let text = std::fs::read_to_string(&path).expect("dashboard file");
    serde_json::from_str(&text).expect("dashboard is JSON")
}

#[test]
fn the_replicas_row_shows_every_cluster_metric() {
    let d = dashboard();
    let panels = d["panels"].as_array().expect("panels");
    let row = panels
        .iter()
        .position(|p| p["type"] == "row" && p["title"] == "Replicas")
        .expect("the Replicas row");
    // A row owns the panels after it, up to the next row.
    let mine = panels[row + 1..]
        .iter()
        .take_while(|p| p["type"] != "row")
        .collect::<Vec<_>>();
    let mut shown = Vec::new();
    for p in mine {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(
            p["description"].as_str().is_some_and(|s| !s.is_empty()),
            "{title}: description"
        );
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            for (i, _) in expr.match_indices("stream_edge_") {
                let rest = &expr[i..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                assert!(
                    rest[name.len()..].starts_with("{job=~\"$job\", instance=~\"$instance\""),
                    "{title}: {name} is filtered by $job and $instance"
                );
                shown.push(name);
            }
        }
    }
    for m in CLUSTER_METRICS {
        assert!(shown.iter().any(|s| s == m), "{m} is in the Replicas row");
    }
}
