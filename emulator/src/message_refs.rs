//! What a message points at, checked when it is sent or updated: the message it quotes
//! (`quoted_message_id`, a message of the same channel) and the users it mentions
//! (`mentioned_users`, ids or user objects). Below `actions` and `messages`, which both use it.

use serde_json::Value;

use crate::error::ApiError;
use crate::req::check_id;
use crate::store::AppData;

/// Users one message may mention.
pub(crate) const MAX_MENTIONED_USERS: usize = 100;

/// The quoted message's id, which must name a message of channel `cid`.
pub(crate) fn quoted(
    app: &AppData,
    cid: &str,
    v: Option<&Value>,
) -> Result<Option<String>, ApiError> {
    let id = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(id)) if !id.is_empty() => id,
        Some(_) => return Err(ApiError::input("quoted_message_id must be a message id")),
    };
    let found = app
        .channels
        .get(cid)
        .is_some_and(|ch| ch.messages.iter().any(|m| &m.id == id));
    if !found {
        return Err(ApiError::input(format!(
            "quoted message {id} is not a message of {cid}"
        )));
    }
    Ok(Some(id.clone()))
}

/// The mentioned user ids (each once), from ids or `{id}` objects.
pub(crate) fn mentioned(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) if list.len() <= MAX_MENTIONED_USERS => list,
        Some(_) => {
            return Err(ApiError::input(format!(
                "mentioned_users must be an array of at most {MAX_MENTIONED_USERS} users"
            )))
        }
    };
    let mut out: Vec<String> = Vec::new();
    for item in list {
        let id = item
            .as_str()
            .or_else(|| item.get("id").and_then(Value::as_str))
            .ok_or_else(|| ApiError::input("mentioned_users must be user ids or {id}"))?;
        check_id(id)?;
        if !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    Ok(out)
}
