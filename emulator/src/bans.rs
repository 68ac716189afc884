//! Bans and flags: `POST /moderation/ban` and `DELETE /moderation/ban` (the SDK's `banUser`,
//! `unbanUser`, `shadowBan`, `removeShadowBan`, and `channel.banUser` / `unbanUser`, which name
//! the channel as `type` + `id` or `channel_cid`), and `POST /moderation/flag` / `/unflag`.
//!
//! A ban lasts `timeout` minutes or for good. A banned user cannot send messages (globally, or in
//! the channel of a channel ban); a shadow-banned one can, and nobody is told: their messages are
//! `shadowed: true` and shown to them alone (events, channel state, replies, search), as Stream
//! does. Only a server token
//! or an `admin` / `moderator` user bans globally; a channel moderator may ban in their channel.
//!
//! Who hears what (`stream-event-recipients.md`): a global `user.banned` / `user.unbanned` goes to
//! every connection of the banned user; a channel one (it carries a cid) to every connection of
//! the banned user and to the channel's watchers, whose SDKs mark the member banned. Shadow bans
//! are announced to nobody.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};
use time::{Duration, OffsetDateTime};

use crate::auth::Identity;
use crate::channels::existing;
use crate::error::ApiError;
use crate::events::channel_base;
use crate::render::{self, ts};
use crate::req::{check_id, Req};
use crate::social::{Ban, Flag, MAX_FLAGS_PER_APP};
use crate::store::{frame, AppData};

/// Longest ban timeout, in minutes (ten years).
const MAX_BAN_MINUTES: i64 = 10 * 365 * 24 * 60;

/// The target and channel a ban request names, from the body (ban) or the query (unban).
struct Target {
    user: String,
    cid: Option<String>,
}

fn target(fields: &dyn Fn(&str) -> Option<String>) -> Result<Target, ApiError> {
    let user =
        fields("target_user_id").ok_or_else(|| ApiError::input("target_user_id is required"))?;
    check_id(&user)?;
    let cid = match (fields("channel_cid"), fields("type"), fields("id")) {
        (Some(cid), _, _) => Some(cid),
        (None, Some(t), Some(id)) => Some(format!("{t}:{id}")),
        _ => None,
    };
    if let Some(cid) = &cid {
        for part in cid.split(':') {
            check_id(part)?;
        }
    }
    Ok(Target { user, cid })
}

/// Who may ban: a server token; an admin or moderator user; for a channel ban, a channel
/// moderator. Returns the acting user, if any.
pub(crate) fn may_ban(
    app: &AppData,
    req: &Req<'_>,
    cid: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let Identity::User(user) = req.ident else {
        return Ok(req.acting_user(None).ok());
    };
    let role = app.users.get(user).map(|u| u.role.as_str());
    if matches!(role, Some("admin" | "moderator")) {
        return Ok(Some(user.clone()));
    }
    if let Some(cid) = cid {
        let ch = existing(app, cid)?;
        if ch.members.iter().any(|m| &m.user_id == user && m.moderator) {
            return Ok(Some(user.clone()));
        }
    }
    Err(ApiError::forbidden(format!(
        "user {user} is not allowed to ban users here"
    )))
}

/// `POST /moderation/ban` → `Response`.
pub(crate) fn ban(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let body = |k: &str| req.body.get(k).and_then(Value::as_str).map(str::to_owned);
    let t = target(&body)?;
    if let Some(cid) = &t.cid {
        existing(app, cid)?;
    }
    let by = may_ban(app, req, t.cid.as_deref())?;
    if by.as_deref() == Some(t.user.as_str()) {
        return Err(ApiError::input("a user cannot ban themselves"));
    }
    let minutes = match req.body.get("timeout") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .filter(|m| *m > 0 && *m <= MAX_BAN_MINUTES)
                .ok_or_else(|| ApiError::input("timeout must be a positive number of minutes"))?,
        ),
    };
    let now = OffsetDateTime::now_utc();
    app.ensure_user(&t.user, now);
    let record = Ban {
        shadow: req.flag("shadow"),
        reason: body("reason"),
        expires: minutes.map(|m| now + Duration::minutes(m)),
        created_at: now,
        by: by.clone(),
    };
    match &t.cid {
        Some(cid) => {
            app.social
                .channel_bans
                .insert((cid.clone(), t.user.clone()), record.clone());
        }
        None => app.social.users.entry(t.user.clone()).or_default().ban = Some(record.clone()),
    }
    if !record.shadow {
        announce(app, &t, "user.banned", Some(&record), by.as_deref(), now);
    }
    Ok(json!({}))
}

