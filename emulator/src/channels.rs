//! Channel REST handlers: get-or-create + watch (`…/query`), send message,
//! send event (typing and custom), mark read, stop watching; plus the
//! `ChannelStateResponseFields` rendering shared with `POST /channels`.

use std::collections::VecDeque;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::{MAX_MESSAGES_PER_CHANNEL, MAX_USER_BYTES};
use crate::error::ApiError;
use crate::history::{self, Page};
use crate::req::{check_id, Req};
use crate::store::{AppData, Channel, Member, Message, ReadState, Thread};
use crate::{events, presence, render, render_chat};

/// Channels one app may hold; creation beyond this is refused.
const MAX_CHANNELS_PER_APP: usize = 100_000;
/// Members given when creating a channel.
const MAX_MEMBERS: usize = 100;
/// Messages returned in one channel state.
pub(crate) const MAX_STATE_MESSAGES: usize = 300;
/// Default number of messages in a channel state.
pub(crate) const DEFAULT_STATE_MESSAGES: usize = 25;

/// What goes into a rendered channel state.
pub(crate) struct StateOpts {
    pub messages: usize,
    pub presence: bool,
}

/// `ChannelStateResponseFields` of `cid` as `viewer` sees it, with the newest messages.
pub(crate) fn state(
    app: &AppData,
    ch: &Channel,
    viewer: &str,
    opts: &StateOpts,
) -> Map<String, Value> {
    state_paged(app, ch, viewer, opts, &Page::latest(opts.messages))
}

/// `ChannelStateResponseFields` with the history `page` (the channel query's `messages`).
pub(crate) fn state_paged(
    app: &AppData,
    ch: &Channel,
    viewer: &str,
    opts: &StateOpts,
    page: &Page,
) -> Map<String, Value> {
    let own = ch.members.iter().find(|m| m.user_id == viewer);
    let cleared = own.and_then(|m| m.hide_messages_before);
    let visible: Vec<&Message> = ch
        .messages
        .iter()
        .filter(|m| m.parent_id.is_none() || m.show_in_channel)
        .filter(|m| cleared.is_none_or(|t| m.created_at > t))
        .filter(|m| m.visible_to(Some(viewer)))
        .collect();
    let messages: Vec<Value> = page
        .select(&visible)
        .iter()
        .map(|m| render_chat::message_for(app, &ch.cid, m, Some(viewer)))
        .collect();
    let pinned: Vec<Value> = history::pinned(ch, OffsetDateTime::now_utc())
        .into_iter()
        .filter(|m| cleared.is_none_or(|t| m.created_at > t))
        .take(history::DEFAULT_PINNED_IN_STATE)
        .map(|m| render_chat::message_for(app, &ch.cid, m, Some(viewer)))
        .collect();
    let members: Vec<Value> = ch
        .members
        .iter()
        .map(|m| {
            let mut v = render_chat::member(app, m);
            app.social.mark_channel_ban(&ch.cid, &mut v, false);
            v
        })
        .collect();
    let read: Vec<Value> = ch
        .members
        .iter()
        .filter_map(|m| {
            ch.reads
                .get(&m.user_id)
                .map(|r| render_chat::read(app, &m.user_id, r))
        })
        .collect();
    let watchers = app.watcher_users(&ch.cid);
    let hidden = own.is_some_and(|m| m.hidden);
    let mut channel = render_chat::channel(app, ch);
    if let Some(c) = channel.as_object_mut() {
        c.insert("hidden".into(), json!(hidden));
        if let Some(mute) = app.social.channel_muted(viewer, &ch.cid) {
            c.insert("muted".into(), json!(true));
            if let Some(t) = mute.expires {
                c.insert("mute_expires_at".into(), json!(render::ts(t)));
            }
        }
    }
    let mut map = Map::new();
    map.insert("channel".into(), channel);
    map.insert("hidden".into(), json!(hidden));
    if let Some(t) = cleared {
        map.insert("hide_messages_before".into(), json!(render::ts(t)));
    }
    map.insert("messages".into(), Value::Array(messages));
    map.insert("pinned_messages".into(), Value::Array(pinned));
    map.insert("threads".into(), json!([]));
    map.insert("members".into(), Value::Array(members));
    map.insert("read".into(), Value::Array(read));
    map.insert("watcher_count".into(), json!(watchers.len()));
    if opts.presence {
        let list: Vec<Value> = watchers.keys().map(|id| render::user(app, id)).collect();
        map.insert("watchers".into(), Value::Array(list));
    }
    if let Some(m) = own {
        map.insert("membership".into(), render_chat::member(app, m));
    }
    if let Some(draft) = crate::drafts::for_state(app, viewer, &ch.cid) {
        map.insert("draft".into(), draft);
    }
    map
}

