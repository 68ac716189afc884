//! Votes on a poll, on the message carrying it: `POST /messages/{message_id}/polls/{poll_id}/vote`
//! (CastPollVote: an option vote or, with `answer_text`, an answer; with `enforce_unique_vote` or
//! `max_votes_allowed` reached a new vote replaces the oldest, `poll.vote_changed`), `DELETE
//! …/vote/{vote_id}` (the voter's own, `poll.vote_removed`) and `POST /polls/{id}/votes`
//! (QueryPollVotes). Events go where `polls::announce` sends them.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::message_lists::{count, cursor, simple_match};
use crate::messages::{at, locate};
use crate::polls::{announce, existing, text};
use crate::render_poll::{poll, vote};
use crate::req::Req;
use crate::store::{AppData, PollVote};

/// Votes and answers per poll; one more is refused.
pub(crate) const MAX_VOTES_PER_POLL: usize = 10_000;

/// The poll, checked to be the one `message_id` carries.
fn on_message(app: &AppData, message_id: &str, poll_id: &str) -> Result<(), ApiError> {
    let (cid, i) = locate(app, message_id)?;
    let carried = at(app, &cid, i).and_then(|(_, m)| m.extra.poll_id.clone());
    if carried.as_deref() != Some(poll_id) {
        return Err(ApiError::input(format!(
            "message {message_id} does not carry poll {poll_id}"
        )));
    }
    Ok(())
}

/// `POST /messages/{message_id}/polls/{poll_id}/vote` → `PollVoteResponse` (201).
pub(crate) fn cast(
    app: &mut AppData,
    req: &Req<'_>,
    message_id: &str,
    poll_id: &str,
) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    on_message(app, message_id, poll_id)?;
    let body = req
        .body
        .get("vote")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::input("vote must be an object"))?;
    let answer = text(body.get("answer_text"), "answer_text", false)?;
    let option_id = match body.get("option_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(o)) => Some(o.clone()),
        Some(_) => return Err(ApiError::input("option_id must be a string")),
    };
    let now = OffsetDateTime::now_utc();
    app.ensure_user(&user, now);
    let p = app
        .polls
        .get_mut(poll_id)
        .ok_or_else(|| ApiError::not_found(format!("poll {poll_id} does not exist")))?;
    if p.is_closed {
        return Err(ApiError::input(format!("poll {poll_id} is closed")));
    }
    let mine = |v: &PollVote| v.user_id == user;
    // Which earlier vote this one replaces, if any.
    let (replaces, option_id, answer) = match (option_id, answer) {
        (Some(o), None) => {
            if !p.options.iter().any(|x| x.id == o) {
                return Err(ApiError::input(format!("poll {poll_id} has no option {o}")));
            }
            if let Some(same) = p
                .votes
                .iter()
                .find(|v| mine(v) && v.option_id.as_ref() == Some(&o))
            {
                // Voting twice for one option changes nothing.
                let same = same.clone();
                let p = existing(app, poll_id)?;
                return Ok(
                    json!({ "vote": vote(app, p, &same, Some(&user)), "poll": poll(app, p, Some(&user)) }),
                );
            }
            let own: Vec<usize> = (0..p.votes.len())
                .filter(|&i| mine(&p.votes[i]) && p.votes[i].option_id.is_some())
                .collect();
            let cap = if p.enforce_unique_vote {
                Some(1)
            } else {
                p.max_votes_allowed
            };
            let replaces = match (cap, own.first()) {
                (Some(cap), Some(&oldest)) if own.len() >= cap as usize => Some(oldest),
                _ => None,
            };
            (replaces, Some(o), None)
        }
        (None, Some(a)) if !a.is_empty() => {
            if !p.allow_answers {
                return Err(ApiError::input(format!("poll {poll_id} takes no answers")));
            }
            let replaces = p
                .votes
                .iter()
                .position(|v| mine(v) && v.option_id.is_none());
            (replaces, None, Some(a))
        }
        _ => {
            return Err(ApiError::input(
                "a vote needs exactly one of option_id and answer_text",
            ))
        }
    };
    if replaces.is_none() && p.votes.len() >= MAX_VOTES_PER_POLL {
        return Err(ApiError::input(format!(
            "poll {poll_id} already has the most votes a poll may have ({MAX_VOTES_PER_POLL})"
        ))
        .at_bound("votes_per_poll"));
    }
    let new = PollVote {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user.clone(),
        option_id,
        answer_text: answer,
        created_at: now,
        updated_at: now,
    };
    let kind = match replaces {
        Some(i) => {
            p.votes.remove(i);
            "poll.vote_changed"
        }
        None => "poll.vote_casted",
    };
    p.votes.push(new.clone());
    p.updated_at = now;
    announce(app, poll_id, kind, Some(message_id), Some(&new), now);
    let p = existing(app, poll_id)?;
    Ok(json!({ "vote": vote(app, p, &new, Some(&user)), "poll": poll(app, p, Some(&user)) }))
}

