//! The multi-replica parts of deploy/ (issue 18), checked against each other and against the
//! binary's config: HAProxy's ConfigMap is byte-identical to the tested deploy/haproxy/haproxy.cfg
//! and passes `haproxy -c`; its DNS name is a headless Service that selects the gateway pods and
//! keeps draining ones; its server ports are the gateway's client and admin ports; the peer port
//! is the mounted config's `cluster.peer_listen` and only gateway pods may reach it.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::deploy::*;

const HAPROXY: &str = "/usr/sbin/haproxy";
/// The cluster DNS name of the headless Service, as the HAProxy container's env spells it.
const PEERS_ENV: &str = "EDGE_PEERS_DNS";

fn shipped_cfg() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy/haproxy.cfg"),
    )
    .expect("deploy/haproxy/haproxy.cfg")
}

/// The HAProxy Deployment's pod and container (the one whose image is HAProxy's).
fn lb(m: &Manifests) -> (&PodSpec, &Container) {
    m.deployments
        .iter()
        .map(|(_, d)| pod_spec(d))
        .find_map(|spec| {
            spec.containers
                .iter()
                .find(|c| {
                    c.image
                        .as_deref()
                        .is_some_and(|i| i.starts_with("haproxy:"))
                })
                .map(|c| (spec, c))
        })
        .expect("a Deployment runs HAProxy (deploy/edge/haproxy.yaml)")
}

fn literal_env(c: &Container, name: &str) -> String {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
        .unwrap_or_else(|| panic!("{} sets {name}", c.name))
}

fn container_port(c: &Container, name: &str) -> i32 {
    c.ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{} declares port {name}", c.name))
        .container_port
}

fn edge(m: &Manifests) -> (&PodSpec, &Container, toml::Table) {
    let (_, d) = gateway_deployments(m)
        .find(|(f, _)| f.ends_with("edge/deployment.yaml"))
        .expect("the edge Deployment");
    let spec = pod_spec(d);
    let (c, _) = gateway_container(spec);
    let (_, text) = mounted_config(m, spec, c);
    (spec, c, toml_table(text))
}

fn peers_service<'a>(m: &'a Manifests, lb_container: &Container) -> &'a Service {
    let dns = literal_env(lb_container, PEERS_ENV);
    let name = dns.split('.').next().unwrap_or_default();
    assert!(
        dns.ends_with(".svc.cluster.local"),
        "HAProxy's resolver has no search path: {PEERS_ENV} must be fully qualified ({dns})"
    );
    m.services
        .iter()
        .find(|s| name_of(&s.metadata) == name)
        .unwrap_or_else(|| panic!("{PEERS_ENV} names Service {name}, which is in deploy/"))
}

#[test]
fn load_balancer_runs_the_tested_haproxy_cfg_and_reaches_the_replicas() {
    let m = load();
    let (spec, c) = lb(&m);

    // The mounted haproxy.cfg is the file the multi-replica test runs, byte for byte.
    let args = c.args.as_deref().unwrap_or_default();
    let cfg_path = args
        .iter()
        .position(|a| a == "-f")
        .and_then(|i| args.get(i + 1))
        .map(Path::new)
        .expect("haproxy -f <file>");
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|vm| cfg_path.parent() == Some(Path::new(&vm.mount_path)))
        .expect("the config directory is mounted");
    let cm_name = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .and_then(|v| v.config_map.as_ref())
        .map(|c| c.name.clone())
        .expect("from a ConfigMap");
    let cm = m
        .config_maps
        .iter()
        .find(|cm| name_of(&cm.metadata) == cm_name)
        .expect("that ConfigMap is in deploy/");
    let key = cfg_path
        .file_name()
        .and_then(|f| f.to_str())
        .expect("file name");
    let mounted = cm
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .expect("haproxy.cfg key");
    assert!(
        *mounted == shipped_cfg(),
        "ConfigMap {cm_name} differs from deploy/haproxy/haproxy.cfg: run deploy/haproxy/sync-configmap.sh"
    );

    // Its DNS name is a headless Service that keeps draining pods and selects the gateway's pods.
    let svc = peers_service(&m, c);
    let s = svc.spec.as_ref().expect("spec");
    assert_eq!(
        s.cluster_ip.as_deref(),
        Some("None"),
        "headless: one A record per pod"
    );
    assert_eq!(
        s.publish_not_ready_addresses,
        Some(true),
        "draining owners stay resolvable"
    );
    let (_, gw, config) = edge(&m);
    let edge_labels = gateway_deployments(&m)
        .find(|(f, _)| f.ends_with("edge/deployment.yaml"))
        .map(|(_, d)| pod_labels(d))
        .unwrap_or_default();
    assert!(selects(
        &s.selector.clone().unwrap_or_default(),
        &edge_labels
    ));

    // The server-template dials the gateway's client port and health-checks its admin port.
    let line = mounted
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("server-template"))
        .expect("a server-template line");
    let client = port_of(
        config
            .get("listen")
            .and_then(|v| v.as_str())
            .unwrap_or(stream_edge::config::DEFAULT_LISTEN),
    );
    let admin = effective_admin_port(gw, &config);
    assert!(
        line.contains(&format!("\":{client} ")),
        "servers on the client port {client}: {line}"
    );
    assert!(
        line.contains(&format!(" port {admin} ")),
        "health checks on the admin port {admin} (/readyz): {line}"
    );
    assert_eq!(container_port(gw, "client"), i32::from(client));

    // The public Service reaches HAProxy's frontend (`bind :8080` without EDGE_FRONTEND_BIND).
    assert!(shipped_cfg().contains("    bind :8080\n"));
    let lb_labels = m
        .deployments
        .iter()
        .map(|(_, d)| d)
        .find(|d| pod_spec(d).containers.iter().any(|x| x.name == c.name))
        .map(pod_labels)
        .unwrap_or_default();
    let public = m
        .services
        .iter()
        .filter_map(|s| s.spec.as_ref())
        .find(|s| selects(&s.selector.clone().unwrap_or_default(), &lb_labels))
        .expect("a Service selects the HAProxy pods");
    assert_eq!(public.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(public.external_traffic_policy.as_deref(), Some("Local"));
    let target = public
        .ports
        .iter()
        .flatten()
        .next()
        .and_then(|p| p.target_port.clone());
    assert_eq!(resolve_port(c, &target.expect("targetPort")), 8080);
}

