//! The Kubernetes manifests in deploy/, parsed with typed k8s-openapi structs and checked against
//! the binary itself: probe paths answer on a running gateway's admin listener, probe ports are the
//! admin port of the config the pod mounts, that config passes `stream-edge check-config`, the drain
//! deadline fits in the grace period, the sidecar is native, the api secret comes from a Secret;
//! the load balancer runs the very haproxy.cfg the multi-replica test runs, finds the replicas
//! through a headless Service, and only replicas reach the peer port (issue 18).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hyper::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Probe, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::support::*;

/// Defaults of the binary (README configuration table) for keys a mounted file may leave out.
const DEFAULT_ADMIN_PORT: u16 = 9090;
const DEFAULT_DRAIN_SECONDS: i64 = 20;
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// Every object in deploy/, by kind.
#[derive(Default)]
pub(crate) struct Manifests {
    pub(crate) deployments: Vec<(PathBuf, Deployment)>,
    pub(crate) services: Vec<Service>,
    pub(crate) hpas: Vec<HorizontalPodAutoscaler>,
    pub(crate) pdbs: Vec<PodDisruptionBudget>,
    pub(crate) config_maps: Vec<ConfigMap>,
    pub(crate) secrets: Vec<Secret>,
    pub(crate) network_policies: Vec<NetworkPolicy>,
    /// prometheus-operator CRD: no typed struct in k8s-openapi.
    pub(crate) service_monitors: Vec<serde_yaml::Value>,
}

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("deploy/ is readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

/// Parses into `T` and serialises back: a field k8s-openapi does not know (a typo such as
/// `failureTreshold`, or a field at the wrong level) is dropped by the round trip and fails here,
/// instead of being ignored silently as the API server would with a lenient client.
fn typed<T>(file: &Path, doc: &serde_yaml::Value) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let obj: T = serde_yaml::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{}: {e}\n{doc:?}", file.display()));
    let back = serde_json::to_value(&obj).expect("serialises");
    let orig = serde_json::to_value(doc).expect("YAML document as JSON");
    assert_eq!(
        back,
        orig,
        "{}: fields lost in a typed round trip (unknown or misplaced field)",
        file.display()
    );
    obj
}

pub(crate) fn load() -> Manifests {
    let mut files = Vec::new();
    yaml_files(&deploy_dir(), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/");
    let mut m = Manifests::default();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("manifest readable");
        for de in serde_yaml::Deserializer::from_str(&text) {
            let doc = <serde_yaml::Value as serde::Deserialize>::deserialize(de)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if doc.is_null() {
                continue;
            }
            let api = doc["apiVersion"].as_str().unwrap_or_default().to_string();
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            match (api.as_str(), kind.as_str()) {
                ("apps/v1", "Deployment") => {
                    m.deployments.push((file.clone(), typed(&file, &doc)));
                }
                ("v1", "Service") => m.services.push(typed(&file, &doc)),
                ("autoscaling/v2", "HorizontalPodAutoscaler") => m.hpas.push(typed(&file, &doc)),
                ("policy/v1", "PodDisruptionBudget") => m.pdbs.push(typed(&file, &doc)),
                ("v1", "ConfigMap") => m.config_maps.push(typed(&file, &doc)),
                ("v1", "Secret") => m.secrets.push(typed(&file, &doc)),
                ("networking.k8s.io/v1", "NetworkPolicy") => {
                    m.network_policies.push(typed(&file, &doc));
                }
                ("monitoring.coreos.com/v1", "ServiceMonitor") => m.service_monitors.push(doc),
                other => panic!(
                    "{}: {other:?} has no typed check in tests/it/deploy.rs; add one",
                    file.display()
                ),
            }
        }
    }
    m
}

pub(crate) fn pod_spec(d: &Deployment) -> &PodSpec {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("deployment has a pod spec")
}

pub(crate) fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().expect("metadata.name")
}

/// Deployments that run the gateway (the load balancer's does not).
pub(crate) fn gateway_deployments(m: &Manifests) -> impl Iterator<Item = &(PathBuf, Deployment)> {
    m.deployments.iter().filter(|(_, d)| {
        let spec = pod_spec(d);
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| {
                c.args
                    .as_ref()
                    .and_then(|a| a.first())
                    .is_some_and(|a| a == "serve")
            })
    })
}

