//! Hiding channels, per member: `POST /channels/{type}/{id}/hide` (optionally `clear_history`) and
//! `/show`, their `channel.hidden` / `channel.visible` events, and the un-hiding a new message
//! brings. The events go to every connection of the member who hid or showed the channel, watching
//! or not, and to nobody else (`stream-event-recipients.md`).
//!
//! A new message shows the channel again without a `channel.visible`: Stream documents hiding "until
//! a new message is added" and names no event for that; the member's tabs learn of the message
//! from `message.new` or `notification.message_new`, which is what brings the channel back into an
//! SDK's channel list. The sender's `keep_channel_hidden` keeps it hidden for the sender only.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::channels::existing;
use crate::error::ApiError;
use crate::events::channel_base;
use crate::req::Req;
use crate::store::{frame, AppData, Channel};
use crate::{render, render_chat};

/// `POST /channels/{type}/{id}/hide` → `HideChannelResponse` (201).
pub(crate) fn hide(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    let clear = req.flag("clear_history");
    let now = OffsetDateTime::now_utc();
    set(app, req, cid, |m| {
        m.hidden = true;
        if clear {
            m.hide_messages_before = Some(now);
        }
    })
    .map(|user| {
        announce(app, cid, &user, "channel.hidden", Some(clear), now);
        json!({})
    })
}

/// `POST /channels/{type}/{id}/show` → `ShowChannelResponse` (201). Showing a channel that is not
/// hidden still announces it: the call is idempotent and the event harmless.
pub(crate) fn show(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    let now = OffsetDateTime::now_utc();
    set(app, req, cid, |m| m.hidden = false).map(|user| {
        announce(app, cid, &user, "channel.visible", None, now);
        json!({})
    })
}

/// Applies `change` to the acting user's membership; only members may hide or show a channel.
fn set(
    app: &mut AppData,
    req: &Req<'_>,
    cid: &str,
    change: impl FnOnce(&mut crate::store::Member),
) -> Result<String, ApiError> {
    existing(app, cid)?;
    let user = req.acting_user(None)?;
    let member = app
        .channels
        .get_mut(cid)
        .and_then(|ch| ch.members.iter_mut().find(|m| m.user_id == user))
        .ok_or_else(|| ApiError::forbidden(format!("only members of {cid} can hide or show it")))?;
    change(member);
    Ok(user)
}

/// `channel.hidden` (with `clear_history`) or `channel.visible` to every connection of `user`.
fn announce(
    app: &AppData,
    cid: &str,
    user: &str,
    kind: &str,
    clear_history: Option<bool>,
    now: OffsetDateTime,
) {
    let Some(ch) = app.channels.get(cid) else {
        return;
    };
    let mut ev = channel_base(app, kind, cid, now);
    ev.insert("user".into(), render::user(app, user));
    let mut channel = render_chat::channel(app, ch);
    if let Some(c) = channel.as_object_mut() {
        c.insert("hidden".into(), json!(clear_history.is_some()));
    }
    ev.insert("channel".into(), channel);
    if let Some(clear) = clear_history {
        ev.insert("clear_history".into(), json!(clear));
    }
    app.push_user(user, &frame(&Value::Object(ev)));
}

/// A new message in the channel shows it again for every member, except for a sender who asked
/// to `keep_channel_hidden`. A thread-only reply is not channel news and changes nothing.
pub(crate) fn unhide_on_message(
    ch: &mut Channel,
    sender: &str,
    keep_hidden: bool,
    in_channel: bool,
) {
    if !in_channel {
        return;
    }
    for m in &mut ch.members {
        if !(keep_hidden && m.user_id == sender) {
            m.hidden = false;
        }
    }
}

/// Whether `user` has hidden `ch` (what the `hidden` filter of `queryChannels` tests).
pub(crate) fn is_hidden(ch: &Channel, user: &str) -> bool {
    ch.members.iter().any(|m| m.user_id == user && m.hidden)
}

/// Whether `ch` is a one-to-one channel whose other member `user` blocked: Stream hides those
/// from the blocker's channel list like hidden channels (they come back when `hidden` is asked).
pub(crate) fn blocked_dm(app: &AppData, ch: &Channel, user: &str) -> bool {
    if ch.members.len() != 2 || !ch.members.iter().any(|m| m.user_id == user) {
        return false;
    }
    let Some(social) = app.social.users.get(user) else {
        return false;
    };
    ch.members
        .iter()
        .filter(|m| m.user_id != user)
        .any(|m| social.blocked.iter().any(|(id, _)| *id == m.user_id))
}
