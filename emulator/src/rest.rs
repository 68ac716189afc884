//! REST requests: authentication (api key + JWT), the bounded JSON body, and
//! dispatch to the route handlers (which receive a [`Req`]).

use std::collections::HashMap;

use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::auth::{self, Identity};
use crate::config::{MAX_BODY_BYTES, MAX_UPLOAD_BYTES};
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::req::{check_id, Req};
use crate::{
    actions, app_settings, banned_users, bans, blocks, channel_admin, channel_types, channels,
    deletion, devices, drafts, guests, hiding, member_state, members, message_lists, messages,
    mutes, poll_options, poll_votes, polls, query, reactions, reads, reminders, search, threads,
    uploads, user_lifecycle, user_query, users,
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
    // Uploads are multipart with a larger bound; every other body is JSON.
    let upload_route =
        method == Method::POST && matches!(segs, ["channels", _, _, "file" | "image"]);
    let boundary = upload_route
        .then(|| uploads::boundary(req.headers()))
        .flatten();
    let (body, form) = match boundary {
        Some(boundary) => {
            let base = uploads::base_url(req.headers());
            let bytes = read_bytes(req, MAX_UPLOAD_BYTES).await?;
            (
                json!({}),
                Some(uploads::Form {
                    boundary,
                    base,
                    body: bytes,
                }),
            )
        }
        None => (read_body(req).await?, None),
    };
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
        (&Method::GET, ["channels", t, id, "pinned_messages"]) => (
            StatusCode::OK,
            message_lists::pinned(app, &r, &cid(t, id)?)?,
        ),
        (&Method::POST, ["channels", t, id, kind @ ("file" | "image")]) => {
            let cid = cid(t, id)?;
            let image = *kind == "image";
            (
                created,
                uploads::upload(app, &r, key, &cid, image, form.as_ref())?,
            )
        }
        (&Method::DELETE, ["channels", t, id, "file" | "image"]) => {
            (StatusCode::OK, uploads::delete(app, &r, &cid(t, id)?)?)
        }
        (&Method::POST, ["polls"]) => (created, polls::create(app, &r)?),
        (&Method::PUT, ["polls"]) => (created, polls::update(app, &r)?),
        (&Method::POST, ["polls", "query"]) => (created, poll_options::query(app, &r)?),
        (&Method::PUT, ["polls", id, "options"]) => (created, poll_options::update(app, &r, id)?),
        (&Method::GET, ["polls", id, "options", oid]) => {
            (StatusCode::OK, poll_options::get(app, id, oid)?)
        }
        (&Method::DELETE, ["polls", id, "options", oid]) => {
            (StatusCode::OK, poll_options::delete(app, &r, id, oid)?)
        }
        (&Method::GET, ["polls", id]) => (StatusCode::OK, polls::get(app, &r, id)?),
        (&Method::PATCH, ["polls", id]) => (StatusCode::OK, polls::partial(app, &r, id)?),
        (&Method::DELETE, ["polls", id]) => (StatusCode::OK, polls::delete(app, &r, id)?),
        (&Method::POST, ["polls", id, "options"]) => (created, polls::add_option(app, &r, id)?),
        (&Method::POST, ["messages", mid, "polls", pid, "vote"]) => {
            (created, poll_votes::cast(app, &r, mid, pid)?)
        }
        (&Method::DELETE, ["messages", mid, "polls", pid, "vote", vid]) => {
            (StatusCode::OK, poll_votes::remove(app, &r, mid, pid, vid)?)
        }
        (&Method::GET, ["search"]) => (StatusCode::OK, search::search(app, &r)?),
        (&Method::GET, ["messages", id]) => (StatusCode::OK, messages::get(app, &r, id)?),
        (&Method::POST, ["messages", id]) => (created, messages::update(app, &r, id)?),
        (&Method::PUT, ["messages", id]) => (created, messages::partial(app, &r, id)?),
        (&Method::DELETE, ["messages", id]) => (StatusCode::OK, deletion::delete(app, &r, id)?),
        (&Method::POST, ["messages", id, "undelete"]) => {
            (created, deletion::undelete(app, &r, id)?)
        }
        (&Method::POST, ["messages", id, "reaction"]) => (created, reactions::send(app, &r, id)?),
        (&Method::DELETE, ["messages", id, "reaction", kind]) => {
            (StatusCode::OK, reactions::delete(app, &r, id, kind)?)
        }
        (&Method::POST, ["messages", id, "reactions"]) => (created, reactions::query(app, &r, id)?),
        (&Method::GET, ["channels", t, id, "messages"]) => {
            (StatusCode::OK, message_lists::many(app, &r, &cid(t, id)?)?)
        }
        (&Method::POST, ["polls", id, "votes"]) => (created, poll_votes::votes(app, &r, id)?),
        (&Method::GET, ["messages", id, "reactions"]) => {
            (StatusCode::OK, reactions::list(app, &r, id)?)
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
        (&Method::GET, ["query_banned_users"]) => (StatusCode::OK, banned_users::query(app, &r)?),
        (&Method::POST, ["moderation", "flag"]) => (created, bans::flag(app, &r)?),
        (&Method::POST, ["moderation", "unflag"]) => (created, bans::unflag(app, &r)?),
        (&Method::POST, ["users"]) => (created, users::upsert(app, &ident, &body)?),
        (&Method::PATCH, ["users"]) => (StatusCode::OK, users::partial(app, &ident, &body)?),
        (&Method::POST, ["devices"]) => (created, devices::create(app, &ident, &body)?),
        (&Method::GET, ["devices"]) => (StatusCode::OK, devices::list(app, &ident, query)?),
        (&Method::DELETE, ["devices"]) => (StatusCode::OK, devices::delete(app, &ident, query)?),
        (&Method::GET, ["app"]) => (StatusCode::OK, app_settings::get(app)),
        (&Method::GET, ["channeltypes"]) => (StatusCode::OK, channel_types::list(app)),
        (&Method::GET, ["channeltypes", name]) => (StatusCode::OK, channel_types::get(app, name)?),
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
    let bytes = read_bytes(req, MAX_BODY_BYTES).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::input(format!("body is not valid JSON: {e}")))
}

/// Reads a body of at most `limit` bytes (413 beyond it, before reading when it says so).
async fn read_bytes(req: Request<Incoming>, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(limit)),
        Err(_) => Err(ApiError::input("could not read the request body")),
    }
}