/// The stream-edge container of a pod (regular or native sidecar) and whether it is an init
/// container: the one whose arguments start with `serve`.
pub(crate) fn gateway_container(spec: &PodSpec) -> (&Container, bool) {
    let is_gw = |c: &&Container| {
        c.args
            .as_ref()
            .and_then(|a| a.first())
            .is_some_and(|a| a == "serve")
    };
    if let Some(c) = spec.containers.iter().find(is_gw) {
        return (c, false);
    }
    let c = spec
        .init_containers
        .iter()
        .flatten()
        .find(is_gw)
        .expect("a container running `stream-edge serve`");
    (c, true)
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let eq = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == name {
            args.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix(&eq)
        }
    })
}

fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

/// The TOML file the container's `--config` points at, through its volume mount and the
/// ConfigMap behind that volume: (file name, text).
pub(crate) fn mounted_config<'a>(
    m: &'a Manifests,
    spec: &PodSpec,
    c: &Container,
) -> (String, &'a str) {
    let args = c.args.as_deref().unwrap_or_default();
    let path = Path::new(flag(args, "--config").expect("the gateway is started with --config"));
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|vm| path.parent() == Some(Path::new(&vm.mount_path)))
        .unwrap_or_else(|| panic!("no volume mounted at {}", path.display()));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("mounted volume is declared");
    let cm_name = volume
        .config_map
        .as_ref()
        .map(|c| c.name.as_str())
        .expect("the config volume is a ConfigMap");
    let cm = m
        .config_maps
        .iter()
        .find(|cm| name_of(&cm.metadata) == cm_name)
        .unwrap_or_else(|| panic!("ConfigMap {cm_name} is in deploy/"));
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .expect("config file name")
        .to_string();
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(&file))
        .unwrap_or_else(|| panic!("ConfigMap {cm_name} has key {file}"));
    (file, text.as_str())
}

pub(crate) fn toml_table(text: &str) -> toml::Table {
    text.parse().expect("mounted config is TOML")
}

pub(crate) fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr} has a port"))
}

/// The admin port the binary will bind, resolved as it does: flag > env > file > default.
pub(crate) fn effective_admin_port(c: &Container, config: &toml::Table) -> u16 {
    let args = c.args.as_deref().unwrap_or_default();
    if let Some(a) = flag(args, "--admin-listen") {
        return port_of(a);
    }
    if let Some(a) = env_value(c, "STREAM_EDGE_ADMIN_LISTEN") {
        return port_of(a);
    }
    match config.get("admin_listen").and_then(|v| v.as_str()) {
        Some(a) => port_of(a),
        None => DEFAULT_ADMIN_PORT,
    }
}

fn drain_seconds(config: &toml::Table) -> i64 {
    config
        .get("shutdown")
        .and_then(|s| s.get("drain_seconds"))
        .and_then(|v| v.as_integer())
        .unwrap_or(DEFAULT_DRAIN_SECONDS)
}

/// A probe or Service port (name or number) resolved against the container's declared ports.
pub(crate) fn resolve_port(c: &Container, port: &IntOrString) -> u16 {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("container {} declares no port named {name}", c.name))
                .container_port
        }
    };
    u16::try_from(n).expect("port number")
}

fn probes(c: &Container) -> Vec<(&'static str, &Probe)> {
    [
        ("startupProbe", c.startup_probe.as_ref()),
        ("readinessProbe", c.readiness_probe.as_ref()),
        ("livenessProbe", c.liveness_probe.as_ref()),
    ]
    .into_iter()
    .filter_map(|(n, p)| p.map(|p| (n, p)))
    .collect()
}

