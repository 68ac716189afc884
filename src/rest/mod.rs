//! The REST reverse proxy: every path that is not a transport is forwarded to upstream with method,
//! path, query, headers and streamed body. It rewrites only what multiplexing needs: a session's
//! `connection_id` becomes its hub's upstream connection id, and watch/stop-watching calls update
//! the hub's routing table (stop-watching is answered locally while another session of the user
//! still watches the channel).

mod headers;
pub mod routes;
mod subscribe;

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::auth::{Credentials, Identity, TokenKind};
use crate::config::OnLookupFailure;
use crate::error::EdgeError;
use crate::http::{full, json, json_error, Body, ReqBody};
use crate::privacy;
use crate::session::device::RestChange as MeChange;
use crate::session::{Hub, SessionId};
use crate::state::Shared;
use routes::Kind;

/// Proxies one request, counting it by route template.
pub async fn proxy(
    req: Request<ReqBody>,
    path: &str,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Response<Body> {
    let start = Instant::now();
    let route = routes::classify(req.method(), path);
    let method = req.method().as_str().to_string();
    let resp = match forward(req, path, &route.kind, peer, &shared).await {
        Ok(r) => r,
        Err(e) => {
            let class = e.class();
            if class.level <= tracing::Level::WARN {
                tracing::warn!(route = %route.template, error = %e, "rest request failed");
            } else {
                tracing::debug!(route = %route.template, error = %e, "rest request refused");
            }
            json_error(&e)
        }
    };
    let status = format!("{}xx", resp.status().as_u16() / 100);
    let m = &shared.metrics;
    let method = if matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
        method
    } else {
        "other".into()
    };
    m.rest_requests
        .with_label_values(&[&route.template, &method, &status])
        .inc();
    m.rest_seconds
        .with_label_values(&[&route.template])
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// The session a request speaks for, via its `connection_id`.
struct Bound {
    id: SessionId,
    hub: Arc<Hub>,
}

/// What the inbound checks established about a request.
struct Inbound {
    /// The `api_key` query parameter, when given (and known).
    app: String,
    identity: Option<Identity>,
    bound: Option<Bound>,
    /// The query to send upstream (every `connection_id` rewritten to the hub's).
    query: String,
}

/// What the proxy will do with a request beyond forwarding it.
struct Plan {
    /// The request body is read whole (it is inspected).
    reads_body: bool,
    /// A route that can subscribe the bound session (watch, presence); what it asks is read from
    /// the request into `asks`.
    subscribes: bool,
    /// The response carries other users' read, delivery or typing state and is filtered for this
    /// requester: `Some("")` for callers without a user token (every hidden entry goes), `None`
    /// for a backend (server token), which sees everything.
    requester: Option<String>,
    /// The response teaches the privacy registry (`POST`/`PATCH /users`).
    learn_users: bool,
    /// What the request asks its session to subscribe to, known once the body was read.
    asks: subscribe::Asks,
}

impl Plan {
    /// True when the gateway must read the response: it is never passed on unread.
    fn reads_response(&self) -> bool {
        self.asks.watch || self.asks.presence || self.requester.is_some() || self.learn_users
    }
}

async fn forward(
    req: Request<ReqBody>,
    path: &str,
    kind: &Kind,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<Response<Body>, EdgeError> {
    let (parts, body) = req.into_parts();
    let inbound = inbound(&parts, shared)?;
    let mut plan = plan(kind, &inbound);
    plan.reads_body |= MeChange::reads_body(&parts.method, path);
    let (req_bytes, up_body, _budget) = request_body(&parts, body, plan.reads_body, shared).await?;
    // A stop-watching is decided in the user's subscription lane and forwarded holding it, so it
    // cannot overtake a later watch of the same channel on the way upstream. Its (small) body was
    // read first: a slow client cannot hold the lane.
    let mut _lane = None;
    if let (Kind::StopWatching { cid }, Some(b)) = (kind, &inbound.bound) {
        let lane = b.hub.lane().await;
        if !b.hub.unwatch(&b.id, cid) {
            // Another session of this user still watches: keep the upstream subscription.
            return Ok(json(StatusCode::CREATED, r#"{"duration":"0.00ms"}"#));
        }
        _lane = Some(lane);
    }
    let req_bytes = req_bytes.as_deref();
    let identity = inbound.identity.as_ref();
    let me_change = MeChange::of(&parts.method, path, parts.uri.query(), req_bytes, identity);
    if let Some(ack) = answer_typing(kind, &inbound, req_bytes, shared).await {
        return Ok(json(StatusCode::CREATED, ack));
    }
    if plan.learn_users {
        forget_named_users(req_bytes, &inbound.app, shared).await;
    }
    if plan.subscribes {
        plan.asks = subscribe::asks(kind, parts.uri.query().unwrap_or(""), req_bytes);
    }
    // A watching call takes the user's subscription lane and, until its answer is read, holds the
    // events of channels the session does not watch yet: none is lost while it is in flight.
    let watching = match (&inbound.bound, plan.asks.watch) {
        (Some(b), true) => {
            let only = match kind {
                Kind::QueryChannel { cid: Some(cid) } => Some(cid.as_str()),
                _ => None,
            };
            Some(b.hub.begin_watch(&b.id, only).await)
        }
        _ => None,
    };
    let up = upstream_request(&parts, path, up_body, peer, &inbound, &plan, shared)?;
    let resp = send(up, shared).await?;
    me_change.after(resp.status(), &shared.hubs, &inbound.app);
    let stop_forwarded = _lane.is_some();
    let out = outbound(resp, &parts, path, watching, &plan, &inbound, shared).await;
    if stop_forwarded {
        let outcome = match &out {
            Ok(r) if r.status().is_success() => "ok",
            _ => "error",
        };
        shared
            .metrics
            .subscriptions_released
            .with_label_values(&["stop_watching", outcome])
            .inc();
    }
    out
}

/// Send phase, part 1: the upstream request, with the client's headers (hop-by-hop removed,
/// `X-Forwarded-*` set) and, when the gateway reads the answer, a request for an identity body.
fn upstream_request(
    parts: &http::request::Parts,
    path: &str,
    body: crate::upstream::UpBody,
    peer: SocketAddr,
    inbound: &Inbound,
    plan: &Plan,
    shared: &Shared,
) -> Result<Request<crate::upstream::UpBody>, EdgeError> {
    let mut up = Request::builder()
        .method(parts.method.clone())
        .uri(shared.upstream.rest_uri(path, Some(&inbound.query))?)
        .body(body)
        .map_err(|e| EdgeError::BadInput(e.to_string()))?;
    let proto = if shared.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    headers::forward_request(
        &parts.headers,
        up.headers_mut(),
        &shared.upstream.host(),
        peer,
        plan.reads_body,
        proto,
    );
    if plan.reads_response() {
        // The gateway parses this response: ask for it uncompressed (a compressed answer is
        // refused, never passed on unfiltered).
        up.headers_mut().insert(
            header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("identity"),
        );
    }
    Ok(up)
}

/// Send phase, part 2: the request to upstream, bounded by `upstream.request_timeout`.
async fn send(
    up: Request<crate::upstream::UpBody>,
    shared: &Shared,
) -> Result<Response<hyper::body::Incoming>, EdgeError> {
    let sent = tokio::time::timeout(
        shared.config.upstream.request_timeout,
        shared.upstream.rest.request(up),
    )
    .await;
    match sent {
        Err(_) => Err(EdgeError::UpstreamTimeout),
        // A request body that failed to read (malformed, truncated, too slow, too large) fails
        // the send too: that is the client's error, not the upstream's.
        Ok(Err(e)) => Err(crate::http::body::ClientBodyError::find(&e).map_or_else(
            || EdgeError::UpstreamUnavailable(e.to_string()),
            EdgeError::from,
        )),
        Ok(Ok(r)) => Ok(r),
    }
}

/// Outbound phase: streams the answer through, or reads it to track watches, learn settings and
/// cutoffs, and remove other users' hidden state.
async fn outbound(
    resp: Response<hyper::body::Incoming>,
    parts: &http::request::Parts,
    path: &str,
    watching: Option<crate::session::WatchCall>,
    plan: &Plan,
    inbound: &Inbound,
    shared: &Shared,
) -> Result<Response<Body>, EdgeError> {
    let (mut rparts, rbody) = resp.into_parts();
    headers::strip_hop_by_hop(&mut rparts.headers);
    if parts.method == http::Method::PATCH && path == "/app" && rparts.status.is_success() {
        // A backend's `revokeTokens` through the proxy: read the app's cutoff now.
        shared.hubs.refresh_app_settings();
    }
    if !plan.reads_response() {
        return Ok(Response::from_parts(
            rparts,
            rbody.map_err(Into::into).boxed(),
        ));
    }
    let bytes = read_response(&rparts, rbody, shared).await?;
    if !rparts.status.is_success() {
        return Ok(Response::from_parts(rparts, full(bytes)));
    }
    if let Some(b) = &inbound.bound {
        if plan.asks.watch || plan.asks.presence {
            let (watched, users) = subscribe::answered(&plan.asks, &bytes);
            if let Some(call) = watching {
                call.finish(watched);
            }
            b.hub.subscribe_presence(&b.id, users);
        }
    }
    if plan.learn_users {
        // `revokeUserToken` through the proxy: the answer carries the user's new cutoff.
        shared.hubs.learn_users_response(&inbound.app, &bytes);
        privacy::rewrite::learn_from_response(&bytes, &inbound.app, &shared.privacy).await;
    }
    let bytes = match &plan.requester {
        Some(who) => {
            let filtered = privacy::rewrite::filter_body(
                bytes,
                privacy::stream::Shape::Response,
                who,
                &inbound.app,
                &shared.privacy,
            )
            .await;
            filtered.map_err(|e| unfilterable(shared, "parse", e.to_string()))?
        }
        None => bytes,
    };
    rparts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(rparts, full(bytes)))
}

/// A typing event from a user who hides typing is answered here (see [`swallow_typing`]).
async fn answer_typing(
    kind: &Kind,
    inbound: &Inbound,
    body: Option<&[u8]>,
    shared: &Shared,
) -> Option<String> {
    let (
        Kind::SendEvent {
            channel_type,
            channel_id,
        },
        Some(bytes),
        Some(id),
    ) = (kind, body, &inbound.identity)
    else {
        return None;
    };
    swallow_typing(shared, &inbound.app, id, bytes, channel_type, channel_id).await
}

/// Nothing a client claims about settings is kept: every user a user update names is forgotten
/// before it goes upstream, and only upstream's answer teaches the registry.
async fn forget_named_users(body: Option<&[u8]>, app: &str, shared: &Shared) {
    match privacy::rewrite::named_users(body.unwrap_or_default()) {
        Some(users) => {
            for u in users {
                shared.privacy.forget(app, &u).await;
            }
        }
        None => shared.privacy.forget_all(),
    }
}

/// Inbound checks: the api key is known, the credential is valid, and every `connection_id` names
/// a session of the caller's own user and app (rewritten to its hub's upstream connection).
fn inbound(parts: &http::request::Parts, shared: &Shared) -> Result<Inbound, EdgeError> {
    let mut raw = parts.uri.query().unwrap_or("");
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect();
    // An empty `connection_id=` is absent: Unity sends one on every call before its first
    // connect. It is not forwarded either.
    let before = pairs.len();
    pairs.retain(|(k, v)| !(k == "connection_id" && v.is_empty()));
    let reencoded;
    if pairs.len() != before {
        reencoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter())
            .finish();
        raw = &reencoded;
    }
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let api_key = param("api_key");
    let user_param = param("user_id");
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty());
    let anonymous = parts
        .headers
        .get("stream-auth-type")
        .is_some_and(|v| v.as_bytes() == b"anonymous");
    if let Some(key) = &api_key {
        if !shared.auth.knows(key) {
            return Err(crate::auth::AuthError::UnknownApiKey.into());
        }
    }
    let identity = match (token, &api_key) {
        (Some(t), Some(key)) if !anonymous => Some(shared.auth.authenticate(Credentials {
            api_key: key,
            token: Some(t),
            anonymous: false,
            user_id: None,
            client_connection: false,
        })?),
        (Some(_), None) if !anonymous => {
            return Err(EdgeError::BadInput("api_key is missing".into()))
        }
        _ => None,
    };

    // Every occurrence counts: an upstream that reads the last of repeated parameters must never
    // see a client's unchecked id.
    let ids: Vec<usize> = pairs
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k == "connection_id")
        .map(|(i, _)| i)
        .collect();
    let mut bound = None;
    let query = if let Some(&first) = ids.first() {
        let sid = pairs[first].1.clone();
        if ids.iter().any(|&i| pairs[i].1 != sid) {
            return Err(EdgeError::BadInput(
                "connection_id is given more than once with different values".into(),
            ));
        }
        let b = bind(
            shared,
            &sid,
            api_key.as_deref(),
            identity.as_ref(),
            user_param,
            anonymous,
        )?;
        let upstream_id = b.hub.upstream_connection_id().ok_or_else(|| {
            EdgeError::UpstreamUnavailable("upstream connection not ready".into())
        })?;
        for &i in &ids {
            pairs[i].1 = upstream_id.clone();
        }
        bound = Some(b);
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.extend_pairs(pairs.iter());
        s.finish()
    } else {
        raw.to_string()
    };
    Ok(Inbound {
        app: api_key.unwrap_or_default(),
        identity,
        bound,
        query,
    })
}

