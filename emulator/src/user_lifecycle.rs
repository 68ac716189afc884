//! A user's lifecycle, server side (the SDK's `deactivateUser`, `reactivateUser`, `deleteUser`;
//! not in the client-side spec, whose events they still emit): `POST /users/{id}/deactivate`,
//! `POST /users/{id}/reactivate`, `DELETE /users/{id}`. A deactivated or deleted user's token is
//! refused on every REST call (`rest` asks [`refused`]); the user shows `deactivated_at` /
//! `deleted_at`.
//!
//! Who hears what (`stream-event-recipients.md`): `user.deactivated`, `user.reactivated` and
//! `user.deleted` go to every connection of that user.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::render::{self, ts};
use crate::req::{check_id, Req};
use crate::store::{frame, AppData};

fn server_only(req: &Req<'_>, id: &str) -> Result<(), ApiError> {
    check_id(id)?;
    if *req.ident != Identity::Server {
        return Err(ApiError::forbidden(
            "deactivating, reactivating or deleting a user needs a server token",
        ));
    }
    Ok(())
}

fn known(app: &AppData, id: &str) -> Result<(), ApiError> {
    if app.users.contains_key(id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("user {id} does not exist")))
    }
}

/// `POST /users/{id}/deactivate` → `{user}`.
pub(crate) fn deactivate(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    server_only(req, id)?;
    known(app, id)?;
    let now = OffsetDateTime::now_utc();
    app.social
        .users
        .entry(id.to_owned())
        .or_default()
        .deactivated_at = Some(now);
    announce(app, id, json!({"type": "user.deactivated"}), now);
    Ok(json!({ "user": render::user(app, id) }))
}

/// `POST /users/{id}/reactivate` → `{user}`.
pub(crate) fn reactivate(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    server_only(req, id)?;
    known(app, id)?;
    let now = OffsetDateTime::now_utc();
    if let Some(s) = app.social.users.get_mut(id) {
        s.deactivated_at = None;
    }
    announce(app, id, json!({"type": "user.reactivated"}), now);
    Ok(json!({ "user": render::user(app, id) }))
}

/// `DELETE /users/{id}?hard_delete=…&mark_messages_deleted=…&delete_conversation_channels=…`
/// → `{user}`. Messages and memberships stay; the user is marked deleted and refused from now on.
pub(crate) fn delete(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    server_only(req, id)?;
    known(app, id)?;
    let flag = |k: &str| req.query.get(k).is_some_and(|v| v == "true");
    let now = OffsetDateTime::now_utc();
    app.social
        .users
        .entry(id.to_owned())
        .or_default()
        .deleted_at = Some(now);
    let hard = flag("hard_delete");
    let mode = if hard { "hard" } else { "soft" };
    let ev = json!({
        "type": "user.deleted",
        "hard_delete": hard,
        "mark_messages_deleted": flag("mark_messages_deleted"),
        "delete_conversation_channels": flag("delete_conversation_channels"),
        "delete_conversation": if flag("delete_conversation_channels") { mode } else { "" },
        "delete_messages": if flag("mark_messages_deleted") { mode } else { "" },
        "delete_user": mode,
    });
    announce(app, id, ev, now);
    Ok(json!({ "user": render::user(app, id), "task_id": uuid::Uuid::new_v4().to_string() }))
}

/// Whether `user`'s tokens are refused: deactivated or deleted.
pub(crate) fn refused(app: &AppData, user: &str) -> bool {
    app.social
        .users
        .get(user)
        .is_some_and(|s| s.deactivated_at.is_some() || s.deleted_at.is_some())
}

/// The event, completed with `user`, `created_at` and `custom`, to every connection of `id`.
fn announce(app: &AppData, id: &str, mut ev: Value, now: OffsetDateTime) {
    if let Some(obj) = ev.as_object_mut() {
        obj.insert("user".into(), render::user(app, id));
        obj.insert("created_at".into(), json!(ts(now)));
        obj.insert("custom".into(), json!({}));
    }
    app.push_user(id, &frame(&ev));
}
