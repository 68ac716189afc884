//! A validating recorder between the gateway and its upstream, for the real-SDK suite: a proxy on
//! `127.0.0.1:0` that forwards every REST call and the upstream WebSocket to the emulator, and
//! checks each JSON answer (by route, `spec_routes`) and each event (by type) against Stream's
//! client-side OpenAPI spec. The suite's own test then fails listing every violation, and prints
//! which spec operations the SDK exercised and which routes the spec has no schema for.
//! Without the spec it forwards only, and says so once.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::emulator::schema;
use crate::spec_routes::Routes;

/// What the recorder saw.
#[derive(Default)]
pub struct Report {
    /// `METHOD path status: schema: error` for each answer or event that breaks the spec.
    pub violations: Vec<String>,
    /// Spec operations (`METHOD template`) answered, with their count.
    pub covered: BTreeMap<String, u32>,
    /// `METHOD /normalised/path` of API calls the spec has no operation for.
    pub unmapped: BTreeSet<String>,
    /// Event types delivered upstream → gateway, with their count.
    pub events: BTreeMap<String, u32>,
}

struct Shared {
    upstream: SocketAddr,
    routes: Option<Routes>,
    report: Mutex<Report>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A running recorder; stops accepting when dropped.
pub struct Recorder {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: DropGuard,
}

impl Recorder {
    /// Starts in front of `upstream`; validates only when the spec is present.
    pub async fn start(upstream: SocketAddr) -> Self {
        let routes =
            if crate::support::skip_without_openapi("sdk (schema validation of the SDK's traffic)")
            {
                None
            } else {
                Some(Routes::from_spec(schema::spec()))
            };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("recorder addr");
        let shared = Arc::new(Shared {
            upstream,
            routes,
            report: Mutex::default(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, shared.clone(), stop.clone()));
        Self {
            addr,
            shared,
            _stop: stop.drop_guard(),
        }
    }

    pub fn validating(&self) -> bool {
        self.shared.routes.is_some()
    }

    /// Takes what was recorded so far.
    pub fn take(&self) -> Report {
        std::mem::take(&mut *self.shared.report.lock().expect("report"))
    }

    /// How many of the spec's operations were answered.
    pub fn spec_operations(&self) -> usize {
        self.shared.routes.as_ref().map_or(0, Routes::len)
    }

    /// The spec operations never answered.
    pub fn missed(&self, report: &Report) -> Vec<String> {
        let Some(routes) = &self.shared.routes else {
            return Vec::new();
        };
        routes
            .all()
            .map(|r| format!("{} {}", r.method, r.template))
            .filter(|op| !report.covered.contains_key(op))
            .collect()
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            res = listener.accept() => match res {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

fn error(status: StatusCode, msg: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(msg)));
    *resp.status_mut() = status;
    resp
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let res = if upgrade {
        websocket(shared, req).await
    } else {
        rest(shared, req).await
    };
    Ok(res.unwrap_or_else(|e| error(StatusCode::BAD_GATEWAY, format!("recorder: {e}"))))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn rest(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Request::builder()
        .method(parts.method.clone())
        .uri(format!("http://{}{path_and_query}", shared.upstream));
    for (k, v) in &parts.headers {
        if k != header::HOST && k != header::TRANSFER_ENCODING {
            out = out.header(k, v);
        }
    }
    let resp = shared.client.request(out.body(Full::new(body))?).await?;
    let (mut rparts, rbody) = resp.into_parts();
    let rbody = rbody.collect().await?.to_bytes();
    rparts.headers.remove(header::TRANSFER_ENCODING);
    let json = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json {
        check_rest(
            &shared,
            parts.method.as_str(),
            parts.uri.path(),
            rparts.status.as_u16(),
            &rbody,
        );
    }
    Ok(Response::from_parts(rparts, Full::new(rbody)))
}

/// Control routes and CORS preflights are not Stream's API.
fn is_api_call(method: &str, path: &str) -> bool {
    method != "OPTIONS" && !path.starts_with("/_emulator")
}

fn check_rest(shared: &Shared, method: &str, path: &str, status: u16, body: &[u8]) {
    let Some(routes) = &shared.routes else { return };
    if !is_api_call(method, path) {
        return;
    }
    let Some(route) = routes.find(method, path) else {
        let mut report = shared.report.lock().expect("report");
        report
            .unmapped
            .insert(format!("{method} {}", normalise(path)));
        return;
    };
    let op = format!("{method} {}", route.template);
    let found: Vec<String> = match (
        serde_json::from_slice::<Value>(body),
        route.schema_for(status),
    ) {
        (Err(e), _) => vec![format!("body is not JSON: {e}")],
        (Ok(_), None) => vec![format!("the spec gives no schema for status {status}")],
        (Ok(v), Some(name)) => schema::violations(&name, &v)
            .into_iter()
            .map(|e| format!("{name}: {e}"))
            .collect(),
    };
    let mut report = shared.report.lock().expect("report");
    for e in found {
        report.violations.push(format!("{op} → {status}: {e}"));
    }
    *report.covered.entry(op).or_default() += 1;
}

/// Ids become `{}` so one route is one line: a segment that is not plain lowercase words.
fn normalise(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                s.to_owned()
            } else {
                "{}".to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Forwards the handshake verbatim (so the accept key matches), then relays frames both ways,
/// checking each upstream text frame.
async fn websocket(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(shared.upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn.with_upgrades());
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(req.uri().path_and_query().map_or("/", |p| p.as_str()));
    for (k, v) in req.headers() {
        out = out.header(k, v);
    }
    let mut resp = sender
        .send_request(out.body(Full::new(Bytes::new()))?)
        .await?;
    let mut back = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        back = back.header(k, v);
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let from_gateway = hyper::upgrade::on(&mut req);
        let to_upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(gw), Ok(up)) = tokio::join!(from_gateway, to_upstream) {
                relay(shared, gw, up).await;
            }
        });
        return Ok(back.body(Full::new(Bytes::new()))?);
    }
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(back.body(Full::new(body))?)
}

async fn relay(shared: Arc<Shared>, gw: hyper::upgrade::Upgraded, up: hyper::upgrade::Upgraded) {
    let gw = WebSocketStream::from_raw_socket(TokioIo::new(gw), Role::Server, None).await;
    let up = WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Client, None).await;
    let (mut gw_tx, mut gw_rx) = gw.split();
    let (mut up_tx, mut up_rx) = up.split();
    // Pings and pongs are answered by each side's own socket; data and close frames cross. An
    // upstream that vanishes without a close frame makes the gateway's side vanish the same way.
    let down = async {
        while let Some(Ok(msg)) = up_rx.next().await {
            if let Message::Text(t) = &msg {
                check_event(&shared, t.as_str());
            }
            let close = matches!(msg, Message::Close(_));
            if matches!(
                msg,
                Message::Text(_) | Message::Binary(_) | Message::Close(_)
            ) && gw_tx.send(msg).await.is_err()
            {
                return;
            }
            if close {
                return;
            }
        }
    };
    let upward = async {
        while let Some(Ok(msg)) = gw_rx.next().await {
            let close = matches!(msg, Message::Close(_));
            if matches!(
                msg,
                Message::Text(_) | Message::Binary(_) | Message::Close(_)
            ) && up_tx.send(msg).await.is_err()
            {
                return;
            }
            if close {
                return;
            }
        }
    };
    tokio::select! {
        _ = down => {}
        _ = upward => {}
    }
}

