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
}

/// The `connection_id` a query names (the first; REST refuses differing repeats itself).
pub fn connection_id(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, v)| k == "connection_id" && !v.is_empty())
        .map(|(_, v)| v.into_owned())
}

impl Cluster {
    pub fn new(config: ClusterConfig, hubs: Hubs, metrics: Arc<Metrics>, max_body: usize) -> Self {
        Cluster {
            peers: peers::Peers::new(config.peers.clone(), config.peers_refresh),
            forwarder: forward::Forwarder::new(&config, metrics.clone()),
            converge: converge::Converge::new(&config, hubs.clone(), metrics.clone()),
            config,
            hubs,
            metrics,
            max_body,
        }
    }

    /// Whether a call naming `id` must go through [`Cluster::route`]: its session is another
    /// replica's, or the id is no replica's (counted there). The lean long-poll front answers
    /// only the others itself.
    pub fn needs_routing(&self, id: &str) -> bool {
        matches!(self.hubs.ids().owner(id), Owner::Peer(..) | Owner::Invalid)
    }

    /// A call for this replica's session `id` came straight from the balancer: the user is
    /// still routed here, so no convergence close is due (see [`converge::Converge::cancel`]).
    pub fn seen_directly(&self, id: &str) {
        if self.converge.pending() > 0 {
            if let Some(hub) = self.hubs.session_hub(id) {
                self.converge.cancel(&hub.app, &hub.user);
            }
        }
    }

    /// Decides where a request that is not a WebSocket connect is served, and forwards it when
    /// that is another replica.
    pub async fn route(&self, req: Request<ReqBody>) -> Routed {
        let Some(id) = connection_id(req.uri().query()) else {
            return Routed::Here(Box::new(req));
        };
        let owner = self.hubs.ids().owner(&id);
        if req.extensions().get::<Forwarded>().is_some() {
            return self.arrived(req, &id, owner);
        }
        match owner {
            Owner::Here => {
                self.seen_directly(&id);
                Routed::Here(Box::new(req))
            }
            Owner::Stale => Routed::Here(Box::new(req)),
            Owner::Invalid => {
                // Served here, where an id no replica minted is simply unknown (code 46): never
                // forwarded, so a client cannot steer a replica anywhere.
                self.metrics.connection_id_refused.inc();
                Routed::Here(Box::new(req))
            }
            Owner::Peer(addr, key) => {
                let answer = if self.peers.contains(*addr.ip()).await {
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

    /// A call a peer forwarded here: served if its session is here, and noted for convergence.
    fn arrived(&self, req: Request<ReqBody>, id: &str, owner: Owner) -> Routed {
        let hub = match owner {
            Owner::Here => self.hubs.session_hub(id),
            _ => None,
        };
        match hub {
            Some(hub) => {
                self.converge.note(&hub.app, &hub.user);
                Routed::Here(Box::new(req))
            }
            None => {
                // Closed, or minted by an earlier process at this address: the caller's SDK
                // recovers on code 46 (long-poll reconnects; REST retries after reconnecting).
                self.metrics.owner_misses.inc();
                Routed::Answered(json_error(&EdgeError::ConnectionNotFound))
            }
        }
    }
}
