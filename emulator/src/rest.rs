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
use crate::{
    actions, app_settings, bans, blocks, channel_admin, channels, devices, drafts, guests, hiding,
    member_state, members, mutes, query, reads, reminders, threads, user_lifecycle, user_query,
    users,
};

/// Authenticates a REST request and runs its handler; returns the status and
/// the body (without `duration`, which the caller adds).
pub(crate) async fn dispatch(
    req: Request<Incoming>,
    segs: &[&str],
    query: &HashMap<String, String>,
    ctx: &Ctx,
) -> Result<(StatusCode, Value), ApiError> {
    let key = query.get("api_key").ok_or_else(ApiError::unknown_api_key)?;
    if req.method() == Method::POST && segs == ["guest"] {
        // `setGuestUser` calls anonymously: the guest has no token until this answers.
        let body = read_body(req).await?;
        let mut store = ctx.emulator.lock();
        let app = store
            .apps
            .get_mut(key)
            .ok_or_else(ApiError::unknown_api_key)?;
        return Ok((StatusCode::CREATED, guests::create(app, &body)?));
    }
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
        if user_lifecycle::refused(app, user) {
            return Err(ApiError::forbidden(format!(
                "user {user} was deactivated or deleted"
            )));
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
        (&Method::PATCH, ["channels", t, id]) => (
            StatusCode::OK,
            channel_admin::partial_update(app, &r, &cid(t, id)?)?,
        ),
        (&Method::DELETE, ["channels", t, id]) => (
            StatusCode::OK,
            channel_admin::delete(app, &r, &cid(t, id)?)?,
        ),
        (&Method::POST, ["channels", "delete"]) => (created, channel_admin::delete_many(app, &r)?),
        (&Method::POST, ["channels", t, id, "truncate"]) => {
            (created, channel_admin::truncate(app, &r, &cid(t, id)?)?)
        }
        (&Method::PATCH, ["channels", t, id, "member"]) => (
            StatusCode::OK,
            member_state::update(app, &r, &cid(t, id)?, None)?,
        ),
        (&Method::PATCH, ["channels", t, id, "member", user]) => (
            StatusCode::OK,
            member_state::update(app, &r, &cid(t, id)?, Some(user))?,
        ),
        (&Method::POST, ["channels", t, id, "unread"]) => {
            (created, reads::mark_unread(app, &r, &cid(t, id)?)?)
        }
        (&Method::POST, ["channels", "read"]) => (created, reads::mark_all_read(app, &r)?),
        (&Method::POST, ["channels", "delivered"]) => (created, reads::mark_delivered(app, &r)?),
        (&Method::GET, ["unread"]) => (StatusCode::OK, reads::unread_counts(app, &r)?),
        (&Method::POST, ["sync"]) => (created, reads::sync(app, &r)?),
        (&Method::POST, ["channels", t, id, "draft"]) => {
            (created, drafts::create(app, &r, &cid(t, id)?)?)
        }
        (&Method::GET, ["channels", t, id, "draft"]) => {
            (StatusCode::OK, drafts::get(app, &r, &cid(t, id)?)?)
        }
        (&Method::DELETE, ["channels", t, id, "draft"]) => {
            (StatusCode::OK, drafts::delete(app, &r, &cid(t, id)?)?)
        }
        (&Method::POST, ["drafts", "query"]) => (created, drafts::query(app, &r)?),
        (&Method::POST, ["messages", id, "reminders"]) => {
            (created, reminders::create(app, &r, id)?)
        }
        (&Method::PATCH, ["messages", id, "reminders"]) => {
            (StatusCode::OK, reminders::update(app, &r, id)?)
        }
        (&Method::DELETE, ["messages", id, "reminders"]) => {
            (StatusCode::OK, reminders::delete(app, &r, id)?)
        }
        (&Method::POST, ["reminders", "query"]) => (created, reminders::query(app, &r)?),
        (&Method::GET, ["members"]) => (StatusCode::OK, member_state::query(app, &r)?),
        (&Method::POST, ["moderation", "mute"]) => (created, mutes::mute(app, &r)?),
        (&Method::POST, ["moderation", "unmute"]) => (created, mutes::unmute(app, &r)?),
        (&Method::POST, ["moderation", "mute", "channel"]) => {
            (created, mutes::mute_channel(app, &r)?)
        }
        (&Method::POST, ["moderation", "unmute", "channel"]) => {
            (created, mutes::unmute_channel(app, &r)?)
        }
        (&Method::GET, ["messages", id, "replies"]) => {
            (StatusCode::OK, threads::replies(app, &r, id)?)
        }
        (&Method::POST, ["threads"]) => (created, threads::query(app, &r)?),
        (&Method::GET, ["threads", id]) => (StatusCode::OK, threads::get(app, &r, id)?),
        (&Method::PATCH, ["threads", id]) => (StatusCode::OK, threads::update(app, &r, id)?),
        (&Method::GET, ["users"]) => (StatusCode::OK, user_query::query(app, &r)?),
        (&Method::POST, ["users", id, "deactivate"]) => {
            (created, user_lifecycle::deactivate(app, &r, id)?)
        }
        (&Method::POST, ["users", id, "reactivate"]) => {
            (created, user_lifecycle::reactivate(app, &r, id)?)
        }
        (&Method::DELETE, ["users", id]) => (StatusCode::OK, user_lifecycle::delete(app, &r, id)?),
        (&Method::POST, ["users", "block"]) => (created, blocks::block(app, &r)?),
        (&Method::POST, ["users", "unblock"]) => (created, blocks::unblock(app, &r)?),
        (&Method::GET, ["users", "block"]) => (StatusCode::OK, blocks::list(app, &r)?),
        (&Method::POST, ["moderation", "ban"]) => (created, bans::ban(app, &r)?),
        (&Method::DELETE, ["moderation", "ban"]) => (StatusCode::OK, bans::unban(app, &r)?),
        (&Method::POST, ["moderation", "flag"]) => (created, bans::flag(app, &r)?),
        (&Method::POST, ["moderation", "unflag"]) => (created, bans::unflag(app, &r)?),
        (&Method::POST, ["users"]) => (created, users::upsert(app, &ident, &body)?),
        (&Method::PATCH, ["users"]) => (StatusCode::OK, users::partial(app, &ident, &body)?),
        (&Method::POST, ["devices"]) => (created, devices::create(app, &ident, &body)?),
        (&Method::GET, ["devices"]) => (StatusCode::OK, devices::list(app, &ident, query)?),
        (&Method::DELETE, ["devices"]) => (StatusCode::OK, devices::delete(app, &ident, query)?),
        (&Method::GET, ["app"]) => (StatusCode::OK, app_settings::get(app)),
        (&Method::PATCH, ["app"]) => (StatusCode::OK, app_settings::update(app, &ident, &body)?),
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
