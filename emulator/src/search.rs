//! `GET /search` (Search): messages in the channels `filter_conditions` selects (the caller's
//! channels only, for a user token), matching the `query` text (every word, case-insensitively)
//! or `message_filter_conditions` (the fields the spec lists: `text`, `id`, `user_id`/`user.id`,
//! `parent_id`, `type`, `pinned`, `reply_count`, `attachments`, `attachments.type`,
//! `mentioned_users.id`, `created_at`, `updated_at`, custom fields, with `$and`/`$or`/`$nor`),
//! sorted (newest first unless `sort` says otherwise) and paged by `limit` with `offset` or the
//! `next`/`previous` cursors it returns. Soft-deleted messages and history a member cleared are
//! not found.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::message_lists::{count, payload};
use crate::query::channel_matches;
use crate::render::ts;
use crate::render_chat;
use crate::render_extra::is_pinned;
use crate::req::Req;
use crate::store::{AppData, Channel, Message};

/// Results per page unless `limit` says otherwise, the most one page may hold, and the largest
/// `offset` (Stream's documented bounds).
const DEFAULT_SEARCH_LIMIT: usize = 20;
const MAX_SEARCH_LIMIT: usize = 100;
const MAX_SEARCH_OFFSET: usize = 1000;
/// Nesting allowed in `$and` / `$or` / `$nor` of message filters.
const MAX_FILTER_DEPTH: usize = 4;
/// Longest `query` text.
const MAX_QUERY: usize = 1000;

/// `GET /search?payload=…` → `SearchResponse`.
pub(crate) fn search(app: &AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let p = payload(req)?;
    let viewer = match req.ident {
        Identity::User(id) => Some(id.as_str()),
        Identity::Server => None,
    };
    let channels = match p.get("filter_conditions") {
        Some(Value::Object(f)) if !f.is_empty() => f,
        _ => {
            return Err(ApiError::input(
                "filter_conditions must be a non-empty object of channel filters",
            ))
        }
    };
    let words: Option<Vec<String>> = match p.get("query") {
        None | Some(Value::Null) => None,
        Some(Value::String(q)) if !q.trim().is_empty() && q.len() <= MAX_QUERY => Some(
            q.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>(),
        ),
        Some(_) => {
            return Err(ApiError::input(format!(
                "query must be a non-empty string of at most {MAX_QUERY} bytes"
            )))
        }
    };
    let filter = match p.get("message_filter_conditions") {
        None | Some(Value::Null) => None,
        Some(Value::Object(f)) => Some(f),
        Some(_) => {
            return Err(ApiError::input(
                "message_filter_conditions must be an object",
            ))
        }
    };
    if words.is_none() && filter.is_none() {
        return Err(ApiError::input(
            "either query or message_filter_conditions is required",
        ));
    }
    let limit = count(&p, "limit", DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT)?.max(1);
    let offset = match (p.get("offset"), p.get("next")) {
        (Some(o), Some(n)) if !o.is_null() && !n.is_null() => {
            return Err(ApiError::input("offset and next cannot be used together"))
        }
        (_, Some(Value::String(next))) => next
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= MAX_SEARCH_OFFSET)
            .ok_or_else(|| ApiError::input("next is not a cursor from a previous page"))?,
        _ => count(&p, "offset", 0, MAX_SEARCH_OFFSET)?,
    };
    let sort = sort_keys(p.get("sort"))?;

    let user = viewer.unwrap_or("");
    let now = OffsetDateTime::now_utc();
    let mut hits: Vec<(&Channel, &Message)> = Vec::new();
    for ch in app.channels.values() {
        let own = viewer.map(|v| ch.members.iter().find(|m| m.user_id == v));
        if own.is_some_and(|m| m.is_none()) || !channel_matches(app, ch, user, channels)? {
            continue;
        }
        let cleared = own.flatten().and_then(|m| m.hide_messages_before);
        for m in &ch.messages {
            if m.extra.deleted_at.is_some()
                || cleared.is_some_and(|t| m.created_at <= t)
                || !m.visible_to(viewer)
            {
                continue;
            }
            let text_ok = words.as_ref().is_none_or(|w| {
                let text = m.text.to_lowercase();
                w.iter().all(|word| text.contains(word.as_str()))
            });
            if text_ok && filter.map_or(Ok(true), |f| matches(m, &ch.cid, f, now, 0))? {
                hits.push((ch, m));
            }
        }
    }
    hits.sort_by(|a, b| compare(a.1, b.1, &sort).then_with(|| a.1.id.cmp(&b.1.id)));
    let results: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(ch, m)| {
            let mut msg = render_chat::message_for(app, &ch.cid, m, viewer);
            if let Some(map) = msg.as_object_mut() {
                map.insert("channel".into(), render_chat::channel(app, ch));
            }
            json!({ "message": msg })
        })
        .collect();
    let mut out = Map::new();
    out.insert("results".into(), Value::Array(results));
    if hits.len() > offset + limit && offset + limit <= MAX_SEARCH_OFFSET {
        out.insert("next".into(), json!((offset + limit).to_string()));
    }
    if offset > 0 {
        out.insert(
            "previous".into(),
            json!(offset.saturating_sub(limit).to_string()),
        );
    }
    Ok(Value::Object(out))
}

