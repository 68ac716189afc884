//! Several replicas behind one load balancer (`[cluster]`, issue 18): which replica owns the
//! session a call names, forwarding a call to its owner ([`forward`]), the replica set
//! ([`peers`]), and letting go of users the balancer now routes elsewhere ([`converge`]).
//!
//! A call that names a `connection_id` (REST, a long-poll poll or close) is served where that
//! session lives. The id names its owner (`session::id`); a replica that receives a call for
//! another replica's session forwards it once, over the owner's peer listener, signed with a key
//! derived from the app secret. The owner serves it exactly as if it had come directly (token and
//! ownership re-checked), and learns that the balancer sends that user elsewhere. Dependencies:
//! `front` → `cluster` → `session`, `http`, `metrics`.

pub mod converge;
pub mod forward;
pub mod peers;

use std::net::SocketAddrV4;
use std::sync::Arc;

use http::{Request, Response};

use crate::config::ClusterConfig;
use crate::error::EdgeError;
use crate::http::{json_error, Body, ReqBody};
use crate::metrics::Metrics;
use crate::session::id::Owner;
use crate::session::Hubs;

/// The `forwarded_requests_total` results, pre-created at 0.
pub const FORWARD_RESULTS: [&str; 4] = ["ok", "owner_gone", "error", "busy"];

/// Marks a request that arrived on the peer listener, signed by a replica: it is never forwarded
/// again, and it tells the owner that the balancer routes the session's user elsewhere.
#[derive(Clone, Copy, Debug)]
pub struct Forwarded;

/// What [`Cluster::route`] decided for a request.
pub enum Routed {
    /// Serve it here (its session is here, it names none, or its id is no replica's).
    Here(Box<Request<ReqBody>>),
    /// Answered: forwarded to its owner, or refused.
    Answered(Response<Body>),
}

/// A replica's part in the cluster.
pub struct Cluster {
    pub config: ClusterConfig,
    hubs: Hubs,
    metrics: Arc<Metrics>,
    pub peers: peers::Peers,
    forwarder: forward::Forwarder,
    pub converge: converge::Converge,
    /// The largest request body forwarded (`limits.max_body_bytes`).
    max_body: usize,
    /// Every replica's peer port, when configured (it is this one's): an id naming another port
    /// is never forwarded to. `None` only with an ephemeral port on loopback (tests), where each
    /// replica's port differs.
    peer_port: Option<u16>,
}

/// What a call names, read once from its query: its `connection_id` and `api_key`.
#[derive(Clone, Debug, Default)]
pub struct Names {
    pub id: Option<String>,
    pub app: Option<String>,
}

impl Names {
    /// The first `connection_id` and `api_key` of a query (REST and long-poll refuse differing
    /// repeats themselves, before anything is served).
    pub fn of(query: Option<&str>) -> Self {
        let mut n = Names::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                "connection_id" if n.id.is_none() && !v.is_empty() => n.id = Some(v.into_owned()),
                "api_key" if n.app.is_none() => n.app = Some(v.into_owned()),
                _ => {}
            }
        }
        n
    }
}

impl Cluster {
    /// `peer_port`: the peer port every replica listens on, or `None` for an ephemeral one.
    pub fn new(
        config: ClusterConfig,
        hubs: Hubs,
        metrics: Arc<Metrics>,
        max_body: usize,
        peer_port: Option<u16>,
    ) -> Self {
        Cluster {
            peers: peers::Peers::new(config.peers.clone(), config.peers_refresh),
            forwarder: forward::Forwarder::new(&config, metrics.clone()),
            converge: converge::Converge::new(&config, hubs.clone(), metrics.clone()),
            config,
            hubs,
            metrics,
            max_body,
            peer_port,
        }
    }

    /// Whether a call naming `names` must go through [`Cluster::route`]: its session is another
    /// replica's, or its id is no replica's (counted there). The lean long-poll front answers
    /// only the others itself.
    pub fn needs_routing(&self, names: &Names) -> bool {
        names.id.as_deref().is_some_and(|id| {
            matches!(
                self.hubs.ids().owner(id, names.app.as_deref()),
                Owner::Peer(..) | Owner::Invalid
            )
        })
    }

