//! Reactions: `POST /messages/{id}/reaction` (SendReaction; the same type again, or any type with
//! `enforce_unique`, replaces the user's earlier one), `DELETE /messages/{id}/reaction/{type}`
//! (DeleteReaction) and `GET /messages/{id}/reactions` (GetReactions, newest first, `limit` and
//! `offset`). Each change is a `reaction.new`, `reaction.updated` or `reaction.deleted` to the
//! channel's watchers; the message's counts, scores, groups and latest reactions are rendered by
//! `render_extra`, `own_reactions` per viewer.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::config::MAX_USER_BYTES;
use crate::error::ApiError;
use crate::events::{channel_base, to_watchers};
use crate::message_lists::{count, cursor, simple_match};
use crate::messages::{at, locate};
use crate::render::{self, custom_of};
use crate::render_chat;
use crate::render_extra::reaction;
use crate::req::Req;
use crate::store::{AppData, Reaction};

/// Reactions one message may hold (every user's, every type); one more is refused.
pub(crate) const MAX_REACTIONS_PER_MESSAGE: usize = 1000;
/// Longest reaction type.
const MAX_REACTION_TYPE: usize = 64;
/// Largest reaction score (Stream's scores are int32).
const MAX_REACTION_SCORE: u64 = i32::MAX as u64;
/// Reactions per `GetReactions` page unless `limit` says otherwise, the most one page may hold,
/// and the largest `offset`.
const DEFAULT_REACTIONS_PAGE: usize = 25;
const MAX_REACTIONS_PAGE: usize = 300;
const MAX_REACTIONS_OFFSET: usize = 1000;

/// `ReactionResponse` keys the server owns; never custom data.
const REACTION_RESERVED: &[&str] = &[
    "type",
    "score",
    "user",
    "user_id",
    "message_id",
    "created_at",
    "updated_at",
    "custom",
];

/// `POST /messages/{id}/reaction` → `SendReactionResponse` (201).
pub(crate) fn send(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let body = req
        .body
        .get("reaction")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::input("reaction must be an object"))?;
    let kind = body
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.chars().count() <= MAX_REACTION_TYPE)
        .ok_or_else(|| {
            ApiError::input(format!(
                "reaction.type must be a string of 1 to {MAX_REACTION_TYPE} characters"
            ))
        })?
        .to_owned();
    let score = match body.get("score") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .filter(|s| *s <= MAX_REACTION_SCORE)
            .and_then(|s| u32::try_from(s).ok())
            .ok_or_else(|| ApiError::input("reaction.score must be a non-negative int32"))?,
    };
    let mut custom = custom_of(body, REACTION_RESERVED);
    if let Some(Value::Object(extra)) = body.get("custom") {
        custom.extend(extra.clone());
    }
    if Value::Object(custom.clone()).to_string().len() > MAX_USER_BYTES {
        return Err(ApiError::input("reaction is too large"));
    }
    let hint = body.get("user_id").and_then(Value::as_str).or_else(|| {
        body.get("user")
            .and_then(|u| u.get("id"))
            .and_then(Value::as_str)
    });
    let actor = req.acting_user(hint)?;
    let unique = req.flag("enforce_unique");
    let (cid, i) = locate(app, id)?;
    let (_, m) = at(app, &cid, i).ok_or_else(|| ApiError::not_found("message does not exist"))?;
    if m.extra.deleted_at.is_some() {
        return Err(ApiError::input(format!(
            "message {id} was deleted and takes no reactions"
        )));
    }
    let own_same = m
        .extra
        .reactions
        .iter()
        .any(|r| r.user_id == actor && r.kind == kind);
    if !own_same && m.extra.reactions.len() >= MAX_REACTIONS_PER_MESSAGE {
        return Err(ApiError::input(format!(
            "message {id} already has the most reactions a message may have ({MAX_REACTIONS_PER_MESSAGE})"
        ))
        .at_bound("reactions_per_message"));
    }
    let now = OffsetDateTime::now_utc();
    app.ensure_user(&actor, now);
    let msg = app
        .channels
        .get_mut(&cid)
        .and_then(|ch| ch.messages.get_mut(i))
        .ok_or_else(|| ApiError::not_found("message does not exist"))?;
    let list = &mut msg.extra.reactions;
    let before = list.len();
    if unique {
        list.retain(|r| r.user_id != actor || r.kind == kind);
    }
    let replaced = list.len() < before || own_same;
    let stored = match list
        .iter_mut()
        .find(|r| r.user_id == actor && r.kind == kind)
    {
        Some(r) => {
            r.score = score;
            r.custom = custom;
            r.updated_at = now;
            r.clone()
        }
        None => {
            let r = Reaction {
                user_id: actor.clone(),
                kind,
                score,
                custom,
                created_at: now,
                updated_at: now,
            };
            list.push(r.clone());
            r
        }
    };
    let kind = if replaced {
        "reaction.updated"
    } else {
        "reaction.new"
    };
    announce(app, &cid, i, &actor, kind, &stored, now);
    answer(app, &cid, i, &actor, &stored)
}

