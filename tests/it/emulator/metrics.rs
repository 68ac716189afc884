//! The emulator's own metrics (issue 17): every bound it reaches is counted in
//! `stream_edge_emulator_bound_hits_total{bound}` and every REST error in
//! `stream_edge_emulator_rest_errors_total{code}`, served at `GET /_emulator/metrics` (with or
//! without the control routes) and by `Emulator::metrics_text` / `metrics_registry`.

use serde_json::json;
use stream_edge_emulator::MAX_DEVICES_PER_USER;

use super::support::Harness;

/// The value of the series `name{label="value"}` in Prometheus text, 0 when absent.
fn series(text: &str, name: &str, label: &str, value: &str) -> u64 {
    let key = format!("{name}{{{label}=\"{value}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `GET /_emulator/metrics` over a plain HTTP/1.1 exchange; the text body.
async fn scrape(h: &Harness) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(h.addr)
        .await
        .expect("connect");
    let head = "GET /_emulator/metrics HTTP/1.1\r\nhost: emulator\r\nconnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut raw = String::new();
    tokio::time::timeout(crate::support::WAIT, stream.read_to_string(&mut raw))
        .await
        .expect("answer in time")
        .expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    body.to_owned()
}

#[tokio::test]
async fn bounds_hit_and_errors_are_counted() {
    if crate::support::skip_without_openapi("emulator::metrics::bounds_hit_and_errors_are_counted")
    {
        return;
    }
    let h = Harness::start().await;
    h.emu.set_control(false);
    let bound = "stream_edge_emulator_bound_hits_total";
    let before = scrape(&h).await;
    assert_eq!(series(&before, bound, "bound", "devices_per_user"), 0);

    // One device past the per-user bound evicts the oldest: a hit, not an error.
    let a = h.client("alice");
    for i in 0..=MAX_DEVICES_PER_USER {
        let body = json!({"id": format!("tok-{i}"), "push_provider": "firebase"});
        a.post("/devices", body, "Response").await;
    }
    // A body over the request bound is refused with 413.
    let (status, _) = a
        .raw_bytes("POST", "/channels", vec![b' '; 2 * 1024 * 1024])
        .await;
    assert_eq!(status, 413);
    let (status, _) = a.raw("GET", "/no/such/route", None).await;
    assert_eq!(status, 404);

    let after = scrape(&h).await;
    assert_eq!(series(&after, bound, "bound", "devices_per_user"), 1);
    assert_eq!(series(&after, bound, "bound", "request_body_bytes"), 1);
    let errors = "stream_edge_emulator_rest_errors_total";
    assert_eq!(series(&after, errors, "code", "4"), 1);
    assert_eq!(series(&after, errors, "code", "16"), 1);
    // An embedder can register the same registry in its own exposition.
    let families = h.emu.metrics_registry().gather();
    assert!(families.iter().any(|f| f.name() == bound));
}