/// The value of a filterable message field.
fn field(m: &Message, cid: &str, key: &str, now: OffsetDateTime) -> Option<Value> {
    Some(match key {
        "id" => json!(m.id),
        "cid" => json!(cid),
        "text" => json!(m.text),
        "user_id" | "user.id" => json!(m.user_id),
        "parent_id" => json!(m.parent_id.as_ref()?),
        "type" => json!(if m.parent_id.is_some() {
            "reply"
        } else {
            "regular"
        }),
        "pinned" => json!(is_pinned(m, now)),
        "reply_count" => json!(m.reply_count),
        "created_at" => json!(ts(m.created_at)),
        "updated_at" => json!(ts(m.updated_at)),
        "attachments" if m.attachments.is_empty() => return None,
        "attachments" => Value::Array(m.attachments.clone()),
        "attachments.type" => Value::Array(
            m.attachments
                .iter()
                .filter_map(|a| a.get("type").cloned())
                .collect(),
        ),
        "mentioned_users.id" => json!(m.extra.mentioned_users),
        other => m.custom.get(other)?.clone(),
    })
}

/// Whether message `m` satisfies every condition of `filter`.
fn matches(
    m: &Message,
    cid: &str,
    filter: &Map<String, Value>,
    now: OffsetDateTime,
    depth: usize,
) -> Result<bool, ApiError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(ApiError::input("message_filter_conditions nest too deeply"));
    }
    for (key, cond) in filter {
        let ok = match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let subs = cond
                    .as_array()
                    .ok_or_else(|| ApiError::input(format!("{key} needs an array")))?;
                let mut results = Vec::with_capacity(subs.len());
                for sub in subs {
                    let sub = sub
                        .as_object()
                        .ok_or_else(|| ApiError::input(format!("{key} items must be objects")))?;
                    results.push(matches(m, cid, sub, now, depth + 1)?);
                }
                match key.as_str() {
                    "$and" => results.iter().all(|r| *r),
                    "$or" => results.iter().any(|r| *r),
                    _ => !results.iter().any(|r| *r),
                }
            }
            other if other.starts_with('$') => {
                return Err(ApiError::input(format!(
                    "unsupported message filter operator {other}"
                )))
            }
            other => value_match(field(m, cid, other, now).as_ref(), cond)?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Equality, or `$eq`, `$ne`, `$in`, `$nin`, `$exists`, `$gt`, `$gte`, `$lt`, `$lte`, `$q`,
