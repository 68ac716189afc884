//! Observability, checked against real tools: the README metrics table matches what `/metrics`
//! exports; a real Prometheus (Debian's `prometheus` package, installed by tests/run) scrapes the
//! gateway while traffic and the SDK end-to-end scenario run; `promtool check metrics` accepts the
//! scrape; every PromQL expression of grafana/dashboards/stream-edge.json returns data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::SinkExt;
use hyper::Method;
use serde_json::Value;
use stream_edge::config::{Config, DEV_API_KEY, DEV_API_SECRET};
use tokio_tungstenite::tungstenite::Message;

use crate::deploy::TempDir;
use crate::support::*;

/// Scrape and evaluation interval of the test Prometheus.
const SCRAPE_INTERVAL: &str = "1s";
/// What `$__rate_interval` becomes: Grafana's rule (≥ 4 scrape intervals), with room to spare.
const RATE_INTERVAL: &str = "1m";
/// Job name in the test Prometheus config: the dashboard's `$job`.
const JOB: &str = "stream-edge";
/// Bound on waiting for Prometheus (start, first scrape, ingestion of the traffic).
const PROM_WAIT: Duration = Duration::from_secs(30);

/// Test config plus short long-poll timings, so a long-poll session expires within the test.
fn scenario_config() -> Config {
    let mut c = test_config();
    c.longpoll.hold = Duration::from_millis(300);
    c.longpoll.session_timeout = Duration::from_secs(1);
    c
}

/// Sockets kept open while Prometheus scrapes, so gauges are non-zero.
struct Traffic {
    _open: Vec<Ws>,
}

async fn rest(
    gw: &TestGateway,
    method: Method,
    user: &str,
    path: &str,
    body: Option<&str>,
) -> Value {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!("{}{path}{sep}user_id={user}&api_key={DEV_API_KEY}", gw.base);
    let tok = gw.token(user, None);
    let (status, text) = http(
        method,
        &url,
        body,
        &[("authorization", &tok), ("stream-auth-type", "jwt")],
    )
    .await;
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn watch(gw: &TestGateway, user: &str, conn: &str, channel: &str) {
    let body = serde_json::json!({"data":{"members":[user, "obs-o"]},"state":true,"watch":true});
    rest(
        gw,
        Method::POST,
        user,
        &format!("/channels/messaging/{channel}/query?connection_id={conn}"),
        Some(&body.to_string()),
    )
    .await;
}

async fn send(gw: &TestGateway, channel: &str, text: &str) {
    let body = serde_json::json!({"message":{"text":text}}).to_string();
    rest(
        gw,
        Method::POST,
        "obs-o",
        &format!("/channels/messaging/{channel}/message"),
        Some(&body),
    )
    .await;
}

async fn next_message(ws: &mut Ws) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == "message.new" {
            return v;
        }
    }
}

