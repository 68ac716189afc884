//! The emulator's HTTP/1.1 front: accept loop (one task per connection, all
//! tracked and stopped on shutdown), the split between WebSocket upgrade,
//! REST and the `/_emulator/*` control routes (served only when enabled with
//! `Emulator::set_control`, never because of the peer's address), and the
//! CORS preflight.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Faults;
use crate::ctx::{json_response, Body, Ctx};
use crate::error::ApiError;
use crate::handle::Emulator;
use crate::{control_watchers, rest, uploads, ws};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Time a client gets to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight HTTP requests may finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serve HTTP/1.1 (REST + WebSocket upgrade on `/connect`) on `listener`
/// until `shutdown` is cancelled; returns once every connection task ended.
///
/// # Errors
/// Currently none: accept failures are logged and retried.
pub async fn serve(
    listener: TcpListener,
    emulator: Emulator,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tracker = TaskTracker::new();
    let ctx = Arc::new(Ctx {
        emulator,
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    });
    tracker.spawn(crate::reminder_clock::run(
        ctx.emulator.clone(),
        shutdown.clone(),
    ));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracker.spawn(connection(stream, peer, ctx.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "emulator accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn connection(stream: TcpStream, peer: SocketAddr, ctx: Arc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let shutdown = ctx.shutdown.clone();
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(route(req, &ctx).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await.unwrap_or(Ok(()))
        }
    };
    if let Err(e) = result {
        // Peers hang up all the time; not worth more than debug.
        tracing::debug!(error = %e, %peer, "emulator connection ended with error");
    }
}

/// `GET /_emulator/metrics`: the emulator's registry in Prometheus text format.
fn metrics_response(ctx: &Ctx) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(ctx.emulator.metrics_text())));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

async fn route(req: Request<Incoming>, ctx: &Arc<Ctx>) -> Response<Body> {
    let start = Instant::now();
    if req.method() == Method::OPTIONS {
        return preflight(&req);
    }
    let path = req.uri().path().to_owned();
    // Empty segments are dropped so `//connect` and trailing slashes work.
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let query = parse_query(req.uri().query());
    match (req.method(), segs.as_slice()) {
        (&Method::GET, ["connect"]) => return ws::upgrade(req, &query, ctx),
        // Uploaded files are fetched by browsers (`<img src>`), without credentials.
        (&Method::GET, ["uploads", key, id, _name]) => return uploads::serve(ctx, key, id),
        // Counters only (no user data), so served whether or not the control routes are.
        (&Method::GET, ["_emulator", "metrics"]) => return metrics_response(ctx),
        (_, ["_emulator", ..]) if ctx.emulator.control() => {
            return introspect(req.method(), &segs, &query, ctx)
        }
        // Off: as unknown as any other route, before authentication says anything about it.
        (_, ["_emulator", ..]) => {
            return json_response(
                StatusCode::NOT_FOUND,
                &ApiError::not_found(format!("route {} {path} does not exist", req.method()))
                    .body(),
            )
        }
        _ => {}
    }
    match rest::dispatch(req, &segs, &query, ctx).await {
        Ok((status, mut body)) => {
            if let Some(obj) = body.as_object_mut() {
                obj.insert(
                    "duration".into(),
                    json!(format!("{}ms", start.elapsed().as_millis())),
                );
            }
            json_response(status, &body)
        }
        Err(e) => {
            let metrics = ctx.emulator.metrics();
            if let Some(bound) = e.bound {
                metrics.bound(bound);
            }
            metrics.rest_error(e.code);
            json_response(e.status, &e.body())
        }
    }
}

fn introspect(
    method: &Method,
    segs: &[&str],
    query: &HashMap<String, String>,
    ctx: &Ctx,
) -> Response<Body> {
    match (method, segs) {
        (&Method::GET, ["_emulator", "connections"]) => {
            let users: serde_json::Map<String, Value> = ctx
                .emulator
                .connection_counts()
                .into_iter()
                .map(|(k, n)| (k, json!(n)))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({ "total": ctx.emulator.connections_total(), "users": users }),
            )
        }
        (&Method::GET, ["_emulator", "watchers"]) => control_watchers::watchers(query, ctx),
        (&Method::POST, ["_emulator", "faults"]) => {
            let faults = Faults {
                fail_user_queries: query.get("fail_user_queries").map(String::as_str)
                    == Some("true"),
            };
            ctx.emulator.set_faults(faults);
            json_response(
                StatusCode::OK,
                &json!({ "fail_user_queries": faults.fail_user_queries }),
            )
        }
        (&Method::POST, ["_emulator", "drop"]) => {
            let (Some(key), Some(user)) = (query.get("api_key"), query.get("user_id")) else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &ApiError::input("api_key and user_id are required").body(),
                );
            };
            let dropped = ctx.emulator.drop_connections_of(key, user);
            json_response(StatusCode::OK, &json!({ "dropped": dropped }))
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            &ApiError::not_found("unknown emulator route").body(),
        ),
    }
}

pub(crate) fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn preflight(req: &Request<Incoming>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let allow_headers = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static(
            "authorization, content-type, stream-auth-type, x-stream-client, x-client-request-id",
        ));
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    resp
}
