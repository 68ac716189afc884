//! `GET /longpoll`: the SDK's WebSocket fallback (stream-protocol.md 3). A connect
//! (`?json=…`, no `connection_id`) authenticates exactly like `/connect` and answers
//! `{"event": health.check}`; a poll (`?connection_id=…`) is held until events arrive or the hold
//! time passes and answers `{"events": […]}`; `close=true` ends the session. Sessions attach to the
//! same hubs as WebSocket sessions, so they share the user's upstream connection and routing.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use tokio::time::Instant;

use http::{header, Request, Response, StatusCode};

use super::connect;
use crate::auth::{Credentials, Identity};
use crate::error::EdgeError;
use crate::http::{cors, json, json_error, no_store, Body};
use crate::session::longpoll::{LpSession, PollEnd, Ticket};
use crate::session::{SessionEnd, Transport};
use crate::state::Shared;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// What a `/longpoll` query asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LpRequest {
    /// Set for polls and closes; absent (or empty) for connects.
    pub connection_id: Option<String>,
    pub close: bool,
    /// A connect payload is present.
    pub has_json: bool,
    /// `connection_id` is given more than once with different values (refused).
    pub conflicting: bool,
}

impl LpRequest {
    /// Parses a query string; never fails (unknown keys are ignored, repeated keys: last wins;
    /// differing `connection_id`s are flagged).
    pub fn parse(query: &str) -> Self {
        let mut r = LpRequest::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "connection_id" => {
                    if r.connection_id.as_deref().is_some_and(|c| c != v) {
                        r.conflicting = true;
                    }
                    r.connection_id = Some(v.into_owned());
                }
                "close" => r.close = v == "true",
                "json" => r.has_json = true,
                _ => {}
            }
        }
        r
    }
}

/// What a `/longpoll` request carries, reduced to what the handler needs (so nothing else of the
/// request is kept while a poll is held).
pub struct LpHead {
    /// The raw query string.
    pub query: String,
    pub token: Option<String>,
    pub auth_type: Option<String>,
    /// The client's address, for the connect rate limit.
    pub client_ip: std::net::IpAddr,
    /// A replica forwarded it (`[cluster]`): its session's user is routed elsewhere.
    pub forwarded: bool,
}

/// Handles one `/longpoll` request that reached hyper: over HTTP/2, or over HTTP/1.1 when it was
/// pipelined behind another request, is not a `GET`, or is a forwarded or to-be-routed poll of
/// `[cluster]` (the lean front takes the usual ones).
///
/// Not an `async fn`, nor is [`handle_head`]: the request is reduced to its head before the
/// future exists, and an `async fn` would store its arguments twice for a poll's whole hold.
pub fn handle<B>(
    req: Request<B>,
    peer: std::net::SocketAddr,
    shared: Arc<Shared>,
) -> impl Future<Output = Response<Body>> + Send {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let head = LpHead {
        query: req.uri().query().unwrap_or("").to_string(),
        token: header(header::AUTHORIZATION.as_str()),
        auth_type: header("stream-auth-type"),
        client_ip: crate::limits::client_ip(
            peer,
            req.headers(),
            &shared.config.limits.trusted_proxies,
        ),
        forwarded: req
            .extensions()
            .get::<crate::cluster::Forwarded>()
            .is_some(),
    };
    drop(req);
    handle_head(head, shared)
}

/// Handles one `/longpoll` request from its head, a held poll included. Its future is small
/// (about 0.3 KiB while a poll is held): everything before the hold is a boxed future of its own.
fn handle_head(head: LpHead, shared: Arc<Shared>) -> impl Future<Output = Response<Body>> + Send {
    let step = Box::pin(start(head, shared.clone()));
    async move {
        match step.await {
            Step::Answer(resp) => resp,
            Step::Hold(held) => {
                // hyper drops this future when the client goes away; it never reports it here.
                let end = held
                    .ticket
                    .hold(&shared.config.longpoll, |_| Poll::Pending)
                    .await;
                held.finish(end.unwrap_or(PollEnd::Preempted), &shared)
            }
        }
    }
}

/// What a `/longpoll` request needs next.
pub enum Step {
    /// Its answer.
    Answer(Response<Body>),
    /// A poll to hold: wait on [`Held::ticket`] (see [`LpSession::poll_held`]), then
    /// [`Held::finish`].
    Hold(Held),
}

