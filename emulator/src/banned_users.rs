//! `GET /query_banned_users?payload=…` (the SDK's `queryBannedUsers`): the bans in force, global
//! and per channel, as `BanResponse`s, newest first. Filters: `channel_cid` (a global ban has
//! none), `user_id`, `banned_by_id`, `reason`, `shadow` and `created_at`, with the shared
//! operators; `exclude_expired_bans`, `limit` and `offset`. Who may ask is who may ban
//! (`bans::may_ban`): a server token, an admin or moderator, or a channel's moderator for the
//! channel named by an `$eq` `channel_cid`.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::bans::may_ban;
use crate::error::ApiError;
use crate::filter::value_match;
use crate::render::{self, ts};
use crate::render_chat;
use crate::req::Req;
use crate::social::Ban;
use crate::store::AppData;

/// Bans one query returns by default and at most.
const DEFAULT_BANS_PAGE: usize = 25;
const MAX_BANS_PAGE: usize = 100;
/// Deepest `offset` accepted.
const MAX_BANS_OFFSET: usize = 10_000;

/// `GET /query_banned_users` → `QueryBannedUsersResponse`.
pub(crate) fn query(app: &AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let payload: Value = match req.query.get("payload") {
        Some(p) => {
            serde_json::from_str(p).map_err(|_| ApiError::input("payload is not valid JSON"))?
        }
        None => return Err(ApiError::input("payload is required")),
    };
    let filter = match payload.get("filter_conditions") {
        Some(Value::Object(f)) => f,
        _ => return Err(ApiError::input("filter_conditions must be an object")),
    };
    let named_cid = filter.get("channel_cid").and_then(|c| match c {
        Value::String(s) => Some(s.as_str()),
        other => other.get("$eq").and_then(Value::as_str),
    });
    may_ban(app, req, named_cid)?;
    let now = OffsetDateTime::now_utc();
    let live_only = payload.get("exclude_expired_bans") == Some(&Value::Bool(true));
    let mut hits: Vec<(Option<&str>, &str, &Ban)> = Vec::new();
    let global = app
        .social
        .users
        .iter()
        .filter_map(|(u, s)| s.ban.as_ref().map(|b| (None, u.as_str(), b)));
    let channel = app
        .social
        .channel_bans
        .iter()
        .map(|((cid, u), b)| (Some(cid.as_str()), u.as_str(), b));
    for (cid, user, ban) in global.chain(channel) {
        if live_only && ban.expires.is_some_and(|t| t <= now) {
            continue;
        }
        if matches(filter, cid, user, ban)? {
            hits.push((cid, user, ban));
        }
    }
    hits.sort_by(|a, b| (b.2.created_at, a.1).cmp(&(a.2.created_at, b.1)));
    let limit = payload
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_BANS_PAGE, |l| (l as usize).clamp(1, MAX_BANS_PAGE));
    let offset = payload.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    if offset > MAX_BANS_OFFSET {
        return Err(ApiError::input(format!(
            "offset must be at most {MAX_BANS_OFFSET}"
        )));
    }
    let bans: Vec<Value> = hits
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(cid, user, ban)| render(app, cid, user, ban))
        .collect();
    Ok(json!({ "bans": bans }))
}

fn matches(
    filter: &Map<String, Value>,
    cid: Option<&str>,
    user: &str,
    ban: &Ban,
) -> Result<bool, ApiError> {
    for (field, cond) in filter {
        let actual = match field.as_str() {
            "channel_cid" => cid.map(|c| json!(c)),
            "user_id" => Some(json!(user)),
            "banned_by_id" => ban.by.as_ref().map(|b| json!(b)),
            "reason" => ban.reason.as_ref().map(|r| json!(r)),
            "shadow" => Some(json!(ban.shadow)),
            "created_at" => Some(json!(ts(ban.created_at))),
            other => {
                return Err(ApiError::input(format!(
                    "banned users cannot be filtered by {other}"
                )))
            }
        };
        if !value_match(actual.as_ref(), cond)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `BanResponse`.
fn render(app: &AppData, cid: Option<&str>, user: &str, ban: &Ban) -> Value {
    let mut out = json!({
        "user": render::user(app, user),
        "created_at": ts(ban.created_at),
        "shadow": ban.shadow,
    });
    if let Some(obj) = out.as_object_mut() {
        if let Some(by) = &ban.by {
            obj.insert("banned_by".into(), render::user(app, by));
        }
        if let Some(reason) = &ban.reason {
            obj.insert("reason".into(), json!(reason));
        }
        if let Some(t) = ban.expires {
            obj.insert("expires".into(), json!(ts(t)));
        }
        if let Some(ch) = cid.and_then(|c| app.channels.get(c)) {
            obj.insert("channel".into(), render_chat::channel(app, ch));
        }
    }
    out
}