pub(crate) fn selects(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub(crate) fn pod_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

#[test]
fn manifests_parse_into_typed_structs_and_reference_each_other() {
    let m = load();
    assert_eq!(
        m.deployments.len(),
        3,
        "edge + sidecar + load balancer deployments"
    );
    assert_eq!(
        gateway_deployments(&m).count(),
        2,
        "edge + sidecar run the gateway"
    );
    assert!(!m.services.is_empty() && !m.hpas.is_empty() && !m.pdbs.is_empty());
    assert!(!m.config_maps.is_empty() && !m.secrets.is_empty());
    assert_eq!(m.service_monitors.len(), 1);

    // Services, PDBs and HPAs point at deployments that exist, and their ports at declared ports.
    for svc in &m.services {
        let spec = svc.spec.as_ref().expect("service spec");
        let selector = spec.selector.clone().unwrap_or_default();
        let (_, d) = m
            .deployments
            .iter()
            .find(|(_, d)| selects(&selector, &pod_labels(d)))
            .unwrap_or_else(|| panic!("Service {} selects no pod", name_of(&svc.metadata)));
        let pod = pod_spec(d);
        for p in spec.ports.iter().flatten() {
            let target = p.target_port.as_ref().expect("explicit targetPort");
            let declared = pod
                .containers
                .iter()
                .chain(pod.init_containers.iter().flatten())
                .any(|c| match target {
                    IntOrString::String(n) => c
                        .ports
                        .iter()
                        .flatten()
                        .any(|cp| cp.name.as_deref() == Some(n)),
                    IntOrString::Int(n) => {
                        c.ports.iter().flatten().any(|cp| cp.container_port == *n)
                    }
                });
            assert!(
                declared,
                "Service {} port {target:?} is not a container port",
                name_of(&svc.metadata)
            );
        }
    }
    for pdb in &m.pdbs {
        let sel = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        assert!(
            m.deployments
                .iter()
                .any(|(_, d)| selects(&sel, &pod_labels(d))),
            "PDB {} selects no pod",
            name_of(&pdb.metadata)
        );
    }
    for hpa in &m.hpas {
        let spec = hpa.spec.as_ref().expect("hpa spec");
        assert_eq!(spec.scale_target_ref.kind, "Deployment");
        assert!(m
            .deployments
            .iter()
            .any(|(_, d)| name_of(&d.metadata) == spec.scale_target_ref.name));
        assert!(
            spec.min_replicas.unwrap_or(1) >= 2,
            "keep ≥ 2 replicas for drains"
        );
        assert!(!spec.metrics.as_deref().unwrap_or_default().is_empty());
    }
    // The ServiceMonitor scrapes /metrics through a Service port that exists and is the admin port.
    let sm = &m.service_monitors[0];
    let sel: BTreeMap<String, String> =
        serde_yaml::from_value(sm["spec"]["selector"]["matchLabels"].clone()).expect("matchLabels");
    let svc = m
        .services
        .iter()
        .find(|s| selects(&sel, &s.metadata.labels.clone().unwrap_or_default()))
        .expect("the ServiceMonitor selects a Service by its labels");
    let endpoints = sm["spec"]["endpoints"].as_sequence().expect("endpoints");
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["path"].as_str(), Some("/metrics"));
    let port_name = endpoints[0]["port"].as_str().expect("named port");
    let port = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(port_name))
        .expect("ServiceMonitor port is a named Service port");
    let (_, d) = gateway_deployments(&m)
        .find(|(_, d)| {
            selects(
                &svc.spec
                    .as_ref()
                    .unwrap()
                    .selector
                    .clone()
                    .unwrap_or_default(),
                &pod_labels(d),
            )
        })
        .expect("service selects the edge deployment");
    let spec = pod_spec(d);
    let (c, _) = gateway_container(spec);
    let (_, text) = mounted_config(&m, spec, c);
    assert_eq!(
        resolve_port(c, port.target_port.as_ref().expect("targetPort")),
        effective_admin_port(c, &toml_table(text)),
        "the ServiceMonitor's port reaches the admin listener"
    );
}

