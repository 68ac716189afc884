//! Blocking users: `POST /users/block`, `POST /users/unblock`, `GET /users/block` (the SDK's
//! `blockUser`, `unBlockUser`, `getBlockedUsers`). The blocks live in `social` and show in the
//! blocker's `me.blocked_user_ids`. Stream documents no event for a block; the SDK updates its
//! own `blockedUsers` from the responses, so none is sent.
//!
//! What a block does (Stream's "Block User" docs): in a one-to-one channel the blocker gets no
//! events from the blocked user (`events::blocked_in`), and such channels leave the blocker's
//! channel list like hidden ones (`hiding::blocked_dm`), and their messages there add nothing to
//! the blocker's unread count ([`uncount_for_blockers`]); group channels are unaffected.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::render::{self, ts};
use crate::req::{check_id, Req};
use crate::social::MAX_MUTES_PER_USER;
use crate::store::AppData;

fn target(req: &Req<'_>) -> Result<String, ApiError> {
    let id = req
        .body
        .get("blocked_user_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::input("blocked_user_id is required"))?;
    check_id(id)?;
    Ok(id.to_owned())
}

/// `POST /users/block` → `BlockUsersResponse`.
pub(crate) fn block(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let blocked = target(req)?;
    if blocked == user {
        return Err(ApiError::input("a user cannot block themselves"));
    }
    if !app.users.contains_key(&blocked) {
        return Err(ApiError::not_found(format!(
            "user {blocked} does not exist"
        )));
    }
    let now = OffsetDateTime::now_utc();
    let social = app.social.users.entry(user.clone()).or_default();
    let at = match social.blocked.iter().find(|(id, _)| *id == blocked) {
        Some((_, at)) => *at,
        None => {
            if social.blocked.len() >= MAX_MUTES_PER_USER {
                return Err(ApiError::input(format!(
                    "a user can block at most {MAX_MUTES_PER_USER} users"
                ))
                .at_bound("blocks_per_user"));
            }
            social.blocked.push((blocked.clone(), now));
            now
        }
    };
    Ok(json!({
        "blocked_by_user_id": user,
        "blocked_user_id": blocked,
        "created_at": ts(at),
    }))
}

/// `POST /users/unblock` → `UnblockUsersResponse`.
pub(crate) fn unblock(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let blocked = target(req)?;
    if let Some(social) = app.social.users.get_mut(&user) {
        social.blocked.retain(|(id, _)| *id != blocked);
    }
    Ok(json!({}))
}

/// `GET /users/block` → `GetBlockedUsersResponse`.
pub(crate) fn list(app: &AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let blocks: Vec<Value> = app
        .social
        .users
        .get(&user)
        .map(|s| {
            s.blocked
                .iter()
                .map(|(id, at)| {
                    json!({
                        "user_id": user,
                        "user": render::user(app, &user),
                        "blocked_user_id": id,
                        "blocked_user": render::user(app, id),
                        "created_at": ts(*at),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({ "blocks": blocks }))
}

/// A message `sender` just sent to one-to-one channel `cid` does not count as unread for a member
/// who blocked them (Stream's "Block User": blocked users' messages do not add to unread counts).
pub(crate) fn uncount_for_blockers(app: &mut AppData, cid: &str, sender: &str) {
    let Some(ch) = app.channels.get(cid).filter(|ch| ch.members.len() == 2) else {
        return;
    };
    let blockers: Vec<String> = ch
        .members
        .iter()
        .filter(|m| m.user_id != sender)
        .filter(|m| {
            app.social
                .users
                .get(&m.user_id)
                .is_some_and(|u| u.blocked.iter().any(|(id, _)| id == sender))
        })
        .map(|m| m.user_id.clone())
        .collect();
    for user in blockers {
        if let Some(read) = app
            .channels
            .get_mut(cid)
            .and_then(|ch| ch.reads.get_mut(&user))
        {
            read.unread = read.unread.saturating_sub(1);
        }
    }
}
