//! Message reminders: `POST`, `PATCH` and `DELETE /messages/{id}/reminders` (the SDK's
//! `createReminder`, `updateReminder`, `deleteReminder`; `remind_at` optional, without it a
//! "saved for later" bookmark) and `POST /reminders/query`. One reminder per user and message, at
//! most `MAX_REMINDERS_PER_USER` per user.
//!
//! Who hears what: `reminder.created` / `updated` / `deleted` go to every connection of the
//! reminder's owner and nobody else (`stream-event-recipients.md`, inferred). When `remind_at`
//! comes, `notification.reminder_due` goes to every connection of the owner (the reminder clock,
//! `reminder_clock`, calls [`fire_due`]; the due times are an index kept here, one entry per
//! reminder).
//!
//! The spec gives `POST` a bare `ReminderResponseData` while the SDK reads `{reminder}`: the
//! answer carries both (the same fields at the top level and under `reminder`).

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::filter::value_match;
use crate::render::{self, ts};
use crate::render_chat;
use crate::req::{check_id, Req};
use crate::social::{Reminder, MAX_REMINDERS_PER_USER};
use crate::store::{frame, AppData};

/// Reminders one query returns by default and at most.
pub(crate) const DEFAULT_REMINDERS_LIMIT: usize = 25;
pub(crate) const MAX_REMINDERS_LIMIT: usize = 100;

/// The cid of the channel holding message `id`.
fn channel_of(app: &AppData, id: &str) -> Result<String, ApiError> {
    check_id(id)?;
    app.channels
        .values()
        .find(|c| c.messages.iter().any(|m| m.id == id))
        .map(|c| c.cid.clone())
        .ok_or_else(|| ApiError::not_found(format!("message {id} does not exist")))
}

fn remind_at(req: &Req<'_>) -> Result<Option<Option<OffsetDateTime>>, ApiError> {
    match req.body.get("remind_at") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
            .map(|t| Some(Some(t)))
            .map_err(|_| ApiError::input("remind_at must be an RFC 3339 date-time")),
        Some(_) => Err(ApiError::input("remind_at must be a date-time string")),
    }
}

/// `POST /messages/{id}/reminders` → `ReminderResponseData` (and `reminder`).
pub(crate) fn create(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let cid = channel_of(app, id)?;
    let user = req.acting_user(None)?;
    let at = remind_at(req)?.flatten();
    let key = (user.clone(), id.to_owned());
    if app.social.reminders.contains_key(&key) {
        return Err(ApiError::input(format!(
            "a reminder for message {id} already exists"
        )));
    }
    if app.social.reminders.keys().filter(|k| k.0 == user).count() >= MAX_REMINDERS_PER_USER {
        return Err(ApiError::input(format!(
            "a user can keep at most {MAX_REMINDERS_PER_USER} reminders"
        ))
        .at_bound("reminders_per_user"));
    }
    let now = OffsetDateTime::now_utc();
    app.social.reminders.insert(
        key.clone(),
        Reminder {
            cid,
            remind_at: at,
            created_at: now,
            updated_at: now,
            due: None,
        },
    );
    schedule(app, &key);
    let reminder = render(app, &key);
    announce(app, &key, "reminder.created", &reminder, now);
    let mut out = reminder.as_object().cloned().unwrap_or_default();
    out.insert("reminder".into(), reminder);
    Ok(Value::Object(out))
}

/// `PATCH /messages/{id}/reminders` → `UpdateReminderResponse`.
pub(crate) fn update(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let key = (user, id.to_owned());
    let at = remind_at(req)?;
    let now = OffsetDateTime::now_utc();
    let r = app
        .social
        .reminders
        .get_mut(&key)
        .ok_or_else(|| ApiError::not_found(format!("no reminder for message {id}")))?;
    if let Some(at) = at {
        r.remind_at = at;
    }
    r.updated_at = now;
    schedule(app, &key);
    let reminder = render(app, &key);
    announce(app, &key, "reminder.updated", &reminder, now);
    Ok(json!({ "reminder": reminder }))
}

/// `DELETE /messages/{id}/reminders` → `DeleteReminderResponse`.
pub(crate) fn delete(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let key = (user, id.to_owned());
    if !app.social.reminders.contains_key(&key) {
        return Err(ApiError::not_found(format!("no reminder for message {id}")));
    }
    let reminder = render(app, &key);
    unschedule(app, &key);
    app.social.reminders.remove(&key);
    announce(
        app,
        &key,
        "reminder.deleted",
        &reminder,
        OffsetDateTime::now_utc(),
    );
    Ok(json!({}))
}

