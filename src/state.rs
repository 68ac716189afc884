//! The state every connection task shares ([`Shared`]): configuration, the authenticator, the
//! per-user hubs and long-poll sessions, privacy, limits, the upstream, metrics and the shutdown
//! handles. It sits below the front door, the transports and the REST proxy, which all take it;
//! nothing it is built from imports it back. `gateway` builds it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::privacy::Privacy;
use crate::session::longpoll::LongPolls;
use crate::session::Hubs;
use crate::shutdown::Shutdown;
use crate::upstream::Upstream;

/// State every connection task shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub auth: Authenticator,
    pub hubs: Hubs,
    pub longpolls: LongPolls,
    pub privacy: Arc<Privacy>,
    pub connect_limiter: crate::limits::ConnectLimiter,
    pub conns_per_ip: crate::limits::PerIpConnections,
    pub proxy_warning: crate::limits::UntrustedProxyWarning,
    pub buffer_budget: crate::limits::BufferBudget,
    pub upstream: Arc<Upstream>,
    /// This replica's part in a cluster (`[cluster]`); `None` for a single gateway.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when draining starts.
    pub shutdown: CancellationToken,
    pub tasks: Shutdown,
}

impl Shared {
    /// Applies a reloaded app list: removed secrets stop validating at once (including cached
    /// validations), and a new first secret signs upstream tokens from now on.
    pub fn reload_apps(&self, apps: &[crate::config::AppConfig]) {
        self.auth.set_apps(apps);
        self.upstream.set_apps(apps);
        self.hubs.ids().set_apps(apps);
        // Also re-read every app's revocation cutoff now (an operator's "apply revocations").
        self.hubs.refresh_app_settings();
    }
}
