//! One member's own view of a channel: `PATCH /channels/{type}/{id}/member[/{user_id}]` (the SDK's `pin`,
//! `unpin`, `archive`, `unarchive` and `updateMemberPartial`, `set: {pinned, archived}`), and
//! `GET /members` (`queryMembers`) with the filters and sorts the SDK's member lists use.
//!
//! A member update is a `member.updated` to the channel's watchers (`stream-event-recipients.md`:
//! `member.*` goes to watchers); a channel list watches its channels, so every tab that shows the
//! channel sees the pin or archive.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::channels::{distinct_id, existing, member_ids};
use crate::error::ApiError;
use crate::events::{channel_base, rendered, to_watchers, with_channel};
use crate::filter::value_match;
use crate::render::{self, ts};
use crate::req::{check_id, Req};
use crate::store::{AppData, Member};

/// Members one `GET /members` returns by default and at most.
pub(crate) const DEFAULT_MEMBERS_LIMIT: usize = 100;
pub(crate) const MAX_MEMBERS_LIMIT: usize = 300;
/// Custom member fields, serialized.
const MAX_MEMBER_CUSTOM_BYTES: usize = 5 * 1024;

/// `PATCH /channels/{type}/{id}/member` (the spec) or `…/member/{user_id}` (what SDK 9.x
/// sends) → `UpdateMemberPartialResponse`. A user token may only change its own membership.
pub(crate) fn update(
    app: &mut AppData,
    req: &Req<'_>,
    cid: &str,
    target: Option<&str>,
) -> Result<Value, ApiError> {
    existing(app, cid)?;
    if let Some(t) = target {
        check_id(t)?;
    }
    let user = req.acting_user(target)?;
    if target.is_some_and(|t| t != user) {
        return Err(ApiError::forbidden(
            "a user token can only update its own membership",
        ));
    }
    let set = match req.body.get("set") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(s)) => s.clone(),
        Some(_) => return Err(ApiError::input("set must be an object")),
    };
    let unset: Vec<String> = match req.body.get("unset") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| ApiError::input("unset must be an array of field names"))?,
    };
    for key in ["pinned", "archived"] {
        if set.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(ApiError::input(format!("{key} must be a boolean")));
        }
    }
    if Value::Object(set.clone()).to_string().len() > MAX_MEMBER_CUSTOM_BYTES {
        return Err(ApiError::input("member update is too large"));
    }
    let now = OffsetDateTime::now_utc();
    let member = app
        .channels
        .get_mut(cid)
        .and_then(|ch| ch.members.iter_mut().find(|m| m.user_id == user))
        .ok_or_else(|| ApiError::not_found(format!("user {user} is not a member of {cid}")))?;
    let flag = |key: &str, current: Option<OffsetDateTime>| -> Option<OffsetDateTime> {
        match set.get(key).and_then(Value::as_bool) {
            Some(true) => current.or(Some(now)),
            Some(false) => None,
            None if unset.iter().any(|k| k == key) => None,
            None => current,
        }
    };
    member.pinned_at = flag("pinned", member.pinned_at);
    member.archived_at = flag("archived", member.archived_at);
    member.updated_at = now;
    let rendered_member = rendered(app, cid, &user).unwrap_or(Value::Null);
    let mut ev = channel_base(app, "member.updated", cid, now);
    ev.insert("user".into(), render::user(app, &user));
    ev.insert("member".into(), rendered_member.clone());
    to_watchers(app, cid, &Value::Object(with_channel(app, cid, ev)));
    Ok(json!({ "channel_member": rendered_member }))
}

/// `GET /members?payload={type, id | members, filter_conditions, sort, limit, offset}` →
/// `MembersResponse`.
pub(crate) fn query(app: &AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let payload: Value = match req.query.get("payload") {
        Some(p) => {
            serde_json::from_str(p).map_err(|_| ApiError::input("payload is not valid JSON"))?
        }
        None => return Err(ApiError::input("payload is required")),
    };
    let kind = payload
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::input("payload.type is required"))?;
    check_id(kind)?;
    let id = match payload.get("id").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => {
            let members = member_ids(payload.get("members"))?;
            if members.is_empty() {
                return Err(ApiError::input("payload needs an id or members"));
            }
            distinct_id(&members)
        }
    };
    check_id(&id)?;
    let ch = existing(app, &format!("{kind}:{id}"))?;
    let empty = Map::new();
    let filter = match payload.get("filter_conditions") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(f)) => f,
        Some(_) => return Err(ApiError::input("filter_conditions must be an object")),
    };
    let mut hits: Vec<&Member> = Vec::new();
    for m in &ch.members {
        if member_matches(app, &ch.cid, m, filter)? {
            hits.push(m);
        }
    }
    let sort = sort_keys(payload.get("sort"));
    hits.sort_by(|a, b| compare(app, &ch.cid, a, b, &sort));
    let offset = payload.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let limit = payload
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_MEMBERS_LIMIT, |l| {
            (l as usize).clamp(1, MAX_MEMBERS_LIMIT)
        });
    let members: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(limit)
        .map(|m| {
            let mut v = crate::render_chat::member(app, m);
            let server = *req.ident == crate::auth::Identity::Server;
            app.social.mark_channel_ban(&ch.cid, &mut v, server);
            v
        })
        .collect();
    Ok(json!({ "members": members }))
}