/// Decides what the proxy inspects for this request.
fn plan(kind: &Kind, inbound: &Inbound) -> Plan {
    // Whose view a response is shaped for: a user sees others' hidden state removed; a caller
    // without a user token sees every hidden entry removed; a backend (server token) sees
    // everything.
    let requester = match &inbound.identity {
        Some(i) if i.kind == TokenKind::Server => None,
        Some(i) => Some(i.user_id.to_string()),
        None => Some(String::new()),
    };
    let carries_state = kind.carries_others_state();
    let subscribes = inbound.bound.is_some() && kind.subscribes();
    let posts = !matches!(kind, Kind::GetThread | Kind::QueryUsers);
    Plan {
        reads_body: (subscribes && posts)
            || matches!(
                kind,
                Kind::SendEvent { .. } | Kind::Users | Kind::StopWatching { .. }
            ),
        subscribes,
        requester: requester.filter(|_| carries_state && !inbound.app.is_empty()),
        learn_users: matches!(kind, Kind::Users) && !inbound.app.is_empty(),
        asks: subscribe::Asks::default(),
    }
}

/// The body sent upstream: buffered when the proxy inspects it, streamed otherwise (cut off at
/// `limits.max_body_bytes`). A buffered body holds a share of `limits.rest_buffered_total_bytes`
/// (the returned reservation) until the request is done.
async fn request_body(
    parts: &http::request::Parts,
    body: ReqBody,
    buffered: bool,
    shared: &Shared,
) -> Result<
    (
        Option<Bytes>,
        crate::upstream::UpBody,
        Option<crate::limits::BufferReservation>,
    ),
    EdgeError,
> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max_body = shared.config.limits.max_body_bytes;
    if declared.is_some_and(|n| n > max_body as u64) {
        shared
            .metrics
            .limit_hit(crate::metrics::Limit::MaxBodyBytes);
        return Err(EdgeError::PayloadTooLarge(format!(
            "request body over the {max_body} byte limit"
        )));
    }
    if buffered {
        // The gateway reads this body (watch flag, typing privacy, user updates): one it cannot
        // read would slip past those checks, so it is refused rather than forwarded.
        if encoded(&parts.headers) {
            return Err(EdgeError::BadInput(
                "a compressed request body is not accepted on this route".into(),
            ));
        }
        // Buffered bodies share one budget, so clients that send large bodies and stall cannot
        // make the gateway hold unbounded memory.
        let budget = shared.buffer_budget.reserve(declared).ok_or_else(|| {
            (shared.metrics).limit_hit(crate::metrics::Limit::RestBufferedTotalBytes);
            EdgeError::RateLimited("the gateway is buffering too many request bodies".into())
        })?;
        let bytes = read_limited(body, shared.config.limits.rest_max_buffered_body).await?;
        Ok((Some(bytes.clone()), full(bytes), Some(budget)))
    } else {
        Ok((None, Limited::new(body, max_body).boxed(), None))
    }
}

