//! Deleting messages: `DELETE /messages/{id}` soft (the message stays, `type: deleted`), with
//! `hard=true` (gone from history, a parent with its replies) or with `delete_for_me=true` (deleted
//! for the caller only), and `POST /messages/{id}/undelete` (the SDK's server-side
//! `undeleteMessage`: a soft deletion undone).
//!
//! Who hears what: `message.deleted` and `message.undeleted` go to the channel's watchers
//! (`stream-event-recipients.md`); a deletion for one user is that user's business only, so its
//! `message.deleted` (with `deleted_for_me: true`) goes to that user's connections watching the
//! channel and to nobody else, and everyone else keeps seeing the message.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::events::channel_base;
use crate::messages::{announce, at, at_mut, locate};
use crate::render;
use crate::render_chat;
use crate::req::Req;
use crate::store::{frame, AppData};

/// `DELETE /messages/{id}` → `DeleteMessageResponse`.
pub(crate) fn delete(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let actor = req.acting_user(None)?;
    let query = |k: &str| req.query.get(k).is_some_and(|v| v == "true");
    let hard = query("hard");
    if query("delete_for_me") {
        if hard {
            return Err(ApiError::input(
                "delete_for_me and hard cannot be used together",
            ));
        }
        return delete_for_me(app, &actor, id);
    }
    let (cid, i) = locate(app, id)?;
    let server = matches!(req.ident, Identity::Server);
    let (_, m) = at(app, &cid, i).ok_or_else(|| ApiError::not_found("message does not exist"))?;
    if !server && m.user_id != actor {
        return Err(ApiError::forbidden(format!(
            "user {actor} may not delete the message of user {}",
            m.user_id
        )));
    }
    let now = OffsetDateTime::now_utc();
    let m = at_mut(app, &cid, i)?;
    m.extra.deleted_at.get_or_insert(now);
    m.extra.pin = None;
    m.updated_at = now;
    let (_, m) = at(app, &cid, i).ok_or_else(|| ApiError::not_found("message does not exist"))?;
    let rendered = render_chat::message_for(app, &cid, m, Some(actor.as_str()));
    announce(app, &cid, i, &actor, "message.deleted", Some(hard), now);
    if hard {
        remove(app, &cid, id);
    }
    Ok(json!({ "message": rendered }))
}

/// The message disappears for `actor` (a member of its channel) only. At most one entry per user,
/// so the list is bounded by the channel's members.
fn delete_for_me(app: &mut AppData, actor: &str, id: &str) -> Result<Value, ApiError> {
    let (cid, i) = locate(app, id)?;
    let member = app
        .channels
        .get(&cid)
        .is_some_and(|ch| ch.members.iter().any(|m| m.user_id == actor));
    if !member {
        return Err(ApiError::forbidden(format!(
            "user {actor} is not a member of {cid}"
        )));
    }
    let now = OffsetDateTime::now_utc();
    let m = at_mut(app, &cid, i)?;
    if !m.extra.deleted_for.iter().any(|(u, _)| u == actor) {
        m.extra.deleted_for.push((actor.to_owned(), now));
    }
    let (ch, m) = at(app, &cid, i).ok_or_else(|| ApiError::not_found("message does not exist"))?;
    let rendered = render_chat::message_for(app, &cid, m, Some(actor));
    let mut ev = channel_base(app, "message.deleted", &cid, now);
    ev.insert("message_id".into(), json!(m.id));
    ev.insert("message".into(), rendered.clone());
    ev.insert("user".into(), render::user(app, actor));
    ev.insert("deleted_for_me".into(), json!(true));
    ev.insert("hard_delete".into(), json!(false));
    ev.insert("channel_member_count".into(), json!(ch.members.len()));
    ev.insert("channel_message_count".into(), json!(ch.message_count));
    let bytes = frame(&Value::Object(ev));
    let own = app.user_conns.get(actor).into_iter().flatten();
    for conn in own.filter(|c| ch.watchers.contains(*c)) {
        app.push(conn, &bytes);
    }
    Ok(json!({ "message": rendered }))
}

/// `POST /messages/{id}/undelete` (server token; `undeleted_by` names the user) → the message.
/// Only a soft deletion can be undone: a hard-deleted message is gone.
pub(crate) fn undelete(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    if *req.ident != Identity::Server {
        return Err(ApiError::forbidden(
            "undeleting a message needs a server token",
        ));
    }
    let by = req
        .body
        .get("undeleted_by")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::input("undeleted_by is required"))?
        .to_owned();
    if !app.users.contains_key(&by) {
        return Err(ApiError::not_found(format!("user {by} does not exist")));
    }
    let (cid, i) = locate(app, id)?;
    let now = OffsetDateTime::now_utc();
    let m = at_mut(app, &cid, i)?;
    if m.extra.deleted_at.take().is_none() {
        return Err(ApiError::input(format!("message {id} is not deleted")));
    }
    m.updated_at = now;
    announce(app, &cid, i, &by, "message.undeleted", None, now);
    let (_, m) = at(app, &cid, i).ok_or_else(|| ApiError::not_found("message does not exist"))?;
    Ok(json!({ "message": render_chat::message_for(app, &cid, m, Some(by.as_str())) }))
}

/// Removes a message (and, for a parent, its replies) from the channel's history.
fn remove(app: &mut AppData, cid: &str, id: &str) {
    let Some(ch) = app.channels.get_mut(cid) else {
        return;
    };
    let parent = ch
        .messages
        .iter()
        .find(|m| m.id == id)
        .and_then(|m| m.parent_id.clone());
    ch.messages
        .retain(|m| m.id != id && m.parent_id.as_deref() != Some(id));
    if let Some(p) = parent.and_then(|p| ch.messages.iter_mut().find(|m| m.id == p)) {
        p.reply_count = p.reply_count.saturating_sub(1);
    }
    crate::thread_reads::forget_gone(ch);
}
