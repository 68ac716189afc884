//! The REST reverse proxy: every path that is not a transport is forwarded to upstream with method,
//! path, query, headers and streamed body. It rewrites only what multiplexing needs: a session's
//! `connection_id` becomes its hub's upstream connection id, and watch/stop-watching calls update
//! the hub's routing table (stop-watching is answered locally while another session of the user
//! still watches the channel).

pub mod cors;
mod headers;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::transport::io::ReqBody;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;

use crate::auth::{Credentials, Identity, TokenKind};
use crate::config::OnLookupFailure;
use crate::error::EdgeError;
use crate::gateway::Shared;
use crate::listener::{full, json, json_error, Body};
use crate::privacy;
use crate::session::{Hub, SessionId};
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

async fn forward(
    req: Request<ReqBody>,
    path: &str,
    kind: &Kind,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<Response<Body>, EdgeError> {
    let (parts, body) = req.into_parts();
    let query = parts.uri.query().unwrap_or("");
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let api_key = param("api_key");
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

    let mut bound = None;
    let mut rewritten = false;
    if let Some(idx) = pairs.iter().position(|(k, _)| k == "connection_id") {
        let sid = pairs[idx].1.clone();
        let b = bind(
            shared,
            &sid,
            api_key.as_deref(),
            identity.as_ref(),
            param("user_id"),
            anonymous,
        )?;
        pairs[idx].1 = b.hub.upstream_connection_id().ok_or_else(|| {
            EdgeError::UpstreamUnavailable("upstream connection not ready".into())
        })?;
        rewritten = true;
        bound = Some(b);
    }

    if let (Kind::StopWatching { cid }, Some(b)) = (kind, &bound) {
        if !b.hub.unwatch(&b.id, cid) {
            // Another session of this user still watches: keep the upstream subscription.
            return Ok(json(StatusCode::CREATED, r#"{"duration":"0.00ms"}"#));
        }
    }

    // Whose view a response is shaped for: a user sees others' hidden read state removed; a
    // caller without a user token sees every hidden entry removed; a backend (server token) sees
    // everything.
    let requester: Option<String> = match &identity {
        Some(i) if i.kind == TokenKind::Server => None,
        Some(i) => Some(i.user_id.to_string()),
        None => Some(String::new()),
    };
    let app = api_key.clone().unwrap_or_default();
    let tracks_watch =
        bound.is_some() && matches!(kind, Kind::QueryChannels | Kind::QueryChannel { .. });
    let reads_body = tracks_watch || matches!(kind, Kind::SendEvent { .. } | Kind::Users);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max_body = shared.config.limits.max_body_bytes;
    if declared.is_some_and(|n| n > max_body as u64) {
        shared
            .metrics
            .limit_hits
            .with_label_values(&["max_body_bytes"])
            .inc();
        return Err(EdgeError::PayloadTooLarge(format!(
            "request body over the {max_body} byte limit"
        )));
    }
    let (req_bytes, up_body) = if reads_body {
        let bytes = read_limited(body, shared.config.limits.rest_max_buffered_body).await?;
        (Some(bytes.clone()), full(bytes))
    } else {
        // Streamed bodies without a length are cut off at the limit (the upstream request fails).
        (None, Limited::new(body, max_body).boxed())
    };

    let watch_requested = tracks_watch
        && req_bytes
            .as_deref()
            .and_then(|b| serde_json::from_slice::<WatchFlag>(b).ok())
            .is_some_and(|w| w.watch);

    if let (
        Kind::SendEvent {
            channel_type,
            channel_id,
        },
        Some(bytes),
        Some(id),
    ) = (kind, &req_bytes, &identity)
    {
        if let Some(ack) = swallow_typing(shared, &app, id, bytes, channel_type, channel_id).await {
            return Ok(json(StatusCode::CREATED, ack));
        }
    }

    let method = parts.method.clone();
    let query = if rewritten {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.extend_pairs(pairs.iter());
        s.finish()
    } else {
        query.to_string()
    };
    let uri = shared.upstream.rest_uri(path, Some(&query))?;
    let mut up = Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(up_body)
        .map_err(|e| EdgeError::BadInput(e.to_string()))?;
    headers::forward_request(
        &parts.headers,
        up.headers_mut(),
        &shared.upstream.host(),
        peer,
        reads_body,
        if shared.config.tls.is_some() {
            "https"
        } else {
            "http"
        },
    );

    // Register a named channel before upstream can emit its first events for this watch.
    let early = match (kind, &bound, watch_requested) {
        (Kind::QueryChannel { cid: Some(cid) }, Some(b), true) => {
            b.hub.watch(&b.id, std::slice::from_ref(cid));
            Some(cid.clone())
        }
        _ => None,
    };
    let sent = tokio::time::timeout(
        shared.config.upstream.request_timeout,
        shared.upstream.rest.request(up),
    )
    .await;
    let resp = match sent {
        Err(_) => Err(EdgeError::UpstreamTimeout),
        Ok(Err(e)) => Err(EdgeError::UpstreamUnavailable(e.to_string())),
        Ok(Ok(r)) => Ok(r),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            if let (Some(cid), Some(b)) = (&early, &bound) {
                b.hub.unwatch(&b.id, cid);
            }
            return Err(e);
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    headers::strip_hop_by_hop(&mut rparts.headers);
    if method == http::Method::PATCH && path == "/app" && rparts.status.is_success() {
        // A backend's `revokeTokens` through the proxy: read the app's cutoff now.
        shared.hubs.refresh_app_settings();
    }
    let rewrite_reads = requester.is_some()
        && !app.is_empty()
        && matches!(
            kind,
            Kind::QueryChannels | Kind::QueryChannel { .. } | Kind::ReadState
        );
    let learn_users = matches!(kind, Kind::Users) && !app.is_empty();
    if !(watch_requested || rewrite_reads || learn_users) {
        return Ok(Response::from_parts(
            rparts,
            rbody.map_err(Into::into).boxed(),
        ));
    }
    let mut bytes = read_limited(rbody, shared.config.limits.rest_max_buffered_response)
        .await
        .map_err(|_| EdgeError::UpstreamUnavailable("upstream response too large".into()))?;
    if !rparts.status.is_success() {
        if let (Some(cid), Some(b)) = (&early, &bound) {
            b.hub.unwatch(&b.id, cid);
        }
        return Ok(Response::from_parts(rparts, full(bytes)));
    }
    if let (true, Some(b)) = (watch_requested, &bound) {
        b.hub.watch(&b.id, &channel_cids(&bytes));
    }
    if learn_users {
        // `revokeUserToken` through the proxy: the response carries the user's new cutoff.
        shared.hubs.learn_users_response(&app, &bytes);
        let body = req_bytes.as_deref().unwrap_or_default();
        for (user, settings) in privacy::rewrite::user_updates(&method, body) {
            match settings {
                Some(s) => shared.privacy.set(&app, &user, s).await,
                None => shared.privacy.forget(&app, &user).await,
            }
        }
    }
    if let (true, Some(who)) = (rewrite_reads, &requester) {
        let before = bytes.len();
        bytes = privacy::rewrite::filter_reads(bytes, who, &app, &shared.privacy).await;
        if bytes.len() != before {
            rparts.headers.remove(header::CONTENT_LENGTH);
        }
    }
    Ok(Response::from_parts(rparts, full(bytes)))
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
    Some(privacy::rewrite::typing_ack(
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

#[derive(Deserialize)]
struct WatchFlag {
    #[serde(default)]
    watch: bool,
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
        .map_err(|_| EdgeError::PayloadTooLarge(format!("body over the {limit} byte limit")))
}

/// Cids in a `POST /channels` (`channels[].channel.cid`) or query (`channel.cid`) response.
fn channel_cids(body: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Channel {
        cid: String,
    }
    #[derive(Deserialize)]
    struct State {
        channel: Option<Channel>,
    }
    #[derive(Deserialize)]
    struct Resp {
        #[serde(default)]
        channels: Vec<State>,
        channel: Option<Channel>,
    }
    match serde_json::from_slice::<Resp>(body) {
        Ok(r) => r
            .channels
            .into_iter()
            .filter_map(|s| s.channel.map(|c| c.cid))
            .chain(r.channel.map(|c| c.cid))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cids_from_both_response_shapes() {
        let q = br#"{"channels":[{"channel":{"cid":"m:a"},"read":[]},{"channel":{"cid":"m:b"}}],"duration":"1ms"}"#;
        assert_eq!(super::channel_cids(q), vec!["m:a", "m:b"]);
        let one = br#"{"channel":{"cid":"m:c","type":"m"},"messages":[]}"#;
        assert_eq!(super::channel_cids(one), vec!["m:c"]);
        assert!(super::channel_cids(b"garbage").is_empty());
    }
}
