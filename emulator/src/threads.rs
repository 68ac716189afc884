//! Threads: a parent message and its replies (`parent_id`). `GET /messages/{parent_id}/replies`
//! (GetReplies), `POST /threads` (QueryThreads: the threads the caller takes part in) and
//! `GET /threads/{message_id}` (GetThread), both of which with `watch` bind the calling connection
//! to each thread's channel exactly as a channel watch does (`user.watching.start` included), and
//! `notification.thread_message_new` for a reply, to the connections of the thread's other
//! participants that do not watch its channel; `PATCH /threads/{message_id}` (title, custom data)
//! with `thread.updated` to the channel's watchers (shapes per the spec).

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::channels::{watch, MAX_STATE_MESSAGES};
use crate::config::MAX_USER_BYTES;
use crate::error::ApiError;
use crate::events::{channel_base, to_unwatching, to_watchers};
use crate::history::Page;
use crate::render::{self, ts};
use crate::render_chat;
use crate::req::{check_id, Req};
use crate::store::{AppData, Channel, Message};

/// Replies in one `GetReplies` page unless `limit` says otherwise.
const DEFAULT_REPLY_PAGE: usize = 25;
/// Threads in one `QueryThreads` page: Stream's default and largest `limit`.
const DEFAULT_THREADS: usize = 10;
const MAX_THREADS: usize = 25;
/// `latest_replies` per thread: the SDK's default `reply_limit`, and the most it may ask for.
const DEFAULT_LATEST_REPLIES: usize = 3;
const MAX_LATEST_REPLIES: usize = 25;
/// `thread_participants` per thread: the most `participant_limit` may ask for (and the default).
const MAX_PARTICIPANTS: usize = 100;

/// The channel and the message with id `id`, anywhere in the app.
fn find<'a>(app: &'a AppData, id: &str) -> Option<(&'a Channel, &'a Message)> {
    app.channels
        .values()
        .find_map(|ch| ch.messages.iter().find(|m| m.id == id).map(|m| (ch, m)))
}

/// A thread's parent, or Stream's 404.
fn parent<'a>(app: &'a AppData, id: &str) -> Result<(&'a Channel, &'a Message), ApiError> {
    check_id(id)?;
    find(app, id)
        .filter(|(_, m)| m.parent_id.is_none())
        .ok_or_else(|| ApiError::not_found(format!("message {id} does not exist")))
}

/// The parent a new reply names must be a top-level message of the same channel.
pub(crate) fn check_parent(app: &AppData, cid: &str, parent_id: &str) -> Result<(), ApiError> {
    match find(app, parent_id) {
        Some((ch, m)) if ch.cid == cid && m.parent_id.is_none() => Ok(()),
        _ => Err(ApiError::input(format!(
            "parent message {parent_id} is not a message of {cid} that can have replies"
        ))),
    }
}

fn replies_of<'a>(ch: &'a Channel, parent_id: &'a str) -> impl Iterator<Item = &'a Message> {
    ch.messages
        .iter()
        .filter(move |m| m.parent_id.as_deref() == Some(parent_id))
}

/// A numeric option from a query string or a JSON body, clamped to `max`.
fn limit(value: Option<&Value>, text: Option<&String>, default: usize, max: usize) -> usize {
    value
        .and_then(Value::as_u64)
        .or_else(|| text.and_then(|t| t.parse().ok()))
        .map_or(default, |n| usize::try_from(n).unwrap_or(max).min(max))
}

/// `GET /messages/{parent_id}/replies` → `GetRepliesResponse`: oldest first; the newest `limit`,
/// or a page before, after or around an anchor (see `history`).
pub(crate) fn replies(app: &AppData, req: &Req<'_>, parent_id: &str) -> Result<Value, ApiError> {
    let viewer = req.acting_user(None).ok();
    let (ch, _) = parent(app, parent_id)?;
    let page = Page::from_query(req.query, DEFAULT_REPLY_PAGE, MAX_STATE_MESSAGES)?;
    let all: Vec<&Message> = replies_of(ch, parent_id)
        .filter(|m| m.visible_to(viewer.as_deref()))
        .collect();
    let messages: Vec<Value> = page
        .select(&all)
        .iter()
        .map(|m| render_chat::message_for(app, &ch.cid, m, viewer.as_deref()))
        .collect();
    Ok(json!({ "messages": messages }))
}

