//! Guest users: `POST /guest` (the SDK's `setGuestUser`), which an anonymous client calls without
//! a token. The emulator creates (or updates) the user with the `guest` role and answers with a
//! user token signed with the app's first secret, which the SDK then connects with.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::req::check_id;
use crate::store::AppData;
use crate::{render, users};

/// `POST /guest` → `CreateGuestResponse`.
pub(crate) fn create(app: &mut AppData, body: &Value) -> Result<Value, ApiError> {
    let user = body
        .get("user")
        .ok_or_else(|| ApiError::input("user is required"))?;
    let fields = users::validate(user)?;
    let id = match user.get("id").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    check_id(&id)?;
    if app.users.get(&id).is_some_and(|u| u.role != "guest") {
        return Err(ApiError::input(format!(
            "user {id} exists and is not a guest"
        )));
    }
    let secret = app
        .secrets
        .first()
        .ok_or_else(|| ApiError::input("this app has no secret to sign a guest token with"))?;
    let claims = json!({ "user_id": id, "iat": OffsetDateTime::now_utc().unix_timestamp() });
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|_| ApiError::input("could not sign a guest token"))?;
    let now = OffsetDateTime::now_utc();
    users::apply(app, &id, fields, false, now);
    app.ensure_user(&id, now).role = "guest".to_owned();
    Ok(json!({ "access_token": token, "user": render::user(app, &id) }))
}
