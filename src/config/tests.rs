//! The one configuration shape against its sources, and against the README's table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::sources::ConfigArgs;
use super::*;

/// `args` layered over a file with `text`.
fn layer(args: &ConfigArgs, text: &str) -> Result<Config, ConfigError> {
    args.layer(Some((Path::new("edge.toml"), text)))
}

fn file(text: &str) -> Result<Config, String> {
    layer(&ConfigArgs::default(), text).map_err(|e| e.to_string())
}

#[test]
fn flag_beats_file_beats_default() {
    let text = "listen = \"0.0.0.0:1\"\nadmin_listen = \"0.0.0.0:2\"\n[auth]\nleeway_seconds = 0\n";
    let args = ConfigArgs {
        listen: Some("127.0.0.1:3".into()),
        ..Default::default()
    };
    let c = layer(&args, text).unwrap();
    assert_eq!(c.listen.port(), 3);
    assert_eq!(c.admin_listen.port(), 2);
    assert_eq!(c.auth.leeway, Duration::ZERO);
    assert_eq!(c.upstream.linger, DEFAULT_UPSTREAM_LINGER);
    assert!(c.dev_credentials);
}

#[test]
fn token_lifecycle_keys() {
    let c = file(
        "[auth]\nrevocation_capacity = 7\napp_settings_refresh_seconds = 9\nended_session_grace_seconds = 0\n[upstream]\ntoken_ttl_seconds = 600\n",
    )
    .unwrap();
    assert_eq!(c.auth.revocation_capacity, 7);
    assert_eq!(c.auth.app_settings_refresh, Duration::from_secs(9));
    assert_eq!(c.auth.ended_session_grace, Duration::ZERO);
    assert_eq!(c.upstream.token_ttl, Duration::from_secs(600));
    let short = file("[upstream]\ntoken_ttl_seconds = 5\n").unwrap();
    assert!(
        short.validate().is_err(),
        "a minted token must outlive the handshake"
    );
    assert!(c.validate().is_ok());
    let c = Config::local_dev();
    assert_eq!(c.upstream.token_ttl, DEFAULT_UPSTREAM_TOKEN_TTL);
    assert_eq!(c.auth.ended_session_grace, DEFAULT_ENDED_SESSION_GRACE);
}