/// Binds the request's connection to `cid`, announcing a new watcher.
pub(crate) fn watch(app: &mut AppData, conn_id: &str, cid: &str, user: &str, now: OffsetDateTime) {
    if app.bind(conn_id, cid) {
        events::watching(app, cid, user, true, now);
    }
}

/// `presence: true`: the connection follows the members of `cids`.
pub(crate) fn follow_members(app: &mut AppData, conn_id: &str, cids: &[String]) {
    let members: Vec<String> = cids
        .iter()
        .filter_map(|cid| app.channels.get(cid))
        .flat_map(|ch| ch.members.iter().map(|m| m.user_id.clone()))
        .collect();
    presence::subscribe(app, conn_id, members.iter().map(String::as_str));
}

/// The channel behind `cid`, or Stream's 404.
pub(crate) fn existing<'a>(app: &'a AppData, cid: &str) -> Result<&'a Channel, ApiError> {
    app.channels
        .get(cid)
        .ok_or_else(|| ApiError::not_found(format!("channel \"{cid}\" does not exist")))
}

/// `POST /channels/{type}/query` and `/channels/{type}/{id}/query` →
/// `ChannelStateResponse`. Creates the channel (the caller becomes creator and
/// member) when it does not exist yet.
pub(crate) fn query(
    app: &mut AppData,
    req: &Req<'_>,
    kind: &str,
    id: Option<&str>,
) -> Result<Value, ApiError> {
    check_id(kind)?;
    let user = req.acting_user(None)?;
    let data = req.body.get("data").cloned().unwrap_or(json!({}));
    let data = data
        .as_object()
        .ok_or_else(|| ApiError::input("data must be an object"))?;
    let mut members = member_ids(data.get("members"))?;
    if !members.contains(&user) {
        members.push(user.clone());
    }
    let id = match id {
        Some(id) => id.to_owned(),
        None if members.len() > 1 => distinct_id(&members),
        None => return Err(ApiError::input("a channel without id needs data.members")),
    };
    check_id(&id)?;
    let cid = format!("{kind}:{id}");
    let page = Page::from_json(
        req.body.get("messages").and_then(Value::as_object),
        DEFAULT_STATE_MESSAGES,
        MAX_STATE_MESSAGES,
    )?;
    let conn = req.watch_target(app, &user)?;
    let follower = req.conn_target(app, &user, req.flag("presence"))?;
    let now = OffsetDateTime::now_utc();
    if !app.channels.contains_key(&cid) {
        let invites: Vec<String> = member_ids(data.get("invites"))?
            .into_iter()
            .filter(|i| !members.contains(i))
            .collect();
        create(app, kind, &id, &user, members, data, now)?;
        invite_on_create(app, &cid, &user, &invites, now);
    }
    if let Some(conn) = conn {
        watch(app, &conn, &cid, &user, now);
    }
    if let Some(conn) = follower {
        follow_members(app, &conn, std::slice::from_ref(&cid));
    }
    let opts = StateOpts {
        messages: page.limit,
        presence: req.flag("presence"),
    };
    let ch = existing(app, &cid)?;
    Ok(Value::Object(state_paged(app, ch, &user, &opts, &page)))
}