/// The value a member filter key tests.
fn field(app: &AppData, cid: &str, m: &Member, key: &str) -> Option<Value> {
    let user = app.users.get(&m.user_id);
    let at = |t: Option<OffsetDateTime>| t.map(|t| json!(ts(t)));
    match key {
        "id" | "user_id" => Some(json!(m.user_id)),
        "name" => user.and_then(|u| u.fields.get("name")).cloned(),
        "created_at" => Some(json!(ts(m.created_at))),
        "updated_at" => Some(json!(ts(m.updated_at))),
        "is_moderator" => Some(json!(m.moderator)),
        "channel_role" => Some(json!(if m.moderator {
            "channel_moderator"
        } else {
            "channel_member"
        })),
        "invite" => Some(json!(if m.invited {
            "pending"
        } else if m.invite_accepted_at.is_some() {
            "accepted"
        } else if m.invite_rejected_at.is_some() {
            "rejected"
        } else {
            "member"
        })),
        "joined" => Some(json!(!m.invited && m.invite_rejected_at.is_none())),
        "pinned" => Some(json!(m.pinned_at.is_some())),
        "archived" => Some(json!(m.archived_at.is_some())),
        "banned" => Some(json!(app
            .social
            .channel_ban(cid, &m.user_id)
            .is_some_and(|b| !b.shadow))),
        "last_active" => user.and_then(|u| at(u.last_active)),
        other => user
            .and_then(|u| u.fields.get(other.strip_prefix("user.").unwrap_or(other)))
            .cloned(),
    }
}

fn member_matches(
    app: &AppData,
    cid: &str,
    m: &Member,
    filter: &Map<String, Value>,
) -> Result<bool, ApiError> {
    for (key, cond) in filter {
        let ok = match key.as_str() {
            "$and" | "$or" => {
                let subs = cond
                    .as_array()
                    .ok_or_else(|| ApiError::input(format!("{key} needs an array")))?;
                let mut results = Vec::new();
                for sub in subs.iter().take(crate::filter::MAX_FILTER_LIST) {
                    let sub = sub
                        .as_object()
                        .ok_or_else(|| ApiError::input(format!("{key} items must be objects")))?;
                    // One level: a member filter has no deeper structure worth nesting.
                    if sub.keys().any(|k| k.starts_with('$')) {
                        return Err(ApiError::input("member filters nest only one level"));
                    }
                    results.push(member_matches(app, cid, m, sub)?);
                }
                if key == "$and" {
                    results.iter().all(|r| *r)
                } else {
                    results.iter().any(|r| *r)
                }
            }
            other if other.starts_with('$') => {
                return Err(ApiError::input(format!(
                    "unsupported filter operator {other}"
                )))
            }
            other => value_match(field(app, cid, m, other).as_ref(), cond)?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sort keys as (field, descending); default `created_at` ascending, as Stream does.
fn sort_keys(sort: Option<&Value>) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = sort
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .take(4)
                .filter_map(|i| {
                    let field = i.get("field").and_then(Value::as_str)?;
                    let desc = i.get("direction").and_then(Value::as_i64).unwrap_or(1) < 0;
                    Some((field.to_owned(), desc))
                })
                .collect()
        })
        .unwrap_or_default();
    if out.is_empty() {
        out.push(("created_at".to_owned(), false));
    }
    out
}

fn compare(app: &AppData, cid: &str, a: &Member, b: &Member, keys: &[(String, bool)]) -> Ordering {
    for (key, desc) in keys {
        let ord = match key.as_str() {
            "created_at" => a.created_at.cmp(&b.created_at),
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "pinned_at" => a.pinned_at.cmp(&b.pinned_at),
            other => {
                let (x, y) = (field(app, cid, a, other), field(app, cid, b, other));
                x.as_ref()
                    .map(Value::to_string)
                    .cmp(&y.as_ref().map(Value::to_string))
            }
        };
        let ord = if *desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.user_id.cmp(&b.user_id)
}