#[test]
fn unknown_key_is_rejected_with_its_line() {
    let err = file("listen = \"127.0.0.1:1\"\n[ws]\nmax_mesage_bytes = 3\n").unwrap_err();
    assert!(err.contains("max_mesage_bytes"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn a_bad_value_names_its_key_and_line_or_its_flag() {
    let err = file("listen = \"x\"\n[ws]\nmax_message_bytes = 3\n").unwrap_err();
    assert_eq!(
        err,
        "config file edge.toml: listen: `x` is not an IP:port address (line 1)"
    );
    let err = file("[privacy]\non_lookup_failure = \"maybe\"\n").unwrap_err();
    assert!(
        err.contains("privacy.on_lookup_failure: `maybe` is not drop or deliver (line 2)"),
        "{err}"
    );
    let err = file("[tls]\ncert_file = \"c.pem\"\n").unwrap_err();
    assert!(
        err.contains("tls: cert_file and key_file go together"),
        "{err}"
    );
    let err = file("[limits]\ntrusted_proxies = [\"10.0.0.0/40\"]\n").unwrap_err();
    assert!(err.contains("limits.trusted_proxies"), "{err}");

    // A flag's value is named by the flag, as the file's own value would not be used.
    let args = ConfigArgs {
        upstream: Some("not a url".into()),
        log_format: Some("xml".into()),
        ..Default::default()
    };
    let err = layer(&args, "log_format = \"json\"\n")
        .unwrap_err()
        .to_string();
    assert_eq!(err, "log_format: `xml` is not human or json");
    let args = ConfigArgs {
        upstream: Some("not a url".into()),
        ..Default::default()
    };
    let err = args.layer(None).unwrap_err().to_string();
    assert!(err.starts_with("upstream: not a url: "), "{err}");
}

#[test]
fn file_sections_reach_their_fields() {
    let c = file(
        "log_format = \"json\"\n[upstream]\nurl = \"https://chat.stream-io-api.com\"\nlinger_seconds = 0.5\n[limits]\ntrusted_proxies = [\"10.0.0.0/8\"]\nrest_buffered_total_bytes = 4096\n[privacy]\non_lookup_failure = \"deliver\"\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n[shutdown]\ndrain_seconds = 3\n[[apps]]\napi_key = \"k\"\nsecrets = [\"secret-one-x\"]\n",
    )
    .unwrap();
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.upstream.linger, Duration::from_millis(500));
    assert_eq!(
        c.limits.trusted_proxies,
        vec![IpNet::parse("10.0.0.0/8").unwrap()]
    );
    assert_eq!(c.limits.rest_buffered_total, 4096);
    assert_eq!(c.privacy.on_lookup_failure, OnLookupFailure::Deliver);
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(tls.cert_file, PathBuf::from("c.pem"));
    assert_eq!(tls.reload_interval, DEFAULT_TLS_RELOAD_INTERVAL);
    assert_eq!(c.drain_deadline, Duration::from_secs(3));
    assert_eq!(c.apps[0].secrets, vec![Secret("secret-one-x".into())]);
    assert!(!c.dev_credentials);
    let long = file("[upstream]\nlinger_seconds = 4000\n").unwrap();
    assert!(long
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("upstream.linger_seconds:"));
}

#[test]
fn real_upstream_needs_credentials() {
    let args = ConfigArgs {
        upstream: Some("https://chat.stream-io-api.com".into()),
        ..Default::default()
    };
    let err = args.resolve().unwrap_err().to_string();
    assert!(err.starts_with("apps:"), "{err}");
}

#[test]
fn rotation_secrets_split_and_key_must_pair() {
    let args = ConfigArgs {
        api_key: Some("k".into()),
        api_secret: Some("secret-one-x, secret-two-x".into()),
        ..Default::default()
    };
    let c = args.resolve().unwrap();
    assert_eq!(c.apps[0].secrets.len(), 2);
    assert!(!c.dev_credentials);
    let half = ConfigArgs {
        api_key: Some("k".into()),
        ..Default::default()
    };
    assert!(half.resolve().is_err());
}

#[test]
fn defaults_are_the_constants_and_secrets_never_print() {
    let c = Config::default();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
    let dev = Config::local_dev();
    assert!(format!("{dev:?}").contains("Secret(***)"));
    assert!(!format!("{dev:?}").contains(DEV_API_SECRET));
    let json = serde_json::to_string(&dev).unwrap();
    assert!(!json.contains(DEV_API_SECRET), "{json}");
}

/// Every key of [`Config`] with its default, as dotted paths (`apps[].api_key` for arrays of
/// tables), from the serialised defaults.
fn config_keys() -> BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            serde_json::Value::Array(items) if items.first().is_some_and(|i| i.is_object()) => {
                walk(&format!("{prefix}[]"), &items[0], out);
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.clone());
            }
        }
    }
    let mut defaults = Config::default();
    defaults.apps.push(AppConfig::dev());
    let mut out = BTreeMap::new();
    walk("", &serde_json::to_value(&defaults).unwrap(), &mut out);
    out
}

/// The README "Configuration" table: each key (a row may list several) with its default cell.
fn readme_keys() -> BTreeMap<String, String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("README has a ## Configuration section");
    let mut out = BTreeMap::new();
    for row in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | key | flag / env | default | meaning |
        if cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        for key in cells[1].split(", ") {
            let key = key.trim_matches('`').to_string();
            assert!(
                out.insert(key.clone(), cells[3].to_string()).is_none(),
                "README lists {key} twice"
            );
        }
    }
    assert!(!out.is_empty(), "README configuration table has rows");
    out
}

/// A new key needs a README row, a README row needs a key, and the defaults agree.
#[test]
fn readme_table_lists_every_key_with_its_default() {
    let code = config_keys();
    let readme = readme_keys();
    let missing: Vec<_> = code.keys().filter(|k| !readme.contains_key(*k)).collect();
    let extra: Vec<_> = readme.keys().filter(|k| !code.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "keys missing from the README table: {missing:?}"
    );
    assert!(extra.is_empty(), "README rows that are no key: {extra:?}");
    for (key, cell) in &readme {
        let literal = match cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
            Some(literal) => literal.to_string(),
            None if cell == "none" => "none".to_string(),
            // Prose ("dev app with the embedded upstream"): nothing to compare.
            None => continue,
        };
        let default = match &code[key] {
            serde_json::Value::Null => "none".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(literal, default, "README default of {key}");
    }
}

#[test]
fn health_interval_stays_under_unitys_watchdog() {
    for (secs, ok) in [(25, true), (29, true), (30, false), (34, false), (0, false)] {
        let c = file(&format!("[ws]\nhealth_interval_seconds = {secs}\n")).unwrap();
        assert_eq!(c.validate().is_ok(), ok, "{secs}");
    }
}

