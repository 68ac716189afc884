//! Messages after sending: `GET /messages/{id}` (GetMessage), `POST /messages/{id}` (UpdateMessage,
//! a full replacement of text, attachments and custom fields), `PUT /messages/{id}`
//! (UpdateMessagePartial: `set`/`unset`) and pinning through either update (`pinned`, `pin_expires`; the lists are in `message_lists`).
//! Deletion is in `deletion`. Every change is a `message.updated` or `message.deleted` to the
//! channel's watchers (Stream's
//! recipients for message events); responses show the caller's own reactions, events none.
//!
//! Only the author (or a server token) may change a message's content or delete it; any member may
//! pin or unpin (the `pin-message` capability every member has here).

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::actions::{MAX_ATTACHMENTS, MAX_MESSAGE_BYTES, MESSAGE_RESERVED};
use crate::auth::Identity;
use crate::config::MAX_MESSAGE_TEXT;
use crate::error::ApiError;
use crate::events::{channel_base, to_watchers};
use crate::message_refs;
use crate::render::{self, custom_of};
use crate::render_chat;
use crate::req::{check_id, Req};
use crate::store::{AppData, Channel, Message, Pin};

/// Keys of a message the SDK's update payload carries (it sends the whole message back) that are
/// neither editable here nor custom data.
const UPDATE_IGNORED: &[&str] = &[
    "pinned",
    "pinned_at",
    "pinned_by",
    "pin_expires",
    "message_text_updated_at",
    "reaction_groups",
    "channel",
    "command",
    "mml",
    "moderation",
    "draft",
    "reminder",
    "image_labels",
    "shared_location",
    "deleted_for_me",
    "mentioned_group_ids",
    "mentioned_groups",
    "mentioned_roles",
    "poll",
    "poll_id",
    "status",
    "error",
];

/// Where a message lives: its channel's cid and its index in the channel's history.
pub(crate) fn locate(app: &AppData, id: &str) -> Result<(String, usize), ApiError> {
    check_id(id)?;
    app.channels
        .values()
        .find_map(|ch| {
            ch.messages
                .iter()
                .position(|m| m.id == id)
                .map(|i| (ch.cid.clone(), i))
        })
        .ok_or_else(|| ApiError::not_found(format!("message with id {id} does not exist")))
}

/// The message at a located position.
pub(crate) fn at<'a>(app: &'a AppData, cid: &str, i: usize) -> Option<(&'a Channel, &'a Message)> {
    let ch = app.channels.get(cid)?;
    ch.messages.get(i).map(|m| (ch, m))
}

pub(crate) fn at_mut<'a>(
    app: &'a mut AppData,
    cid: &str,
    i: usize,
) -> Result<&'a mut Message, ApiError> {
    app.channels
        .get_mut(cid)
        .and_then(|ch| ch.messages.get_mut(i))
        .ok_or_else(|| ApiError::not_found("message does not exist"))
}

/// `GET /messages/{id}` → `GetMessageResponse` (the message with its channel).
pub(crate) fn get(app: &AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let viewer = req.acting_user(None).ok();
    let (cid, i) = locate(app, id)?;
    let (ch, m) = at(app, &cid, i).ok_or_else(|| ApiError::not_found("message does not exist"))?;
    let mut message = render_chat::message_for(app, &cid, m, viewer.as_deref());
    if let Some(map) = message.as_object_mut() {
        map.insert("channel".into(), render_chat::channel(app, ch));
    }
    Ok(json!({ "message": message }))
}

/// What an update changes; `None` leaves a part as it is.
#[derive(Default)]
struct Changes {
    text: Option<String>,
    attachments: Option<Vec<Value>>,
    /// `Some` replaces every custom field (a full update); else `set`/`unset` apply.
    custom: Option<Map<String, Value>>,
    set: Map<String, Value>,
    unset: Vec<String>,
    pinned: Option<bool>,
    pin_expires: Option<Option<OffsetDateTime>>,
    /// Replaces the mentioned users (a full update).
    mentioned: Option<Vec<String>>,
    /// When a new pin counts from (`pinned_at`, which `pinMessage` sends, `null` meaning now).
    pinned_at: Option<OffsetDateTime>,
}

