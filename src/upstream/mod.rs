//! The way out to the Stream API (or the embedded upstream): base URL, TLS (rustls with the
//! platform's roots plus an optional CA file), the pooled REST client, the WebSocket connector, and
//! the tokens the gateway signs for upstream.

pub mod calls;
mod tls;
pub mod ws;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::auth::mint;
use crate::config::{AppConfig, UpstreamConfig};
use crate::metrics::Metrics;

/// Boxed error for streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type sent upstream.
pub type UpBody = BoxBody<Bytes, BoxError>;
/// The pooled keep-alive REST client.
pub type RestClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, UpBody>;

/// Failures talking to upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("upstream refused the connection: code {code}: {message}")]
    Rejected { code: i64, message: String },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("no secret configured for app")]
    UnknownApp,
}

impl From<UpstreamError> for crate::error::EdgeError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Timeout => crate::error::EdgeError::UpstreamTimeout,
            other => crate::error::EdgeError::UpstreamUnavailable(other.to_string()),
        }
    }
}

/// Everything needed to reach upstream.
pub struct Upstream {
    /// Base URL, e.g. `https://chat.stream-io-api.com` (a path prefix is kept).
    pub base: url::Url,
    pub config: UpstreamConfig,
    pub rest: RestClient,
    tls: Arc<rustls::ClientConfig>,
    /// Primary (signing) secret per api key; replaced on config reload.
    signers: std::sync::RwLock<HashMap<String, String>>,
    pub metrics: Arc<Metrics>,
}

impl Upstream {
    /// # Errors
    /// The CA file cannot be read or parsed.
    pub fn new(
        base: url::Url,
        config: UpstreamConfig,
        apps: &[AppConfig],
        metrics: Arc<Metrics>,
    ) -> Result<Self, UpstreamError> {
        let tls = Arc::new(tls::client_config(config.ca_file.as_deref())?);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let rest = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.pool_idle_per_host)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build(https);
        let signers = std::sync::RwLock::new(signers_of(apps));
        Ok(Upstream {
            base,
            config,
            rest,
            tls,
            signers,
            metrics,
        })
    }

    /// Upstream URL for a client request path (which starts with `/`) and raw query.
    pub fn rest_uri(&self, path: &str, query: Option<&str>) -> Result<http::Uri, UpstreamError> {
        let prefix = self.base.path().trim_end_matches('/');
        let mut s = format!(
            "{}://{}{}{}",
            self.base.scheme(),
            authority(&self.base),
            prefix,
            path
        );
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            s.push('?');
            s.push_str(q);
        }
        s.parse()
            .map_err(|e: http::uri::InvalidUri| UpstreamError::Protocol(e.to_string()))
    }

    /// Whether upstream accepts TCP connections now (readiness probe).
    pub async fn probe(&self) -> bool {
        let host = self.base.host_str().unwrap_or("localhost").to_string();
        let port = self.base.port_or_known_default().unwrap_or(443);
        matches!(
            tokio::time::timeout(
                self.config.connect_timeout,
                tokio::net::TcpStream::connect((host.as_str(), port))
            )
            .await,
            Ok(Ok(_))
        )
    }

    /// `Host` header value for upstream requests.
    pub fn host(&self) -> String {
        authority(&self.base)
    }

    /// Replaces the signing secrets (config reload).
    pub fn set_apps(&self, apps: &[AppConfig]) {
        let new = signers_of(apps);
        match self.signers.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    fn signer(&self, api_key: &str) -> Result<String, UpstreamError> {
        let g = self.signers.read().unwrap_or_else(|p| p.into_inner());
        g.get(api_key).cloned().ok_or(UpstreamError::UnknownApp)
    }

    /// A user token for the gateway's own upstream connection of `user_id`, valid for
    /// `upstream.token_ttl_seconds`. `not_before_ms` is the user's known revocation cutoff: the
    /// token's `iat` is never before it, or upstream would refuse the gateway's own token.
    ///
    /// # Errors
    /// `api_key` is not configured.
    pub fn user_token(
        &self,
        api_key: &str,
        user_id: &str,
        not_before_ms: Option<i64>,
    ) -> Result<String, UpstreamError> {
        let secret = self.signer(api_key)?;
        mint::user_token_at(
            &secret,
            user_id,
            Some(self.config.token_ttl.as_secs()),
            not_before_ms.map(|ms| ms.saturating_add(999) / 1000),
        )
        .map_err(|e| UpstreamError::Protocol(e.to_string()))
    }

    /// The api keys the gateway signs for.
    pub fn app_keys(&self) -> Vec<String> {
        let g = self.signers.read().unwrap_or_else(|p| p.into_inner());
        g.keys().cloned().collect()
    }

    /// A server token for lookups the gateway makes on its own behalf.
    ///
    /// # Errors
    /// `api_key` is not configured.
    pub fn server_token(&self, api_key: &str) -> Result<String, UpstreamError> {
        let secret = self.signer(api_key)?;
        mint::server_token(&secret).map_err(|e| UpstreamError::Protocol(e.to_string()))
    }
}

fn signers_of(apps: &[AppConfig]) -> HashMap<String, String> {
    apps.iter()
        .filter_map(|a| a.secrets.first().map(|s| (a.api_key.clone(), s.0.clone())))
        .collect()
}

fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("localhost");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}
