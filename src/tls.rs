//! TLS termination on the client listener (rustls), for deployments without a TLS-terminating load
//! balancer. The certificate and key are re-read when their files change, so a renewal (cert-manager
//! rewriting a Secret volume, say) takes effect for new handshakes without dropping open sessions.
//! ALPN offers `http/1.1`, and `h2` first with `http2.tls` (served by `front::h2`).
//! Modern defaults only: rustls' TLS 1.2 and 1.3 with AEAD suites, no renegotiation, no compression.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;
use crate::metrics::Metrics;

/// Why certificate material could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("tls: {0}")]
pub struct TlsError(String);

/// The current certificate, swapped on reload.
#[derive(Debug)]
pub struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(config: &TlsConfig) -> Result<CertifiedKey, TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| TlsError(format!("{}: {e}", p.display())));
    let cert_pem = read(&config.cert_file)?;
    let key_pem = read(&config.key_file)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", config.cert_file.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate",
            config.cert_file.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError(format!("{}: {e}", config.key_file.display())))?
        .ok_or_else(|| TlsError(format!("{}: no private key", config.key_file.display())))?;
    CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| TlsError(format!("certificate and key do not match: {e}")))
}

fn modified(config: &TlsConfig) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&config.cert_file)?, m(&config.key_file)?))
}

/// Builds the acceptor (offering `h2` when `http2`, `http2.tls`) and starts the reload watcher
/// (until `stop`).
///
/// # Errors
/// The certificate or key cannot be read, parsed, or do not match.
pub fn acceptor(
    config: &TlsConfig,
    http2: bool,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<TlsAcceptor, TlsError> {
    let resolver = Arc::new(Reloading {
        current: RwLock::new(Arc::new(load(config)?)),
    });
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    // `h2` first when enabled (clients pick by the server's order); WebSockets stay on HTTP/1.1
    // either way (no extended CONNECT is advertised, so browsers open an HTTP/1.1 connection).
    server.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let watch = config.clone();
    tokio::spawn(async move {
        let mut seen = modified(&watch);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(watch.reload_interval) => {}
                _ = stop.cancelled() => return,
            }
            let now = modified(&watch);
            if now == seen {
                continue;
            }
            seen = now;
            match load(&watch) {
                Ok(key) => {
                    *resolver.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
                    metrics.tls_reloads.with_label_values(&["ok"]).inc();
                    tracing::info!("tls certificate reloaded");
                }
                Err(e) => {
                    // Keep serving the previous certificate: a half-written renewal must not
                    // take the listener down.
                    metrics.tls_reloads.with_label_values(&["error"]).inc();
                    tracing::error!(error = %e, "tls reload failed; keeping the current certificate");
                }
            }
        }
    });
    Ok(TlsAcceptor::from(Arc::new(server)))
}