#[tokio::test]
async fn probes_answer_on_the_admin_listener_of_the_mounted_config() {
    let m = load();
    let gw = TestGateway::start().await;
    for (file, d) in gateway_deployments(&m) {
        let spec = pod_spec(d);
        let (c, is_init) = gateway_container(spec);
        let (_, text) = mounted_config(&m, spec, c);
        let config = toml_table(text);
        let admin = effective_admin_port(c, &config);
        let listen = port_of(
            config
                .get("listen")
                .and_then(|v| v.as_str())
                .unwrap_or(stream_edge::config::DEFAULT_LISTEN),
        );
        for (addr, what) in [("admin_listen", admin), ("listen", listen)] {
            let ip = config
                .get(addr)
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            assert!(
                ip.starts_with("0.0.0.0:") || ip.starts_with("[::]:"),
                "{}: {addr} must listen beyond loopback in a pod (port {what})",
                file.display()
            );
        }
        assert!(
            c.ports
                .iter()
                .flatten()
                .any(|p| p.container_port == i32::from(listen)),
            "{}: the client port {listen} is declared",
            file.display()
        );
        let found = probes(c);
        let names: Vec<_> = found.iter().map(|(n, _)| *n).collect();
        let want: &[&str] = if is_init {
            // A sidecar's readiness is the whole pod's: optional (see the manifest).
            &["startupProbe", "livenessProbe"]
        } else {
            &["startupProbe", "readinessProbe", "livenessProbe"]
        };
        for n in want {
            assert!(names.contains(n), "{}: {n}", file.display());
        }
        for (name, probe) in found {
            let get = probe
                .http_get
                .as_ref()
                .unwrap_or_else(|| panic!("{}: {name} is an httpGet", file.display()));
            assert_eq!(
                resolve_port(c, &get.port),
                admin,
                "{}: {name} targets the admin port of the mounted config",
                file.display()
            );
            let path = get.path.as_deref().expect("probe path");
            let (status, body) = http(Method::GET, &format!("{}{path}", gw.admin), None, &[]).await;
            assert_eq!(
                status,
                hyper::StatusCode::OK,
                "{}: {name} {path} on a ready gateway: {body}",
                file.display()
            );
            // Readiness is the endpoint that turns 503 while draining or while upstream is
            // unreachable; startup and liveness must not depend on upstream, or an outage would
            // make the kubelet restart every replica.
            let expected = if name == "readinessProbe" {
                "/readyz"
            } else {
                "/healthz"
            };
            assert_eq!(path, expected, "{}: {name}", file.display());
        }
    }
    // The readiness path really flips while draining: a stopped gateway's /readyz is not 200.
    let running = gw.running();
    running.shutdown();
    let admin = gw.admin.clone();
    eventually("/readyz answers 503 while draining", || {
        let admin = admin.clone();
        async move {
            let url = format!("{admin}/readyz");
            match tokio::time::timeout(WAIT, hyper_util_get(&url)).await {
                Ok(Some(status)) => status == hyper::StatusCode::SERVICE_UNAVAILABLE,
                // The admin listener is gone once the drain has finished: not ready either.
                _ => true,
            }
        }
    })
    .await;
}

/// Why startup and liveness probe `/healthz`: with upstream unreachable the gateway is alive but not
/// ready, and only readiness may say so.
#[tokio::test]
async fn unreachable_upstream_fails_readiness_but_not_liveness() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral port")
        .port();
    let mut cfg = test_config();
    cfg.upstream.target = stream_edge::config::UpstreamTarget::Url(
        url::Url::parse(&format!("http://127.0.0.1:{closed}")).expect("url"),
    );
    let gw = TestGateway::start_with(cfg).await;
    let (health, _) = http(Method::GET, &format!("{}/healthz", gw.admin), None, &[]).await;
    assert_eq!(health, hyper::StatusCode::OK);
    let (ready, _) = http(Method::GET, &format!("{}/readyz", gw.admin), None, &[]).await;
    assert_eq!(ready, hyper::StatusCode::SERVICE_UNAVAILABLE);
}

/// GET that tolerates a closed listener (`None`).
async fn hyper_util_get(url: &str) -> Option<hyper::StatusCode> {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    let client: Client<_, Full<bytes::Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = hyper::Request::get(url).body(Full::default()).ok()?;
    client.request(req).await.ok().map(|r| r.status())
}

