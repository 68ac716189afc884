//! What a REST handler receives: the caller's identity, the query and the JSON body, with the
//! questions every handler asks of them (who is acting, which connection watches), and the id
//! check every handler applies. Below the handlers and `rest`, which import it.

use std::collections::HashMap;

use serde_json::Value;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::store::AppData;

/// The parsed parts of a REST request that handlers need.
pub(crate) struct Req<'a> {
    pub ident: &'a Identity,
    pub query: &'a HashMap<String, String>,
    pub body: &'a Value,
}

// === impl Req ===

impl Req<'_> {
    /// The user acting: the token's user, or for a server token the
    /// `user_id` query/body parameter or the handler's `hint`.
    pub(crate) fn acting_user(&self, hint: Option<&str>) -> Result<String, ApiError> {
        let id = match self.ident {
            Identity::User(id) => return Ok(id.clone()),
            Identity::Server => self
                .query
                .get("user_id")
                .map(String::as_str)
                .or_else(|| self.body.get("user_id").and_then(Value::as_str))
                .or(hint)
                .or_else(|| self.body.pointer("/user/id").and_then(Value::as_str)),
        };
        let id =
            id.ok_or_else(|| ApiError::input("server-side requests must name a user (user_id)"))?;
        check_id(id)?;
        Ok(id.to_owned())
    }

    /// A boolean body flag (`watch`, `presence`, `state`).
    pub(crate) fn flag(&self, key: &str) -> bool {
        self.body.get(key) == Some(&Value::Bool(true))
    }

    /// The connection to bind when the body asks to `watch`. The SDK only
    /// asks with a `connection_id`; one that is unknown or belongs to another
    /// user is an error, so broken id rewriting in a gateway shows up.
    pub(crate) fn watch_target(
        &self,
        app: &AppData,
        user: &str,
    ) -> Result<Option<String>, ApiError> {
        self.conn_target(app, user, self.flag("watch"))
    }

    /// The connection a subscription (`watch`, `presence`) binds when `asked`: the request's
    /// `connection_id`, which must be an open connection of `user`. Without one there is nothing
    /// to bind (a server-side call).
    pub(crate) fn conn_target(
        &self,
        app: &AppData,
        user: &str,
        asked: bool,
    ) -> Result<Option<String>, ApiError> {
        if !asked {
            return Ok(None);
        }
        let Some(id) = self.query.get("connection_id") else {
            return Ok(None);
        };
        match app.conns.get(id) {
            Some(conn) if conn.user_id == user => Ok(Some(id.clone())),
            _ => Err(ApiError::input(format!(
                "connection_id {id} is not an open connection of user {user}"
            ))),
        }
    }
}

/// Stream's id alphabet and length limit, shared by users and channels.
pub(crate) fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@_-!.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::input(format!("invalid id {id:?}")))
    }
}
