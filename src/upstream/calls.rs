//! Requests the gateway makes to upstream on its own behalf (not proxied for a client), signed with
//! a server token: forwarding later sessions' `user_details`, privacy-settings lookups, and reading
//! each app's settings (`GET /app`, for its token revocation cutoff).

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use super::{Upstream, UpstreamError};

/// Largest response body the gateway reads for its own calls.
const MAX_OWN_RESPONSE: usize = 4 << 20;

/// Sends one request with a server token; returns status and body.
///
/// # Errors
/// Transport failure, timeout or an oversized body.
pub async fn call(
    upstream: &Upstream,
    app: &str,
    method: Method,
    path: &str,
    query: &str,
    body: Option<String>,
) -> Result<(StatusCode, Bytes), UpstreamError> {
    let token = upstream.server_token(app)?;
    let mut query_all = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("api_key", app)
        .finish();
    if !query.is_empty() {
        query_all.push('&');
        query_all.push_str(query);
    }
    let uri = upstream.rest_uri(path, Some(&query_all))?;
    let body = body.map(Bytes::from).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::HOST, upstream.host())
        .header(http::header::AUTHORIZATION, token)
        .header("stream-auth-type", "jwt")
        .header("X-Stream-Client", super::ws::CLIENT_ID)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body).map_err(|never| match never {}).boxed())
        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    let send = upstream.rest.request(req);
    let resp = tokio::time::timeout(upstream.config.request_timeout, send)
        .await
        .map_err(|_| UpstreamError::Timeout)?
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
    let status = resp.status();
    let body = tokio::time::timeout(
        upstream.config.request_timeout,
        Limited::new(resp.into_body(), MAX_OWN_RESPONSE).collect(),
    )
    .await
    .map_err(|_| UpstreamError::Timeout)?
    .map_err(|e| UpstreamError::Protocol(e.to_string()))?
    .to_bytes();
    Ok((status, body))
}

/// Forwards a connect payload's `user_details` as a partial update (`PATCH /users` with `set`):
/// merge semantics, like the connect itself. A full upsert would reset every field the later
/// session did not send, privacy settings included.
///
/// # Errors
/// As [`call`], or `details` lacks an `id`, or upstream refused it.
pub async fn update_user(
    upstream: &Upstream,
    app: &str,
    details: &str,
) -> Result<(), UpstreamError> {
    let mut value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(details).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    let id = match value.remove("id") {
        Some(serde_json::Value::String(id)) => id,
        _ => return Err(UpstreamError::Protocol("user_details without id".into())),
    };
    if value.is_empty() {
        return Ok(());
    }
    let body = serde_json::json!({ "users": [{ "id": id, "set": value }] }).to_string();
    let (status, _) = call(upstream, app, Method::PATCH, "/users", "", Some(body)).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(UpstreamError::Protocol(format!(
            "user update answered {status}"
        )))
    }
}
