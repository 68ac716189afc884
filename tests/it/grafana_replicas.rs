//! The "stream-edge replicas" dashboard (issue 18), statically: it follows the main dashboard's
//! conventions (stable uid, provisioned id, `${datasource}` everywhere, the same `job`/`instance`
//! variables, every selector filtered by them), has its "Replicas" row, and shows every cluster
//! metric. Its queries are not yet evaluated against a live Prometheus as the main dashboard's
//! are (observability.rs): the cluster metrics exist only with the gateway's cluster code.

use std::path::PathBuf;

use serde_json::Value;

/// The cluster metrics of issue 18 the dashboard must show.
const CLUSTER_METRICS: &[&str] = &[
    "stream_edge_forwarded_requests_total",
    "stream_edge_forwarded_received_total",
    "stream_edge_owner_misses_total",
    "stream_edge_convergence_closes_total",
    "stream_edge_connection_id_refused_total",
];

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("grafana/dashboards")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("dashboard file");
    serde_json::from_str(&text).expect("dashboard is JSON")
}

fn var<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("variable {name}"))
}

#[test]
fn replicas_dashboard_shows_every_cluster_metric_with_the_main_dashboards_conventions() {
    let main = load("stream-edge.json");
    let d = load("stream-edge-replicas.json");
    assert_eq!(
        d["uid"], "stream-edge-replicas",
        "stable uid (it is the URL)"
    );
    assert!(d["id"].is_null(), "id null so provisioning assigns one");
    assert_eq!(d["schemaVersion"], main["schemaVersion"]);
    for v in ["datasource", "job", "instance"] {
        assert_eq!(
            var(&d, v),
            var(&main, v),
            "variable {v} as in the main dashboard"
        );
    }
    let panels = d["panels"].as_array().expect("panels");
    assert!(
        panels
            .iter()
            .any(|p| p["type"] == "row" && p["title"] == "Replicas"),
        "the Replicas row"
    );
    let ds = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut shown = Vec::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap_or_default();
        assert_eq!(p["datasource"], ds, "{title}");
        assert!(
            p["description"].as_str().is_some_and(|s| !s.is_empty()),
            "{title}: description"
        );
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"], ds, "{title}");
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
        assert!(shown.iter().any(|s| s == m), "{m} is on the dashboard");
    }
}