/// `DELETE /messages/{message_id}/polls/{poll_id}/vote/{vote_id}` → `PollVoteResponse`: the
/// voter removes their vote; `poll.vote_removed`.
pub(crate) fn remove(
    app: &mut AppData,
    req: &Req<'_>,
    message_id: &str,
    poll_id: &str,
    vote_id: &str,
) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    on_message(app, message_id, poll_id)?;
    let p = app
        .polls
        .get_mut(poll_id)
        .ok_or_else(|| ApiError::not_found(format!("poll {poll_id} does not exist")))?;
    let i = p
        .votes
        .iter()
        .position(|v| v.id == vote_id && v.user_id == user)
        .ok_or_else(|| {
            ApiError::not_found(format!("vote {vote_id} of user {user} does not exist"))
        })?;
    let gone = p.votes.remove(i);
    let now = OffsetDateTime::now_utc();
    p.updated_at = now;
    announce(
        app,
        poll_id,
        "poll.vote_removed",
        Some(message_id),
        Some(&gone),
        now,
    );
    let p = existing(app, poll_id)?;
    Ok(json!({ "vote": vote(app, p, &gone, Some(&user)), "poll": poll(app, p, Some(&user)) }))
}

/// Votes per `QueryPollVotes` page unless `limit` says otherwise (at most 100), and the largest
/// cursor.
const DEFAULT_VOTES_PAGE: usize = 25;
const MAX_VOTES_OFFSET: usize = MAX_VOTES_PER_POLL;

/// `POST /polls/{id}/votes` → `PollVotesResponse`: newest first; `filter` on `option_id`,
/// `is_answer` and `user_id` (not on an anonymous poll's voters), `limit` and `next`.
pub(crate) fn votes(app: &AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let viewer = req.acting_user(None).ok();
    let p = existing(app, id)?;
    let empty = Map::new();
    let filter = match req.body.get("filter") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(f)) => f,
        Some(_) => return Err(ApiError::input("filter must be an object")),
    };
    let body = req.body.as_object().unwrap_or(&empty);
    let limit = count(body, "limit", DEFAULT_VOTES_PAGE, 100)?.max(1);
    let offset = cursor(req.body, MAX_VOTES_OFFSET)?;
    let mut hits: Vec<&PollVote> = Vec::new();
    for v in &p.votes {
        let mut ok = true;
        for (key, cond) in filter {
            let actual = match key.as_str() {
                "option_id" => json!(v.option_id.clone().unwrap_or_default()),
                "is_answer" => json!(v.answer_text.is_some()),
                "user_id" if p.voting_visibility != "anonymous" => json!(v.user_id),
                other => {
                    return Err(ApiError::input(format!(
                        "poll votes cannot be filtered by {other}"
                    )))
                }
            };
            ok &= simple_match(&actual, cond)?;
        }
        if ok {
            hits.push(v);
        }
    }
    hits.sort_by_key(|v| std::cmp::Reverse(v.created_at));
    let list: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(limit)
        .map(|v| vote(app, p, v, viewer.as_deref()))
        .collect();
    let mut out = Map::new();
    out.insert("votes".into(), Value::Array(list));
    if hits.len() > offset + limit {
        out.insert("next".into(), json!((offset + limit).to_string()));
    }
    Ok(Value::Object(out))
}