fn check_event(shared: &Shared, text: &str) {
    if shared.routes.is_none() {
        return;
    }
    let (kind, found) = match serde_json::from_str::<Value>(text) {
        Err(e) => (
            None,
            vec![format!("WS frame is not JSON ({e}): {text:.200}")],
        ),
        // A refused connect is an error frame, not an event.
        Ok(ev) if ev.get("error").is_some() => (
            None,
            schema::violations("APIError", &ev["error"])
                .into_iter()
                .map(|e| format!("WS connect error: APIError: {e}"))
                .collect(),
        ),
        Ok(ev) => match ev["type"].as_str() {
            None => (None, vec![format!("WS event without a type: {text:.200}")]),
            Some(kind) => {
                let name = schema::event_schema(kind);
                let found = schema::violations(&name, &ev)
                    .into_iter()
                    .map(|e| format!("WS {kind}: {name}: {e}"))
                    .collect();
                (Some(kind.to_owned()), found)
            }
        },
    };
    let mut report = shared.report.lock().expect("report");
    report.violations.extend(found);
    if let Some(kind) = kind {
        *report.events.entry(kind).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream whose every REST answer is a malformed `APIError` and whose WebSocket sends
    /// one event missing its required fields: the recorder must report both.
    #[tokio::test]
    async fn breaking_answers_and_events_are_reported() {
        if crate::support::skip_without_openapi(
            "recorder::breaking_answers_and_events_are_reported",
        ) {
            return;
        }
        let rest_up = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let rest_addr = rest_up.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((s, _)) = rest_up.accept().await {
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    let mut r = Response::new(Full::new(Bytes::from(r#"{"code":"four"}"#)));
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        "application/json".parse().expect("value"),
                    );
                    Ok::<_, Infallible>(r)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc),
                );
            }
        });
        let rec = Recorder::start(rest_addr).await;
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        for path in ["/channels/messaging/x/query", "/no/such/route"] {
            let req = Request::post(format!("http://{}{path}", rec.addr))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let resp = client.request(req).await.expect("answer");
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "forwarded as is");
        }
        let report = rec.take();
        let v = &report.violations;
        assert!(!v.is_empty(), "the malformed APIError is reported");
        assert!(
            v.iter()
                .all(|e| e.starts_with("POST /channels/{type}/{id}/query → 400: APIError")),
            "{v:?}"
        );
        assert!(
            report.unmapped.contains("POST /no/such/route"),
            "{:?}",
            report.unmapped
        );

        let ws_up = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ws_addr = ws_up.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((s, _)) = ws_up.accept().await {
                if let Ok(mut ws) = tokio_tungstenite::accept_async(s).await {
                    let _ = ws.send(Message::text(r#"{"type":"message.new"}"#)).await;
                    let _ = ws.send(Message::text("[not json")).await;
                    let _ = ws.close(None).await;
                }
            }
        });
        let rec = Recorder::start(ws_addr).await;
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/connect", rec.addr))
            .await
            .expect("upgrade through the recorder");
        let mut texts = 0;
        while let Some(Ok(msg)) = tokio::time::timeout(crate::support::WAIT, ws.next())
            .await
            .expect("frames in time")
        {
            texts += usize::from(msg.is_text());
        }
        assert_eq!(texts, 2, "both frames are relayed");
        let report = rec.take();
        let v = &report.violations;
        assert!(
            v.iter()
                .any(|e| e.starts_with("WS message.new: MessageNewEvent")),
            "{v:?}"
        );
        assert!(
            v.iter().any(|e| e.starts_with("WS frame is not JSON")),
            "{v:?}"
        );
    }
}