/// Unsolicited checks leave the JS SDK's 25 s ping room to go first, and stay 5 s ahead of its 35 s
/// watchdog whatever the interval; a short interval (behind a proxy with a short idle timeout)
/// stays short.
#[test]
fn health_silence_lets_the_sdk_ping_first_and_stays_under_its_watchdog() {
    let s = |secs| health_silence(Duration::from_secs(secs)).as_secs_f64();
    assert_eq!(s(25), 30.0);
    assert_eq!(s(29), 30.0);
    assert_eq!(s(10), 12.0);
    for secs in 1..30 {
        assert!(s(secs) <= 30.0 && s(secs) >= secs as f64, "{secs}");
    }
}

#[test]
fn http2_is_opt_in_with_edge_sized_limits() {
    let off = file("").unwrap();
    assert_eq!(off.http2, Http2Config::default());
    assert!(!off.http2.tls && !off.http2.cleartext && !off.http2.websockets);
    let on = file(
        "[http2]\ntls = true\ncleartext = true\nwebsockets = true\nmax_concurrent_streams = 20\nstream_window_bytes = 131072\n",
    )
    .unwrap();
    assert!(on.http2.tls && on.http2.cleartext && on.http2.websockets);
    assert_eq!(on.http2.max_concurrent_streams, 20);
    assert_eq!(on.http2.stream_window_bytes, 131_072);
    assert_eq!(
        on.http2.connection_window_bytes,
        DEFAULT_H2_CONNECTION_WINDOW
    );
    let lone = file("[http2]\nwebsockets = true\n").unwrap();
    let lone = lone.validate().unwrap_err().to_string();
    assert!(lone.starts_with("http2.websockets:"), "{lone}");
    let small = file("[http2]\nconnection_window_bytes = 1024\n").unwrap();
    assert!(small
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("http2.connection_window_bytes:"));
    let none = file("[http2]\nmax_concurrent_streams = 0\n").unwrap();
    assert!(none
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("http2.max_concurrent_streams:"));
}

#[test]
fn cluster_is_off_by_default_and_checked_when_on() {
    let off = file("").unwrap();
    assert!(!off.cluster.enabled());
    assert!(off.validate().is_ok());
    let ok = file(
        "[cluster]\npeer_listen = \"0.0.0.0:9091\"\nadvertise = \"10.0.0.5\"\npeers = [\"stream-edge-peers\"]\n",
    )
    .unwrap();
    assert!(ok.validate().is_ok());
    assert_eq!(
        ok.cluster.advertised_ip(),
        Some(std::net::Ipv4Addr::new(10, 0, 0, 5))
    );
    let loopback_tests =
        file("[cluster]\npeer_listen = \"127.0.0.1:0\"\npeers = [\"127.0.0.1\"]\n").unwrap();
    assert!(loopback_tests.validate().is_ok());
    for (bad, key) in [
        // Every address, nothing advertised: peers could not reach it.
        (
            "peer_listen = \"0.0.0.0:9091\"\npeers = [\"p\"]",
            "cluster.advertise",
        ),
        // IPv6 does not fit in a connection_id.
        (
            "peer_listen = \"[::1]:9091\"\npeers = [\"p\"]",
            "cluster.advertise",
        ),
        (
            "peer_listen = \"0.0.0.0:9091\"\nadvertise = \"fd00::1\"\npeers = [\"p\"]",
            "cluster.advertise",
        ),
        // An ephemeral port off loopback: ids could name any port.
        (
            "peer_listen = \"0.0.0.0:0\"\nadvertise = \"10.0.0.5\"\npeers = [\"p\"]",
            "cluster.peer_listen",
        ),
        ("peer_listen = \"10.0.0.5:9091\"", "cluster.peers"),
        (
            "peer_listen = \"10.0.0.5:9091\"\npeers = [\"p\"]\nforward_timeout_seconds = 20",
            "cluster.forward_timeout_seconds",
        ),
        (
            "peer_listen = \"10.0.0.5:9091\"\npeers = [\"p\"]\nconverge_closes_per_second = 0",
            "cluster.converge_closes_per_second",
        ),
    ] {
        let c = file(&format!("[cluster]\n{bad}\n")).unwrap();
        let err = c.validate().expect_err(bad).to_string();
        assert!(err.starts_with(key), "{bad}: {err}");
    }
}
