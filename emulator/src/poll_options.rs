//! A poll's options one by one, and the poll list: `GET /polls/{id}/options/{option_id}`
//! (GetPollOption), `PUT /polls/{id}/options` (UpdatePollOption: text and custom data), `DELETE
//! /polls/{id}/options/{option_id}` (its votes go with it), each change a `poll.updated`; and
//! `POST /polls/query` (QueryPolls: the polls the caller created or can see on a message of one
//! of their channels, newest first, `filter` on `id`, `is_closed`, `created_by_id`, `name`).

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::message_lists::{count, cursor, simple_match};
use crate::polls::{announce, existing, new_option, owned};
use crate::render_poll::{option, poll};
use crate::req::Req;
use crate::store::{AppData, Poll};

/// Polls per `QueryPolls` page unless `limit` says otherwise (at most 100), and the largest cursor.
const DEFAULT_POLLS_PAGE: usize = 10;
const MAX_POLLS_OFFSET: usize = 10_000;

/// `GET /polls/{id}/options/{option_id}` → `PollOptionResponse`.
pub(crate) fn get(app: &AppData, id: &str, option_id: &str) -> Result<Value, ApiError> {
    let p = existing(app, id)?;
    let o = p
        .options
        .iter()
        .find(|o| o.id == option_id)
        .ok_or_else(|| ApiError::not_found(format!("poll {id} has no option {option_id}")))?;
    Ok(json!({ "poll_option": option(o) }))
}

/// `PUT /polls/{id}/options` → `PollOptionResponse` (201): the option named by `id` takes the new
/// text and custom data.
pub(crate) fn update(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let option_id = req
        .body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::input("id is required"))?
        .to_owned();
    let mut new = new_option(req.body)?;
    let p = owned(app, req, id)?;
    let o = p
        .options
        .iter_mut()
        .find(|o| o.id == option_id)
        .ok_or_else(|| ApiError::not_found(format!("poll {id} has no option {option_id}")))?;
    new.id = option_id;
    *o = new;
    let rendered = option(o);
    let now = OffsetDateTime::now_utc();
    p.updated_at = now;
    announce(app, id, "poll.updated", None, None, now);
    Ok(json!({ "poll_option": rendered }))
}

/// `DELETE /polls/{id}/options/{option_id}` → `Response`.
pub(crate) fn delete(
    app: &mut AppData,
    req: &Req<'_>,
    id: &str,
    option_id: &str,
) -> Result<Value, ApiError> {
    let p = owned(app, req, id)?;
    let before = p.options.len();
    p.options.retain(|o| o.id != option_id);
    if p.options.len() == before {
        return Err(ApiError::not_found(format!(
            "poll {id} has no option {option_id}"
        )));
    }
    p.votes
        .retain(|v| v.option_id.as_deref() != Some(option_id));
    let now = OffsetDateTime::now_utc();
    p.updated_at = now;
    announce(app, id, "poll.updated", None, None, now);
    Ok(json!({}))
}

/// Whether `user` may see poll `p`: they created it, or it is on a message of a channel of theirs.
fn visible(app: &AppData, p: &Poll, user: &str) -> bool {
    p.created_by == user
        || app.channels.values().any(|ch| {
            ch.members.iter().any(|m| m.user_id == user)
                && ch
                    .messages
                    .iter()
                    .any(|m| m.extra.poll_id.as_deref() == Some(p.id.as_str()))
        })
}

/// `POST /polls/query` → `QueryPollsResponse` (201).
pub(crate) fn query(app: &AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let viewer = match req.ident {
        Identity::User(id) => Some(id.as_str()),
        Identity::Server => None,
    };
    let empty = Map::new();
    let filter = match req.body.get("filter") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(f)) => f,
        Some(_) => return Err(ApiError::input("filter must be an object")),
    };
    let body = req.body.as_object().unwrap_or(&empty);
    let limit = count(body, "limit", DEFAULT_POLLS_PAGE, 100)?.max(1);
    let offset = cursor(req.body, MAX_POLLS_OFFSET)?;
    let mut hits: Vec<&Poll> = Vec::new();
    for p in app.polls.values() {
        if viewer.is_some_and(|v| !visible(app, p, v)) {
            continue;
        }
        let mut ok = true;
        for (key, cond) in filter {
            let actual = match key.as_str() {
                "id" => json!(p.id),
                "is_closed" => json!(p.is_closed),
                "created_by_id" => json!(p.created_by),
                "name" => json!(p.name),
                other => {
                    return Err(ApiError::input(format!(
                        "polls cannot be filtered by {other}"
                    )))
                }
            };
            ok &= simple_match(&actual, cond)?;
        }
        if ok {
            hits.push(p);
        }
    }
    hits.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    let polls: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(limit)
        .map(|p| poll(app, p, viewer))
        .collect();
    let mut out = Map::new();
    out.insert("polls".into(), Value::Array(polls));
    if hits.len() > offset + limit {
        out.insert("next".into(), json!((offset + limit).to_string()));
    }
    Ok(Value::Object(out))
}
