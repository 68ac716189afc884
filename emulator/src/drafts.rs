//! Drafts: `POST /channels/{type}/{id}/draft` (create or replace the caller's draft of a channel,
//! or of a thread with `parent_id`), `GET` and `DELETE` the same route (`parent_id` in the
//! query), and `POST /drafts/query`. One draft per user, channel and thread, at most
//! `MAX_DRAFTS_PER_USER` per user.
//!
//! Who hears what: `draft.updated` / `draft.deleted` go to every connection of the draft's owner
//! and nobody else (`stream-event-recipients.md`, inferred from the SDK's handlers).

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::config::MAX_MESSAGE_TEXT;
use crate::error::ApiError;
use crate::filter::value_match;
use crate::render::ts;
use crate::render_chat;
use crate::req::{check_id, Req};
use crate::social::{Draft, MAX_DRAFTS_PER_USER};
use crate::store::{frame, AppData};

/// Drafts one query returns by default and at most.
pub(crate) const DEFAULT_DRAFTS_LIMIT: usize = 25;
pub(crate) const MAX_DRAFTS_LIMIT: usize = 100;
/// Largest stored draft message, serialized.
const MAX_DRAFT_BYTES: usize = 20 * 1024;

type Key = (String, String, Option<String>);

/// The channel must exist (not `channels::existing`: `channels` imports this module).
fn existing(app: &AppData, cid: &str) -> Result<(), ApiError> {
    if app.channels.contains_key(cid) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "channel \"{cid}\" does not exist"
        )))
    }
}

/// The viewer's channel draft for a channel state (`ChannelStateResponse.draft`), which the SDK's
/// message composer restores; without the channel, which the state already carries.
pub(crate) fn for_state(app: &AppData, viewer: &str, cid: &str) -> Option<Value> {
    let key: Key = (viewer.to_owned(), cid.to_owned(), None);
    app.social.drafts.contains_key(&key).then(|| {
        let mut v = render(app, &key);
        if let Some(obj) = v.as_object_mut() {
            obj.remove("channel");
        }
        v
    })
}

/// `POST /channels/{type}/{id}/draft` → `CreateDraftResponse`.
pub(crate) fn create(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    existing(app, cid)?;
    let user = req.acting_user(None)?;
    let mut message = req
        .body
        .get("message")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| ApiError::input("message must be an object"))?;
    if Value::Object(message.clone()).to_string().len() > MAX_DRAFT_BYTES {
        return Err(ApiError::input("draft is too large"));
    }
    if message.get("text").is_some_and(|t| {
        t.as_str()
            .is_none_or(|t| t.chars().count() > MAX_MESSAGE_TEXT)
    }) {
        return Err(ApiError::input(format!(
            "text must be a string of at most {MAX_MESSAGE_TEXT} characters"
        )));
    }
    let parent = message
        .get("parent_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(p) = &parent {
        check_id(p)?;
    }
    let key: Key = (user.clone(), cid.to_owned(), parent);
    let owned = app.social.drafts.keys().filter(|k| k.0 == user).count();
    if !app.social.drafts.contains_key(&key) && owned >= MAX_DRAFTS_PER_USER {
        return Err(ApiError::input(format!(
            "a user can keep at most {MAX_DRAFTS_PER_USER} drafts"
        ))
        .at_bound("drafts_per_user"));
    }
    if !message.get("id").is_some_and(Value::is_string) {
        message.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    }
    let now = OffsetDateTime::now_utc();
    app.social.drafts.insert(
        key.clone(),
        Draft {
            message,
            created_at: now,
        },
    );
    let draft = render(app, &key);
    announce(app, &user, "draft.updated", &key, &draft, now);
    Ok(json!({ "draft": draft }))
}

fn key_of(req: &Req<'_>, user: &str, cid: &str) -> Key {
    let parent = req
        .query
        .get("parent_id")
        .filter(|p| !p.is_empty())
        .cloned();
    (user.to_owned(), cid.to_owned(), parent)
}