/// A poll being held: what its answer needs, and nothing of its request.
pub struct Held {
    pub ticket: Ticket,
    started: Instant,
    /// With `[cluster]`: convergence hears of the answer.
    settle: Option<(String, bool)>,
    /// Counts the poll in `stream_edge_longpoll_held_requests` while it lives (the connection
    /// drops it mid-hold when its client goes away).
    _held: HeldGauge,
}

impl Held {
    /// The answer to a poll that ended with `end`.
    pub fn finish(self, end: PollEnd, shared: &Shared) -> Response<Body> {
        let m = &shared.metrics;
        m.longpoll_poll_seconds
            .observe(self.started.elapsed().as_secs_f64());
        let session = self.ticket.session().clone();
        let result = match end {
            PollEnd::Events(frames) => Ok(events_body(&frames, shared)),
            PollEnd::Preempted => {
                m.longpoll_polls.with_label_values(&["preempted"]).inc();
                Ok(json(StatusCode::OK, "{\"events\":[]}"))
            }
            PollEnd::Gone => {
                let end = shared
                    .longpolls
                    .get(&session.id)
                    .map_or(SessionEnd::Draining, |s| s.end_reason());
                shared.longpolls.remove(&session.id, end);
                Err(EdgeError::ConnectionNotFound)
            }
        };
        finish(result, self.settle, shared)
    }
}

fn events_body(frames: &[Utf8Bytes], shared: &Shared) -> Response<Body> {
    let m = &shared.metrics;
    let mut body = String::with_capacity(16 + frames.iter().map(|f| f.len() + 1).sum::<usize>());
    body.push_str("{\"events\":[");
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(f.as_str());
    }
    body.push_str("]}");
    m.bytes
        .with_label_values(&["out", "longpoll"])
        .inc_by(body.len() as u64);
    let outcome = if frames.is_empty() { "empty" } else { "events" };
    m.longpoll_polls.with_label_values(&[outcome]).inc();
    json(StatusCode::OK, body)
}

/// Starts a `/longpoll` request: a connect, a close or a refusal is answered; a poll is
/// authenticated, bound to its session and returned to be held.
pub async fn start(head: LpHead, shared: Arc<Shared>) -> Step {
    let shared = &shared;
    let LpHead {
        query,
        token,
        auth_type,
        client_ip,
        forwarded,
    } = head;
    let LpRequest {
        connection_id: conn_id,
        close,
        has_json,
        conflicting,
    } = LpRequest::parse(&query);
    // Kept only with `[cluster]`, to tell convergence about the answer.
    let settle = shared
        .cluster
        .as_ref()
        .and(conn_id.clone())
        .map(|id| (id, forwarded));
    let result = match conn_id {
        // Every occurrence counts, as on REST: the router reads the first, this the last.
        _ if conflicting => Err(EdgeError::BadInput(
            "connection_id is given more than once with different values".into(),
        )),
        Some(id) if !id.is_empty() => {
            let caller = poll_identity(&query, token.as_deref(), auth_type.as_deref(), shared);
            // The request's strings (its token among them) are not kept through the hold.
            drop((query, token, auth_type));
            match caller.and_then(|caller| Ok((owned(shared, &id, &caller)?, caller))) {
                Err(e) => Err(e),
                Ok(_) if close => end(shared, &id),
                Ok((session, _)) => {
                    return Step::Hold(Held {
                        ticket: session.begin(),
                        started: Instant::now(),
                        settle,
                        _held: HeldGauge::new(shared.clone()),
                    })
                }
            }
        }
        _ if has_json => {
            let prepared = connect::admit_ip(client_ip, shared).and_then(|()| {
                connect::prepare(&query, token.as_deref(), auth_type.as_deref(), shared)
            });
            // Boxed: the connect's one-off futures (auth, privacy, hub attach) are not part of
            // any other request's state.
            Box::pin(open(shared, prepared)).await
        }
        _ => Err(EdgeError::BadInput(
            "longpoll needs json (connect) or connection_id (poll)".into(),
        )),
    };
    Step::Answer(finish(result, settle, shared))
}