/// `haproxy -c` on the ConfigMap with the container's environment (skips without HAProxy).
#[test]
fn load_balancer_config_passes_haproxy_check() {
    if !Path::new(HAPROXY).exists() {
        eprintln!(
            "skipped: {HAPROXY} is not installed (apt-get install haproxy; tests/run does it)"
        );
        return;
    }
    let m = load();
    let (_, c) = lb(&m);
    let mut cmd = std::process::Command::new(HAPROXY);
    cmd.args(["-c", "-f"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy/haproxy.cfg"));
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value {
            // Kubernetes expands $(VAR) from earlier variables; the namespace is a fieldRef.
            cmd.env(&e.name, v.replace("$(POD_NAMESPACE)", "default"));
        }
    }
    let out = cmd.output().expect("haproxy runs");
    assert!(
        out.status.success(),
        "haproxy -c refused the Kubernetes shape: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without any server shape the file refuses to start rather than run an empty ring.
    let bare = std::process::Command::new(HAPROXY)
        .args(["-c", "-f"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy/haproxy.cfg"))
        .env_remove("EDGE_PEERS_DNS")
        .env_remove("EDGE_SERVER_1")
        .output()
        .expect("haproxy runs");
    assert!(
        !bare.status.success(),
        "no servers configured must be an error"
    );
}

/// The peer port: the mounted config's `cluster.peer_listen`, declared by the container and the
/// headless Service, advertised with the pod IP, and reachable only from gateway pods.
#[test]
fn peer_port_is_the_configured_one_and_only_replicas_reach_it() {
    let m = load();
    let (_, gw, config) = edge(&m);
    let peer_listen = config
        .get("cluster")
        .and_then(|c| c.get("peer_listen"))
        .and_then(|v| v.as_str())
        .expect("cluster.peer_listen in the edge ConfigMap");
    assert!(
        peer_listen.starts_with("0.0.0.0:"),
        "reachable from other pods"
    );
    let peer = i32::from(port_of(peer_listen));
    assert_eq!(container_port(gw, "peer"), peer);
    let advertise = gw
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "STREAM_EDGE_CLUSTER_ADVERTISE")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|f| f.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    assert_eq!(
        advertise,
        Some("status.podIP"),
        "each pod advertises its own IP"
    );

    let (_, lbc) = lb(&m);
    let svc = peers_service(&m, lbc);
    let peers: Vec<&str> = config
        .get("cluster")
        .and_then(|c| c.get("peers"))
        .and_then(|v| v.as_array())
        .expect("cluster.peers")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let svc_name = name_of(&svc.metadata);
    assert!(
        peers
            .iter()
            .any(|p| *p == svc_name || p.starts_with(&format!("{svc_name}."))),
        "cluster.peers names the headless Service {svc_name}: {peers:?}"
    );
    assert!(
        svc.spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .any(|p| p
                .target_port
                .as_ref()
                .is_some_and(|t| resolve_port(gw, t) == peer as u16)),
        "the headless Service exposes the peer port"
    );

    // NetworkPolicy: every rule that opens the peer port admits only gateway pods.
    let edge_labels = gateway_deployments(&m)
        .find(|(f, _)| f.ends_with("edge/deployment.yaml"))
        .map(|(_, d)| pod_labels(d))
        .unwrap_or_default();
    let policy = m
        .network_policies
        .iter()
        .find(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.pod_selector.as_ref())
                .and_then(|s| s.match_labels.clone())
                .is_some_and(|sel| selects(&sel, &edge_labels))
        })
        .expect("a NetworkPolicy selects the gateway pods");
    let spec = policy.spec.as_ref().expect("spec");
    let opens_peer = |ports: &Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyPort>>| {
        ports.as_ref().is_none_or(|ps| {
            ps.iter().any(|p| match &p.port {
                None => true,
                Some(IntOrString::Int(n)) => *n == peer,
                Some(IntOrString::String(name)) => container_port(gw, name) == peer,
            })
        })
    };
    let mut admitted = 0;
    for rule in spec.ingress.iter().flatten() {
        if !opens_peer(&rule.ports) {
            continue;
        }
        let from = rule.from.as_deref().unwrap_or_default();
        assert!(!from.is_empty(), "a rule opens the peer port to everyone");
        for f in from {
            let sel = f
                .pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone())
                .expect("peer port: by pod selector only");
            assert!(f.ip_block.is_none() && f.namespace_selector.is_none());
            assert!(selects(&sel, &edge_labels), "only gateway pods: {sel:?}");
            admitted += 1;
        }
    }
    assert!(
        admitted > 0,
        "the replicas can reach each other's peer port"
    );
}
