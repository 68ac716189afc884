//! Per-thread read state (`Channel::thread_reads`): each participant's unread replies in each
//! thread of a channel. A reply makes it unread for every other participant and read for its
//! author; `threads::mark_read` / `mark_unread` change it on request. What it feeds: the
//! `unread_threads` counters (`me`, `notification.*`), `GET /unread`'s `threads` and a thread's
//! `read` list. Data only: the handlers and events are in `threads`.

use std::collections::HashSet;

use crate::store::{Channel, Message, ReadState};

/// Updates the thread read states for `msg` before it joins the channel: the thread's
/// participants (the author already among them) each have one entry per thread, so the map is
/// bounded by the channel's threads times their participants.
pub(crate) fn on_reply(ch: &mut Channel, msg: &Message) {
    let Some(parent) = msg.parent_id.as_deref() else {
        return;
    };
    let Some(thread) = ch
        .messages
        .iter()
        .find(|m| m.id == parent)
        .and_then(|p| p.thread.as_ref())
    else {
        return;
    };
    let started = thread.started_at;
    let people: Vec<String> = thread.participants.iter().map(|(u, _)| u.clone()).collect();
    for user in people {
        let read = ch
            .thread_reads
            .entry((user.clone(), parent.to_owned()))
            .or_insert(ReadState {
                last_read: started,
                last_read_message_id: None,
                unread: 0,
            });
        if user == msg.user_id {
            *read = ReadState {
                last_read: msg.created_at,
                last_read_message_id: Some(msg.id.clone()),
                unread: 0,
            };
        } else if !msg.silent && !msg.extra.shadowed {
            read.unread = read.unread.saturating_add(1);
        }
    }
}

/// Drops the read states of threads whose parent left the channel (evicted, hard-deleted or
/// truncated away).
pub(crate) fn forget_gone(ch: &mut Channel) {
    let ids: HashSet<&str> = ch.messages.iter().map(|m| m.id.as_str()).collect();
    ch.thread_reads
        .retain(|(_, parent), _| ids.contains(parent.as_str()));
}