impl Changes {
    fn touches_content(&self) -> bool {
        self.text.is_some()
            || self.attachments.is_some()
            || self.custom.is_some()
            || !self.set.is_empty()
            || !self.unset.is_empty()
    }
}

/// `POST /messages/{id}` → `UpdateMessageResponse`.
pub(crate) fn update(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let msg = req
        .body
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::input("message must be an object"))?;
    let hint = msg.get("user_id").and_then(Value::as_str).or_else(|| {
        msg.get("user")
            .and_then(|u| u.get("id"))
            .and_then(Value::as_str)
    });
    let actor = req.acting_user(hint)?;
    let mut custom = custom_of(msg, MESSAGE_RESERVED);
    custom.retain(|k, _| !UPDATE_IGNORED.contains(&k.as_str()));
    if let Some(Value::Object(extra)) = msg.get("custom") {
        custom.extend(extra.clone());
    }
    let changes = Changes {
        text: Some(text_of(msg.get("text"))?),
        attachments: Some(attachments_of(msg.get("attachments"))?),
        custom: Some(custom),
        pinned: msg.get("pinned").map(|v| v == &Value::Bool(true)),
        pin_expires: pin_expires_of(msg)?,
        mentioned: Some(message_refs::mentioned(msg.get("mentioned_users"))?),
        ..Changes::default()
    };
    apply(app, req, id, &actor, changes)
}

/// `PUT /messages/{id}` → `UpdateMessagePartialResponse`: `set` (text, attachments, pinned,
/// pin_expires, custom fields) and `unset` (custom fields, `pin_expires`).
pub(crate) fn partial(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let actor = req.acting_user(None)?;
    let mut set = match req.body.get("set") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(ApiError::input("set must be an object")),
    };
    let mut unset: Vec<String> = match req.body.get("unset") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| ApiError::input("unset must be an array of field names"))?,
    };
    let mut changes = Changes::default();
    if let Some(v) = set.remove("text") {
        changes.text = Some(text_of(Some(&v))?);
    }
    if let Some(v) = set.remove("attachments") {
        changes.attachments = Some(attachments_of(Some(&v))?);
    }
    if let Some(v) = set.remove("pinned") {
        changes.pinned = Some(v == Value::Bool(true));
    }
    match set.remove("pinned_at") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) => {
            changes.pinned_at = Some(
                OffsetDateTime::parse(&t, &Rfc3339)
                    .map_err(|_| ApiError::input("pinned_at must be an RFC 3339 timestamp"))?,
            );
        }
        Some(_) => return Err(ApiError::input("pinned_at must be a timestamp or null")),
    }
    if set.contains_key("pin_expires") {
        changes.pin_expires = pin_expires_of(&set)?;
        set.remove("pin_expires");
    }
    if unset.iter().any(|k| k == "pin_expires") {
        changes.pin_expires = Some(None);
        unset.retain(|k| k != "pin_expires");
    }
    if unset.iter().any(|k| k == "pinned") {
        changes.pinned = Some(false);
        unset.retain(|k| k != "pinned");
    }
    if let Some(key) = set
        .keys()
        .chain(unset.iter())
        .find(|k| MESSAGE_RESERVED.contains(&k.as_str()) || UPDATE_IGNORED.contains(&k.as_str()))
    {
        return Err(ApiError::input(format!(
            "message field {key} cannot be changed"
        )));
    }
    changes.set = set;
    changes.unset = unset;
    apply(app, req, id, &actor, changes)
}