/// `ThreadStateResponse` of the thread under `p`.
fn thread_state(app: &AppData, ch: &Channel, p: &Message, replies: usize, people: usize) -> Value {
    let all: Vec<&Message> = replies_of(ch, &p.id).collect();
    let latest: Vec<Value> = all[all.len().saturating_sub(replies)..]
        .iter()
        .map(|m| render_chat::message(app, &ch.cid, m))
        .collect();
    let (started, last, updated, participants) = p.thread.as_ref().map_or_else(
        || (p.created_at, p.created_at, p.created_at, Vec::new()),
        |t| {
            let people: Vec<&(String, OffsetDateTime)> = t.participants.iter().collect();
            (t.started_at, t.last_reply_at, t.updated_at, people)
        },
    );
    let title = p
        .thread
        .as_ref()
        .and_then(|t| t.title.clone())
        .unwrap_or_else(|| p.text.clone());
    let custom = p
        .thread
        .as_ref()
        .map(|t| t.custom.clone())
        .unwrap_or_default();
    let listed: Vec<Value> = participants
        .iter()
        .take(people)
        .map(|(id, joined)| {
            json!({
                "channel_cid": ch.cid, "thread_id": p.id, "user_id": id,
                "user": render::user(app, id), "created_at": ts(*joined),
                "last_read_at": ts(*joined), "custom": {},
            })
        })
        .collect();
    let mut out = json!({
        "channel_cid": ch.cid,
        "channel": render_chat::channel(app, ch),
        "parent_message_id": p.id,
        "parent_message": render_chat::message(app, &ch.cid, p),
        "created_by_user_id": p.user_id,
        "created_by": render::user(app, &p.user_id),
        "reply_count": p.reply_count,
        "participant_count": participants.len(),
        "active_participant_count": participants.len(),
        "created_at": ts(started),
        "updated_at": ts(updated),
        "last_message_at": ts(last),
        "title": title,
        "custom": custom,
        "latest_replies": latest,
        "thread_participants": listed,
        "read": reads(app, ch, &p.id),
    });
    // Custom data also on the top level, where the SDK's `constructCustomDataObject` reads it.
    if let Some(map) = out.as_object_mut() {
        render::flatten(map, &custom);
    }
    out
}

/// Each participant's read state of the thread (`ReadStateResponse`), oldest participant first.
fn reads(app: &AppData, ch: &Channel, parent_id: &str) -> Vec<Value> {
    let Some(thread) = ch
        .messages
        .iter()
        .find(|m| m.id == parent_id)
        .and_then(|p| p.thread.as_ref())
    else {
        return Vec::new();
    };
    thread
        .participants
        .iter()
        .take(MAX_PARTICIPANTS)
        .filter_map(|(u, _)| {
            let r = ch.thread_reads.get(&(u.clone(), parent_id.to_owned()))?;
            Some(render_chat::read(app, u, r))
        })
        .collect()
}

/// `ThreadResponse`: the thread's state without its replies (what `thread.updated` and a
/// thread's `message.read` carry).
pub(crate) fn thread_response(app: &AppData, ch: &Channel, p: &Message) -> Value {
    let mut rendered = thread_state(app, ch, p, 0, MAX_PARTICIPANTS);
    if let Some(map) = rendered.as_object_mut() {
        map.remove("latest_replies");
    }
    rendered
}

/// Thread keys a partial update may not set: everything the server owns except `title`.
const THREAD_RESERVED: &[&str] = &[
    "channel_cid",
    "channel",
    "parent_message_id",
    "parent_message",
    "created_by_user_id",
    "created_by",
    "reply_count",
    "participant_count",
    "active_participant_count",
    "created_at",
    "updated_at",
    "last_message_at",
    "deleted_at",
    "latest_replies",
    "thread_participants",
    "read",
    "draft",
    "custom",
];

