//! The client listener: accept loop (one task per connection, bounded by a semaphore), HTTP/1.1
//! with upgrades and a header-read timeout, and the router that sends each request to its
//! transport or to the REST proxy. Also the response helpers every layer shares.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::EdgeError;
use crate::gateway::Shared;
use crate::upstream::BoxError;

/// Response body used everywhere: full, empty, or streamed from upstream.
pub type Body = BoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON response.
pub fn json(status: http::StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A Stream-shaped JSON error (never an empty body: the SDK reads `code` from it).
pub fn json_error(err: &EdgeError) -> Response<Body> {
    json(err.class().status, err.api_error().to_string())
}

/// Accepts until shutdown; with `tls`, each connection's handshake runs in its own task, bounded by
/// the header timeout.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let limits = &shared.config.limits;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                shared
                    .metrics
                    .limit_hits
                    .with_label_values(&["max_connections"])
                    .inc();
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                    _ = shared.shutdown.cancelled() => return,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(ok) => ok,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shared.shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let conn_shared = shared.clone();
        let tls = tls.clone();
        shared.tasks.spawn(async move {
            match tls {
                None => serve_connection(stream, peer, conn_shared).await,
                Some(acceptor) => {
                    let budget = conn_shared.config.limits.header_timeout;
                    match tokio::time::timeout(budget, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_connection(s, peer, conn_shared).await,
                        Ok(Err(e)) => {
                            conn_shared
                                .metrics
                                .bad_input
                                .with_label_values(&["tls", "handshake_failed"])
                                .inc();
                            tracing::debug!(error = %e, "tls handshake failed");
                        }
                        Err(_) => {
                            conn_shared
                                .metrics
                                .limit_hits
                                .with_label_values(&["tls_handshake_timeout"])
                                .inc();
                        }
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| {
        let shared = svc_shared.clone();
        async move { Ok::<_, Infallible>(route(req, peer, shared).await) }
    });
    let limits = &shared.config.limits;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "client connection error");
            }
        }
        _ = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Collapses the leading `//` a trailing-slash `baseURL` produces (stream-protocol.md 1.2).
fn normalize(path: &str) -> &str {
    let trimmed = path.trim_start_matches('/');
    if trimmed.len() + 1 < path.len() {
        &path[path.len() - trimmed.len() - 1..]
    } else {
        path
    }
}

async fn route(req: Request<Incoming>, peer: SocketAddr, shared: Arc<Shared>) -> Response<Body> {
    let path = normalize(req.uri().path()).to_string();
    let mut resp = if req.method() == Method::OPTIONS {
        crate::rest::cors::preflight(&req)
    } else if path == "/connect" {
        crate::transport::ws::upgrade(req, peer, shared)
    } else if path == "/longpoll" {
        // Both branches are boxed: inline, every request's future (a held poll included) would be
        // as large as the largest branch.
        Box::pin(crate::transport::longpoll::handle(req, peer, shared)).await
    } else if shared.shutdown.is_cancelled() {
        json_error(&EdgeError::Draining)
    } else {
        Box::pin(crate::rest::proxy(req, &path, peer, shared)).await
    };
    crate::rest::cors::decorate(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn double_slashes_collapse() {
        assert_eq!(super::normalize("//connect"), "/connect");
        assert_eq!(super::normalize("/channels"), "/channels");
        assert_eq!(super::normalize("///a/b"), "/a/b");
    }
}