/// Applies `changes` to message `id` for `actor`, announces `message.updated` and answers with
/// the message as the actor sees it.
fn apply(
    app: &mut AppData,
    req: &Req<'_>,
    id: &str,
    actor: &str,
    changes: Changes,
) -> Result<Value, ApiError> {
    let (cid, i) = locate(app, id)?;
    let server = matches!(req.ident, Identity::Server);
    let (ch, m) = at(app, &cid, i).ok_or_else(|| ApiError::not_found("message does not exist"))?;
    if m.extra.deleted_at.is_some() {
        return Err(ApiError::input(format!(
            "message {id} was deleted and cannot be updated"
        )));
    }
    if !server && changes.touches_content() && m.user_id != actor {
        return Err(ApiError::forbidden(format!(
            "user {actor} may not update the message of user {}",
            m.user_id
        )));
    }
    let member = ch.members.iter().any(|mb| mb.user_id == actor);
    if !server && changes.pinned.is_some() && !member && m.user_id != actor {
        return Err(ApiError::forbidden(format!(
            "only members of {cid} may pin its messages"
        )));
    }
    let now = OffsetDateTime::now_utc();
    let mut next_custom = changes.custom.clone().unwrap_or_else(|| m.custom.clone());
    for key in &changes.unset {
        next_custom.remove(key);
    }
    next_custom.extend(changes.set.clone());
    let text = changes.text.clone().unwrap_or_else(|| m.text.clone());
    let attachments = changes
        .attachments
        .clone()
        .unwrap_or_else(|| m.attachments.clone());
    let size = json!([text, attachments, next_custom]).to_string().len();
    if size > MAX_MESSAGE_BYTES {
        return Err(ApiError::input("message is too large"));
    }
    let was_pinned = crate::render_extra::is_pinned(m, now);
    let m = at_mut(app, &cid, i)?;
    if text != m.text {
        m.extra.text_updated_at = Some(now);
    }
    m.text = text;
    m.attachments = attachments;
    m.custom = next_custom;
    if let Some(users) = changes.mentioned {
        m.extra.mentioned_users = users;
    }
    match changes.pinned {
        Some(true) if !was_pinned => {
            m.extra.pin = Some(Pin {
                at: changes.pinned_at.unwrap_or(now),
                by: actor.to_owned(),
                expires: None,
            });
        }
        Some(false) => m.extra.pin = None,
        _ => {}
    }
    if let (Some(pin), Some(expires)) = (m.extra.pin.as_mut(), changes.pin_expires) {
        pin.expires = expires;
    }
    m.updated_at = now;
    app.ensure_user(actor, now);
    announce(app, &cid, i, actor, "message.updated", None, now);
    let (_, m) = at(app, &cid, i).ok_or_else(|| ApiError::not_found("message does not exist"))?;
    Ok(json!({ "message": render_chat::message_for(app, &cid, m, Some(actor)) }))
}

/// `message.updated` or (with `hard`) `message.deleted` for the message at `i`, to the watchers.
pub(crate) fn announce(
    app: &AppData,
    cid: &str,
    i: usize,
    actor: &str,
    kind: &str,
    hard: Option<bool>,
    now: OffsetDateTime,
) {
    let Some((ch, m)) = at(app, cid, i) else {
        return;
    };
    let mut ev = channel_base(app, kind, cid, now);
    ev.insert("message_id".into(), json!(m.id));
    ev.insert("message".into(), render_chat::message(app, cid, m));
    ev.insert("user".into(), render::user(app, actor));
    ev.insert("channel_member_count".into(), json!(ch.members.len()));
    ev.insert("channel_message_count".into(), json!(ch.message_count));
    if let Some(hard) = hard {
        ev.insert("hard_delete".into(), json!(hard));
    }
    to_watchers(app, cid, &Value::Object(ev));
}

fn text_of(v: Option<&Value>) -> Result<String, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(t)) if t.chars().count() <= MAX_MESSAGE_TEXT => Ok(t.clone()),
        Some(_) => Err(ApiError::input(format!(
            "text must be a string of at most {MAX_MESSAGE_TEXT} characters"
        ))),
    }
}

fn attachments_of(v: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ApiError::input("attachments must be an array")),
    };
    if list.len() > MAX_ATTACHMENTS {
        return Err(ApiError::input(format!(
            "at most {MAX_ATTACHMENTS} attachments"
        )));
    }
    list.iter()
        .map(|a| match a {
            Value::Object(obj) => {
                let mut obj = obj.clone();
                obj.entry("custom").or_insert_with(|| json!({}));
                Ok(Value::Object(obj))
            }
            _ => Err(ApiError::input("attachments must be objects")),
        })
        .collect()
}

/// `pin_expires` of an update: absent (unchanged), `null` (never) or a timestamp.
fn pin_expires_of(obj: &Map<String, Value>) -> Result<Option<Option<OffsetDateTime>>, ApiError> {
    match obj.get("pin_expires") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
            .map(|t| Some(Some(t)))
            .map_err(|_| ApiError::input("pin_expires must be an RFC 3339 timestamp")),
        Some(_) => Err(ApiError::input("pin_expires must be a timestamp or null")),
    }
}