pub(crate) fn member_ids(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let list = value
        .as_array()
        .ok_or_else(|| ApiError::input("data.members must be an array"))?;
    if list.len() > MAX_MEMBERS {
        return Err(ApiError::input(format!("at most {MAX_MEMBERS} members")));
    }
    let mut out: Vec<String> = Vec::new();
    for m in list {
        let id = m
            .as_str()
            .or_else(|| m.get("user_id").and_then(Value::as_str))
            .ok_or_else(|| ApiError::input("members must be user ids or {user_id}"))?;
        check_id(id)?;
        if !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    Ok(out)
}

/// Stream names member-defined ("distinct") channels `!members-<hash>`.
pub(crate) fn distinct_id(members: &[String]) -> String {
    let mut sorted = members.to_vec();
    sorted.sort();
    let digest = Sha256::digest(sorted.join(",").as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("!members-{hex}")
}

/// `ChannelResponse` keys the server owns; never taken as custom channel data.
const CHANNEL_RESERVED: &[&str] = &[
    "members",
    "invites",
    "id",
    "type",
    "cid",
    "created_by",
    "created_by_id",
    "created_at",
    "updated_at",
    "frozen",
    "disabled",
    "config",
    "own_capabilities",
    "member_count",
    "message_count",
    "last_message_at",
    "hidden",
    "custom",
];

/// The custom data of a channel from a request's `data` (flat fields and `custom`), bounded.
pub(crate) fn custom_data(data: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut custom = render::custom_of(data, CHANNEL_RESERVED);
    if let Some(Value::Object(extra)) = data.get("custom") {
        custom.extend(extra.clone());
    }
    if Value::Object(custom.clone()).to_string().len() > MAX_USER_BYTES {
        return Err(ApiError::input("channel data is too large"));
    }
    Ok(custom)
}

fn create(
    app: &mut AppData,
    kind: &str,
    id: &str,
    creator: &str,
    members: Vec<String>,
    data: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    if app.channels.len() >= MAX_CHANNELS_PER_APP {
        return Err(ApiError::input("too many channels in this app").at_bound("channels_per_app"));
    }
    let custom = custom_data(data)?;
    let mut reads = std::collections::HashMap::new();
    let mut list = Vec::new();
    for m in members {
        app.ensure_user(&m, now);
        reads.insert(
            m.clone(),
            ReadState {
                last_read: now,
                last_read_message_id: None,
                unread: 0,
            },
        );
        let is_creator = m == creator;
        list.push(Member::new(m, is_creator, now));
    }
    let cid = format!("{kind}:{id}");
    app.channels.insert(
        cid.clone(),
        Channel {
            kind: kind.to_owned(),
            id: id.to_owned(),
            cid,
            created_by: creator.to_owned(),
            created_at: now,
            updated_at: now,
            last_message_at: None,
            data: custom,
            members: list,
            messages: VecDeque::new(),
            message_count: 0,
            reads,
            thread_reads: Default::default(),
            watchers: Default::default(),
        },
    );
    Ok(())
}

/// `data.invites` when creating a channel: invited members (`invited: true`), each told with a
/// `notification.invited` on their connections (none watches a channel that did not exist).
fn invite_on_create(
    app: &mut AppData,
    cid: &str,
    creator: &str,
    invites: &[String],
    now: OffsetDateTime,
) {
    for id in invites {
        app.ensure_user(id, now);
        if let Some(ch) = app.channels.get_mut(cid) {
            let mut m = Member::new(id.clone(), false, now);
            m.invited = true;
            ch.members.push(m);
            ch.reads.insert(
                id.clone(),
                ReadState {
                    last_read: now,
                    last_read_message_id: None,
                    unread: 0,
                },
            );
        }
    }
    for id in invites {
        let Some(member) = events::rendered(app, cid, id) else {
            continue;
        };
        let mut ev = events::channel_base(app, "notification.invited", cid, now);
        ev.insert("user".into(), render::user(app, creator));
        ev.insert("member".into(), member);
        let ev = events::with_channel(app, cid, ev);
        events::to_unwatching(app, id, cid, &Value::Object(ev));
    }
}

/// Appends a message, keeping at most `MAX_MESSAGES_PER_CHANNEL`; true when the oldest went.
pub(crate) fn push_message(ch: &mut Channel, msg: Message) -> bool {
    if let Some(parent) = msg.parent_id.as_deref() {
        if let Some(p) = ch.messages.iter_mut().find(|m| m.id == parent) {
            p.reply_count = p.reply_count.saturating_add(1);
            let at = msg.created_at;
            let author = p.user_id.clone();
            let thread = p.thread.get_or_insert_with(|| Thread {
                started_at: at,
                last_reply_at: at,
                updated_at: at,
                participants: vec![(author, at)],
                title: None,
                custom: Map::new(),
            });
            thread.last_reply_at = at;
            thread.updated_at = at;
            if !thread.participants.iter().any(|(u, _)| *u == msg.user_id) {
                thread.participants.push((msg.user_id.clone(), at));
            }
        }
    }
    let counts_as_unread = msg.parent_id.is_none() || msg.show_in_channel;
    let now = msg.created_at;
    for (user, read) in ch.reads.iter_mut() {
        if *user == msg.user_id {
            // Sending implies having read the channel up to here.
            *read = ReadState {
                last_read: now,
                last_read_message_id: Some(msg.id.clone()),
                unread: 0,
            };
        } else if counts_as_unread && !msg.silent && !msg.extra.shadowed {
            read.unread = read.unread.saturating_add(1);
        }
    }
    if counts_as_unread {
        ch.last_message_at = Some(now);
    }
    ch.updated_at = now;
    ch.message_count = ch.message_count.saturating_add(1);
    crate::thread_reads::on_reply(ch, &msg);
    ch.messages.push_back(msg);
    let mut evicted = false;
    while ch.messages.len() > MAX_MESSAGES_PER_CHANNEL {
        ch.messages.pop_front();
        evicted = true;
    }
    if evicted {
        crate::thread_reads::forget_gone(ch);
    }
    evicted
}