/// `POST /reminders/query` → `QueryRemindersResponse`: the caller's reminders, filtered by
/// `channel_cid`, `message_id`, `remind_at` or `created_at`, soonest `remind_at` first.
pub(crate) fn query(app: &AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let empty = Map::new();
    let filter = match req.body.get("filter") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(f)) => f,
        Some(_) => return Err(ApiError::input("filter must be an object")),
    };
    let mut hits: Vec<(&(String, String), &Reminder)> = Vec::new();
    for (key, r) in app.social.reminders.iter().filter(|(k, _)| k.0 == user) {
        let mut ok = true;
        for (field, cond) in filter {
            let actual = match field.as_str() {
                "channel_cid" => Some(json!(r.cid)),
                "message_id" => Some(json!(key.1)),
                "remind_at" => r.remind_at.map(|t| json!(ts(t))),
                "created_at" => Some(json!(ts(r.created_at))),
                other => {
                    return Err(ApiError::input(format!(
                        "reminders cannot be filtered by {other}"
                    )))
                }
            };
            ok &= value_match(actual.as_ref(), cond)?;
        }
        if ok {
            hits.push((key, r));
        }
    }
    hits.sort_by(|a, b| {
        (a.1.remind_at.is_none(), a.1.remind_at, a.1.created_at, a.0).cmp(&(
            b.1.remind_at.is_none(),
            b.1.remind_at,
            b.1.created_at,
            b.0,
        ))
    });
    let limit = req
        .body
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_REMINDERS_LIMIT, |l| {
            (l as usize).clamp(1, MAX_REMINDERS_LIMIT)
        });
    let reminders: Vec<Value> = hits
        .iter()
        .take(limit)
        .map(|(k, _)| render(app, k))
        .collect();
    Ok(json!({ "reminders": reminders }))
}

/// Puts the reminder's `remind_at` (if any) in the due index, replacing its former entry. A time
/// already past falls due at the clock's next tick; one too far ahead to represent never does.
fn schedule(app: &mut AppData, key: &(String, String)) {
    unschedule(app, key);
    let Some(r) = app.social.reminders.get_mut(key) else {
        return;
    };
    let wait = r.remind_at.map(|at| at - OffsetDateTime::now_utc());
    let due = wait.and_then(|w| {
        let w = std::time::Duration::try_from(w).unwrap_or_default();
        tokio::time::Instant::now().checked_add(w)
    });
    r.due = due;
    if let Some(due) = due {
        app.social
            .reminders_due
            .insert((due, key.0.clone(), key.1.clone()));
    }
}

fn unschedule(app: &mut AppData, key: &(String, String)) {
    if let Some(due) = app.social.reminders.get_mut(key).and_then(|r| r.due.take()) {
        app.social
            .reminders_due
            .remove(&(due, key.0.clone(), key.1.clone()));
    }
}

/// Sends `notification.reminder_due` for every reminder due by `now`; returns how many.
pub(crate) fn fire_due(app: &mut AppData, now: tokio::time::Instant) -> usize {
    let mut fired = 0;
    while let Some(first) = app.social.reminders_due.first().cloned() {
        if first.0 > now {
            break;
        }
        app.social.reminders_due.remove(&first);
        let key = (first.1, first.2);
        let Some(r) = app.social.reminders.get_mut(&key) else {
            continue;
        };
        r.due = None;
        let reminder = render(app, &key);
        announce(
            app,
            &key,
            "notification.reminder_due",
            &reminder,
            OffsetDateTime::now_utc(),
        );
        fired += 1;
    }
    fired
}

/// The soonest due time, for the clock to sleep until.
pub(crate) fn next_due(app: &AppData) -> Option<tokio::time::Instant> {
    app.social.reminders_due.first().map(|d| d.0)
}

/// `ReminderResponseData`.
fn render(app: &AppData, key: &(String, String)) -> Value {
    let Some(r) = app.social.reminders.get(key) else {
        return Value::Null;
    };
    let mut v = json!({
        "user_id": key.0,
        "user": render::user(app, &key.0),
        "message_id": key.1,
        "channel_cid": r.cid,
        "created_at": ts(r.created_at),
        "updated_at": ts(r.updated_at),
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(t) = r.remind_at {
            obj.insert("remind_at".into(), json!(ts(t)));
        }
        if let Some(ch) = app.channels.get(&r.cid) {
            obj.insert("channel".into(), render_chat::channel(app, ch));
            if let Some(m) = ch.messages.iter().find(|m| m.id == key.1) {
                obj.insert("message".into(), render_chat::message(app, &r.cid, m));
            }
        }
    }
    v
}

/// `reminder.*` and `notification.reminder_due` to every connection of the owner.
fn announce(
    app: &AppData,
    key: &(String, String),
    kind: &str,
    reminder: &Value,
    now: OffsetDateTime,
) {
    let cid = reminder["channel_cid"].as_str().unwrap_or_default();
    let ev = json!({
        "type": kind,
        "cid": cid,
        "message_id": key.1,
        "user_id": key.0,
        "created_at": ts(now),
        "custom": {},
        "reminder": reminder,
    });
    app.push_user(&key.0, &frame(&ev));
}
