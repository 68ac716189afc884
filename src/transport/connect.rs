//! The connect request shared by `/connect` and `/longpoll`: `json` payload, `api_key`, token and
//! auth type, checked before any session exists (stream-protocol.md 1.1).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::EdgeError;

/// Longest user id accepted (Stream's limit).
pub const MAX_USER_ID: usize = 255;

/// A parsed, size-checked connect request (not yet authenticated).
#[derive(Debug)]
pub struct ConnectRequest {
    pub api_key: String,
    /// Raw JWT; `None` when absent or empty.
    pub token: Option<String>,
    pub anonymous: bool,
    pub user_id: String,
    /// `user_details` as sent (a JSON object with `id`), forwarded upstream verbatim.
    pub details: Box<RawValue>,
    /// The push device to register for the user (validated; `None` when absent or `null`).
    /// Boxed: most connects have none, and the request travels by value.
    pub device: Option<Box<crate::session::device::Device>>,
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(default, borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(default)]
    user_details: Option<Box<RawValue>>,
    #[serde(default)]
    device: Option<Box<RawValue>>,
    // Other keys (client_request_id, and the Flutter SDK's
    // server_determines_connection_id and user_token) are accepted and ignored.
}

#[derive(Deserialize)]
struct DetailsId<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
}

/// A connect request that passed parsing and authentication.
pub struct Prepared {
    pub request: ConnectRequest,
    pub identity: crate::auth::Identity,
}

/// Parses and authenticates a connect request, the same for both transports.
///
/// # Errors
/// Bad input (code 4/413) or the credential's Stream auth code.
pub fn prepare(
    query: &str,
    header_token: Option<&str>,
    header_auth_type: Option<&str>,
    shared: &crate::state::Shared,
) -> Result<Prepared, EdgeError> {
    let request = parse(
        query,
        header_token,
        header_auth_type,
        shared.config.limits.max_user_details_bytes,
    )?;
    let identity = shared.auth.authenticate(crate::auth::Credentials {
        api_key: &request.api_key,
        token: request.token.as_deref(),
        anonymous: request.anonymous,
        user_id: Some(&request.user_id),
        client_connection: true,
    })?;
    Ok(Prepared { request, identity })
}

/// The per-client connect rate limit, shared by both transports, for a client address already
/// resolved (the WebSocket upgrade and the long-poll connect).
///
/// # Errors
/// `RateLimited` (code 9; on WS a retryable close 1013) when the client is over its rate.
pub fn admit_ip(ip: std::net::IpAddr, shared: &crate::state::Shared) -> Result<(), EdgeError> {
    if shared.connect_limiter.admit(ip) {
        Ok(())
    } else {
        shared
            .metrics
            .limit_hit(crate::metrics::Limit::ConnectRatePerIp);
        Err(EdgeError::RateLimited(
            "too many connection attempts from this client; retry later".into(),
        ))
    }
}

/// Opens a session from a connect request, the same for both transports: the client's own
/// privacy settings (only what it turns off counts before upstream confirms), the attachment to
/// its user's hub (waiting for the upstream connection), and, for every refusal, one count in
/// `connect_rejected_total{transport, reason}`. The caller answers in its transport's form.
///
/// # Errors
/// The connect was refused before (`prepared`), or attaching failed, or the gateway is draining.
pub async fn open(
    prepared: Result<Prepared, EdgeError>,
    transport: crate::session::Transport,
    shared: &crate::state::Shared,
) -> Result<(Prepared, crate::session::Attachment), EdgeError> {
    let opened = async {
        let prepared = prepared?;
        let req = &prepared.request;
        shared
            .privacy
            .learn_restrictive(&req.api_key, req.details.get())
            .await;
        let queue = match transport {
            crate::session::Transport::Ws => shared.config.limits.session_queue,
            crate::session::Transport::LongPoll => shared.config.longpoll.queue_capacity,
        };
        let attach = shared.hubs.attach(
            &req.api_key,
            &prepared.identity,
            &req.details,
            transport,
            queue,
        );
        let att = tokio::select! {
            r = attach => r?,
            _ = shared.shutdown.cancelled() => return Err(EdgeError::Draining),
        };
        // A connect is never forwarded: the balancer routes this user here now, so a scheduled
        // convergence close (`[cluster]`) is off.
        if let Some(cluster) = &shared.cluster {
            cluster.converge.cancel(&att.hub.app, &att.hub.user);
        }
        let device = req.device.as_deref();
        let device = device.filter(|_| prepared.identity.kind != crate::auth::TokenKind::Anonymous);
        crate::session::device::register_device(&att, device, &shared.hubs).await;
        Ok((prepared, att))
    };
    opened.await.inspect_err(|e| {
        shared
            .metrics
            .connect_rejected
            .with_label_values(&[transport.label(), e.class().label])
            .inc();
    })
}

/// True for ids in Stream's alphabet: letters, digits, `@`, `_`, `-`.
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_USER_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'-'))
}

