//! The parts of a `MessageResponse` that change after sending: reactions (`latest_reactions`,
//! `own_reactions` per viewer, `reaction_counts`, `reaction_scores`, `reaction_groups`), the pin
//! (`pinned`, `pinned_at`, `pinned_by`, `pin_expires`), the poll it carries and deletion; and
//! `ReactionResponse`.
//! Below `render_chat`, which calls it for every message it renders.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::render::{flatten, ts, user};
use crate::store::{AppData, Message, Reaction};

/// `latest_reactions` on a message, newest first (Stream's default).
pub(crate) const DEFAULT_LATEST_REACTIONS: usize = 10;
/// `latest_reactions_by` per reaction group.
const GROUP_LATEST_USERS: usize = 10;

/// `ReactionResponse`.
pub(crate) fn reaction(app: &AppData, message_id: &str, r: &Reaction) -> Value {
    let mut map = Map::new();
    map.insert("message_id".into(), json!(message_id));
    map.insert("user_id".into(), json!(r.user_id));
    map.insert("user".into(), user(app, &r.user_id));
    map.insert("type".into(), json!(r.kind));
    map.insert("score".into(), json!(r.score));
    map.insert("created_at".into(), json!(ts(r.created_at)));
    map.insert("updated_at".into(), json!(ts(r.updated_at)));
    flatten(&mut map, &r.custom);
    map.insert("custom".into(), Value::Object(r.custom.clone()));
    Value::Object(map)
}

/// The message `m` quotes, if it is still in the channel's history.
pub(crate) fn quoted<'a>(app: &'a AppData, cid: &str, m: &Message) -> Option<&'a Message> {
    let id = m.extra.quoted_message_id.as_deref()?;
    app.channels.get(cid)?.messages.iter().find(|q| q.id == id)
}

/// Whether the message is pinned now (an expired pin no longer counts).
pub(crate) fn is_pinned(m: &Message, now: OffsetDateTime) -> bool {
    m.extra
        .pin
        .as_ref()
        .is_some_and(|p| p.expires.is_none_or(|e| e > now))
}

/// Adds reactions, pin and deletion fields to a rendered message. `viewer` gets their
/// `own_reactions`; events, which every watcher shares, carry none (the SDK keeps its own).
pub(crate) fn add(app: &AppData, map: &mut Map<String, Value>, m: &Message, viewer: Option<&str>) {
    let x = &m.extra;
    let mut newest: Vec<&Reaction> = x.reactions.iter().collect();
    newest.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let latest: Vec<Value> = newest
        .iter()
        .take(DEFAULT_LATEST_REACTIONS)
        .map(|r| reaction(app, &m.id, r))
        .collect();
    let own: Vec<Value> = match viewer {
        Some(v) => newest
            .iter()
            .filter(|r| r.user_id == v)
            .map(|r| reaction(app, &m.id, r))
            .collect(),
        None => Vec::new(),
    };
    let mut groups: BTreeMap<&str, Vec<&Reaction>> = BTreeMap::new();
    for r in &newest {
        groups.entry(r.kind.as_str()).or_default().push(r);
    }
    let (mut counts, mut scores, mut rendered) = (Map::new(), Map::new(), Map::new());
    for (kind, list) in &groups {
        let sum: u64 = list.iter().map(|r| u64::from(r.score)).sum();
        counts.insert((*kind).into(), json!(list.len()));
        scores.insert((*kind).into(), json!(sum));
        let first = list.iter().map(|r| r.created_at).min();
        let last = list.iter().map(|r| r.created_at).max();
        let by: Vec<Value> = list
            .iter()
            .take(GROUP_LATEST_USERS)
            .map(|r| json!({"user_id": r.user_id, "user": user(app, &r.user_id), "created_at": ts(r.created_at)}))
            .collect();
        rendered.insert(
            (*kind).into(),
            json!({
                "count": list.len(), "sum_scores": sum,
                "first_reaction_at": ts(first.unwrap_or(m.created_at)),
                "last_reaction_at": ts(last.unwrap_or(m.created_at)),
                "latest_reactions_by": by,
            }),
        );
    }
    map.insert("latest_reactions".into(), Value::Array(latest));
    map.insert("own_reactions".into(), Value::Array(own));
    map.insert("reaction_counts".into(), Value::Object(counts));
    map.insert("reaction_scores".into(), Value::Object(scores));
    map.insert("reaction_groups".into(), Value::Object(rendered));

    let pinned = is_pinned(m, OffsetDateTime::now_utc());
    map.insert("pinned".into(), json!(pinned));
    if let Some(p) = x.pin.as_ref().filter(|_| pinned) {
        map.insert("pinned_at".into(), json!(ts(p.at)));
        map.insert("pinned_by".into(), user(app, &p.by));
        if let Some(e) = p.expires {
            map.insert("pin_expires".into(), json!(ts(e)));
        }
    }
    if let Some(t) = x.text_updated_at {
        map.insert("message_text_updated_at".into(), json!(ts(t)));
    }
    if let Some((id, p)) = x
        .poll_id
        .as_ref()
        .and_then(|id| app.polls.get(id).map(|p| (id, p)))
    {
        map.insert("poll_id".into(), json!(id));
        map.insert("poll".into(), crate::render_poll::poll(app, p, viewer));
    }
    if !x.mentioned_users.is_empty() {
        let users: Vec<Value> = x.mentioned_users.iter().map(|id| user(app, id)).collect();
        map.insert("mentioned_users".into(), Value::Array(users));
    }
    if let Some(t) = x.deleted_at {
        map.insert("type".into(), json!("deleted"));
        map.insert("deleted_at".into(), json!(ts(t)));
    }
    // Deleted for the viewer alone: so it shows to them, as it is to everyone else.
    let mine = viewer.and_then(|v| x.deleted_for.iter().find(|(u, _)| u == v));
    if let Some((_, t)) = mine {
        map.insert("type".into(), json!("deleted"));
        map.insert("deleted_at".into(), json!(ts(*t)));
        map.insert("deleted_for_me".into(), json!(true));
    }
}
