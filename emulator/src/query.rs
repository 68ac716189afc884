//! `POST /channels` (QueryChannels): filter conditions, sort, pagination and
//! the optional watch of every returned channel (how the SDK's
//! `recoverState` re-subscribes after a reconnect).

use std::cmp::Ordering;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::channels::{
    follow_members, state, watch, StateOpts, DEFAULT_STATE_MESSAGES, MAX_STATE_MESSAGES,
};
use crate::error::ApiError;
use crate::filter::{list, value_match};
use crate::hiding::{blocked_dm, is_hidden};
use crate::render::ts;
use crate::req::Req;
use crate::store::{AppData, Channel};

/// Stream's page size limits for QueryChannels.
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 30;
/// Nesting allowed in `$and` / `$or`, so a hostile filter cannot recurse deeply.
const MAX_FILTER_DEPTH: usize = 4;

/// `POST /channels` → `QueryChannelsResponse`.
pub(crate) fn query_channels(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let empty = Map::new();
    let filter = match req.body.get("filter_conditions") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(f)) => f,
        Some(_) => return Err(ApiError::input("filter_conditions must be an object")),
    };
    let sort = sort_keys(req.body.get("sort"))?;
    let mut hits: Vec<&Channel> = Vec::new();
    // Hidden channels are left out unless the filter asks about `hidden` itself.
    let hidden_asked = filter.contains_key("hidden");
    for ch in app.channels.values() {
        let hidden = is_hidden(ch, &user) || blocked_dm(app, ch, &user);
        if (hidden_asked || !hidden) && matches(app, ch, &user, filter, 0)? {
            hits.push(ch);
        }
    }
    hits.sort_by(|a, b| compare(a, b, &user, &sort));
    let offset = req.body.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let limit = req
        .body
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_LIMIT, |l| (l as usize).clamp(1, MAX_LIMIT));
    let cids: Vec<String> = hits
        .iter()
        .skip(offset)
        .take(limit)
        .map(|c| c.cid.clone())
        .collect();

    let conn = req.watch_target(app, &user)?;
    let follower = req.conn_target(app, &user, req.flag("presence"))?;
    if let Some(conn) = conn {
        let now = OffsetDateTime::now_utc();
        for cid in &cids {
            watch(app, &conn, cid, &user, now);
        }
    }
    if let Some(conn) = follower {
        follow_members(app, &conn, &cids);
    }
    let messages = req
        .body
        .get("message_limit")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_STATE_MESSAGES, |l| {
            (l as usize).min(MAX_STATE_MESSAGES)
        });
    let opts = StateOpts {
        messages,
        presence: req.flag("presence"),
    };
    let channels: Vec<Value> = cids
        .iter()
        .filter_map(|cid| app.channels.get(cid))
        .map(|ch| {
            let mut st = state(app, ch, &user, &opts);
            // Stream flags a one-to-one channel with a user the caller blocked (it only comes
            // back when hidden channels are asked for).
            if blocked_dm(app, ch, &user) {
                if let Some(Value::Object(c)) = st.get_mut("channel") {
                    c.insert("blocked".into(), json!(true));
                }
            }
            Value::Object(st)
        })
        .collect();
    Ok(json!({ "channels": channels }))
}

/// Whether `ch` satisfies the channel filter `filter` for `user` (also what `search` selects
/// channels with).
pub(crate) fn channel_matches(
    app: &AppData,
    ch: &Channel,
    user: &str,
    filter: &Map<String, Value>,
) -> Result<bool, ApiError> {
    matches(app, ch, user, filter, 0)
}