/// Drives every path the dashboard shows: WebSocket sessions sharing an upstream connection, a
/// watched channel with messages delivered, a channel released upstream when its last watcher left, a
/// typing event dropped for privacy, REST calls, malformed input, a refused token, a long-poll session
/// that polls and then expires, and an upstream connection retired after its linger.
async fn drive_traffic(gw: &TestGateway) -> Traffic {
    let (mut a, ca) = gw.connect("obs-u").await;
    let (b, _) = gw.connect("obs-u").await;
    let (c, cc) = gw.connect("obs-u").await;
    watch(gw, "obs-u", &ca, "obs-1").await;
    watch(gw, "obs-u", &cc, "obs-3").await;
    send(gw, "obs-1", "hello").await;
    assert_eq!(next_message(&mut a).await["message"]["text"], "hello");

    // c leaves: obs-3, which only c watched, is released upstream at once.
    drop(c);
    eventually(
        "the third session's channel is released upstream",
        || async {
            gw.metric("stream_edge_subscriptions_released_total", &[])
                .await
                >= 1.0
        },
    )
    .await;
    send(gw, "obs-3", "to nobody").await;
    send(gw, "obs-1", "after").await;
    assert_eq!(next_message(&mut a).await["message"]["text"], "after");

    // A typing event from a user who hides typing is dropped, and counted.
    let hide = serde_json::json!({"users":[{"id":"obs-o","set":{"privacy_settings":{"typing_indicators":{"enabled":false}}}}]});
    rest(
        gw,
        Method::PATCH,
        "obs-o",
        "/users",
        Some(&hide.to_string()),
    )
    .await;
    let typing = serde_json::json!({"event":{"type":"typing.start"}}).to_string();
    rest(
        gw,
        Method::POST,
        "obs-o",
        "/channels/messaging/obs-1/event",
        Some(&typing),
    )
    .await;

    let users = r#"{"filter_conditions":{"id":{"$in":["obs-u","obs-o"]}}}"#;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", users)
        .finish();
    rest(gw, Method::GET, "obs-u", &format!("/users?{q}"), None).await;

    // Malformed input on a live session: answered with an error frame, counted.
    a.send(Message::text("not json")).await.expect("send");
    assert!(next_json(&mut a).await["error"].is_object());

    // A token signed with the wrong secret: refused before a session exists.
    let bad = sign("not-the-app-secret-at-all", "obs-bad", None);
    let url = gw.connect_url(r#"{"user_id":"obs-bad"}"#, DEV_API_KEY, &bad);
    let (_refused, first) = gw.ws_raw(&url).await;
    assert!(first["error"].is_object(), "{first}");

    // Long-poll: connect, one poll (held, then answered), then silence until it expires.
    let json = r#"{"user_id":"obs-lp","user_details":{"id":"obs-lp"}}"#;
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("json", json)
        .finish();
    let lp = rest(gw, Method::GET, "obs-lp", &format!("/longpoll?{q}"), None).await;
    let lp_id = lp["event"]["connection_id"]
        .as_str()
        .expect("long-poll connection_id")
        .to_string();
    rest(
        gw,
        Method::GET,
        "obs-lp",
        &format!("/longpoll?connection_id={lp_id}"),
        None,
    )
    .await;
    eventually("the long-poll session expires", || async {
        gw.metric("stream_edge_longpoll_expired_total", &[]).await >= 1.0
    })
    .await;
    // obs-lp's upstream connection has no session left: retired after the linger.
    eventually("an upstream connection is retired", || async {
        gw.metric("stream_edge_upstream_disconnects_total", &[])
            .await
            >= 1.0
    })
    .await;
    eventually("a dropped event is counted", || async {
        gw.metric("stream_edge_events_dropped_total", &[]).await >= 1.0
    })
    .await;
    Traffic { _open: vec![a, b] }
}

async fn scrape(gw: &TestGateway) -> String {
    let (status, text) = http(Method::GET, &format!("{}/metrics", gw.admin), None, &[]).await;
    assert_eq!(status, 200);
    text
}

/// A metric family as documented or exported: type and label names.
#[derive(Debug, PartialEq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// The README "Metrics" table.
fn readme_table() -> BTreeMap<String, Family> {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README.md");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .expect("README has a ## Metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut out = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert!(cells.len() >= 4, "metrics table row: {line}");
        let name = cells[0].trim_matches('`').to_string();
        let labels = if matches!(cells[2], "–" | "-" | "") {
            BTreeSet::new()
        } else {
            cells[2].split(',').map(|l| l.trim().to_string()).collect()
        };
        let prev = out.insert(
            name.clone(),
            Family {
                kind: cells[1].to_string(),
                labels,
            },
        );
        assert!(prev.is_none(), "README lists {name} twice");
    }
    assert!(!out.is_empty(), "README metrics table has rows");
    out
}

/// Families in a Prometheus text exposition, with the label names their samples carry.
fn exported(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            out.insert(
                name.to_string(),
                Family {
                    kind: kind.to_string(),
                    labels: BTreeSet::new(),
                },
            );
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|base| out.get(*base).is_some_and(|f| f.kind == "histogram"))
                .unwrap_or(name);
            let f = out
                .get_mut(family)
                .unwrap_or_else(|| panic!("sample {name} without # TYPE"));
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let key = pair.split_once('=').map_or(pair, |(k, _)| k).trim();
                if key != "le" {
                    f.labels.insert(key.to_string());
                }
            }
        }
    }
    out
}

