//! Muting users and channels: `POST /moderation/mute` and `/unmute` (the SDK's `muteUser`,
//! `unmuteUser`), `POST /moderation/mute/channel` and `/unmute/channel` (`channel.mute`,
//! `channel.unmute`). The mutes live in `social` and show in the user's `me` (`mutes`,
//! `channel_mutes`) and in each channel's `muted` as the user sees it.
//!
//! Who hears what: `notification.mutes_updated` / `notification.channel_mutes_updated`, carrying
//! the new `me`, go to every connection of the muting user and nobody else
//! (`stream-event-recipients.md`); the SDK takes its `mutedUsers` / `mutedChannels` from them.

use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::channels::existing;
use crate::error::ApiError;
use crate::render::{self, ts};
use crate::req::{check_id, Req};
use crate::social::{ChannelMute, Mute, MAX_MUTES_PER_USER};
use crate::store::{frame, AppData};

/// Targets one mute request may name.
const MAX_TARGETS: usize = 100;

/// `POST /moderation/mute` → `MuteUserResponse`. `timeout` is in minutes.
pub(crate) fn mute(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let targets = ids(req, "target_id", "target_ids")?;
    let expires = expiry(req.body.get("timeout"), Duration::minutes)?;
    let now = OffsetDateTime::now_utc();
    let (found, missing): (Vec<String>, Vec<String>) =
        targets.into_iter().partition(|t| app.users.contains_key(t));
    if found.contains(&user) {
        return Err(ApiError::input("a user cannot mute themselves"));
    }
    let social = app.social.users.entry(user.clone()).or_default();
    for target in &found {
        social.mutes.retain(|m| m.target != *target);
        if social.mutes.len() >= MAX_MUTES_PER_USER {
            return Err(ApiError::input(format!(
                "a user can mute at most {MAX_MUTES_PER_USER} users"
            ))
            .at_bound("mutes_per_user"));
        }
        social.mutes.push(Mute {
            target: target.clone(),
            created_at: now,
            expires,
        });
    }
    announce(app, &user, "notification.mutes_updated", now);
    let mutes = render::mutes(app, &user);
    let mine: Vec<Value> = mutes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["target"]["id"]
                .as_str()
                .is_some_and(|t| found.iter().any(|f| f == t))
        })
        .cloned()
        .collect();
    let mut out = json!({
        "mutes": mine,
        "own_user": render::own_user(app, &user),
        "non_existing_users": missing,
    });
    if let (Some(first), Some(obj)) = (mine.first(), out.as_object_mut()) {
        obj.insert("mute".into(), first.clone());
    }
    Ok(out)
}

/// `POST /moderation/unmute` → `UnmuteUserResponse`.
pub(crate) fn unmute(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let targets = ids(req, "target_id", "target_ids")?;
    let missing: Vec<&String> = targets
        .iter()
        .filter(|t| !app.users.contains_key(*t))
        .collect();
    let missing = json!(missing);
    if let Some(social) = app.social.users.get_mut(&user) {
        social.mutes.retain(|m| !targets.contains(&m.target));
    }
    announce(
        app,
        &user,
        "notification.mutes_updated",
        OffsetDateTime::now_utc(),
    );
    Ok(json!({ "non_existing_users": missing }))
}

/// `POST /moderation/mute/channel` → `MuteChannelResponse`. `expiration` is in milliseconds.
pub(crate) fn mute_channel(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let cids = ids(req, "channel_cid", "channel_cids")?;
    for cid in &cids {
        existing(app, cid)?;
    }
    let expires = expiry(req.body.get("expiration"), Duration::milliseconds)?;
    let now = OffsetDateTime::now_utc();
    let social = app.social.users.entry(user.clone()).or_default();
    for cid in &cids {
        social.channel_mutes.retain(|m| m.cid != *cid);
        if social.channel_mutes.len() >= MAX_MUTES_PER_USER {
            return Err(ApiError::input(format!(
                "a user can mute at most {MAX_MUTES_PER_USER} channels"
            ))
            .at_bound("channel_mutes_per_user"));
        }
        social.channel_mutes.push(ChannelMute {
            cid: cid.clone(),
            created_at: now,
            expires,
        });
    }
    announce(app, &user, "notification.channel_mutes_updated", now);
    let mutes: Vec<Value> = render::channel_mutes(app, &user)
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["channel"]["cid"]
                .as_str()
                .is_some_and(|c| cids.iter().any(|x| x == c))
        })
        .cloned()
        .collect();
    let mut out = json!({
        "channel_mutes": mutes,
        "own_user": render::own_user(app, &user),
    });
    if let (Some(first), Some(obj)) = (mutes.first(), out.as_object_mut()) {
        obj.insert("channel_mute".into(), first.clone());
    }
    Ok(out)
}

/// `POST /moderation/unmute/channel` → `UnmuteResponse`.
pub(crate) fn unmute_channel(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let cids = ids(req, "channel_cid", "channel_cids")?;
    if let Some(social) = app.social.users.get_mut(&user) {
        social.channel_mutes.retain(|m| !cids.contains(&m.cid));
    }
    announce(
        app,
        &user,
        "notification.channel_mutes_updated",
        OffsetDateTime::now_utc(),
    );
    Ok(json!({}))
}

/// The ids of a single-or-list pair of keys (`target_id` / `target_ids`), at least one.
fn ids(req: &Req<'_>, one: &str, many: &str) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    if let Some(v) = req.body.get(one).filter(|v| !v.is_null()) {
        out.push(
            v.as_str()
                .ok_or_else(|| ApiError::input(format!("{one} must be a string")))?
                .to_owned(),
        );
    }
    if let Some(v) = req.body.get(many).filter(|v| !v.is_null()) {
        let list = v
            .as_array()
            .filter(|l| l.len() <= MAX_TARGETS)
            .ok_or_else(|| {
                ApiError::input(format!("{many} must be an array of at most {MAX_TARGETS}"))
            })?;
        for item in list {
            out.push(
                item.as_str()
                    .ok_or_else(|| ApiError::input(format!("{many} must be strings")))?
                    .to_owned(),
            );
        }
    }
    if out.is_empty() {
        return Err(ApiError::input(format!("{one} or {many} is required")));
    }
    for id in &out {
        // A cid is `type:id`; each half follows the id alphabet.
        for part in id.split(':') {
            check_id(part)?;
        }
    }
    out.dedup();
    Ok(out)
}

/// An optional positive duration in `unit`s from now; `None` means no expiry.
fn expiry(
    value: Option<&Value>,
    unit: fn(i64) -> Duration,
) -> Result<Option<OffsetDateTime>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let n = v
                .as_i64()
                .filter(|n| *n >= 0 && *n <= 1_000_000_000_000)
                .ok_or_else(|| ApiError::input("a mute's timeout must be a non-negative number"))?;
            Ok((n > 0).then(|| OffsetDateTime::now_utc() + unit(n)))
        }
    }
}

/// `kind` with the user's current `me` to all of their connections.
fn announce(app: &AppData, user: &str, kind: &str, now: OffsetDateTime) {
    let ev = json!({
        "type": kind,
        "created_at": ts(now),
        "custom": {},
        "me": render::own_user(app, user),
    });
    app.push_user(user, &frame(&ev));
}
