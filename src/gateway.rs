//! Wiring: binds the listeners, starts the embedded upstream when configured, builds the shared
//! state, and runs until shutdown. [`start`] returns a [`Running`] handle that tests and `main` use
//! alike.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::config::{Config, UpstreamTarget};
use crate::metrics::Metrics;
use crate::privacy::Privacy;
use stream_edge_emulator::{self as emulator, Emulator};

use crate::session::longpoll::{self, LongPolls};
use crate::session::Hubs;
use crate::shutdown::Shutdown;
use crate::state::Shared;
use crate::upstream::{Upstream, UpstreamError};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// A started gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Address of the embedded upstream, when it runs.
    pub embedded_addr: Option<SocketAddr>,
    pub embedded: Option<Emulator>,
    /// The peer listener's address, when clustering is on.
    pub peer_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    supervisor: JoinHandle<bool>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|source| StartError::Bind { addr, source })?;
    let _ = socket.set_reuseaddr(true);
    socket
        .bind(addr)
        .map_err(|source| StartError::Bind { addr, source })?;
    socket
        .listen(4096)
        .map_err(|source| StartError::Bind { addr, source })
}

/// Binds and starts everything.
///
/// # Errors
/// A listener cannot be bound, or the upstream TLS setup fails.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    precreate_series(&metrics, &config);
    let life = Shutdown::default();
    let listener = bind(config.listen).await?;
    let admin = bind(config.admin_listen).await?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let admin_addr = admin.local_addr().map_err(|source| StartError::Bind {
        addr: config.admin_listen,
        source,
    })?;
    // The peer listener is bound first: its port is part of every connection_id minted here.
    let peer_listener = match config.cluster.peer_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let peer_addr = match &peer_listener {
        Some(l) => Some(l.local_addr().map_err(|source| StartError::Bind {
            addr: config.cluster.peer_listen.unwrap_or(config.listen),
            source,
        })?),
        None => None,
    };
    let owner = config
        .cluster
        .advertised_ip()
        .zip(peer_addr)
        .map(|(ip, a)| std::net::SocketAddrV4::new(ip, a.port()));
    let ids = Arc::new(crate::session::id::Ids::new(owner, &config.apps));

    // The embedded upstream outlives the drain so sessions can close cleanly; it stops last.
    let last = CancellationToken::new();
    let (base, embedded, embedded_addr) = match &config.upstream.target {
        UpstreamTarget::Url(u) => (u.clone(), None, None),
        UpstreamTarget::Embedded => {
            let l = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
            let a = l.local_addr().map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
            let apps = config
                .apps
                .iter()
                .map(|a| emulator::App {
                    api_key: a.api_key.clone(),
                    secrets: a.secrets.iter().map(|s| s.0.clone()).collect(),
                })
                .collect();
            let emu = Emulator::new(apps);
            tokio::spawn(emulator::serve(l, emu.clone(), last.clone()));
            let base = url::Url::parse(&format!("http://{a}"))
                .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            (base, Some(emu), Some(a))
        }
    };
    let upstream = Arc::new(Upstream::new(
        base,
        config.upstream.clone(),
        &config.apps,
        metrics.clone(),
    )?);
    let auth = Authenticator::new(&config.apps, config.auth.clone(), metrics.clone());
    let privacy = Arc::new(Privacy::new(
        config.privacy.clone(),
        upstream.clone(),
        metrics.clone(),
    ));
    let connect_limiter = crate::limits::ConnectLimiter::new(&config.limits);
    let hubs = Hubs::new(
        upstream.clone(),
        metrics.clone(),
        privacy.clone(),
        config.limits.clone(),
        life.clone(),
        auth.revocations.clone(),
        config.auth.ended_session_grace,
        ids,
    );
    let cluster = peer_listener.as_ref().map(|_| {
        Arc::new(crate::cluster::Cluster::new(
            config.cluster.clone(),
            hubs.clone(),
            metrics.clone(),
            config.limits.max_body_bytes,
            // A fixed peer port is every replica's; an ephemeral one (tests) is not.
            config
                .cluster
                .peer_listen
                .filter(|a| a.port() != 0)
                .map(|a| a.port()),
        ))
    });
    let shared = Arc::new(Shared {
        config: config.clone(),
        auth,
        hubs,
        longpolls: LongPolls::new(metrics.clone()),
        privacy,
        connect_limiter,
        conns_per_ip: crate::limits::PerIpConnections::new(&config.limits),
        proxy_warning: crate::limits::UntrustedProxyWarning::default(),
        buffer_budget: crate::limits::BufferBudget::new(&config.limits),
        upstream,
        cluster: cluster.clone(),
        metrics: metrics.clone(),

        shutdown: life.token.clone(),
        tasks: life.clone(),
    });

    tokio::spawn(crate::admin::serve(
        admin,
        metrics.clone(),
        life.clone(),
        last.clone(),
    ));
    let tls = match &config.tls {
        Some(t) => Some(crate::tls::acceptor(
            t,
            config.http2.tls,
            metrics.clone(),
            last.clone(),
        )?),
        None => None,
    };
    if let (Some(cluster), Some(l)) = (cluster, peer_listener) {
        let (c, stop) = (cluster.clone(), life.token.clone());
        life.spawn(async move { c.peers.run(stop).await });
        let (c, stop) = (cluster.clone(), life.token.clone());
        life.spawn(async move { c.converge.run(stop).await });
        // Outside the tracker: like the client accept loop, it stops taking connections when the
        // drain starts; the calls it is serving are tracked.
        tokio::spawn(crate::front::peer::serve(l, cluster, shared.clone()));
    }
    let accept = tokio::spawn(crate::front::serve(listener, tls, shared.clone()));
    let sweeper = shared.clone();
    life.spawn(async move {
        longpoll::sweep(
            &sweeper.longpolls,
            &sweeper.config.longpoll,
            &sweeper.shutdown,
        )
        .await;
    });
    life.spawn(crate::session::app_settings::run(
        shared.hubs.clone(),
        config.auth.app_settings_refresh,
    ));

    // Readiness follows upstream reachability; the first probe runs before start returns.
    let up = shared.upstream.probe().await;
    life.set_upstream_up(up);
    metrics.upstream_up.set(i64::from(up));
    if !up {
        tracing::warn!("upstream is not reachable; not ready until it is");
    }
    tokio::spawn(probe_upstream(shared.clone(), last.clone()));
    life.set_ready(true);
    metrics.ready.set(i64::from(life.is_ready()));

    let drain = config.drain_deadline;
    let sup_life = life.clone();
    let sup_hubs = shared.hubs.clone();
    let supervisor = tokio::spawn(async move {
        sup_life.token.cancelled().await;
        sup_life.set_ready(false);
        // WebSocket sessions learn of the drain from their mailbox; one that attaches after this
        // checks the token itself (`ws_session::open`).
        sup_hubs.end_all_ws(crate::session::SessionEnd::Draining);
        let _ = accept.await;
        sup_life.tracker.close();
        let clean = tokio::time::timeout(drain, sup_life.tracker.wait())
            .await
            .is_ok();
        last.cancel();
        clean
    });
    Ok(Running {
        addr,
        admin_addr,
        embedded_addr,
        embedded,
        peer_addr,
        shared,
        supervisor,
    })
}

