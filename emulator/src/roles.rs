//! The parts of a channel update (`POST /channels/{type}/{id}`) that change memberships rather
//! than the member list: `invites` (invited members), `accept_invite` / `reject_invite` (the
//! invitee answering) and `add_moderators` / `demote_moderators`. Checked in full before
//! anything changes ([`plan`]), then applied ([`apply`]) by `members::update`.
//!
//! Who hears what: an invite is a `member.added` (with `invited: true`) to the watchers and a
//! `notification.invited` to the invitee's connections that do not watch; an answer is a
//! `member.updated` to the watchers and `notification.invite_accepted` / `invite_rejected` to the
//! invitee's connections that do not watch; a moderator change is a `member.updated` to the
//! watchers (`stream-event-recipients.md`).

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::channels::{existing, member_ids};
use crate::error::ApiError;
use crate::events::{channel_base, rendered, to_unwatching, to_watchers, with_channel};
use crate::render;
use crate::req::Req;
use crate::store::{AppData, Member, ReadState};

/// What a channel update asks of memberships, checked.
#[derive(Default)]
pub(crate) struct Plan {
    invites: Vec<String>,
    /// `Some(true)` accept, `Some(false)` reject.
    answer: Option<bool>,
    promote: Vec<String>,
    demote: Vec<String>,
}

/// Checks the request's `invites`, `accept_invite`, `reject_invite`, `add_moderators` and
/// `demote_moderators` against the channel.
pub(crate) fn plan(app: &AppData, req: &Req<'_>, cid: &str, user: &str) -> Result<Plan, ApiError> {
    let ch = existing(app, cid)?;
    let member = |id: &str| ch.members.iter().find(|m| m.user_id == id);
    let invites = member_ids(req.body.get("invites"))?
        .into_iter()
        .filter(|id| member(id).is_none())
        .collect();
    let answer = match (req.flag("accept_invite"), req.flag("reject_invite")) {
        (true, true) => {
            return Err(ApiError::input(
                "accept_invite and reject_invite cannot both be set",
            ))
        }
        (true, false) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    };
    if answer.is_some() && !member(user).is_some_and(|m| m.invited) {
        return Err(ApiError::input(format!(
            "user {user} has no pending invite to {cid}"
        )));
    }
    let promote = member_ids(req.body.get("add_moderators"))?;
    let demote = member_ids(req.body.get("demote_moderators"))?;
    for id in promote.iter().chain(&demote) {
        if member(id).is_none() {
            return Err(ApiError::input(format!(
                "user {id} is not a member of {cid}"
            )));
        }
    }
    Ok(Plan {
        invites,
        answer,
        promote,
        demote,
    })
}

/// Applies a checked plan and announces each change.
pub(crate) fn apply(app: &mut AppData, cid: &str, user: &str, plan: Plan, now: OffsetDateTime) {
    for id in &plan.invites {
        app.ensure_user(id, now);
        if let Some(ch) = app.channels.get_mut(cid) {
            let mut m = Member::new(id.clone(), false, now);
            m.invited = true;
            ch.members.push(m);
            ch.reads.insert(
                id.clone(),
                ReadState {
                    last_read: now,
                    last_read_message_id: None,
                    unread: 0,
                },
            );
        }
        announce(
            app,
            cid,
            id,
            user,
            "member.added",
            Some("notification.invited"),
            now,
        );
    }
    if let Some(accept) = plan.answer {
        change(app, cid, user, now, |m| {
            m.invited = false;
            if accept {
                m.invite_accepted_at = Some(now);
            } else {
                m.invite_rejected_at = Some(now);
            }
        });
        let note = if accept {
            "notification.invite_accepted"
        } else {
            "notification.invite_rejected"
        };
        announce(app, cid, user, user, "member.updated", Some(note), now);
    }
    for (ids, moderator) in [(&plan.promote, true), (&plan.demote, false)] {
        for id in ids {
            change(app, cid, id, now, |m| m.moderator = moderator);
            announce(app, cid, id, user, "member.updated", None, now);
        }
    }
}

fn change(
    app: &mut AppData,
    cid: &str,
    user: &str,
    now: OffsetDateTime,
    f: impl FnOnce(&mut Member),
) {
    if let Some(m) = app
        .channels
        .get_mut(cid)
        .and_then(|ch| ch.members.iter_mut().find(|m| m.user_id == user))
    {
        f(m);
        m.updated_at = now;
    }
}

/// `kind` (with the member) to the watchers, and `notification` to the member's connections
/// that do not watch.
fn announce(
    app: &AppData,
    cid: &str,
    member_id: &str,
    actor: &str,
    kind: &str,
    notification: Option<&str>,
    now: OffsetDateTime,
) {
    let Some(member) = rendered(app, cid, member_id) else {
        return;
    };
    let mut ev = channel_base(app, kind, cid, now);
    ev.insert("user".into(), render::user(app, actor));
    ev.insert("member".into(), member);
    let mut ev = with_channel(app, cid, ev);
    to_watchers(app, cid, &Value::Object(ev.clone()));
    if let Some(note) = notification {
        ev.insert("type".into(), json!(note));
        to_unwatching(app, member_id, cid, &Value::Object(ev));
    }
}
