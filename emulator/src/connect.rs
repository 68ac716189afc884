//! The `/connect` handshake checks: api key, JWT (user tokens only), and the
//! `json` payload's `user_id`, `user_details` and `device` (registered for the user once the
//! connection opens). Unknown payload keys (`client_request_id`,
//! `server_determines_connection_id`, …) are ignored, as Stream does.

use std::collections::HashMap;

use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::auth::{self, Identity};
use crate::ctx::Ctx;
use crate::devices;
use crate::error::ApiError;
use crate::store::Device;
use crate::users;

/// A handshake that passed: who connects and the details to upsert.
pub(crate) struct Accepted {
    pub api_key: String,
    pub user_id: String,
    pub details: Map<String, Value>,
    /// The payload's `device`, checked.
    pub device: Option<Device>,
}

/// Validates api key, token and the `json` payload.
pub(crate) fn handshake(
    ctx: &Ctx,
    query: &HashMap<String, String>,
    header_token: Option<&str>,
) -> Result<Accepted, ApiError> {
    let api_key = query.get("api_key").cloned().unwrap_or_default();
    let secrets = {
        let store = ctx.emulator.lock();
        store
            .apps
            .get(&api_key)
            .ok_or_else(ApiError::unknown_api_key)?
            .secrets
            .clone()
    };
    if query
        .get("stream-auth-type")
        .is_some_and(|t| t == "anonymous")
    {
        return Err(ApiError::input(
            "anonymous connections are not supported by the emulator",
        ));
    }
    let token = query
        .get("authorization")
        .map(String::as_str)
        .or(header_token)
        .unwrap_or("");
    let token_user = match auth::verify(token, &secrets)? {
        (Identity::User(id), iat) => {
            let store = ctx.emulator.lock();
            if store
                .apps
                .get(&api_key)
                .is_some_and(|app| app.token_revoked(&id, iat))
            {
                return Err(auth::revoked());
            }
            if store
                .apps
                .get(&api_key)
                .is_some_and(|app| crate::user_lifecycle::refused(app, &id))
            {
                return Err(ApiError::forbidden(format!(
                    "user {id} was deactivated or deleted"
                )));
            }
            id
        }
        (Identity::Server, _) => {
            return Err(ApiError::new(
                43,
                StatusCode::UNAUTHORIZED,
                "server tokens cannot open a WebSocket",
            ))
        }
    };
    let payload: Value = match query.get("json") {
        Some(j) => serde_json::from_str(j)
            .map_err(|_| ApiError::input("json parameter is not valid JSON"))?,
        None => json!({}),
    };
    let user_id = payload
        .get("user_id")
        .and_then(Value::as_str)
        .unwrap_or(&token_user);
    if user_id != token_user {
        // Stream treats a token for someone else as an auth failure.
        return Err(ApiError::new(
            43,
            StatusCode::UNAUTHORIZED,
            "JWTAuth error: token user_id does not match the connecting user_id",
        ));
    }
    let details = match payload.get("user_details") {
        None | Some(Value::Null) => Map::new(),
        Some(d) => {
            if d.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id != user_id)
            {
                return Err(ApiError::input("user_details.id does not match user_id"));
            }
            users::validate(d)?
        }
    };
    let device = match payload.get("device") {
        None | Some(Value::Null) => None,
        Some(d) => Some(devices::parse(d)?),
    };
    Ok(Accepted {
        api_key,
        user_id: token_user,
        details,
        device,
    })
}