/// The answer's common part: errors in Stream's shape and counted, convergence told (with
/// `[cluster]`), CORS, and no caching.
fn finish(
    result: Result<Response<Body>, EdgeError>,
    settle: Option<(String, bool)>,
    shared: &Shared,
) -> Response<Body> {
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            let outcome = e.class().label;
            shared
                .metrics
                .longpoll_polls
                .with_label_values(&[outcome])
                .inc();
            json_error(&e)
        }
    };
    if let (Some(cluster), Some((id, forwarded))) = (&shared.cluster, settle) {
        cluster.settle(&id, forwarded, resp.status());
    }
    cors::decorate(&mut resp);
    // A proxy must neither cache nor hold a poll's answer: it is always one complete body with a
    // content-length (`json` builds a full body; both fronts write its length), never streamed.
    no_store(&mut resp);
    resp
}

/// A long-poll connect: the session opened as both transports open one
/// ([`connect::open`]), registered for its polls, and answered with the connected event.
async fn open(
    shared: &Arc<Shared>,
    prepared: Result<connect::Prepared, EdgeError>,
) -> Result<Response<Body>, EdgeError> {
    let (prepared, att) = connect::open(prepared, Transport::LongPoll, shared).await?;
    let body = format!(
        "{{\"event\":{}}}",
        super::frames::connected(&att.id, &att.me())
    );
    let id = att.id.clone();
    shared
        .longpolls
        .insert(LpSession::new(att, prepared.request.anonymous));
    let m = &shared.metrics;
    m.sessions_opened.with_label_values(&["longpoll"]).inc();
    m.sessions_open.with_label_values(&["longpoll"]).inc();
    // The sweeper ends every session once when draining starts; one that registered after that
    // scan is ended here.
    if shared.shutdown.is_cancelled() {
        shared.longpolls.remove(&id, SessionEnd::Draining);
        return Err(EdgeError::Draining);
    }
    Ok(json(StatusCode::OK, body))
}

/// Who a poll or close speaks for: the app it names and, unless anonymous, the user its token
/// proves.
struct Caller {
    api_key: String,
    identity: Option<Identity>,
}

/// Polls and closes carry the REST headers; a token, when present, must belong to the session's
/// user (checked in [`owned`]).
fn poll_identity(
    query: &str,
    token: Option<&str>,
    auth_type: Option<&str>,
    shared: &Shared,
) -> Result<Caller, EdgeError> {
    let api_key = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "api_key")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| EdgeError::BadInput("api_key is missing".into()))?;
    if auth_type == Some("anonymous") {
        return Ok(Caller {
            api_key,
            identity: None,
        });
    }
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or(crate::auth::AuthError::Missing)?;
    let identity = shared.auth.authenticate(Credentials {
        api_key: &api_key,
        token: Some(token),
        anonymous: false,
        user_id: None,
        client_connection: true,
    })?;
    Ok(Caller {
        api_key,
        identity: Some(identity),
    })
}

/// The session `id`, if it belongs to the caller: the same app and the same user (user ids are
/// per app, so the same name in another app is someone else), as REST's `connection_id` binding.
fn owned(shared: &Shared, id: &str, caller: &Caller) -> Result<Arc<LpSession>, EdgeError> {
    let session = shared
        .longpolls
        .get(id)
        .ok_or(EdgeError::ConnectionNotFound)?;
    let same_app = *session.hub.app == *caller.api_key;
    let same_user = match &caller.identity {
        Some(i) => i.user_id == session.hub.user,
        None => session.anonymous,
    };
    if same_app && same_user {
        Ok(session)
    } else {
        Err(EdgeError::ForeignConnection(id.to_string()))
    }
}

fn end(shared: &Shared, id: &str) -> Result<Response<Body>, EdgeError> {
    shared.longpolls.remove(id, SessionEnd::ClientClosed);
    shared
        .metrics
        .longpoll_polls
        .with_label_values(&["closed"])
        .inc();
    Ok(json(StatusCode::OK, "{\"duration\":\"0.00ms\"}"))
}

/// Counts a held poll in `stream_edge_longpoll_held_requests` for as long as it lives.
struct HeldGauge(Arc<Shared>);

impl HeldGauge {
    fn new(shared: Arc<Shared>) -> Self {
        shared.metrics.longpoll_held.inc();
        HeldGauge(shared)
    }
}

impl Drop for HeldGauge {
    fn drop(&mut self) {
        self.0.metrics.longpoll_held.dec();
    }
}