/// A scratch directory removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "se-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The container's command line with `serve` replaced by `check-config` and the mounted config
/// path by `config`, and its environment: literal values as written, Secret references as
/// stand-in values (set on the child only).
fn check_config(c: &Container, config: &Path, with_secrets: bool) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stream-edge"));
    for v in [
        "STREAM_EDGE_CONFIG",
        "STREAM_EDGE_LISTEN",
        "STREAM_EDGE_ADMIN_LISTEN",
        "STREAM_EDGE_UPSTREAM",
        "STREAM_API_KEY",
        "STREAM_API_SECRET",
        "STREAM_EDGE_LOG_FORMAT",
        "STREAM_EDGE_CLUSTER_ADVERTISE",
    ] {
        cmd.env_remove(v);
    }
    let args = c.args.as_deref().unwrap_or_default();
    let mut out: Vec<String> = vec!["check-config".into()];
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--config" {
            it.next();
            out.push("--config".into());
            out.push(config.display().to_string());
        } else {
            out.push(a.clone());
        }
    }
    cmd.args(&out);
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value {
            cmd.env(&e.name, v);
        } else if e
            .value_from
            .as_ref()
            .and_then(|f| f.field_ref.as_ref())
            .is_some_and(|f| f.field_path == "status.podIP")
        {
            // The downward API's pod IP, as the kubelet would set it.
            cmd.env(&e.name, "10.244.1.7");
        } else if with_secrets
            && e.value_from
                .as_ref()
                .is_some_and(|f| f.secret_key_ref.is_some())
        {
            cmd.env(&e.name, format!("stand-in-for-{}", e.name.to_lowercase()));
        }
    }
    cmd.output().expect("stream-edge runs")
}

#[test]
fn mounted_config_passes_check_config_and_the_secret_comes_from_a_secret() {
    let m = load();
    let dir = TempDir::new("deploy");
    for (file, d) in gateway_deployments(&m) {
        let spec = pod_spec(d);
        let (c, _) = gateway_container(spec);
        let (name, text) = mounted_config(&m, spec, c);
        let path = dir.0.join(format!("{}-{name}", name_of(&d.metadata)));
        std::fs::write(&path, text).expect("write config");

        let ok = check_config(c, &path, true);
        assert!(
            ok.status.success(),
            "{}: check-config refused the mounted config: {}",
            file.display(),
            String::from_utf8_lossy(&ok.stderr)
        );
        // Without the Secret's values the same config is refused: credentials are not in it.
        let without = check_config(c, &path, false);
        assert_eq!(
            without.status.code(),
            Some(64),
            "{}: the config must need STREAM_API_KEY/STREAM_API_SECRET from the Secret",
            file.display()
        );
        let config = toml_table(text);
        assert!(
            config.get("apps").is_none(),
            "{}: no apps/secrets in a ConfigMap",
            file.display()
        );
        assert_eq!(
            config
                .get("upstream")
                .and_then(|u| u.get("url"))
                .and_then(|v| v.as_str()),
            Some("https://chat.stream-io-api.com")
        );

        for var in ["STREAM_API_KEY", "STREAM_API_SECRET"] {
            let e = c
                .env
                .iter()
                .flatten()
                .find(|e| e.name == var)
                .unwrap_or_else(|| panic!("{}: {var} is set", file.display()));
            assert!(
                e.value.is_none(),
                "{}: {var} is not a literal",
                file.display()
            );
            let r = e
                .value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref())
                .unwrap_or_else(|| panic!("{}: {var} comes from a secretKeyRef", file.display()));
            let secret = m
                .secrets
                .iter()
                .find(|s| name_of(&s.metadata) == r.name)
                .unwrap_or_else(|| panic!("Secret {} is in deploy/", r.name));
            let has_key = secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(&r.key))
                || secret.data.as_ref().is_some_and(|d| d.contains_key(&r.key));
            assert!(has_key, "Secret {} has key {}", r.name, r.key);
        }
    }
    for cm in &m.config_maps {
        for (k, v) in cm.data.iter().flatten() {
            assert!(
                !k.to_lowercase().contains("secret") && !v.contains("secrets"),
                "ConfigMap {} must not carry secrets ({k})",
                name_of(&cm.metadata)
            );
        }
    }
}