/// Creates, at 0, every series with labels known in advance, so each dashboard panel shows data
/// on a fresh gateway (Prometheus's guidance: a series that appears only on its first increment
/// hides the rate of the first events and breaks `absent()` alerts).
fn precreate_series(m: &Metrics, config: &Config) {
    use crate::auth::AuthError;
    use crate::error::EdgeError;
    use crate::session::{SessionEnd, DISCONNECT_REASONS};
    let refusals = || EdgeError::LABELS.iter().chain(AuthError::LABELS.iter());
    for transport in ["ws", "longpoll"] {
        for end in SessionEnd::ALL {
            m.sessions_closed
                .with_label_values(&[transport, end.label()]);
        }
        for reason in refusals() {
            m.connect_rejected.with_label_values(&[transport, reason]);
        }
    }
    for end in SessionEnd::ALL.into_iter().filter(|e| e.expires_longpoll()) {
        m.longpoll_expired.with_label_values(&[end.label()]);
    }
    for outcome in ["empty", "events", "preempted", "closed"]
        .iter()
        .chain(refusals())
    {
        m.longpoll_polls.with_label_values(&[outcome]);
    }
    for result in crate::cluster::FORWARD_RESULTS {
        m.forwarded.with_label_values(&[result]);
    }
    for outcome in ["ok", "error"] {
        m.privacy_lookups.with_label_values(&[outcome]);
    }
    for reason in [
        "binary_frame",
        "frame_too_large",
        "not_json",
        "not_upgrade",
        "protocol_violation",
        "unexpected_event",
    ] {
        m.bad_input.with_label_values(&["ws", reason]);
    }
    m.bad_input.with_label_values(&["tls", "handshake_failed"]);
    m.bad_input.with_label_values(&["peer", "bad_signature"]);
    // Every `events_delivered` series exists already: `Metrics::new` resolves them all.
    for kind in crate::metrics::EventKind::all() {
        m.events_received.with_label_values(&[kind.label()]);
    }
    // Drops by reason (the dashboard sums by reason), each under the catch-all type.
    for reason in [
        "not_watched",
        "slow_consumer",
        "unparseable",
        "unfilterable",
        "privacy",
        "privacy_outbound",
        "privacy_lookup_failed",
        "privacy_read_state",
    ] {
        m.events_dropped.with_label_values(&[reason, "other"]);
    }
    for action in ["watch", "unwatch_upstream", "unwatch_local"] {
        m.watch_routing.with_label_values(&[action]);
    }
    // REST series are per route template; the most common one stands for the rest at 0.
    for status in ["2xx", "4xx", "5xx"] {
        m.rest_requests
            .with_label_values(&["/channels", "POST", status]);
    }
    m.rest_seconds.with_label_values(&["/channels"]);
    for app in &config.apps {
        let app = app.api_key.as_str();
        for outcome in ["ok", "error"] {
            m.upstream_connects.with_label_values(&[app, outcome]);
        }
        for reason in DISCONNECT_REASONS {
            m.upstream_disconnects.with_label_values(&[app, reason]);
        }
        m.upstream_open.with_label_values(&[app]);
        m.upstream_sessions.with_label_values(&[app]);
    }
}

