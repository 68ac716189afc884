//! REST requests: authentication (api key + JWT), the bounded JSON body, and
//! dispatch to the route handlers (which receive a [`Req`]).

use std::collections::HashMap;

use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::auth::{self, Identity};
use crate::config::MAX_BODY_BYTES;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::req::{check_id, Req};
use crate::{actions, channels, devices, hiding, members, query, threads, users};

/// Authenticates a REST request and runs its handler; returns the status and
/// the body (without `duration`, which the caller adds).
pub(crate) async fn dispatch(
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
    let (ident, iat) = auth::verify(token, &secrets)?;
    let method = req.method().clone();
    let body = read_body(req).await?;
    let r = Req {
        ident: &ident,
        query,
        body: &body,
    };

    let mut store = ctx.emulator.lock();
    if store.faults.fail_user_queries && method == Method::GET && segs == ["users"] {
        return Err(ApiError::new(
            0,
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected fault: user queries fail",
        ));
    }
    let app = store
        .apps
        .get_mut(key)
        .ok_or_else(ApiError::unknown_api_key)?;
    if let Identity::User(user) = &ident {
        if app.token_revoked(user, iat) {
            return Err(auth::revoked());
        }
    }
    let created = StatusCode::CREATED;
    let cid = |t: &str, id: &str| -> Result<String, ApiError> {
        check_id(t)?;
        check_id(id)?;
        Ok(format!("{t}:{id}"))
    };
    Ok(match (&method, segs) {
        (&Method::POST, ["channels"]) => (created, query::query_channels(app, &r)?),
        (&Method::POST, ["channels", t, "query"]) => (created, channels::query(app, &r, t, None)?),
        (&Method::POST, ["channels", t, id]) => (created, members::update(app, &r, &cid(t, id)?)?),
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
        (&Method::POST, ["channels", t, id, "hide"]) => {
            (created, hiding::hide(app, &r, &cid(t, id)?)?)
        }
        (&Method::POST, ["channels", t, id, "show"]) => {
            (created, hiding::show(app, &r, &cid(t, id)?)?)
        }
        (&Method::POST, ["channels", t, id, "stop-watching"]) => {
            (created, actions::stop_watching(app, &r, &cid(t, id)?)?)
        }
        (&Method::GET, ["messages", id, "replies"]) => {
            (StatusCode::OK, threads::replies(app, &r, id)?)
        }
        (&Method::POST, ["threads"]) => (created, threads::query(app, &r)?),
        (&Method::GET, ["threads", id]) => (StatusCode::OK, threads::get(app, &r, id)?),
        (&Method::PATCH, ["threads", id]) => (StatusCode::OK, threads::update(app, &r, id)?),
        (&Method::GET, ["users"]) => (StatusCode::OK, users::query(app, &r)?),
        (&Method::POST, ["users"]) => (created, users::upsert(app, &ident, &body)?),
        (&Method::PATCH, ["users"]) => (StatusCode::OK, users::partial(app, &ident, &body)?),
        (&Method::POST, ["devices"]) => (created, devices::create(app, &ident, &body)?),
        (&Method::GET, ["devices"]) => (StatusCode::OK, devices::list(app, &ident, query)?),
        (&Method::DELETE, ["devices"]) => (StatusCode::OK, devices::delete(app, &ident, query)?),
        (&Method::GET, ["app"]) => (StatusCode::OK, users::app_settings(app)),
        (&Method::PATCH, ["app"]) => (
            StatusCode::OK,
            users::update_app_settings(app, &ident, &body)?,
        ),
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
