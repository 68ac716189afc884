//! Polls: `POST /polls` (CreatePoll), `GET /polls/{id}`, `PATCH /polls/{id}` (UpdatePollPartial:
//! `set`/`unset`; `is_closed: true` closes it), `DELETE /polls/{id}`, `POST /polls/{id}/options`
//! (CreatePollOption); votes are in `poll_votes`. A message carries a poll by sending its
//! `poll_id`.
//!
//! Events (recipients inferred, as `stream-event-recipients.md` notes: the watchers of the channel
//! of every message carrying the poll): `poll.vote_casted`, `poll.vote_changed`,
//! `poll.vote_removed`, `poll.updated`, `poll.closed`, `poll.deleted`. Only the creator (or a
//! server token) changes, closes or deletes a poll.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::auth::Identity;
use crate::config::MAX_USER_BYTES;
use crate::error::ApiError;
use crate::events::{channel_base, to_watchers};
use crate::render::custom_of;
use crate::render_poll::{option, poll, vote};
use crate::req::{check_id, Req};
use crate::store::{AppData, Poll, PollOption, PollVote};

/// Polls one app keeps; creating one more is refused.
pub(crate) const MAX_POLLS_PER_APP: usize = 10_000;
/// Options per poll (the spec's `maxItems`).
const MAX_POLL_OPTIONS: usize = 100;
/// Largest `max_votes_allowed` (the spec's maximum).
const MAX_VOTES_ALLOWED: u64 = 10;
/// Longest poll name, description, option text or answer.
const MAX_POLL_TEXT: usize = 1000;

/// Poll keys the server owns or types itself; never custom data.
const POLL_TYPED: &[&str] = &[
    "id",
    "name",
    "description",
    "options",
    "voting_visibility",
    "enforce_unique_vote",
    "allow_answers",
    "allow_user_suggested_options",
    "max_votes_allowed",
    "is_closed",
    "custom",
    "user",
    "user_id",
    "created_by",
    "created_by_id",
    "created_at",
    "updated_at",
    "vote_count",
    "answers_count",
    "vote_counts_by_option",
    "latest_votes_by_option",
    "latest_answers",
    "own_votes",
];

pub(crate) fn text(
    v: Option<&Value>,
    key: &str,
    required: bool,
) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(s))
            if s.chars().count() <= MAX_POLL_TEXT && !(required && s.is_empty()) =>
        {
            Ok(Some(s.clone()))
        }
        _ => Err(ApiError::input(format!(
            "{key} must be a {}string of at most {MAX_POLL_TEXT} characters",
            if required { "non-empty " } else { "" }
        ))),
    }
}

fn flag(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::input(format!("{key} must be a boolean"))),
    }
}

pub(crate) fn new_option(v: &Value) -> Result<PollOption, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::input("poll options must be objects with text"))?;
    let mut custom = custom_of(obj, &["id", "text", "custom"]);
    if let Some(Value::Object(extra)) = obj.get("custom") {
        custom.extend(extra.clone());
    }
    Ok(PollOption {
        id: uuid::Uuid::new_v4().to_string(),
        text: text(obj.get("text"), "option text", true)?.unwrap_or_default(),
        custom,
    })
}

/// Applies the typed fields and custom data of `obj` (a create body or a partial `set`).
fn apply(p: &mut Poll, obj: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(name) = text(obj.get("name"), "name", obj.contains_key("name"))? {
        p.name = name;
    }
    if let Some(d) = text(obj.get("description"), "description", false)? {
        p.description = d;
    }
    match obj.get("voting_visibility") {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if v == "public" || v == "anonymous" => {
            p.voting_visibility.clone_from(v);
        }
        Some(_) => {
            return Err(ApiError::input(
                "voting_visibility must be public or anonymous",
            ))
        }
    }
    for (key, slot) in [
        ("enforce_unique_vote", &mut p.enforce_unique_vote),
        ("allow_answers", &mut p.allow_answers),
        (
            "allow_user_suggested_options",
            &mut p.allow_user_suggested_options,
        ),
        ("is_closed", &mut p.is_closed),
    ] {
        if let Some(b) = flag(obj, key)? {
            *slot = b;
        }
    }
    match obj.get("max_votes_allowed") {
        None => {}
        Some(Value::Null) => p.max_votes_allowed = None,
        Some(v) => {
            let n = v
                .as_u64()
                .filter(|n| (1..=MAX_VOTES_ALLOWED).contains(n))
                .ok_or_else(|| {
                    ApiError::input(format!(
                        "max_votes_allowed must be between 1 and {MAX_VOTES_ALLOWED}"
                    ))
                })?;
            p.max_votes_allowed = u32::try_from(n).ok();
        }
    }
    p.custom.extend(custom_of(obj, POLL_TYPED));
    if let Some(Value::Object(extra)) = obj.get("custom") {
        p.custom.extend(extra.clone());
    }
    if Value::Object(p.custom.clone()).to_string().len() > MAX_USER_BYTES {
        return Err(ApiError::input("poll data is too large"));
    }
    Ok(())
}