/// Parses the query string of a connect request. `header_token` and `header_auth_type` are the
/// REST headers long-poll uses; the WebSocket carries both in the query.
///
/// # Errors
/// `BadInput` (code 4) naming what is wrong, `PayloadTooLarge` for oversized user details.
pub fn parse(
    query: &str,
    header_token: Option<&str>,
    header_auth_type: Option<&str>,
    max_details: usize,
) -> Result<ConnectRequest, EdgeError> {
    let mut json = None;
    let mut api_key = None;
    let mut token = header_token.map(str::to_string);
    let mut auth_type = header_auth_type.map(str::to_string);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "json" => json = Some(v),
            "api_key" => api_key = Some(v.into_owned()),
            "authorization" => token = Some(v.into_owned()),
            "stream-auth-type" => auth_type = Some(v.into_owned()),
            _ => {}
        }
    }
    let api_key = api_key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| EdgeError::BadInput("api_key is missing".into()))?;
    let json = json.ok_or_else(|| EdgeError::BadInput("json parameter is missing".into()))?;
    let payload: Payload<'_> = serde_json::from_str(&json).map_err(|e| {
        EdgeError::BadInput(format!(
            "json parameter is not a valid connect payload: {e}"
        ))
    })?;
    let details_id = match &payload.user_details {
        Some(d) => {
            if d.get().len() > max_details {
                return Err(EdgeError::PayloadTooLarge(format!(
                    "user_details is {} bytes, over the {max_details} byte limit",
                    d.get().len()
                )));
            }
            if !d.get().starts_with('{') {
                return Err(EdgeError::BadInput("user_details must be an object".into()));
            }
            let parsed: DetailsId<'_> = serde_json::from_str(d.get())
                .map_err(|_| EdgeError::BadInput("user_details.id must be a string".into()))?;
            parsed.id.map(Cow::into_owned)
        }
        None => None,
    };
    let user_id = payload
        .user_id
        .map(Cow::into_owned)
        .or_else(|| details_id.clone())
        .ok_or_else(|| EdgeError::BadInput("user_id is missing".into()))?;
    if !valid_user_id(&user_id) {
        return Err(EdgeError::BadInput(
            "user_id may only contain letters, digits, @, _ and - (at most 255)".into(),
        ));
    }
    if details_id.as_deref().is_some_and(|id| id != user_id) {
        return Err(EdgeError::BadInput(
            "user_details.id differs from user_id".into(),
        ));
    }
    let details = match (payload.user_details, details_id) {
        (Some(d), Some(_)) => d,
        (Some(d), None) => with_id(d.get(), &user_id)?,
        (None, _) => with_id("{}", &user_id)?,
    };
    // A malformed device is refused like malformed details (code 4), not silently ignored: the
    // app would otherwise never learn why its pushes do not arrive.
    let device = match &payload.device {
        Some(d) => crate::session::device::Device::parse(d.get())
            .map_err(|e| EdgeError::BadInput(e.to_string()))?
            .map(Box::new),
        None => None,
    };
    let anonymous = match auth_type.as_deref() {
        None | Some("jwt") | Some("") => false,
        Some("anonymous") => true,
        Some(_) => {
            return Err(EdgeError::BadInput(
                "stream-auth-type must be jwt or anonymous".into(),
            ))
        }
    };
    Ok(ConnectRequest {
        api_key,
        token: token.filter(|t| !t.is_empty()),
        anonymous,
        user_id,
        details,
        device,
    })
}

fn with_id(details: &str, id: &str) -> Result<Box<RawValue>, EdgeError> {
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(details)
        .map_err(|_| EdgeError::BadInput("user_details must be an object".into()))?;
    map.insert("id".into(), id.into());
    serde_json::value::to_raw_value(&map).map_err(|e| EdgeError::BadInput(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(json: &str) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("json", json)
            .append_pair("api_key", "k")
            .append_pair("authorization", "t")
            .append_pair("stream-auth-type", "jwt");
        s.finish()
    }

    #[test]
    fn sdk_payload_parses() {
        let r = parse(
            &q(r#"{"user_id":"alice","user_details":{"id":"alice","name":"A"},"client_request_id":"x"}"#),
            None,
            None,
            5120,
        )
        .unwrap();
        assert_eq!(r.user_id, "alice");
        assert_eq!(r.token.as_deref(), Some("t"));
        assert!(r.details.get().contains("\"name\":\"A\""));
    }

    #[test]
    fn details_get_an_id() {
        let r = parse(&q(r#"{"user_id":"bob"}"#), None, None, 5120).unwrap();
        assert_eq!(r.details.get(), r#"{"id":"bob"}"#);
    }

    #[test]
    fn bad_inputs_are_code_4_or_413() {
        let big = format!(
            r#"{{"user_id":"a","user_details":{{"id":"a","x":"{}"}}}}"#,
            "y".repeat(6000)
        );
        let cases = [
            "api_key=k".to_string(),
            q("not json"),
            q(r#"{"user_id":"a b"}"#),
            q(r#"{"user_id":"ä"}"#),
            q(r#"{"user_id":"a","user_details":{"id":"b"}}"#),
            q(r#"{"user_details":[1]}"#),
            q(&big),
        ];
        for c in cases {
            let e = parse(&c, None, None, 5120).unwrap_err();
            let class = e.class();
            assert_eq!(class.code, 4, "{c}: {e}");
        }
        let e = parse(&q(&big), None, None, 5120).unwrap_err();
        assert_eq!(e.class().status, http::StatusCode::PAYLOAD_TOO_LARGE);
    }
}