/// `PATCH /threads/{message_id}` → `UpdateThreadPartialResponse`: `set` (`title` and custom
/// fields) and `unset`; `thread.updated` to the watchers of the thread's channel.
pub(crate) fn update(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    req.acting_user(None)?;
    let (ch, p) = parent(app, id)?;
    if p.thread.is_none() {
        return Err(ApiError::not_found(format!("thread {id} does not exist")));
    }
    let cid = ch.cid.clone();
    let set = match req.body.get("set") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(ApiError::input("set must be an object")),
    };
    let unset: Vec<String> = match req.body.get("unset") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| ApiError::input("unset must be an array of field names"))?,
    };
    if let Some(key) = set
        .keys()
        .chain(unset.iter())
        .find(|k| THREAD_RESERVED.contains(&k.as_str()))
    {
        return Err(ApiError::input(format!(
            "thread field {key} cannot be changed"
        )));
    }
    let title = match set.get("title") {
        None => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(ApiError::input("title must be a string")),
    };
    let now = OffsetDateTime::now_utc();
    let Some(thread) = app
        .channels
        .get_mut(&cid)
        .and_then(|ch| ch.messages.iter_mut().find(|m| m.id == id))
        .and_then(|m| m.thread.as_mut())
    else {
        return Err(ApiError::not_found(format!("thread {id} does not exist")));
    };
    let mut custom = thread.custom.clone();
    for key in &unset {
        custom.remove(key);
    }
    custom.extend(set.into_iter().filter(|(k, _)| k != "title"));
    if Value::Object(custom.clone()).to_string().len() > MAX_USER_BYTES {
        return Err(ApiError::input("thread data is too large"));
    }
    thread.custom = custom;
    if unset.iter().any(|k| k == "title") {
        thread.title = None;
    }
    if title.is_some() {
        thread.title = title;
    }
    thread.updated_at = now;
    let (ch, p) = parent(app, id)?;
    let rendered = thread_response(app, ch, p);
    let mut ev = channel_base(app, "thread.updated", &cid, now);
    ev.insert("thread".into(), rendered.clone());
    to_watchers(app, &cid, &Value::Object(ev));
    Ok(json!({ "thread": rendered }))
}

/// `GET /threads/{message_id}` → `GetThreadResponse`; `watch=true` binds the calling connection
/// to the thread's channel.
pub(crate) fn get(app: &mut AppData, req: &Req<'_>, id: &str) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let (ch, p) = parent(app, id)?;
    let cid = ch.cid.clone();
    let replies = limit(
        None,
        req.query.get("reply_limit"),
        DEFAULT_LATEST_REPLIES,
        MAX_LATEST_REPLIES,
    );
    let people = limit(
        None,
        req.query.get("participant_limit"),
        MAX_PARTICIPANTS,
        MAX_PARTICIPANTS,
    );
    let thread = thread_state(app, ch, p, replies, people);
    let asked = req.query.get("watch").is_some_and(|w| w == "true");
    if let Some(conn) = req.conn_target(app, &user, asked)? {
        watch(app, &conn, &cid, &user, OffsetDateTime::now_utc());
    }
    Ok(json!({ "thread": thread }))
}

