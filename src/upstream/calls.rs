//! Requests the gateway makes to upstream on its own behalf (not proxied for a client). Each names
//! the authority it is sent with ([`Authority`]): a server token only for lookups whose inputs a
//! client cannot steer (README, "Security model"); a user token of that very user for anything a
//! client asked for, so a client's wish never reaches upstream with more authority than the client
//! has.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value};

use super::{Upstream, UpstreamError};

/// Largest response body the gateway reads for its own calls.
const MAX_OWN_RESPONSE: usize = 4 << 20;

/// Whose authority a call is made with.
#[derive(Clone, Copy, Debug)]
pub enum Authority<'a> {
    /// A server token: only for the gateway's own lookups (privacy settings, revocation).
    Server,
    /// A user token for this user (`id`): for anything done on a client's behalf. Its `iat` is
    /// never before the user's known revocation cutoff (`not_before_ms`).
    User {
        id: &'a str,
        not_before_ms: Option<i64>,
    },
}

/// Sends one request with the given authority; returns status and body.
///
/// # Errors
/// Transport failure, timeout or an oversized body.
pub async fn call(
    upstream: &Upstream,
    app: &str,
    authority: Authority<'_>,
    method: Method,
    path: &str,
    query: &str,
    body: Option<String>,
) -> Result<(StatusCode, Bytes), UpstreamError> {
    let token = match authority {
        Authority::Server => upstream.server_token(app)?,
        Authority::User { id, not_before_ms } => upstream.user_token(app, id, not_before_ms)?,
    };
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
        // Our own parsers read these bodies: never a compressed one.
        .header(http::header::ACCEPT_ENCODING, "identity")
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

/// User fields only Stream's server side (or an admin) may set. A client never sets them on
/// itself through the gateway, whatever it puts in `user_details`; they are removed at the top
/// level and inside `custom` (Stream flattens custom data into the user object).
pub const SERVER_MANAGED: &[&str] = &[
    "id",
    "role",
    "teams",
    "teams_role",
    "banned",
    "shadow_banned",
    "ban_expires",
    "revoke_tokens_issued_before",
    "deactivated_at",
    "deleted_at",
    "created_at",
    "updated_at",
    "last_active",
    "last_engaged_at",
    "online",
    "anon",
    "devices",
    "mutes",
    "channel_mutes",
    "blocked_user_ids",
    "push_notifications",
    "push_preferences",
    "unread_count",
    "total_unread_count",
    "unread_channels",
    "unread_threads",
    "total_unread_count_by_team",
    "latest_hidden_channels",
    "avg_response_time",
];

/// The part of a client's `user_details` it may set on its own user: everything but
/// [`SERVER_MANAGED`] keys (custom fields are the user's own to set, so this is a deny list over
/// the spec's `UserRequest`, whose typed fields are `name`, `image`, `language`, `invisible`,
/// `privacy_settings` and `custom`).
pub fn self_editable(details: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in details {
        if SERVER_MANAGED.contains(&k.as_str()) {
            continue;
        }
        if k == "custom" {
            if let Value::Object(custom) = v {
                let kept: Map<String, Value> = custom
                    .iter()
                    .filter(|(ck, _)| !SERVER_MANAGED.contains(&ck.as_str()))
                    .map(|(ck, cv)| (ck.clone(), cv.clone()))
                    .collect();
                out.insert(k.clone(), Value::Object(kept));
            }
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Forwards a later session's `user_details` as a partial update of that user (`PATCH /users`
/// with `set`: merge semantics, like the connect itself; a full upsert would reset every field the
/// later session did not send, privacy settings included). It is sent with a user token of
/// `user` itself and carries only [`self_editable`] fields, so upstream applies its own permission
/// checks for a user editing itself.
///
/// Returns upstream's `UpdateUsersResponse` body (`None` when nothing was sent), from which the
/// caller learns the user's confirmed settings.
///
/// # Errors
/// As [`call`], or `details` is not an object, or upstream refused it.
pub async fn update_user(
    upstream: &Upstream,
    app: &str,
    user: &str,
    not_before_ms: Option<i64>,
    details: &str,
) -> Result<Option<Bytes>, UpstreamError> {
    let value: Map<String, Value> =
        serde_json::from_str(details).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    let set = self_editable(&value);
    if set.is_empty() {
        return Ok(None);
    }
    let body = serde_json::json!({ "users": [{ "id": user, "set": set }] }).to_string();
    let (status, answer) = call(
        upstream,
        app,
        Authority::User {
            id: user,
            not_before_ms,
        },
        Method::PATCH,
        "/users",
        "",
        Some(body),
    )
    .await?;
    if status.is_success() {
        Ok(Some(answer))
    } else {
        Err(UpstreamError::Protocol(format!(
            "user update answered {status}"
        )))
    }
}

/// Registers a push device for `user` (`POST /devices`) with that user's own authority, its `iat`
/// never before the user's revocation cutoff. `body` is a `CreateDeviceRequest` that names no
/// user: the token's user is the one the device is for. Returns upstream's status.
///
/// # Errors
/// As [`call`].
pub async fn create_device(
    upstream: &Upstream,
    app: &str,
    user: &str,
    not_before_ms: Option<i64>,
    body: String,
) -> Result<StatusCode, UpstreamError> {
    let authority = Authority::User {
        id: user,
        not_before_ms,
    };
    let (status, _) = call(
        upstream,
        app,
        authority,
        Method::POST,
        "/devices",
        "",
        Some(body),
    )
    .await?;
    Ok(status)
}

/// Escapes one path segment the gateway builds from ids it did not choose.
fn seg(s: &str) -> String {
    const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'/')
        .add(b'?')
        .add(b'#')
        .add(b'%')
        .add(b'"')
        .add(b'.');
    percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

/// Reads the thread of parent message `id` (`GET /threads/{id}`, without watching) with `user`'s
/// own authority: what that user may see of it. Returns the answer's body.
///
/// # Errors
/// Upstream unreachable, or a non-success answer.
pub async fn get_thread(
    upstream: &Upstream,
    app: &str,
    user: &str,
    not_before_ms: Option<i64>,
    id: &str,
) -> Result<Bytes, UpstreamError> {
    let authority = Authority::User {
        id: user,
        not_before_ms,
    };
    let path = format!("/threads/{}", seg(id));
    let query = "watch=false&reply_limit=0&participant_limit=100";
    let (status, body) = call(upstream, app, authority, Method::GET, &path, query, None).await?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(UpstreamError::Protocol(format!(
            "get thread answered {status}"
        )))
    }
}

/// Unwatches `cid` on the user's upstream connection `connection_id`, with that user's own
/// authority (the call the user's SDK makes for `stopWatching`): the gateway makes it when no
/// session of the user watches the channel any more (a tab closed or reconnected).
///
/// # Errors
/// A malformed cid, upstream unreachable, or a non-success answer.
pub async fn stop_watching(
    upstream: &Upstream,
    app: &str,
    user: &str,
    not_before_ms: Option<i64>,
    connection_id: &str,
    cid: &str,
) -> Result<(), UpstreamError> {
    let (kind, id) = cid
        .split_once(':')
        .filter(|(k, i)| !k.is_empty() && !i.is_empty())
        .ok_or_else(|| UpstreamError::Protocol("malformed cid".into()))?;
    // Cids come from upstream answers; escaped anyway, so no cid can change the path.
    let path = format!("/channels/{}/{}/stop-watching", seg(kind), seg(id));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("connection_id", connection_id)
        .finish();
    let (status, _) = call(
        upstream,
        app,
        Authority::User {
            id: user,
            not_before_ms,
        },
        Method::POST,
        &path,
        &query,
        Some("{}".into()),
    )
    .await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(UpstreamError::Protocol(format!(
            "stop-watching answered {status}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_managed_fields_never_forwarded() {
        let details: Map<String, Value> = serde_json::from_str(
            r#"{"id":"a","name":"A","role":"admin","teams":["t"],"teams_role":{"t":"admin"},
                "banned":false,"revoke_tokens_issued_before":null,"deactivated_at":null,
                "invisible":true,"privacy_settings":{"read_receipts":{"enabled":false}},
                "color":"red","custom":{"role":"admin","hobby":"x"}}"#,
        )
        .unwrap();
        let out = self_editable(&details);
        let keys: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["color", "custom", "invisible", "name", "privacy_settings"]
        );
        assert_eq!(out["custom"], serde_json::json!({"hobby":"x"}));
    }
}