    /// After a call for this replica's session `id` was answered `status`: a successful call (its
    /// token and ownership checked) that came straight from the balancer shows the user is still
    /// routed here, so a scheduled convergence close is cancelled; one a peer forwarded shows the
    /// balancer routes the user elsewhere, so a close is scheduled.
    pub fn settle(&self, id: &str, forwarded: bool, status: http::StatusCode) {
        if !status.is_success() || (!forwarded && self.converge.pending() == 0) {
            return;
        }
        if let Some(hub) = self.hubs.session_hub(id) {
            if forwarded {
                self.converge.note(&hub.app, &hub.user);
            } else {
                self.converge.cancel(&hub.app, &hub.user);
            }
        }
    }

    /// Whether the replica at `addr` may own sessions: its address is among `cluster.peers`' and
    /// it listens on the replicas' peer port. So an id, even one signed with a key a tenant
    /// knows (its own app's secret), can only ever name a real replica's peer listener.
    async fn is_peer(&self, addr: SocketAddrV4) -> bool {
        port_allowed(self.peer_port, addr.port()) && self.peers.contains(*addr.ip()).await
    }

    /// Decides where a request that is not a WebSocket connect is served, and forwards it when
    /// that is another replica.
    pub async fn route(&self, req: Request<ReqBody>, names: &Names) -> Routed {
        let Some(id) = names.id.as_deref() else {
            return Routed::Here(Box::new(req));
        };
        if req.extensions().get::<Forwarded>().is_some() {
            return self.arrived(req, id);
        }
        match self.hubs.ids().owner(id, names.app.as_deref()) {
            Owner::Here | Owner::Stale => Routed::Here(Box::new(req)),
            Owner::Invalid => {
                // Served here, where an id no replica minted is simply unknown (code 46): never
                // forwarded, so a client cannot steer a replica anywhere.
                self.metrics.connection_id_refused.inc();
                Routed::Here(Box::new(req))
            }
            Owner::Peer(addr, key) => {
                let answer = if self.is_peer(addr).await {
                    self.forwarder.forward(req, addr, &key, self.max_body).await
                } else {
                    self.metrics
                        .forwarded
                        .with_label_values(&["owner_gone"])
                        .inc();
                    tracing::debug!(owner = %addr, "session owner is not a known replica");
                    Err(EdgeError::ConnectionNotFound)
                };
                Routed::Answered(answer.unwrap_or_else(|e| json_error(&e)))
            }
        }
    }

    /// A call a peer forwarded here: served if its session is here (whatever its MAC says now: a
    /// secret this replica already dropped in a rolling reload must not strand a live session).
    fn arrived(&self, req: Request<ReqBody>, id: &str) -> Routed {
        if self.hubs.session_hub(id).is_some() {
            Routed::Here(Box::new(req))
        } else {
            // Closed, or minted by an earlier process at this address: the caller's SDK recovers
            // on code 46 (long-poll reconnects; REST retries after reconnecting).
            self.metrics.owner_misses.inc();
            Routed::Answered(json_error(&EdgeError::ConnectionNotFound))
        }
    }
}

/// Whether an owner's `port` may be a replica's peer listener: the replicas' one peer port when
/// it is fixed (production); any, only with an ephemeral port on loopback (tests).
fn port_allowed(peer_port: Option<u16>, port: u16) -> bool {
    peer_port.is_none_or(|p| p == port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_replicas_peer_port_is_ever_dialled() {
        assert!(port_allowed(Some(9091), 9091));
        for other in [9090, 8080, 22, 0] {
            assert!(!port_allowed(Some(9091), other), "{other}");
        }
        assert!(port_allowed(None, 41234));
    }

    #[test]
    fn names_are_the_first_of_each() {
        let n = Names::of(Some(
            "api_key=k&connection_id=&connection_id=a&connection_id=b",
        ));
        assert_eq!((n.id.as_deref(), n.app.as_deref()), (Some("a"), Some("k")));
        let n = Names::of(None);
        assert!(n.id.is_none() && n.app.is_none());
    }
}