/// `DELETE /moderation/ban?target_user_id=…[&type=…&id=…|&channel_cid=…]` → `Response`.
pub(crate) fn unban(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let query = |k: &str| req.query.get(k).cloned();
    let t = target(&query)?;
    let by = may_ban(app, req, t.cid.as_deref())?;
    let removed = match &t.cid {
        Some(cid) => app
            .social
            .channel_bans
            .remove(&(cid.clone(), t.user.clone())),
        None => app.social.users.get_mut(&t.user).and_then(|u| u.ban.take()),
    };
    if let Some(ban) = removed.filter(|b| !b.shadow) {
        let now = OffsetDateTime::now_utc();
        announce(app, &t, "user.unbanned", Some(&ban), by.as_deref(), now);
    }
    Ok(json!({}))
}

fn announce(
    app: &AppData,
    t: &Target,
    kind: &str,
    ban: Option<&Ban>,
    by: Option<&str>,
    now: OffsetDateTime,
) {
    let mut ev = match &t.cid {
        Some(cid) => channel_base(app, kind, cid, now),
        None => {
            let mut m = Map::new();
            m.insert("type".into(), json!(kind));
            m.insert("created_at".into(), json!(ts(now)));
            m.insert("custom".into(), json!({}));
            m
        }
    };
    ev.insert("user".into(), render::user(app, &t.user));
    if let Some(by) = by {
        ev.insert("created_by".into(), render::user(app, by));
    }
    if let Some(ban) = ban.filter(|_| kind == "user.banned") {
        if let Some(reason) = &ban.reason {
            ev.insert("reason".into(), json!(reason));
        }
        if let Some(t) = ban.expires {
            ev.insert("expiration".into(), json!(ts(t)));
        }
        ev.insert("shadow".into(), json!(false));
    }
    let bytes = frame(&Value::Object(ev));
    let mut conns: BTreeSet<&String> = app.user_conns.get(&t.user).into_iter().flatten().collect();
    if let Some(ch) = t.cid.as_ref().and_then(|c| app.channels.get(c)) {
        conns.extend(ch.watchers.iter());
    }
    for conn in conns {
        app.push(conn, &bytes);
    }
}

/// Refuses a message from a user banned globally or in `cid` (a shadow ban lets it through).
pub(crate) fn check_can_post(app: &AppData, cid: &str, user: &str) -> Result<(), ApiError> {
    let banned = app.social.global_ban(user).is_some_and(|b| !b.shadow)
        || app.social.channel_ban(cid, user).is_some_and(|b| !b.shadow);
    if banned {
        return Err(ApiError::forbidden(format!(
            "user {user} is banned from {cid}"
        )));
    }
    Ok(())
}

/// `POST /moderation/flag` → `FlagMessageResponse`.
pub(crate) fn flag(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let message = req.body.get("target_message_id").and_then(Value::as_str);
    let target_user = req.body.get("target_user_id").and_then(Value::as_str);
    match (message, target_user) {
        (Some(id), _) => {
            let found = app
                .channels
                .values()
                .any(|c| c.messages.iter().any(|m| m.id == id));
            if !found {
                return Err(ApiError::not_found(format!("message {id} does not exist")));
            }
        }
        (None, Some(id)) => {
            if !app.users.contains_key(id) {
                return Err(ApiError::not_found(format!("user {id} does not exist")));
            }
        }
        (None, None) => {
            return Err(ApiError::input(
                "target_message_id or target_user_id is required",
            ))
        }
    }
    let now = OffsetDateTime::now_utc();
    let flags = &mut app.social.flags;
    flags.retain(|f| {
        !(f.by == user
            && f.target_message.as_deref() == message
            && f.target_user.as_deref() == target_user)
    });
    if flags.len() >= MAX_FLAGS_PER_APP {
        flags.remove(0);
        app.metrics.bound("flags_per_app");
    }
    flags.push(Flag {
        by: user.clone(),
        target_user: target_user.map(str::to_owned),
        target_message: message.map(str::to_owned),
    });
    let mut flag = json!({
        "created_at": ts(now),
        "updated_at": ts(now),
        "created_by_automod": false,
        "user": render::user(app, &user),
    });
    if let Some(obj) = flag.as_object_mut() {
        if let Some(id) = message {
            obj.insert("target_message_id".into(), json!(id));
        }
        if let Some(id) = target_user {
            obj.insert("target_user".into(), render::user(app, id));
        }
        if let Some(reason) = req.body.get("reason").and_then(Value::as_str) {
            obj.insert("reason".into(), json!(reason));
        }
    }
    Ok(json!({ "flag": flag, "review_queue_item_id": uuid::Uuid::new_v4().to_string() }))
}

/// `POST /moderation/unflag` (deprecated, not in the client-side spec; the SDK still has it) →
/// `Response`: forgets the caller's flag of that message or user.
pub(crate) fn unflag(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let message = req.body.get("target_message_id").and_then(Value::as_str);
    let target_user = req.body.get("target_user_id").and_then(Value::as_str);
    app.social.flags.retain(|f| {
        !(f.by == user
            && f.target_message.as_deref() == message
            && f.target_user.as_deref() == target_user)
    });
    Ok(json!({}))
}
