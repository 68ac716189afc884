//! `GET /users?payload={filter_conditions, sort, limit, offset, presence}` (`queryUsers`): the
//! filters the SDK and its UI kits use (`id` with `$eq` / `$in` / `$nin` / `$autocomplete`,
//! `name` with `$autocomplete` / `$q`, `role`, `banned`, `online`, `teams`, `created_at`,
//! `last_active`, custom fields, `$and` / `$or`) and sorts. `privacy_settings` is included for a
//! server token and for the caller's own user; with `"presence": true` the calling connection
//! (`connection_id`) follows the returned users.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use crate::auth::Identity;
use crate::error::ApiError;
use crate::filter::value_match;
use crate::presence;
use crate::render::{self, ts};
use crate::req::Req;
use crate::store::{AppData, User};

/// Most users one `GET /users` returns (Stream's limit).
pub(crate) const MAX_QUERY_USERS: usize = 100;
/// Nesting allowed in `$and` / `$or`.
const MAX_FILTER_DEPTH: usize = 4;

/// `GET /users` → `QueryUsersResponse`.
pub(crate) fn query(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let ident = req.ident;
    let payload: Value = match req.query.get("payload") {
        Some(p) => {
            serde_json::from_str(p).map_err(|_| ApiError::input("payload is not valid JSON"))?
        }
        None => json!({}),
    };
    let empty = Map::new();
    let filter = match payload.get("filter_conditions") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(f)) => f,
        Some(_) => return Err(ApiError::input("filter_conditions must be an object")),
    };
    let mut hits: Vec<&User> = Vec::new();
    for u in app.users.values() {
        if user_matches(app, u, filter, 0)? {
            hits.push(u);
        }
    }
    let sort = sort_keys(payload.get("sort"));
    hits.sort_by(|a, b| compare(app, a, b, &sort));
    let offset = payload.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let limit = payload
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(MAX_QUERY_USERS, |l| (l as usize).min(MAX_QUERY_USERS));
    let page: Vec<String> = hits
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|u| u.id.clone())
        .collect();
    if let Identity::User(me) = ident {
        let asked = payload.get("presence") == Some(&Value::Bool(true));
        if let Some(conn) = req.conn_target(app, me, asked)? {
            presence::subscribe(app, &conn, page.iter().map(String::as_str));
        }
    }
    let users: Vec<Value> = page
        .iter()
        .map(|id| {
            let own = matches!(ident, Identity::User(me) if me == id);
            render::full_user(app, id, own || *ident == Identity::Server)
        })
        .collect();
    Ok(json!({ "users": users }))
}

/// The value a user filter key tests.
fn field(app: &AppData, u: &User, key: &str) -> Option<Value> {
    match key {
        "id" => Some(json!(u.id)),
        "role" => Some(json!(u.role)),
        "banned" => Some(json!(app
            .social
            .global_ban(&u.id)
            .is_some_and(|b| !b.shadow))),
        "shadow_banned" => Some(json!(app
            .social
            .global_ban(&u.id)
            .is_some_and(|b| b.shadow))),
        "online" => Some(json!(app.is_online(&u.id))),
        "created_at" => Some(json!(ts(u.created_at))),
        "updated_at" => Some(json!(ts(u.updated_at))),
        "last_active" => u.last_active.map(|t| json!(ts(t))),
        "teams" => Some(u.fields.get("teams").cloned().unwrap_or(json!([]))),
        other => u.fields.get(other).cloned(),
    }
}

fn user_matches(
    app: &AppData,
    u: &User,
    filter: &Map<String, Value>,
    depth: usize,
) -> Result<bool, ApiError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(ApiError::input("filter_conditions nest too deeply"));
    }
    for (key, cond) in filter {
        let ok = match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let subs = cond
                    .as_array()
                    .ok_or_else(|| ApiError::input(format!("{key} needs an array")))?;
                let mut results = Vec::with_capacity(subs.len());
                for sub in subs {
                    let sub = sub
                        .as_object()
                        .ok_or_else(|| ApiError::input(format!("{key} items must be objects")))?;
                    results.push(user_matches(app, u, sub, depth + 1)?);
                }
                match key.as_str() {
                    "$and" => results.iter().all(|r| *r),
                    "$or" => results.iter().any(|r| *r),
                    _ => !results.iter().any(|r| *r),
                }
            }
            // `teams: {$contains: t}` or a plain team: membership in the list.
            "teams" if !cond.is_object() => field(app, u, "teams")
                .and_then(|t| t.as_array().map(|l| l.contains(cond)))
                .unwrap_or(false),
            other if other.starts_with('$') => {
                return Err(ApiError::input(format!(
                    "unsupported filter operator {other}"
                )))
            }
            other => value_match(field(app, u, other).as_ref(), cond)?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sort keys as (field, descending); default `id` ascending.
fn sort_keys(sort: Option<&Value>) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = sort
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .take(4)
                .filter_map(|i| {
                    let field = i.get("field").and_then(Value::as_str)?;
                    let desc = i.get("direction").and_then(Value::as_i64).unwrap_or(1) < 0;
                    Some((field.to_owned(), desc))
                })
                .collect()
        })
        .unwrap_or_default();
    if out.is_empty() {
        out.push(("id".to_owned(), false));
    }
    out
}

fn compare(app: &AppData, a: &User, b: &User, keys: &[(String, bool)]) -> Ordering {
    for (key, desc) in keys {
        let ord = match key.as_str() {
            "created_at" => a.created_at.cmp(&b.created_at),
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "last_active" => a.last_active.cmp(&b.last_active),
            "online" => app.is_online(&a.id).cmp(&app.is_online(&b.id)),
            "id" => a.id.cmp(&b.id),
            other => {
                let (x, y) = (field(app, a, other), field(app, b, other));
                x.as_ref()
                    .map(Value::to_string)
                    .cmp(&y.as_ref().map(Value::to_string))
            }
        };
        let ord = if *desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.id.cmp(&b.id)
}
