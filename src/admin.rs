//! The admin listener: `GET /metrics` (Prometheus text), `/healthz` (the process is alive; checks
//! no dependency) and `/readyz` (200 only while taking traffic: not before the client listener is
//! up, not while draining).

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::{full, Body};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Serves until `stop` is cancelled (after the drain, so `/readyz` answers 503 throughout it).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    life: Shutdown,
    stop: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            _ = stop.cancelled() => return,
        };
        let metrics = metrics.clone();
        let life = life.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = handle(&req, &metrics, &life);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<bytes::Bytes>, ctype: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}

fn handle(req: &Request<Incoming>, metrics: &Metrics, life: &Shutdown) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n", "text/plain");
    }
    match req.uri().path() {
        "/metrics" => {
            metrics.ready.set(i64::from(life.is_ready()));
            text(
                StatusCode::OK,
                metrics.render(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        }
        "/healthz" => text(StatusCode::OK, "ok\n", "text/plain"),
        "/readyz" => {
            if life.is_ready() {
                text(StatusCode::OK, "ready\n", "text/plain")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n", "text/plain")
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
    }
}