/// `POST /polls` → `PollResponse` (201).
pub(crate) fn create(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let body = req
        .body
        .as_object()
        .ok_or_else(|| ApiError::input("the body must be an object"))?;
    if app.polls.len() >= MAX_POLLS_PER_APP {
        return Err(ApiError::input(format!(
            "this app already has the most polls it may have ({MAX_POLLS_PER_APP})"
        ))
        .at_bound("polls_per_app"));
    }
    let id = match body.get("id") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(id)) => {
            check_id(id)?;
            if app.polls.contains_key(id) {
                return Err(ApiError::input(format!("poll {id} already exists")));
            }
            id.clone()
        }
        Some(_) => return Err(ApiError::input("id must be a string")),
    };
    let options = match body.get("options") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= MAX_POLL_OPTIONS => {
            list.iter().map(new_option).collect::<Result<_, _>>()?
        }
        Some(_) => {
            return Err(ApiError::input(format!(
                "options must be an array of at most {MAX_POLL_OPTIONS}"
            )))
        }
    };
    let now = OffsetDateTime::now_utc();
    let mut p = Poll {
        id: id.clone(),
        name: String::new(),
        description: String::new(),
        created_by: user.clone(),
        created_at: now,
        updated_at: now,
        options,
        votes: Vec::new(),
        voting_visibility: "public".into(),
        enforce_unique_vote: false,
        allow_answers: false,
        allow_user_suggested_options: false,
        max_votes_allowed: None,
        is_closed: false,
        custom: Map::new(),
    };
    if !body.contains_key("name") {
        return Err(ApiError::input("name is required"));
    }
    apply(&mut p, body)?;
    app.ensure_user(&user, now);
    app.polls.insert(id.clone(), p);
    respond(app, &id, Some(&user))
}

fn respond(app: &AppData, id: &str, viewer: Option<&str>) -> Result<Value, ApiError> {
    let p = existing(app, id)?;
    Ok(json!({ "poll": poll(app, p, viewer) }))
}

pub(crate) fn existing<'a>(app: &'a AppData, id: &str) -> Result<&'a Poll, ApiError> {
    app.polls
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("poll {id} does not exist")))
}

/// The poll, if the caller may change it (its creator, or a server token).
pub(crate) fn owned<'a>(
    app: &'a mut AppData,
    req: &Req<'_>,
    id: &str,
) -> Result<&'a mut Poll, ApiError> {
    let user = req.acting_user(None)?;
    let server = matches!(req.ident, Identity::Server);
    let p = app
        .polls
        .get_mut(id)
        .ok_or_else(|| ApiError::not_found(format!("poll {id} does not exist")))?;
    if !server && p.created_by != user {
        return Err(ApiError::forbidden("only the poll's creator may change it"));
    }
    Ok(p)
}

/// `GET /polls/{id}` → `PollResponse`.
pub(crate) fn get(app: &AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let viewer = req.acting_user(None).ok();
    respond(app, id, viewer.as_deref())
}

/// `PATCH /polls/{id}` → `PollResponse`: `poll.closed` when it closes, else `poll.updated`.
pub(crate) fn partial(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let viewer = req.acting_user(None)?;
    let set = match req.body.get("set") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(ApiError::input("set must be an object")),
    };
    let unset: Vec<String> = match req.body.get("unset") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| ApiError::input("unset must be an array of field names"))?,
    };
    let p = owned(app, req, id)?;
    let was_closed = p.is_closed;
    let mut next = clone_meta(p);
    for key in &unset {
        match key.as_str() {
            "description" => next.description.clear(),
            "max_votes_allowed" => next.max_votes_allowed = None,
            k if !POLL_TYPED.contains(&k) => {
                next.custom.remove(k);
            }
            k => return Err(ApiError::input(format!("poll field {k} cannot be unset"))),
        }
    }
    apply(&mut next, &set)?;
    let now = OffsetDateTime::now_utc();
    let kind = commit(p, next, was_closed, now);
    announce(app, id, kind, None, None, now);
    respond(app, id, Some(&viewer))
}

/// Takes the validated settings of `next` into `p`; the event the change is.
fn commit(p: &mut Poll, next: Poll, was_closed: bool, now: OffsetDateTime) -> &'static str {
    p.name = next.name;
    p.description = next.description;
    p.voting_visibility = next.voting_visibility;
    p.enforce_unique_vote = next.enforce_unique_vote;
    p.allow_answers = next.allow_answers;
    p.allow_user_suggested_options = next.allow_user_suggested_options;
    p.max_votes_allowed = next.max_votes_allowed;
    p.is_closed = next.is_closed;
    p.custom = next.custom;
    p.updated_at = now;
    if p.is_closed && !was_closed {
        "poll.closed"
    } else {
        "poll.updated"
    }
}