/// Differences between the README table and an exposition, as readable lines.
fn table_problems(doc: &BTreeMap<String, Family>, exp: &BTreeMap<String, Family>) -> Vec<String> {
    const PROCESS: &str = "stream_edge_process_";
    let mut problems = Vec::new();
    for (name, f) in exp {
        if !name.starts_with("stream_edge_") {
            problems.push(format!("{name}: exported without the stream_edge_ prefix"));
        } else if name.starts_with(PROCESS) {
            if !doc.contains_key("stream_edge_process_*") {
                problems.push(format!(
                    "{name}: process metrics need a `stream_edge_process_*` row"
                ));
            }
        } else {
            match doc.get(name) {
                None => problems.push(format!("{name}: exported but not in the README table")),
                Some(d) if d.kind != f.kind => problems.push(format!(
                    "{name}: README says {}, /metrics says {}",
                    d.kind, f.kind
                )),
                Some(d) if d.labels != f.labels => problems.push(format!(
                    "{name}: README labels {:?}, /metrics labels {:?}",
                    d.labels, f.labels
                )),
                Some(_) => {}
            }
        }
    }
    for name in doc.keys() {
        if name == "stream_edge_process_*" {
            for p in [
                "resident_memory_bytes",
                "open_fds",
                "max_fds",
                "cpu_seconds_total",
            ] {
                if !exp.contains_key(&format!("{PROCESS}{p}")) {
                    problems.push(format!(
                        "{PROCESS}{p}: documented (process_*) but not exported"
                    ));
                }
            }
        } else if !exp.contains_key(name) {
            problems.push(format!(
                "{name}: in the README table but not exported after the traffic scenario \
                 (pre-create its label sets at start-up so it exists before its first event)"
            ));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_metrics_table_matches_what_metrics_exports() {
    let gw = TestGateway::start_with(scenario_config()).await;
    let _traffic = drive_traffic(&gw).await;
    let text = scrape(&gw).await;
    let problems = table_problems(&readme_table(), &exported(&text));
    assert!(
        problems.is_empty(),
        "README metrics table and /metrics differ:\n  {}",
        problems.join("\n  ")
    );
}

/// Every metric a dashboard panel queries, from the committed dashboard.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/grafana/dashboards/stream-edge.json"
    );
    let text = std::fs::read_to_string(path).expect("dashboard");
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("stream_edge_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

#[tokio::test]
async fn every_dashboard_panel_has_data_on_a_fresh_gateway() {
    let gw = TestGateway::start().await;
    let text = scrape(&gw).await;
    let wanted = dashboard_metrics();
    assert!(wanted.len() > 20, "{wanted:?}");
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| {
            !text
                .lines()
                .any(|l| l.starts_with(name.as_str()) && !l.starts_with('#'))
        })
        .collect();
    assert!(missing.is_empty(), "no series yet for {missing:?}");
}

#[test]
fn the_table_check_sees_differences() {
    let doc = readme_table();
    let text = "# TYPE stream_edge_new_total counter\nstream_edge_new_total{x=\"1\"} 1\n\
                # TYPE stream_edge_ready counter\nstream_edge_ready 1\n";
    let problems = table_problems(&doc, &exported(text)).join("\n");
    assert!(problems.contains("stream_edge_new_total: exported but not in the README"));
    assert!(problems.contains("stream_edge_ready: README says gauge, /metrics says counter"));
    assert!(problems.contains("stream_edge_sessions_open: in the README table but not exported"));
}

// ---------------------------------------------------------------------------------------------
// Real Prometheus

/// An executable on PATH, or a failure that says how to get it.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH: install Debian's `prometheus` package \
                 (`apt-get install prometheus`; ./tests/run does it)"
            )
        })
}