/// `GET /channels/{type}/{id}/draft` → `GetDraftResponse`.
pub(crate) fn get(app: &AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    existing(app, cid)?;
    let user = req.acting_user(None)?;
    let key = key_of(req, &user, cid);
    if !app.social.drafts.contains_key(&key) {
        return Err(ApiError::not_found(format!("no draft for {cid}")));
    }
    Ok(json!({ "draft": render(app, &key) }))
}

/// `DELETE /channels/{type}/{id}/draft` → `Response`.
pub(crate) fn delete(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    existing(app, cid)?;
    let user = req.acting_user(None)?;
    let key = key_of(req, &user, cid);
    if !app.social.drafts.contains_key(&key) {
        return Err(ApiError::not_found(format!("no draft for {cid}")));
    }
    let draft = render(app, &key);
    app.social.drafts.remove(&key);
    announce(
        app,
        &user,
        "draft.deleted",
        &key,
        &draft,
        OffsetDateTime::now_utc(),
    );
    Ok(json!({}))
}

/// `POST /drafts/query` → `QueryDraftsResponse`: the caller's drafts, filtered by `channel_cid`,
/// `parent_id` or `created_at`, newest first unless sorted otherwise.
pub(crate) fn query(app: &AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let empty = Map::new();
    let filter = match req.body.get("filter") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(f)) => f,
        Some(_) => return Err(ApiError::input("filter must be an object")),
    };
    let mut hits: Vec<(&Key, &Draft)> = Vec::new();
    for (key, d) in app.social.drafts.iter().filter(|(k, _)| k.0 == user) {
        let mut ok = true;
        for (field, cond) in filter {
            let actual = match field.as_str() {
                "channel_cid" => Some(json!(key.1)),
                "parent_id" => key.2.as_ref().map(|p| json!(p)),
                "created_at" => Some(json!(ts(d.created_at))),
                other => {
                    return Err(ApiError::input(format!(
                        "drafts cannot be filtered by {other}"
                    )))
                }
            };
            ok &= value_match(actual.as_ref(), cond)?;
        }
        if ok {
            hits.push((key, d));
        }
    }
    let ascending = req
        .body
        .pointer("/sort/0/direction")
        .and_then(Value::as_i64)
        .is_some_and(|d| d > 0);
    hits.sort_by(|a, b| {
        let ord =
            a.1.created_at
                .cmp(&b.1.created_at)
                .then_with(|| a.0.cmp(b.0));
        if ascending {
            ord
        } else {
            ord.reverse()
        }
    });
    let limit = req
        .body
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_DRAFTS_LIMIT, |l| {
            (l as usize).clamp(1, MAX_DRAFTS_LIMIT)
        });
    let drafts: Vec<Value> = hits
        .iter()
        .take(limit)
        .map(|(k, _)| render(app, k))
        .collect();
    Ok(json!({ "drafts": drafts }))
}

/// `DraftResponse`.
fn render(app: &AppData, key: &Key) -> Value {
    let Some(d) = app.social.drafts.get(key) else {
        return Value::Null;
    };
    let mut message = d.message.clone();
    message.entry("text").or_insert_with(|| json!(""));
    message.entry("custom").or_insert_with(|| json!({}));
    let mut v = json!({
        "channel_cid": key.1,
        "created_at": ts(d.created_at),
        "message": message,
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(ch) = app.channels.get(&key.1) {
            obj.insert("channel".into(), render_chat::channel(app, ch));
        }
        if let Some(p) = &key.2 {
            obj.insert("parent_id".into(), json!(p));
        }
    }
    v
}

/// `draft.updated` / `draft.deleted` to every connection of the owner.
fn announce(app: &AppData, user: &str, kind: &str, key: &Key, draft: &Value, now: OffsetDateTime) {
    let mut ev = json!({
        "type": kind,
        "cid": key.1,
        "created_at": ts(now),
        "custom": {},
        "draft": draft,
    });
    if let (Some(p), Some(obj)) = (&key.2, ev.as_object_mut()) {
        obj.insert("parent_id".into(), json!(p));
    }
    app.push_user(user, &frame(&ev));
}