/// `$autocomplete` (case-insensitive words / prefix of a word) and `$contains` (arrays).
fn value_match(actual: Option<&Value>, cond: &Value) -> Result<bool, ApiError> {
    let Some(ops) = cond
        .as_object()
        .filter(|o| !o.is_empty() && o.keys().all(|k| k.starts_with('$')))
    else {
        return Ok(actual == Some(cond) || contains(actual, cond));
    };
    for (op, arg) in ops {
        let list = || {
            arg.as_array()
                .ok_or_else(|| ApiError::input(format!("{op} needs an array")))
        };
        let text = || {
            arg.as_str()
                .map(str::to_lowercase)
                .ok_or_else(|| ApiError::input(format!("{op} needs a string")))
        };
        let have = actual.and_then(Value::as_str).map(str::to_lowercase);
        let ok = match op.as_str() {
            "$eq" => actual == Some(arg),
            "$ne" => actual != Some(arg),
            "$in" => list()?
                .iter()
                .any(|v| actual == Some(v) || contains(actual, v)),
            "$nin" => !list()?
                .iter()
                .any(|v| actual == Some(v) || contains(actual, v)),
            "$exists" => actual.is_some() == (arg == &Value::Bool(true)),
            "$gt" => order(actual, arg) == Some(Ordering::Greater),
            "$gte" => matches!(
                order(actual, arg),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            "$lt" => order(actual, arg) == Some(Ordering::Less),
            "$lte" => matches!(order(actual, arg), Some(Ordering::Less | Ordering::Equal)),
            "$q" => {
                let want = text()?;
                have.is_some_and(|h| want.split_whitespace().all(|w| h.contains(w)))
            }
            "$autocomplete" => {
                let want = text()?;
                have.is_some_and(|h| h.split_whitespace().any(|w| w.starts_with(want.trim())))
            }
            "$contains" => contains(actual, arg),
            _ => {
                return Err(ApiError::input(format!(
                    "unsupported message filter operator {op}"
                )))
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// An array field holds `v`.
fn contains(actual: Option<&Value>, v: &Value) -> bool {
    actual
        .and_then(Value::as_array)
        .is_some_and(|a| a.contains(v))
}

/// Numbers compare as numbers, timestamps as instants, other strings as strings.
fn order(actual: Option<&Value>, arg: &Value) -> Option<Ordering> {
    let actual = actual?;
    if let (Some(a), Some(b)) = (actual.as_f64(), arg.as_f64()) {
        return a.partial_cmp(&b);
    }
    let (a, b) = (actual.as_str()?, arg.as_str()?);
    match (
        OffsetDateTime::parse(a, &Rfc3339),
        OffsetDateTime::parse(b, &Rfc3339),
    ) {
        (Ok(a), Ok(b)) => Some(a.cmp(&b)),
        _ => Some(a.cmp(b)),
    }
}

/// Sort keys as (field, descending); newest first by default (`relevance` orders nothing here).
fn sort_keys(sort: Option<&Value>) -> Result<Vec<(String, bool)>, ApiError> {
    let mut out = Vec::new();
    match sort {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items.iter().take(4) {
                let field = item
                    .get("field")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::input("sort items need a field"))?;
                let desc = item.get("direction").and_then(Value::as_i64).unwrap_or(1) < 0;
                out.push((field.to_owned(), desc));
            }
        }
        Some(_) => return Err(ApiError::input("sort must be an array")),
    }
    if out.iter().all(|(f, _)| f == "relevance") {
        out.push(("created_at".to_owned(), true));
    }
    Ok(out)
}

fn compare(a: &Message, b: &Message, keys: &[(String, bool)]) -> Ordering {
    for (field, desc) in keys {
        let ord = match field.as_str() {
            "created_at" => a.created_at.cmp(&b.created_at),
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "reply_count" => a.reply_count.cmp(&b.reply_count),
            "id" => a.id.cmp(&b.id),
            _ => Ordering::Equal,
        };
        let ord = if *desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}