/// `POST /threads` → `QueryThreadsResponse`: the threads the caller takes part in, latest reply
/// first, paged by an offset in `next`. No `filter` is supported; `watch` binds the calling
/// connection to every returned thread's channel.
pub(crate) fn query(app: &mut AppData, req: &Req<'_>) -> Result<Value, ApiError> {
    let user = req.acting_user(None)?;
    let body = req.body;
    if body
        .get("filter")
        .is_some_and(|f| f.as_object().is_none_or(|f| !f.is_empty()))
    {
        return Err(ApiError::input(
            "thread filters are not supported by the emulator",
        ));
    }
    let n = limit(body.get("limit"), None, DEFAULT_THREADS, MAX_THREADS).max(1);
    let replies = limit(
        body.get("reply_limit"),
        None,
        DEFAULT_LATEST_REPLIES,
        MAX_LATEST_REPLIES,
    );
    let people = limit(
        body.get("participant_limit"),
        None,
        MAX_PARTICIPANTS,
        MAX_PARTICIPANTS,
    );
    let offset = match body.get("next") {
        None | Some(Value::Null) => 0,
        Some(Value::String(s)) => s
            .parse::<usize>()
            .map_err(|_| ApiError::input("next is not a cursor from a previous page"))?,
        Some(_) => return Err(ApiError::input("next must be a string")),
    };
    let mut mine: Vec<(&Channel, &Message, OffsetDateTime)> = Vec::new();
    for ch in app.channels.values() {
        for m in &ch.messages {
            if let Some(t) = m
                .thread
                .as_ref()
                .filter(|t| t.participants.iter().any(|(u, _)| *u == user))
            {
                mine.push((ch, m, t.last_reply_at));
            }
        }
    }
    mine.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.1.id.cmp(&b.1.id)));
    let page: Vec<(&Channel, &Message, OffsetDateTime)> =
        mine.iter().skip(offset).take(n).copied().collect();
    let threads: Vec<Value> = page
        .iter()
        .map(|(ch, m, _)| thread_state(app, ch, m, replies, people))
        .collect();
    let mut cids: Vec<String> = page.iter().map(|(ch, _, _)| ch.cid.clone()).collect();
    cids.dedup();
    let more = mine.len() > offset + page.len();
    let mut out = Map::new();
    out.insert("threads".into(), Value::Array(threads));
    if more {
        out.insert("next".into(), json!((offset + page.len()).to_string()));
    }
    if let Some(conn) = req.conn_target(app, &user, req.flag("watch"))? {
        let now = OffsetDateTime::now_utc();
        for cid in &cids {
            watch(app, &conn, cid, &user, now);
        }
    }
    Ok(Value::Object(out))
}

/// A reply changed its parent (`reply_count`, thread participants): the parent goes to the
/// watchers as `message.updated`. That is how a channel's message list learns the count: the SDK
/// never bumps it locally, and stream-chat-react's "1 reply" button reads it.
pub(crate) fn parent_updated(app: &AppData, cid: &str, reply: &Message, now: OffsetDateTime) {
    // A shadowed reply is its author's alone: the others' counts do not move.
    let Some(parent_id) = reply.parent_id.as_deref().filter(|_| !reply.extra.shadowed) else {
        return;
    };
    let Some(ch) = app.channels.get(cid) else {
        return;
    };
    let Some(parent) = ch.messages.iter().find(|m| m.id == parent_id) else {
        return;
    };
    let mut ev = channel_base(app, "message.updated", cid, now);
    ev.insert("message_id".into(), json!(parent.id));
    ev.insert("message".into(), render_chat::message(app, cid, parent));
    ev.insert("user".into(), render::user(app, &reply.user_id));
    ev.insert("channel_member_count".into(), json!(ch.members.len()));
    ev.insert("channel_message_count".into(), json!(ch.message_count));
    to_watchers(app, cid, &Value::Object(ev));
}

/// `notification.thread_message_new` for reply `msg` to the connections of the thread's
/// participants (the sender excepted) that do not watch the channel.
pub(crate) fn reply_notification(app: &AppData, cid: &str, msg: &Message, now: OffsetDateTime) {
    let Some(parent_id) = msg.parent_id.as_deref().filter(|_| !msg.extra.shadowed) else {
        return;
    };
    let Some((ch, p)) = find(app, parent_id) else {
        return;
    };
    let Some(thread) = &p.thread else {
        return;
    };
    let mut ev = channel_base(app, "notification.thread_message_new", cid, now);
    ev.insert("channel".into(), render_chat::channel(app, ch));
    ev.insert("thread_id".into(), json!(parent_id));
    ev.insert("message_id".into(), json!(msg.id));
    ev.insert("message".into(), render_chat::message(app, cid, msg));
    ev.insert("parent_author".into(), json!(p.user_id));
    ev.insert("watcher_count".into(), json!(app.watcher_users(cid).len()));
    ev.insert("channel_member_count".into(), json!(ch.members.len()));
    ev.insert("channel_message_count".into(), json!(ch.message_count));
    let people: Vec<Value> = thread
        .participants
        .iter()
        .map(|(id, _)| render::user(app, id))
        .collect();
    ev.insert("thread_participants".into(), Value::Array(people));
    let ev = Value::Object(ev);
    for (user, _) in thread
        .participants
        .iter()
        .filter(|(u, _)| *u != msg.user_id)
    {
        to_unwatching(app, user, cid, &ev);
    }
}
