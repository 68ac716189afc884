//! The emulator's HTTP/1.1 front: accept loop (one task per connection, all
//! tracked and stopped on shutdown), request parsing with bounded bodies,
//! authentication, route dispatch, CORS and the loopback-only
//! `/_emulator/*` introspection routes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::{self, Identity};
use super::error::ApiError;
use super::store::AppData;
use super::users::check_id;
use super::{actions, channels, query, users, ws, Emulator, MAX_BODY_BYTES};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Time a client gets to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight HTTP requests may finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(crate) type Body = Full<Bytes>;

/// What every connection task shares.
pub(crate) struct Ctx {
    pub emulator: Emulator,
    /// Tracks connection and WebSocket session tasks.
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

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
        async move { Ok::<_, Infallible>(route(req, peer, &ctx).await) }
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

/// The parsed parts of a REST request that handlers need.
pub(crate) struct Req<'a> {
    pub ident: &'a Identity,
    pub query: &'a HashMap<String, String>,
    pub body: &'a Value,
}

// === impl Req ===

impl Req<'_> {
    /// The user acting: the token's user, or for a server token the
    /// `user_id` query/body parameter or the handler's `hint`.
    pub(crate) fn acting_user(&self, hint: Option<&str>) -> Result<String, ApiError> {
        let id = match self.ident {
            Identity::User(id) => return Ok(id.clone()),
            Identity::Server => self
                .query
                .get("user_id")
                .map(String::as_str)
                .or_else(|| self.body.get("user_id").and_then(Value::as_str))
                .or(hint)
                .or_else(|| self.body.pointer("/user/id").and_then(Value::as_str)),
        };
        let id =
            id.ok_or_else(|| ApiError::input("server-side requests must name a user (user_id)"))?;
        check_id(id)?;
        Ok(id.to_owned())
    }

    /// A boolean body flag (`watch`, `presence`, `state`).
    pub(crate) fn flag(&self, key: &str) -> bool {
        self.body.get(key) == Some(&Value::Bool(true))
    }

    /// The connection to bind when the body asks to `watch`. The SDK only
    /// asks with a `connection_id`; one that is unknown or belongs to another
    /// user is an error, so broken id rewriting in a gateway shows up.
    pub(crate) fn watch_target(
        &self,
        app: &AppData,
        user: &str,
    ) -> Result<Option<String>, ApiError> {
        if !self.flag("watch") {
            return Ok(None);
        }
        let Some(id) = self.query.get("connection_id") else {
            return Ok(None);
        };
        match app.conns.get(id) {
            Some(conn) if conn.user_id == user => Ok(Some(id.clone())),
            _ => Err(ApiError::input(format!(
                "connection_id {id} is not an open connection of user {user}"
            ))),
        }
    }
}

async fn route(req: Request<Incoming>, peer: SocketAddr, ctx: &Arc<Ctx>) -> Response<Body> {
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
        (_, ["_emulator", ..]) if peer.ip().is_loopback() => {
            return introspect(req.method(), &segs, &query, ctx)
        }
        _ => {}
    }
    match rest(req, &segs, &query, ctx).await {
        Ok((status, mut body)) => {
            if let Some(obj) = body.as_object_mut() {
                obj.insert(
                    "duration".into(),
                    json!(format!("{}ms", start.elapsed().as_millis())),
                );
            }
            json_response(status, &body)
        }
        Err(e) => json_response(e.status, &e.body()),
    }
}

async fn rest(
    req: Request<Incoming>,
    segs: &[&str],
    query: &HashMap<String, String>,
    ctx: &Ctx,
) -> Result<(StatusCode, Value), ApiError> {
    let key = query.get("api_key").ok_or_else(ApiError::unknown_api_key)?;
    let secrets = {
        let store = ctx.emulator.lock();
        store
            .apps
            .get(key)
            .ok_or_else(ApiError::unknown_api_key)?
            .secrets
            .clone()
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The SDK sends the raw JWT; tolerate a Bearer prefix from other clients.
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    let ident = auth::verify(token, &secrets)?;
    let method = req.method().clone();
    let body = read_body(req).await?;
    let r = Req {
        ident: &ident,
        query,
        body: &body,
    };

    let mut store = ctx.emulator.lock();
    let app = store
        .apps
        .get_mut(key)
        .ok_or_else(ApiError::unknown_api_key)?;
    let created = StatusCode::CREATED;
    let cid = |t: &str, id: &str| -> Result<String, ApiError> {
        check_id(t)?;
        check_id(id)?;
        Ok(format!("{t}:{id}"))
    };
    Ok(match (&method, segs) {
        (&Method::POST, ["channels"]) => (created, query::query_channels(app, &r)?),
        (&Method::POST, ["channels", t, "query"]) => (created, channels::query(app, &r, t, None)?),
        (&Method::POST, ["channels", t, id, "query"]) => {
            (created, channels::query(app, &r, t, Some(id))?)
        }
        (&Method::POST, ["channels", t, id, "message"]) => {
            (created, actions::send_message(app, &r, &cid(t, id)?)?)
        }
        (&Method::POST, ["channels", t, id, "event"]) => {
            (created, actions::send_event(app, &r, &cid(t, id)?)?)
        }
        (&Method::POST, ["channels", t, id, "read"]) => {
            (created, actions::mark_read(app, &r, &cid(t, id)?)?)
        }
        (&Method::POST, ["channels", t, id, "stop-watching"]) => {
            (created, actions::stop_watching(app, &r, &cid(t, id)?)?)
        }
        (&Method::GET, ["users"]) => (
            StatusCode::OK,
            users::query(app, &ident, query.get("payload").map(String::as_str))?,
        ),
        (&Method::POST, ["users"]) => (created, users::upsert(app, &ident, &body)?),
        (&Method::PATCH, ["users"]) => (StatusCode::OK, users::partial(app, &ident, &body)?),
        _ => {
            return Err(ApiError::not_found(format!(
                "route {method} /{} does not exist",
                segs.join("/")
            )))
        }
    })
}

/// Reads a JSON body of at most `MAX_BODY_BYTES`; empty means `{}`.
async fn read_body(req: Request<Incoming>) -> Result<Value, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let bytes = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::too_large(MAX_BODY_BYTES))
        }
        Err(_) => return Err(ApiError::input("could not read the request body")),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::input(format!("body is not valid JSON: {e}")))
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

/// A JSON response with permissive CORS (browsers call the SDK cross-origin).
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
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