/// Re-probes upstream every `probe_interval` until the gateway stops.
async fn probe_upstream(shared: Arc<Shared>, stop: CancellationToken) {
    let interval = shared.config.upstream.probe_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
        let up = shared.upstream.probe().await;
        let was = shared.tasks.is_ready();
        shared.tasks.set_upstream_up(up);
        shared.metrics.upstream_up.set(i64::from(up));
        shared.metrics.ready.set(i64::from(shared.tasks.is_ready()));
        if was != shared.tasks.is_ready() {
            tracing::warn!(upstream_up = up, "readiness changed");
        }
    }
}

impl Running {
    /// Starts draining (what SIGTERM does).
    pub fn shutdown(&self) {
        self.shared.tasks.token.cancel();
    }

    /// Waits for the drain to finish. Returns false if the deadline cut it short.
    ///
    /// # Panics
    /// Re-raises a panic from any gateway task, so tests see it.
    pub async fn join(self) -> bool {
        self.assert_no_panics();
        let clean = match self.supervisor.await {
            Ok(clean) => clean,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let panics = self.shared.tasks.panics();
        assert!(panics.is_empty(), "gateway task panicked: {panics:?}");
        clean
    }

    /// Panics if any gateway task panicked so far.
    pub fn assert_no_panics(&self) {
        let panics = self.shared.tasks.panics();
        assert!(panics.is_empty(), "gateway task panicked: {panics:?}");
    }
}