/// Reads a response the proxy inspects. A compressed or oversized one cannot be filtered, so it
/// is refused (502, counted), never passed on.
async fn read_response(
    rparts: &http::response::Parts,
    rbody: hyper::body::Incoming,
    shared: &Shared,
) -> Result<Bytes, EdgeError> {
    if encoded(&rparts.headers) {
        return Err(unfilterable(
            shared,
            "encoding",
            "upstream answered a compressed body the gateway must filter".into(),
        ));
    }
    // Bounded in time too: a watching call holds the user's subscription lane while it reads.
    let read = read_limited(rbody, shared.config.limits.rest_max_buffered_response);
    match tokio::time::timeout(shared.config.upstream.request_timeout, read).await {
        Err(_) => Err(EdgeError::UpstreamTimeout),
        Ok(r) => {
            r.map_err(|_| unfilterable(shared, "too_large", "upstream response too large".into()))
        }
    }
}

/// True when a body carries any content coding but `identity`: the gateway cannot read it.
fn encoded(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// Counts a response the gateway had to filter and could not, and the error that replaces it.
fn unfilterable(shared: &Shared, reason: &'static str, message: String) -> EdgeError {
    shared
        .metrics
        .unfilterable
        .with_label_values(&[reason])
        .inc();
    EdgeError::Unfilterable(message)
}

/// A typing event from a user whose typing indicators are off is answered here with upstream's
/// success shape and never forwarded (stream-protocol.md 5.2).
async fn swallow_typing(
    shared: &Shared,
    app: &str,
    id: &Identity,
    body: &[u8],
    channel_type: &str,
    channel_id: &str,
) -> Option<String> {
    if id.kind == TokenKind::Server {
        return None;
    }
    let kind = privacy::rewrite::typing_kind(body)?;
    let hidden = match shared.privacy.get(app, &id.user_id).await {
        Ok(s) => !s.typing,
        Err(_) => shared.privacy.config().on_lookup_failure == OnLookupFailure::Drop,
    };
    if !hidden {
        return None;
    }
    shared
        .metrics
        .events_dropped
        .with_label_values(&["privacy_outbound", crate::metrics::event_label(&kind)])
        .inc();
    Some(crate::transport::frames::typing_ack(
        &kind,
        channel_type,
        channel_id,
        &id.user_id,
    ))
}

/// Resolves `connection_id` to its session, refusing ids that are unknown or belong to someone
/// else: a request can never act through another user's connection.
fn bind(
    shared: &Shared,
    sid: &str,
    api_key: Option<&str>,
    identity: Option<&Identity>,
    user_param: Option<String>,
    anonymous: bool,
) -> Result<Bound, EdgeError> {
    let hub = shared
        .hubs
        .session_hub(sid)
        .ok_or(EdgeError::ConnectionNotFound)?;
    let same_app = api_key == Some(&*hub.app);
    let owner = match identity {
        Some(id) => matches!(id.kind, TokenKind::User | TokenKind::Dev) && id.user_id == hub.user,
        None => {
            anonymous
                && shared.config.auth.allow_anonymous
                && user_param.as_deref() == Some(&*hub.user)
        }
    };
    if !(same_app && owner) {
        return Err(EdgeError::ForeignConnection(sid.to_string()));
    }
    Ok(Bound {
        id: Arc::from(sid),
        hub,
    })
}

async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, EdgeError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<crate::upstream::BoxError>,
{
    Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| match crate::http::body::ClientBodyError::find(&*e) {
            Some(client) => client.into(),
            None => EdgeError::PayloadTooLarge(format!("body over the {limit} byte limit")),
        })
}
