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

/// Users one app may hold before `POST /guest` refuses new guests: anyone can call it without a
/// token, so it must not grow the store without bound.
pub(crate) const MAX_USERS_PER_APP: usize = 100_000;

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
    if !app.users.contains_key(&id) && app.users.len() >= MAX_USERS_PER_APP {
        tracing::debug!("guest refused: the app holds the most users it may");
        return Err(ApiError::input(format!(
            "this app holds {MAX_USERS_PER_APP} users, the most it may; no new guests"
        ))
        .at_bound("users_per_app"));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_stop_at_the_user_bound_and_get_a_token() {
        let mut app = AppData {
            secrets: vec!["s".to_owned()],
            ..AppData::default()
        };
        let res = create(&mut app, &json!({"user": {"id": "g1", "name": "G"}}));
        assert!(res.is_ok_and(|v| v["access_token"].is_string() && v["user"]["role"] == "guest"));
        let now = OffsetDateTime::now_utc();
        for i in app.users.len()..MAX_USERS_PER_APP {
            app.ensure_user(&format!("u{i}"), now);
        }
        let err = create(&mut app, &json!({"user": {"id": "g2"}})).err();
        assert_eq!(err.map(|e| e.code), Some(4));
        // A returning guest is no new user.
        assert!(create(&mut app, &json!({"user": {"id": "g1"}})).is_ok());
        assert!(
            create(&mut app, &json!({"user": {"id": "u7"}})).is_err(),
            "not a guest"
        );
    }
}