/// `DELETE /messages/{id}/reaction/{type}` → `DeleteReactionResponse` (200).
pub(crate) fn delete(
    app: &mut AppData,
    req: &Req<'_>,
    id: &str,
    kind: &str,
) -> Result<Value, ApiError> {
    let actor = req.acting_user(None)?;
    let (cid, i) = locate(app, id)?;
    let msg = app
        .channels
        .get_mut(&cid)
        .and_then(|ch| ch.messages.get_mut(i))
        .ok_or_else(|| ApiError::not_found("message does not exist"))?;
    let list = &mut msg.extra.reactions;
    let pos = list
        .iter()
        .position(|r| r.user_id == actor && r.kind == kind)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "reaction {kind} of user {actor} on message {id} does not exist"
            ))
        })?;
    let gone = list.remove(pos);
    let now = OffsetDateTime::now_utc();
    announce(app, &cid, i, &actor, "reaction.deleted", &gone, now);
    answer(app, &cid, i, &actor, &gone)
}

/// `GET /messages/{id}/reactions` → `GetReactionsResponse`: newest first.
pub(crate) fn list(app: &AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let number = |key: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match req.query.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map(|n| n.min(max))
                .map_err(|_| ApiError::input(format!("{key} must be a non-negative number"))),
        }
    };
    let limit = number("limit", DEFAULT_REACTIONS_PAGE, MAX_REACTIONS_PAGE)?;
    let offset = number("offset", 0, MAX_REACTIONS_OFFSET)?;
    let (cid, i) = locate(app, id)?;
    let (_, m) = at(app, &cid, i).ok_or_else(|| ApiError::not_found("message does not exist"))?;
    let mut newest: Vec<&Reaction> = m.extra.reactions.iter().collect();
    newest.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let reactions: Vec<Value> = newest
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| reaction(app, &m.id, r))
        .collect();
    Ok(json!({ "reactions": reactions }))
}

fn answer(
    app: &AppData,
    cid: &str,
    i: usize,
    actor: &str,
    r: &Reaction,
) -> Result<Value, ApiError> {
    let (_, m) = at(app, cid, i).ok_or_else(|| ApiError::not_found("message does not exist"))?;
    Ok(json!({
        "message": render_chat::message_for(app, cid, m, Some(actor)),
        "reaction": reaction(app, &m.id, r),
    }))
}

/// A reaction event to the channel's watchers.
fn announce(
    app: &AppData,
    cid: &str,
    i: usize,
    actor: &str,
    kind: &str,
    r: &Reaction,
    now: OffsetDateTime,
) {
    let Some((ch, m)) = at(app, cid, i) else {
        return;
    };
    let mut ev: Map<String, Value> = channel_base(app, kind, cid, now);
    ev.insert("channel".into(), render_chat::channel(app, ch));
    ev.insert("message_id".into(), json!(m.id));
    ev.insert("message".into(), render_chat::message(app, cid, m));
    ev.insert("reaction".into(), reaction(app, &m.id, r));
    ev.insert("user".into(), render::user(app, actor));
    ev.insert("channel_member_count".into(), json!(ch.members.len()));
    ev.insert("channel_message_count".into(), json!(ch.message_count));
    to_watchers(app, cid, &Value::Object(ev));
}

/// `POST /messages/{id}/reactions` → `QueryReactionsResponse`: newest first, `filter` on `type`
/// and `user_id`, `limit` and the `next` cursor.
pub(crate) fn query(app: &AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let empty = Map::new();
    let filter = match req.body.get("filter") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(f)) => f,
        Some(_) => return Err(ApiError::input("filter must be an object")),
    };
    let body = req.body.as_object().unwrap_or(&empty);
    let limit = count(body, "limit", DEFAULT_REACTIONS_PAGE, 100)?.max(1);
    let offset = cursor(req.body, MAX_REACTIONS_OFFSET)?;
    let (cid, i) = locate(app, id)?;
    let (_, m) = at(app, &cid, i).ok_or_else(|| ApiError::not_found("message does not exist"))?;
    let mut hits: Vec<&Reaction> = Vec::new();
    for r in &m.extra.reactions {
        let mut ok = true;
        for (key, cond) in filter {
            let actual = match key.as_str() {
                "type" => json!(r.kind),
                "user_id" => json!(r.user_id),
                other => {
                    return Err(ApiError::input(format!(
                        "reactions cannot be filtered by {other}"
                    )))
                }
            };
            ok &= simple_match(&actual, cond)?;
        }
        if ok {
            hits.push(r);
        }
    }
    hits.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let reactions: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| reaction(app, &m.id, r))
        .collect();
    let mut out = Map::new();
    out.insert("reactions".into(), Value::Array(reactions));
    if hits.len() > offset + limit {
        out.insert("next".into(), json!((offset + limit).to_string()));
    }
    Ok(Value::Object(out))
}