/// A free loopback port: Prometheus cannot report a port it picked itself, so one is reserved
/// here and released just before Prometheus binds it.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A Prometheus server scraping one target; killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let bin = tool("prometheus");
        let dir = TempDir::new("prom");
        let config = dir.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = std::fs::File::create(dir.0.join("prometheus.log")).expect("log file");
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn api(&self) -> PromApi {
        PromApi(self.base.clone())
    }

    /// Polls until `ready` holds, at most [`PROM_WAIT`]; fails with Prometheus's log otherwise.
    async fn until<F, Fut>(&mut self, what: &str, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + PROM_WAIT;
        loop {
            if let Some(status) = self.exited() {
                panic!(
                    "prometheus exited ({status}) before {what}:\n{}",
                    self.log()
                );
            }
            if ready().await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; prometheus log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One PromQL expression of the dashboard, where it came from.
struct Expr {
    panel: String,
    expr: String,
}

fn dashboard() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/stream-edge.json");
    let text = std::fs::read_to_string(&path).expect("grafana/dashboards/stream-edge.json");
    assert!(
        !text.contains("${DS_") && !text.contains("__inputs"),
        "export-time datasource placeholders are not resolved by file provisioning"
    );
    serde_json::from_str(&text).expect("dashboard is JSON")
}

fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

/// Static shape: stable identity, datasource by variable everywhere, the variables, units.
fn dashboard_exprs(d: &Value) -> Vec<Expr> {
    assert_eq!(d["uid"], "stream-edge", "stable uid (it is the URL)");
    assert!(d["id"].is_null(), "id null so provisioning assigns one");
    assert!(d["schemaVersion"].is_u64(), "pinned schemaVersion");
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .map(|v| (v["name"].as_str().expect("variable name"), v))
        .collect();
    assert_eq!(vars["datasource"]["type"], "datasource");
    assert_eq!(vars["datasource"]["query"], "prometheus");
    for v in ["app", "instance"] {
        assert_eq!(vars[v]["type"], "query", "{v} is a query variable");
    }
    let ds = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut out = Vec::new();
    for v in vars.values().filter(|v| v["type"] == "query") {
        assert_eq!(
            v["datasource"], ds,
            "variable {} uses ${{datasource}}",
            v["name"]
        );
    }
    for p in panels(d) {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().expect("panel title").to_string();
        assert_eq!(p["datasource"], ds, "panel {title} uses ${{datasource}}");
        assert!(
            p["fieldConfig"]["defaults"]["unit"].is_string(),
            "panel {title} sets a unit"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has targets");
        for t in targets {
            assert_eq!(
                t["datasource"], ds,
                "target of {title} uses ${{datasource}}"
            );
            out.push(Expr {
                panel: format!("{title} [{}]", t["refId"].as_str().unwrap_or("?")),
                expr: t["expr"].as_str().expect("expr").to_string(),
            });
        }
    }
    out
}

/// Replaces Grafana variables with concrete values, longest names first.
fn concrete(expr: &str, vars: &[(&str, &str)]) -> String {
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let mut s = expr.to_string();
    for (k, v) in vars {
        s = s
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    assert!(!s.contains('$'), "unresolved variable in {expr}");
    s
}

/// Metric names an expression reads (histogram series by their family name).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("stream_edge_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Result of an instant query: `Ok(number of series)` or the error.
async fn query(prom: &Prometheus, expr: &str) -> Result<usize, String> {
    let v = prom
        .api()
        .get("/api/v1/query", &[("query", expr)])
        .await
        .ok_or("no answer")?;
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    Ok(v["data"]["result"].as_array().map_or(0, Vec::len))
}

fn promtool_check(body: &str) {
    use std::io::Write;
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {}\n{report}",
        out.status
    );
}

/// Runs the SDK end-to-end core scenario (tests/e2e/core.test.mjs) against the gateway.
async fn sdk_scenario(gw: &TestGateway) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    assert!(
        dir.join("node_modules/stream-chat").is_dir(),
        "tests/e2e/node_modules is missing: run `npm ci --prefix tests/e2e` (tests/run does it)"
    );
    let child = tokio::process::Command::new("node")
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-force-exit",
            "core.test.mjs",
        ])
        .current_dir(&dir)
        .env("GATEWAY_URL", &gw.base)
        .env("ADMIN_URL", &gw.admin)
        .env("EMULATOR_URL", gw.emulator_control_url())
        .env("STREAM_API_KEY", DEV_API_KEY)
        .env("STREAM_API_SECRET", DEV_API_SECRET)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("SDK scenario finishes within 2 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("# fail 0"),
        "SDK scenario failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn admin_target(gw: &TestGateway) -> String {
    gw.admin.trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_gateway_and_every_dashboard_expression_returns_data() {
    let exprs = dashboard_exprs(&dashboard());
    tool("promtool");
    let gw = TestGateway::start_with(scenario_config()).await;
    let target = admin_target(&gw);
    let mut prom = Prometheus::start(&target);
    {
        let base_ok = |v: Option<Value>| {
            v.and_then(|v| {
                v["data"]["activeTargets"].as_array().map(|ts| {
                    ts.iter()
                        .any(|t| t["health"] == "up" && t["labels"]["job"] == JOB)
                })
            })
            .unwrap_or(false)
        };
        let api = prom.api();
        prom.until("the gateway target to be scraped (health up)", || {
            let api = api.clone();
            async move { base_ok(api.get("/api/v1/targets", &[]).await) }
        })
        .await;
    }

    // Traffic while Prometheus scrapes every second: our scenario, then the SDK's.
    let _traffic = drive_traffic(&gw).await;
    sdk_scenario(&gw).await;

    // The scrape itself passes Prometheus's own linter.
    let body = scrape(&gw).await;
    promtool_check(&body);
    let exported = exported(&body);
    for e in &exprs {
        for name in metric_names(&e.expr) {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|base| exported.contains_key(*base))
                .unwrap_or(&name);
            assert!(
                exported.contains_key(family),
                "{}: {name} is not exported by /metrics",
                e.panel
            );
        }
    }

    let vars = [
        ("__rate_interval", RATE_INTERVAL),
        ("job", JOB),
        ("instance", target.as_str()),
        ("app", DEV_API_KEY),
    ];
    // Every dashboard variable resolves to the value substituted for it.
    let api = prom.api();
    let d = dashboard();
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or_default();
        let def = v["definition"].as_str().expect("variable definition");
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: label_values(selector, label)"));
        let (selector, label) = inner.rsplit_once(',').expect("selector, label");
        let selector = concrete(selector.trim(), &vars);
        let want = vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .expect("substituted");
        let path = format!("/api/v1/label/{}/values", label.trim());
        prom.until(&format!("variable {name} to list {want}"), || {
            let (api, path, selector) = (api.clone(), path.clone(), selector.clone());
            async move {
                api.get(&path, &[("match[]", &selector)])
                    .await
                    .and_then(|v| v["data"].as_array().cloned())
                    .is_some_and(|vals| vals.iter().any(|x| x == want))
            }
        })
        .await;
    }

    // Every expression evaluates and returns data, once Prometheus has ingested the traffic.
    let concrete_exprs: Vec<(String, String)> = exprs
        .iter()
        .map(|e| (e.panel.clone(), concrete(&e.expr, &vars)))
        .collect();
    let deadline = tokio::time::Instant::now() + PROM_WAIT;
    loop {
        let mut failures = Vec::new();
        for (panel, expr) in &concrete_exprs {
            match query(&prom, expr).await {
                Ok(0) => failures.push(format!("{panel}: empty result for {expr}")),
                Ok(_) => {}
                Err(e) => panic!("{panel}: Prometheus rejected {expr}: {e}"),
            }
        }
        if failures.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline || prom.exited().is_some() {
            panic!(
                "{} of {} dashboard expressions returned no data:\n  {}",
                failures.len(),
                concrete_exprs.len(),
                failures.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        query(&prom, &format!("up{{job=\"{JOB}\"}} == 1")).await == Ok(1),
        "the target is still up after the scenario"
    );
    gw.running().assert_no_panics();
}

/// A cloneable handle on Prometheus's HTTP API (for closures polled by [`Prometheus::until`]).
#[derive(Clone)]
struct PromApi(String);

impl PromApi {
    async fn get(&self, path: &str, params: &[(&str, &str)]) -> Option<Value> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            q.append_pair(k, v);
        }
        let url = format!("{}{path}?{}", self.0, q.finish());
        let req = hyper::Request::get(url)
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .ok()?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let resp = tokio::time::timeout(WAIT, client.request(req))
            .await
            .ok()?
            .ok()?;
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .ok()?
            .to_bytes();
        serde_json::from_slice(&body).ok()
    }
}

#[test]
fn variables_are_substituted_longest_first() {
    let vars = [("app", "k"), ("__rate_interval", "1m"), ("instance", "h:1")];
    assert_eq!(
        concrete(
            r#"rate(x{instance=~"$instance", app=~"${app}"}[$__rate_interval])"#,
            &vars
        ),
        r#"rate(x{instance=~"h:1", app=~"k"}[1m])"#
    );
    assert_eq!(
        metric_names("sum(rate(stream_edge_a_total[1m])) / stream_edge_b"),
        ["stream_edge_a_total", "stream_edge_b"]
    );
}