/// Whether `ch` satisfies every condition of `filter` for `user` (`hidden` is per user).
fn matches(
    app: &AppData,
    ch: &Channel,
    user: &str,
    filter: &Map<String, Value>,
    depth: usize,
) -> Result<bool, ApiError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(ApiError::input("filter_conditions nest too deeply"));
    }
    for (key, cond) in filter {
        let ok = match key.as_str() {
            "$and" | "$or" => {
                let subs = cond
                    .as_array()
                    .ok_or_else(|| ApiError::input(format!("{key} needs an array")))?;
                let mut results = Vec::with_capacity(subs.len());
                for sub in subs {
                    let sub = sub
                        .as_object()
                        .ok_or_else(|| ApiError::input(format!("{key} items must be objects")))?;
                    results.push(matches(app, ch, user, sub, depth + 1)?);
                }
                if key == "$and" {
                    results.iter().all(|r| *r)
                } else {
                    results.iter().any(|r| *r)
                }
            }
            "members" => members_match(ch, cond)?,
            "member.user.name" => member_names_match(app, ch, cond)?,
            "hidden" => {
                let hidden = is_hidden(ch, user) || blocked_dm(app, ch, user);
                value_match(Some(&json!(hidden)), cond)?
            }
            other if other.starts_with('$') => {
                return Err(ApiError::input(format!(
                    "unsupported filter operator {other}"
                )))
            }
            other => value_match(field(app, ch, user, other).as_ref(), cond)?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The value a channel filter key tests, as `user` sees the channel (membership, pins, archive,
/// mutes and unread counts are theirs).
fn field(app: &AppData, ch: &Channel, user: &str, key: &str) -> Option<Value> {
    let member = ch.members.iter().find(|m| m.user_id == user);
    let at = |t: Option<OffsetDateTime>| t.map(|t| json!(ts(t)));
    match key {
        "cid" => Some(json!(ch.cid)),
        "id" => Some(json!(ch.id)),
        "type" => Some(json!(ch.kind)),
        "created_by_id" => Some(json!(ch.created_by)),
        "created_at" => at(Some(ch.created_at)),
        "updated_at" => at(Some(ch.updated_at)),
        "last_message_at" => at(ch.last_message_at),
        "last_updated" => at(Some(last_updated(ch))),
        "member_count" => Some(json!(ch.members.len())),
        "frozen" | "disabled" => Some(json!(false)),
        "joined" => Some(json!(
            member.is_some_and(|m| !m.invited && m.invite_rejected_at.is_none())
        )),
        "invite" => member.map(|m| {
            json!(if m.invited {
                "pending"
            } else if m.invite_rejected_at.is_some() {
                "rejected"
            } else {
                "accepted"
            })
        }),
        "pinned" => Some(json!(member.is_some_and(|m| m.pinned_at.is_some()))),
        "pinned_at" => at(member.and_then(|m| m.pinned_at)),
        "archived_at" => at(member.and_then(|m| m.archived_at)),
        "archived" => Some(json!(member.is_some_and(|m| m.archived_at.is_some()))),
        "muted" => Some(json!(app.social.channel_muted(user, &ch.cid).is_some())),
        "has_unread" => Some(json!(unread(ch, user) > 0)),
        other => ch.data.get(other).cloned(),
    }
}

fn unread(ch: &Channel, user: &str) -> u32 {
    ch.reads.get(user).map_or(0, |r| r.unread)
}

/// `member.user.name`: some member's name satisfies the condition (`$autocomplete` in a channel
/// search box).
fn member_names_match(app: &AppData, ch: &Channel, cond: &Value) -> Result<bool, ApiError> {
    for m in &ch.members {
        let name = app.users.get(&m.user_id).and_then(|u| u.fields.get("name"));
        if value_match(name, cond)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `members`: `{"$in":[ids]}` (any of them is a member), `{"$eq":[ids]}` or a
/// plain array (exactly these members), or a plain id (is a member).
fn members_match(ch: &Channel, cond: &Value) -> Result<bool, ApiError> {
    let is_member = |id: &Value| {
        ch.members
            .iter()
            .any(|m| Some(m.user_id.as_str()) == id.as_str())
    };
    let exact = |ids: &[Value]| ids.len() == ch.members.len() && ids.iter().all(is_member);
    match cond {
        Value::String(_) => Ok(is_member(cond)),
        Value::Array(ids) => Ok(exact(ids)),
        Value::Object(ops) => {
            for (op, arg) in ops {
                let ok = match op.as_str() {
                    "$in" => list(arg, op)?.iter().any(is_member),
                    "$nin" => !list(arg, op)?.iter().any(is_member),
                    "$eq" => exact(list(arg, op)?),
                    _ => {
                        return Err(ApiError::input(format!(
                            "unsupported members operator {op}"
                        )))
                    }
                };
                if !ok {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        _ => Err(ApiError::input(
            "members filter must be an id, an array or an operator",
        )),
    }
}

/// Sort keys as (field, descending); default `last_message_at` descending.
fn sort_keys(sort: Option<&Value>) -> Result<Vec<(String, bool)>, ApiError> {
    let mut out = Vec::new();
    if let Some(Value::Array(items)) = sort {
        for item in items.iter().take(4) {
            let field = item
                .get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::input("sort items need a field"))?;
            let desc = item.get("direction").and_then(Value::as_i64).unwrap_or(1) < 0;
            out.push((field.to_owned(), desc));
        }
    }
    if out.is_empty() {
        out.push(("last_message_at".to_owned(), true));
    }
    Ok(out)
}

fn compare(a: &Channel, b: &Channel, user: &str, keys: &[(String, bool)]) -> Ordering {
    let pinned = |ch: &Channel| {
        ch.members
            .iter()
            .find(|m| m.user_id == user)
            .and_then(|m| m.pinned_at)
    };
    for (field, desc) in keys {
        let ord = match field.as_str() {
            "last_message_at" => nulls_last(a.last_message_at, b.last_message_at, *desc),
            // Unpinned channels come after the pinned ones either way, as in Stream's lists.
            "pinned_at" => nulls_last(pinned(a), pinned(b), *desc),
            "unread_count" => unread(a, user).cmp(&unread(b, user)),
            "has_unread" => (unread(a, user) > 0).cmp(&(unread(b, user) > 0)),
            "last_updated" => last_updated(a).cmp(&last_updated(b)),
            "created_at" => a.created_at.cmp(&b.created_at),
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "member_count" => a.members.len().cmp(&b.members.len()),
            "cid" => a.cid.cmp(&b.cid),
            "id" => a.id.cmp(&b.id),
            // Unknown fields do not reorder; Stream ignores them too.
            _ => Ordering::Equal,
        };
        let ord = if *desc && field != "last_message_at" && field != "pinned_at" {
            ord.reverse()
        } else {
            ord
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    // Newest first, then by cid, so pages are stable.
    b.created_at
        .cmp(&a.created_at)
        .then_with(|| a.cid.cmp(&b.cid))
}

/// Channels that never had a message sort after those that did.
fn nulls_last(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>, desc: bool) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) if desc => b.cmp(&a),
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn last_updated(ch: &Channel) -> OffsetDateTime {
    ch.last_message_at
        .map_or(ch.created_at, |t| t.max(ch.created_at))
}