#[test]
fn drain_fits_the_grace_period_and_pods_run_hardened() {
    let m = load();
    let dockerfile =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
            .expect("Dockerfile at the repo root");
    let image_user: i64 = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .and_then(|u| u.split(':').next())
        .and_then(|u| u.trim().parse().ok())
        .expect("the runtime stage sets a numeric USER");
    assert_ne!(image_user, 0, "the image runs as non-root");
    let mut sidecars = 0;
    for (file, d) in gateway_deployments(&m) {
        let f = file.display();
        let spec = pod_spec(d);
        let (c, is_init) = gateway_container(spec);
        let (_, text) = mounted_config(&m, spec, c);
        let drain = drain_seconds(&toml_table(text));
        let lifecycle = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref());
        let pre_stop = lifecycle
            .and_then(|h| h.sleep.as_ref())
            .map(|s| s.seconds)
            .unwrap_or(0);
        assert!(
            lifecycle.is_none_or(|h| h.exec.is_none()),
            "{f}: the distroless image has no shell: use the sleep action"
        );
        let grace = spec
            .termination_grace_period_seconds
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        assert!(
            drain + pre_stop < grace,
            "{f}: shutdown.drain_seconds ({drain}) + preStop sleep ({pre_stop}) must be < terminationGracePeriodSeconds ({grace})"
        );

        if is_init {
            sidecars += 1;
            assert_eq!(
                c.restart_policy.as_deref(),
                Some("Always"),
                "{f}: a native sidecar is an initContainer with restartPolicy: Always"
            );
            assert!(
                c.startup_probe.is_some(),
                "{f}: the app waits for the sidecar's startupProbe"
            );
            assert!(
                !spec.containers.is_empty(),
                "{f}: the sidecar runs next to an app container"
            );
        } else {
            assert!(
                c.restart_policy.is_none(),
                "{f}: restartPolicy only on init containers"
            );
        }

        let pod_sc = spec.security_context.as_ref();
        let sc = c.security_context.as_ref();
        assert!(
            sc.and_then(|s| s.run_as_non_root)
                .or(pod_sc.and_then(|s| s.run_as_non_root))
                == Some(true),
            "{f}: runAsNonRoot"
        );
        let uid = sc
            .and_then(|s| s.run_as_user)
            .or(pod_sc.and_then(|s| s.run_as_user));
        assert_eq!(uid, Some(image_user), "{f}: runAsUser is the image's USER");
        let sc = sc.expect("container securityContext");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{f}");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{f}");
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()]),
            "{f}"
        );

        let res = c.resources.as_ref().expect("resources");
        let requests = res.requests.clone().unwrap_or_default();
        let limits = res.limits.clone().unwrap_or_default();
        for k in ["cpu", "memory"] {
            assert!(requests.contains_key(k), "{f}: requests.{k}");
        }
        assert!(limits.contains_key("memory"), "{f}: limits.memory");
    }
    assert_eq!(sidecars, 1, "one native-sidecar example");
}

/// Behind the shipped load balancer every TCP peer is a load-balancer pod: the mounted config trusts the pod
/// network (so per-IP limits see each client, issue 13) and nothing public.
#[test]
fn mounted_config_trusts_the_pod_network_the_load_balancer_connects_from() {
    use stream_edge::config::IpNet;
    let m = load();
    for (file, d) in gateway_deployments(&m) {
        let spec = pod_spec(d);
        let (c, _) = gateway_container(spec);
        let (_, text) = mounted_config(&m, spec, c);
        let config = toml_table(text);
        let nets: Vec<IpNet> = config
            .get("limits")
            .and_then(|l| l.get("trusted_proxies"))
            .and_then(|v| v.as_array())
            .unwrap_or_else(|| panic!("{}: limits.trusted_proxies is set", file.display()))
            .iter()
            .map(|v| IpNet::parse(v.as_str().expect("a string")).expect("an IP network"))
            .collect();
        let trusted = |ip: &str| nets.iter().any(|n| n.contains(ip.parse().unwrap()));
        for pod in ["10.244.1.7", "192.168.3.4", "172.20.0.5", "fd12:3456::1"] {
            assert!(
                trusted(pod),
                "{}: load-balancer pod {pod} trusted",
                file.display()
            );
        }
        for public in ["203.0.113.9", "8.8.8.8", "2001:db8::1"] {
            assert!(!trusted(public), "{}: {public} not trusted", file.display());
        }
    }
}
