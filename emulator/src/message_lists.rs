//! Lists of messages and the request helpers the list and query routes share:
//! `GET /channels/{type}/{id}/pinned_messages` (GetPinnedMessages), `GET
//! /channels/{type}/{id}/messages?ids=` (GetManyMessages), a `GET` route's JSON `payload`, counts,
//! `next` cursors and simple `$eq`/`$in` filter conditions.

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::history;
use crate::render_chat;
use crate::req::Req;
use crate::store::AppData;

/// Pinned messages per page of `GET …/pinned_messages` unless `limit` says otherwise, and the most
/// one page may hold.
const DEFAULT_PINNED_PAGE: usize = 10;
const MAX_PINNED_PAGE: usize = 100;
/// Largest `offset` into the pinned list.
const MAX_PINNED_OFFSET: usize = 1000;

/// A `GET` route's JSON `payload` parameter (how the SDK sends search and list options).
pub(crate) fn payload(req: &Req<'_>) -> Result<Map<String, Value>, ApiError> {
    match req.query.get("payload") {
        None => Ok(Map::new()),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(ApiError::input("payload must be a JSON object")),
        },
    }
}

/// `GET /channels/{type}/{id}/pinned_messages` → `GetPinnedMessagesResponse`: most recently
/// pinned first (or oldest first with `sort: [{field: pinned_at, direction: 1}]`), with `limit`,
/// `offset` and `pinned_at_before`/`_after` (`_or_equal`).
pub(crate) fn pinned(app: &AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    let viewer = req.acting_user(None).ok();
    let ch = crate::channels::existing(app, cid)?;
    let p = payload(req)?;
    let limit = count(&p, "limit", DEFAULT_PINNED_PAGE, MAX_PINNED_PAGE)?;
    let offset = count(&p, "offset", 0, MAX_PINNED_OFFSET)?;
    let ascending = p
        .get("sort")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
        .and_then(|s| s.get("direction"))
        .and_then(Value::as_i64)
        .is_some_and(|d| d > 0);
    let bound = |key: &str| -> Result<Option<OffsetDateTime>, ApiError> {
        match p.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
                .map(Some)
                .map_err(|_| ApiError::input(format!("{key} must be an RFC 3339 timestamp"))),
            Some(_) => Err(ApiError::input(format!("{key} must be a string"))),
        }
    };
    let (lt, le) = (
        bound("pinned_at_before")?,
        bound("pinned_at_before_or_equal")?,
    );
    let (gt, ge) = (
        bound("pinned_at_after")?,
        bound("pinned_at_after_or_equal")?,
    );
    let mut list = history::pinned(ch, OffsetDateTime::now_utc());
    list.retain(|m| {
        let Some(at) = m.extra.pin.as_ref().map(|p| p.at) else {
            return false;
        };
        lt.is_none_or(|t| at < t)
            && le.is_none_or(|t| at <= t)
            && gt.is_none_or(|t| at > t)
            && ge.is_none_or(|t| at >= t)
    });
    if ascending {
        list.reverse();
    }
    let messages: Vec<Value> = list
        .iter()
        .skip(offset)
        .take(limit)
        .map(|m| render_chat::message_for(app, cid, m, viewer.as_deref()))
        .collect();
    Ok(json!({ "messages": messages }))
}

/// A non-negative count option of a payload, clamped to `max`.
pub(crate) fn count(
    p: &Map<String, Value>,
    key: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .map(|n| usize::try_from(n).unwrap_or(max).min(max))
            .ok_or_else(|| ApiError::input(format!("{key} must be a non-negative number"))),
    }
}

/// Ids one `GetManyMessages` call may name.
const MAX_MANY_IDS: usize = 100;

/// `GET /channels/{type}/{id}/messages?ids=a,b` → `GetManyMessagesResponse`: those of the named
/// messages the channel holds, oldest first.
pub(crate) fn many(app: &AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    let viewer = req.acting_user(None).ok();
    let ch = crate::channels::existing(app, cid)?;
    let ids: Vec<&str> = req
        .query
        .get("ids")
        .map(|s| s.split(',').filter(|id| !id.is_empty()).collect())
        .unwrap_or_default();
    if ids.is_empty() || ids.len() > MAX_MANY_IDS {
        return Err(ApiError::input(format!(
            "ids must name 1 to {MAX_MANY_IDS} messages"
        )));
    }
    let messages: Vec<Value> = ch
        .messages
        .iter()
        .filter(|m| ids.contains(&m.id.as_str()))
        .map(|m| render_chat::message_for(app, cid, m, viewer.as_deref()))
        .collect();
    Ok(json!({ "messages": messages }))
}

/// A `next` cursor (an offset into the results) of a `Query*` request body.
pub(crate) fn cursor(body: &Value, max: usize) -> Result<usize, ApiError> {
    match body.get("next") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| ApiError::input("next is not a cursor from a previous page")),
        Some(_) => Err(ApiError::input("next must be a string")),
    }
}

/// Whether `actual` satisfies a simple filter condition: a value, `{$eq: v}` or `{$in: [..]}`.
pub(crate) fn simple_match(actual: &Value, cond: &Value) -> Result<bool, ApiError> {
    let Some(ops) = cond
        .as_object()
        .filter(|o| o.keys().all(|k| k.starts_with('$')))
    else {
        return Ok(actual == cond);
    };
    for (op, arg) in ops {
        let ok = match (op.as_str(), arg) {
            ("$eq", v) => actual == v,
            ("$in", Value::Array(list)) => list.contains(actual),
            _ => return Err(ApiError::input(format!("unsupported filter operator {op}"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}