/// `PUT /polls` → `PollResponse` (201): a full replacement of the settings (what is not given
/// returns to its default) and of the options (an option keeps its votes while its `id` stays).
pub(crate) fn update(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let viewer = req.acting_user(None)?;
    let body = req
        .body
        .as_object()
        .ok_or_else(|| ApiError::input("the body must be an object"))?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::input("id is required"))?
        .to_owned();
    if !body.contains_key("name") {
        return Err(ApiError::input("name is required"));
    }
    let given = match body.get("options") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= MAX_POLL_OPTIONS => list.clone(),
        Some(_) => {
            return Err(ApiError::input(format!(
                "options must be an array of at most {MAX_POLL_OPTIONS}"
            )))
        }
    };
    let p = owned(app, req, &id)?;
    let mut options = Vec::with_capacity(given.len());
    for v in &given {
        let mut o = new_option(v)?;
        if let Some(old) = v
            .get("id")
            .and_then(Value::as_str)
            .filter(|old| p.options.iter().any(|x| x.id == *old))
        {
            o.id = old.to_owned();
        }
        options.push(o);
    }
    let was_closed = p.is_closed;
    let mut next = clone_meta(p);
    next.description.clear();
    next.voting_visibility = "public".into();
    next.enforce_unique_vote = false;
    next.allow_answers = false;
    next.allow_user_suggested_options = false;
    next.max_votes_allowed = None;
    next.is_closed = false;
    next.custom = Map::new();
    apply(&mut next, body)?;
    let now = OffsetDateTime::now_utc();
    let kind = commit(p, next, was_closed, now);
    p.votes.retain(|v| {
        v.option_id
            .as_ref()
            .is_none_or(|o| options.iter().any(|x| &x.id == o))
    });
    p.options = options;
    announce(app, &id, kind, None, None, now);
    respond(app, &id, Some(&viewer))
}

/// A copy of a poll's settings (not its options or votes), to validate a change before applying it.
fn clone_meta(p: &Poll) -> Poll {
    Poll {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        created_by: p.created_by.clone(),
        created_at: p.created_at,
        updated_at: p.updated_at,
        options: Vec::new(),
        votes: Vec::new(),
        voting_visibility: p.voting_visibility.clone(),
        enforce_unique_vote: p.enforce_unique_vote,
        allow_answers: p.allow_answers,
        allow_user_suggested_options: p.allow_user_suggested_options,
        max_votes_allowed: p.max_votes_allowed,
        is_closed: p.is_closed,
        custom: p.custom.clone(),
    }
}

/// `DELETE /polls/{id}` → `Response`: `poll.deleted`, and the messages no longer carry it.
pub(crate) fn delete(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    owned(app, req, id)?;
    let now = OffsetDateTime::now_utc();
    announce(app, id, "poll.deleted", None, None, now);
    app.polls.remove(id);
    for ch in app.channels.values_mut() {
        for m in ch.messages.iter_mut() {
            if m.extra.poll_id.as_deref() == Some(id) {
                m.extra.poll_id = None;
            }
        }
    }
    Ok(json!({}))
}

/// `POST /polls/{id}/options` → `PollOptionResponse` (201): the creator, or anyone when the poll
/// allows suggested options; `poll.updated`.
pub(crate) fn add_option(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let server = matches!(req.ident, Identity::Server);
    let new = new_option(req.body)?;
    let p = app
        .polls
        .get_mut(id)
        .ok_or_else(|| ApiError::not_found(format!("poll {id} does not exist")))?;
    if !server && p.created_by != user && !p.allow_user_suggested_options {
        return Err(ApiError::forbidden("this poll takes no suggested options"));
    }
    if p.options.len() >= MAX_POLL_OPTIONS {
        return Err(
            ApiError::input(format!("a poll has at most {MAX_POLL_OPTIONS} options"))
                .at_bound("poll_options"),
        );
    }
    let rendered = option(&new);
    let now = OffsetDateTime::now_utc();
    p.options.push(new);
    p.updated_at = now;
    announce(app, id, "poll.updated", None, None, now);
    Ok(json!({ "poll_option": rendered }))
}

/// A `poll.*` event to the watchers of the channel of every message carrying the poll (or only
/// `message_id`'s, for a vote).
pub(crate) fn announce(
    app: &AppData,
    poll_id: &str,
    kind: &str,
    message_id: Option<&str>,
    v: Option<&PollVote>,
    now: OffsetDateTime,
) {
    let Some(p) = app.polls.get(poll_id) else {
        return;
    };
    let rendered = poll(app, p, None);
    for ch in app.channels.values() {
        for m in &ch.messages {
            let carries = m.extra.poll_id.as_deref() == Some(poll_id);
            if !carries || message_id.is_some_and(|id| id != m.id) {
                continue;
            }
            let mut ev = channel_base(app, kind, &ch.cid, now);
            ev.insert("message_id".into(), json!(m.id));
            ev.insert("poll".into(), rendered.clone());
            if let Some(v) = v {
                ev.insert("poll_vote".into(), vote(app, p, v, None));
            }
            to_watchers(app, &ch.cid, &Value::Object(ev));
        }
    }
}
