//! Channel updates, `POST /channels/{type}/{id}` (UpdateChannel): the SDK's `update` (`data`),
//! `addMembers` (`add_members`) and `removeMembers` (`remove_members`), and their events.
//!
//! Who hears what (`stream-event-recipients.md`): `member.added` / `member.removed` and
//! `channel.updated` go to the channel's watchers; `notification.added_to_channel` /
//! `notification.removed_from_channel` to the connections of the added or removed user that do
//! not watch the channel. `channel.updated` is sent only when `data` changes the channel: a member
//! change already has its own events, and the SDK's `member.*` handlers update the member count.
//! The optional `message` is sent after the change as a `type: system` message. Invites and
//! moderators ride on the same request; `roles` handles them.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::channels::{custom_data, existing, member_ids};
use crate::error::ApiError;
use crate::events::{channel_base, rendered, to_unwatching, to_watchers, with_channel};
use crate::req::{check_id, Req};
use crate::store::{AppData, Member, ReadState};
use crate::{render, render_chat, roles};

/// Members one channel may have; adding beyond it is refused.
const MAX_CHANNEL_MEMBERS: usize = 1_000;

/// `POST /channels/{type}/{id}` → `UpdateChannelResponse` (201).
pub(crate) fn update(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    let ch = existing(app, cid)?;
    let user = req.acting_user(None)?;
    let notice = req.body.get("message").filter(|m| !m.is_null());
    if notice.is_some_and(|m| !m.is_object()) {
        return Err(ApiError::input("message must be an object"));
    }
    let data = match req.body.get("data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => Some(custom_data(d)?),
        Some(_) => return Err(ApiError::input("data must be an object")),
    };
    let added: Vec<String> = member_ids(req.body.get("add_members"))?
        .into_iter()
        .filter(|id| !ch.members.iter().any(|m| &m.user_id == id))
        .collect();
    let removed = removed_ids(req.body.get("remove_members"))?;
    let removed: Vec<String> = removed
        .into_iter()
        .filter(|id| ch.members.iter().any(|m| &m.user_id == id))
        .collect();
    if ch.members.len() + added.len() > MAX_CHANNEL_MEMBERS {
        return Err(ApiError::input(format!(
            "a channel has at most {MAX_CHANNEL_MEMBERS} members"
        ))
        .at_bound("channel_members"));
    }
    let roles = roles::plan(app, req, cid, &user)?;
    let now = OffsetDateTime::now_utc();
    if let Some(custom) = data {
        if let Some(ch) = app.channels.get_mut(cid) {
            ch.data = custom;
            ch.updated_at = now;
        }
        let mut ev = channel_base(app, "channel.updated", cid, now);
        ev.insert("user".into(), render::user(app, &user));
        to_watchers(app, cid, &Value::Object(with_channel(app, cid, ev)));
    }
    for id in &added {
        app.ensure_user(id, now);
        if let Some(ch) = app.channels.get_mut(cid) {
            ch.members.push(Member::new(id.clone(), false, now));
            ch.reads.insert(
                id.clone(),
                ReadState {
                    last_read: now,
                    last_read_message_id: None,
                    unread: 0,
                },
            );
        }
        if let Some(member) = rendered(app, cid, id) {
            announce(app, cid, id, member, true, now);
        }
    }
    for id in &removed {
        // Rendered while still a member, so the events carry the membership that ends; sent
        // after, so their counts are the channel's new ones.
        let member = rendered(app, cid, id);
        if let Some(ch) = app.channels.get_mut(cid) {
            ch.members.retain(|m| &m.user_id != id);
            ch.reads.remove(id);
        }
        if let Some(member) = member {
            announce(app, cid, id, member, false, now);
        }
    }
    roles::apply(app, cid, &user, roles, now);
    if let Some(notice) = notice {
        crate::actions::send_system(app, req, cid, notice)?;
    }
    let ch = existing(app, cid)?;
    let members: Vec<Value> = ch
        .members
        .iter()
        .map(|m| render_chat::member(app, m))
        .collect();
    Ok(json!({ "channel": render_chat::channel(app, ch), "members": members }))
}

/// `remove_members`: user ids, at most 100 (the spec's `maxItems`).
fn removed_ids(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = value
        .as_array()
        .filter(|l| l.len() <= 100)
        .ok_or_else(|| ApiError::input("remove_members must be an array of at most 100 ids"))?;
    let mut out: Vec<String> = Vec::new();
    for v in list {
        let id = v
            .as_str()
            .ok_or_else(|| ApiError::input("remove_members must be user ids"))?;
        check_id(id)?;
        if !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    Ok(out)
}

/// `member.added` / `member.removed` to the watchers, and the matching notification to the
/// member's connections that do not watch.
fn announce(
    app: &AppData,
    cid: &str,
    user_id: &str,
    member: Value,
    added: bool,
    now: OffsetDateTime,
) {
    let (kind, notification) = if added {
        ("member.added", "notification.added_to_channel")
    } else {
        ("member.removed", "notification.removed_from_channel")
    };
    let mut ev = channel_base(app, kind, cid, now);
    ev.insert("user".into(), render::user(app, user_id));
    ev.insert("member".into(), member);
    let mut ev = with_channel(app, cid, ev);
    to_watchers(app, cid, &Value::Object(ev.clone()));
    ev.insert("type".into(), json!(notification));
    if added {
        // NotificationAddedToChannelEvent has no `user`; the member names them.
        ev.remove("user");
    }
    to_unwatching(app, user_id, cid, &Value::Object(ev));
}
