//! The `GET /_emulator/watchers` control route: which users watch which channels, as the
//! upstream sees it. The differential multi-tab harness (`tests/e2e/diff.test.mjs`) polls it to
//! wait, without sleeping, until asynchronous subscription changes (a closed tab's watches being
//! released, a linger ending) have reached the upstream, and compares it between a run through the
//! gateway and a run with every tab on its own connection.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::ctx::{json_response, Body, Ctx};
use crate::error::ApiError;

/// Most channels one answer lists, so the route's output stays bounded in a long-lived emulator;
/// `truncated` says when more matched (narrow them with `cid_contains`).
pub(crate) const MAX_WATCHED_CHANNELS: usize = 1000;

/// `GET /_emulator/watchers?api_key=K[&cid_contains=S]` →
/// `{"channels": {cid: {user_id: connections}}, "truncated": bool}`, channels with no watcher left out.
pub(crate) fn watchers(query: &HashMap<String, String>, ctx: &Ctx) -> Response<Body> {
    let Some(key) = query.get("api_key") else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &ApiError::input("api_key is required").body(),
        );
    };
    let needle = query.get("cid_contains").map_or("", String::as_str);
    let store = ctx.emulator.lock();
    let Some(app) = store.apps.get(key) else {
        return json_response(StatusCode::NOT_FOUND, &ApiError::unknown_api_key().body());
    };
    // Sorted, so that two answers over the same state are byte-identical.
    let cids: BTreeSet<&String> = app
        .channels
        .iter()
        .filter(|(cid, ch)| cid.contains(needle) && !ch.watchers.is_empty())
        .map(|(cid, _)| cid)
        .collect();
    let truncated = cids.len() > MAX_WATCHED_CHANNELS;
    let mut out: BTreeMap<&String, Value> = BTreeMap::new();
    for cid in cids.into_iter().take(MAX_WATCHED_CHANNELS) {
        let users: serde_json::Map<String, Value> = app
            .watcher_users(cid)
            .into_iter()
            .map(|(user, conns)| (user, json!(conns.len())))
            .collect();
        out.insert(cid, Value::Object(users));
    }
    json_response(
        StatusCode::OK,
        &json!({ "channels": out, "truncated": truncated }),
    )
}
