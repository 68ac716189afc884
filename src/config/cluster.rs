//! `[cluster]`: several replicas behind one load balancer. A replica with a peer listener mints
//! `connection_id`s that name it (its advertised IPv4 address and peer port, signed), forwards a
//! call for another replica's session to that replica, and lets go of users the balancer now
//! routes elsewhere. Off (no `peer_listen`) a replica behaves as a single gateway.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::value::seconds;

/// How often the peer names are resolved again (`cluster.peers_refresh_seconds`); an id whose
/// owner is not among the known addresses also triggers a refresh, at most once a second.
pub const DEFAULT_PEERS_REFRESH: Duration = Duration::from_secs(5);
/// The longest a forwarded call may take (`cluster.forward_timeout_seconds`): a forwarded poll is
/// held by its owner for `longpoll.hold_seconds` (20 s), so this sits above it with room.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(40);
/// Forwarded calls in flight at once (`cluster.max_forwards_in_flight`); a call over the bound is
/// answered 429 (code 9) and counted. Most are held polls of users caught mid-move.
pub const DEFAULT_MAX_FORWARDS: usize = 4096;
/// Upper bound of the random delay before a replica closes the sessions of a user whose calls
/// now arrive forwarded (`cluster.converge_delay_seconds`): spreading the reconnects of a scale-up
/// over this window keeps them from arriving at the new replica as one storm.
pub const DEFAULT_CONVERGE_DELAY: Duration = Duration::from_secs(30);
/// Users whose sessions a replica closes per second at most for convergence
/// (`cluster.converge_closes_per_second`).
pub const DEFAULT_CONVERGE_RATE: u32 = 20;
/// Users waiting for their convergence close (`cluster.max_converge_pending`); more are not
/// scheduled (counted) and are caught by a later forwarded call.
pub const DEFAULT_CONVERGE_PENDING: usize = 100_000;
/// Connections the peer listener serves at once (`cluster.max_peer_connections`).
pub const DEFAULT_MAX_PEER_CONNECTIONS: usize = 1024;

/// `[cluster]` as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `cluster.peer_listen`: the listener only replicas use (forwarded calls). Unset: clustering
    /// is off.
    pub peer_listen: Option<SocketAddr>,
    /// `cluster.advertise`: the IPv4 address other replicas reach this one at (Kubernetes: the pod
    /// IP, `STREAM_EDGE_CLUSTER_ADVERTISE` from `status.podIP`). Default: `peer_listen`'s address
    /// when it is not unspecified.
    pub advertise: Option<IpAddr>,
    /// `cluster.peers`: host names or IPs whose addresses may own sessions (a headless Service's
    /// name, or a static list). A call is forwarded only to one of them.
    pub peers: Vec<String>,
    /// `cluster.peers_refresh_seconds` ([`DEFAULT_PEERS_REFRESH`]).
    #[serde(rename = "peers_refresh_seconds", with = "seconds")]
    pub peers_refresh: Duration,
    /// `cluster.forward_timeout_seconds` ([`DEFAULT_FORWARD_TIMEOUT`]).
    #[serde(rename = "forward_timeout_seconds", with = "seconds")]
    pub forward_timeout: Duration,
    /// `cluster.max_forwards_in_flight` ([`DEFAULT_MAX_FORWARDS`]).
    pub max_forwards_in_flight: usize,
    /// `cluster.converge_delay_seconds` ([`DEFAULT_CONVERGE_DELAY`]).
    #[serde(rename = "converge_delay_seconds", with = "seconds")]
    pub converge_delay: Duration,
    /// `cluster.converge_closes_per_second` ([`DEFAULT_CONVERGE_RATE`]).
    pub converge_closes_per_second: u32,
    /// `cluster.max_converge_pending` ([`DEFAULT_CONVERGE_PENDING`]).
    pub max_converge_pending: usize,
    /// `cluster.max_peer_connections` ([`DEFAULT_MAX_PEER_CONNECTIONS`]).
    pub max_peer_connections: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            peer_listen: None,
            advertise: None,
            peers: Vec::new(),
            peers_refresh: DEFAULT_PEERS_REFRESH,
            forward_timeout: DEFAULT_FORWARD_TIMEOUT,
            max_forwards_in_flight: DEFAULT_MAX_FORWARDS,
            converge_delay: DEFAULT_CONVERGE_DELAY,
            converge_closes_per_second: DEFAULT_CONVERGE_RATE,
            max_converge_pending: DEFAULT_CONVERGE_PENDING,
            max_peer_connections: DEFAULT_MAX_PEER_CONNECTIONS,
        }
    }
}

impl ClusterConfig {
    /// Whether this replica takes part in a cluster.
    pub fn enabled(&self) -> bool {
        self.peer_listen.is_some()
    }

    /// The IPv4 address this replica is reached at by its peers, when clustering is on.
    pub fn advertised_ip(&self) -> Option<std::net::Ipv4Addr> {
        let ip = self
            .advertise
            .or_else(|| self.peer_listen.map(|a| a.ip()))?;
        match ip {
            IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
            _ => None,
        }
    }

    pub(super) fn validate(&self) -> Result<(), super::ConfigError> {
        use super::ConfigError;
        let Some(listen) = self.peer_listen else {
            return Ok(());
        };
        // Ids carry the owner's IPv4 address and port so a replica can be reached without a
        // lookup; an IPv6 address does not fit the SDK's 36-character connection_id.
        if self.advertised_ip().is_none() {
            let why = if matches!(self.advertise, Some(IpAddr::V6(_)))
                || (self.advertise.is_none() && listen.is_ipv6())
            {
                "must be an IPv4 address (an IPv6 owner does not fit in a connection_id)"
            } else {
                "must be set when cluster.peer_listen listens on every address \
                 (Kubernetes: the pod IP, STREAM_EDGE_CLUSTER_ADVERTISE)"
            };
            return Err(ConfigError::invalid("cluster.advertise", why));
        }
        // An ephemeral peer port differs per replica, so ids could then name any port of a peer
        // address: only for tests on one host.
        if listen.port() == 0 && self.advertised_ip().is_some_and(|ip| !ip.is_loopback()) {
            return Err(ConfigError::invalid(
                "cluster.peer_listen",
                "needs a fixed port (the same on every replica) unless it is on loopback",
            ));
        }
        if self.peers.is_empty() {
            return Err(ConfigError::invalid(
                "cluster.peers",
                "must name the replicas (a headless Service or addresses) when cluster.peer_listen is set",
            ));
        }
        if self.peers.iter().any(|p| p.trim().is_empty()) {
            return Err(ConfigError::invalid("cluster.peers", "has an empty name"));
        }
        let positive = |key: &'static str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::invalid(key, "must be above 0"))
            }
        };
        positive(
            "cluster.peers_refresh_seconds",
            !self.peers_refresh.is_zero(),
        )?;
        positive(
            "cluster.forward_timeout_seconds",
            !self.forward_timeout.is_zero(),
        )?;
        positive(
            "cluster.max_forwards_in_flight",
            self.max_forwards_in_flight > 0,
        )?;
        positive(
            "cluster.converge_closes_per_second",
            self.converge_closes_per_second > 0,
        )?;
        positive(
            "cluster.max_converge_pending",
            self.max_converge_pending > 0,
        )?;
        positive(
            "cluster.max_peer_connections",
            self.max_peer_connections > 0,
        )
    }
}
