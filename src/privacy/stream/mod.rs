//! The streaming privacy rewriter: removes other users' hidden read, delivery and typing state from
//! a JSON body (a REST response or a WebSocket event) without building a tree. It owns the list of
//! *carriers* (where the chat API puts one user's state in a body another user receives), the
//! validating JSON scanner, and the byte-exact copy of everything it does not remove. It is pure:
//! the caller says who is hidden (`hidden(user, indicator)`), looks settings up, counts and answers.
//!
//! # Carriers
//!
//! Derived from `chat-openapi-clientside.yaml`: every response schema of a client-side route, and
//! every `WSEvent` schema, that reaches `ReadStateResponse`, `ThreadParticipant.last_read_at`, or a
//! replayed `message.read` / `message.delivered` / `typing.*` event.
//!
//! | Schema (route) | JSON path | Indicator | Removed |
//! |---|---|---|---|
//! | `ChannelStateResponse` (`GET /channels/{type}/{id}`, `POST /channels/{type}/query`, `POST /channels/{type}/{id}/query`) | `read[]` | read receipts | the whole entry |
//! | same | `read[]` | delivery receipts (read visible) | `last_delivered_at`, `last_delivered_message_id` of the entry |
//! | same | `threads[].read[]` | read / delivery | as `read[]` |
//! | same | `threads[].thread_participants[]` | read receipts | the participant's `last_read_at` |
//! | `QueryChannelsResponse` (`POST /channels`) | `channels[].read[]`, `channels[].threads[].read[]`, `channels[].threads[].thread_participants[]` | as above | as above |
//! | `GroupedQueryChannelsResponse` (`POST /channels/grouped`) | `groups.{name}.channels[]…` (as `channels[]`) | as above | as above |
//! | `QueryThreadsResponse` (`POST /threads`) | `threads[].read[]`, `threads[].thread_participants[]` | as above | as above |
//! | `GetThreadResponse` (`GET /threads/{message_id}`), `UpdateThreadPartialResponse` (`PATCH /threads/{message_id}`) | `thread.read[]`, `thread.thread_participants[]` | as above | as above |
//! | `SyncResponse` (`POST /sync`) | `events[]` of type `message.read` / `message.delivered` / `typing.start`, `typing.stop` | read / delivery / typing | the whole event |
//! | same | `events[].thread.thread_participants[]` (kept `message.read`, `notification.mark_read`, `thread.updated`) | read receipts | `last_read_at` |
//! | `MarkReadResponse` (`POST /channels/{type}/{id}/read`, `POST /channels/read`), `EventResponse` (`POST /channels/{type}/{id}/event`) | `event.thread.thread_participants[]` | read receipts | `last_read_at` |
//! | WebSocket `message.read`, `notification.mark_read`, `thread.updated` ([`Shape::Event`]) | `thread.thread_participants[]` | read receipts | `last_read_at` |
//!
//! A read entry or participant is attributed to `user.id` and to `user_id` (every occurrence: a
//! duplicated key counts each value, since clients differ on which one wins); it is hidden if any
//! of them is. A carrier that names no user (or names one by a non-string, or an id longer than
//! [`MAX_ID_BYTES`]) cannot be shown to be visible, so it is removed (counted in
//! [`Removed::unattributed`]). Whole WebSocket events of hidden users are the event path's
//! verdict (`filter::verdict`); this module only rewrites what they embed.
//!
//! Not carriers: `members[]`/`membership` (`ChannelMemberResponse` has no read state), messages
//! (`MessageResponse.thread_participants` are plain users), and the requester's own state
//! (`GET /unread`, `notification.mark_read`/`mark_unread` fields, which only go to that user). No
//! event schema embeds a channel state; the only events that embed other users' state are the
//! three with a `thread` above.
//!
//! # Matching by position, and flattened custom data
//!
//! Stream flattens custom fields into messages, users, channels and custom events. Carriers are
//! therefore matched by their *path from the root* in the schema, never by a key name anywhere: a
//! message's custom `read` (`messages[].read`) or a channel's (`channel.read`) is inside a value
//! this rewriter skips, and passes untouched. The positions it matches (`read`, `threads`,
//! `thread_participants`, …) are fields of response and state objects that carry no custom data,
//! or schema fields of thread objects (which Stream reserves, so custom data cannot take them).
//! One deliberate over-match, in the safe direction: in an event, `thread` is read as a thread
//! whatever the event type, so a custom event's custom `thread` shaped like one loses hidden
//! users' `last_read_at`. Keys are compared after JSON unescaping (`"r\u0065ad"` is `read`), as
//! every client decodes them.
//!
//! # Failing closed, depth and memory
//!
//! The whole body is validated (RFC 8259: strings with valid UTF-8 and escapes, no lone
//! surrogates, numbers, literals, nothing after the value); anything else is an error and `out` is
//! left as it was, so no partial body exists to pass on. A carrier key whose value is a container
//! of the wrong kind (`"read": {…}`) is an error too, since it cannot be filtered by the schema;
//! `null` and scalars carry nothing and pass.
//!
//! Nothing recurses on the input: values the rewriter skips are scanned iteratively with a
//! bit-stack (one bit per nesting level), and the carrier walk keeps an explicit stack whose depth
//! is bounded by the schema (at most 9 frames). An entry is decided by a validating look-ahead over
//! the input slice (its `user.id`, `user_id` and `type`), so there is no per-entry buffer: the only
//! per-entry memory is the decoded user id, at most [`MAX_ID_BYTES`]. Look-aheads nest only as
//! deep as decided carriers do (an event, then a participant in its thread), so each input byte is
//! scanned at most five times: time stays linear. The output is the input minus
//! byte ranges: `out` is reserved once, exactly the body's length, and never grows past it; when
//! nothing is removed it equals the input byte for byte.

use std::collections::BTreeSet;

use super::filter::Indicator;

/// Pass 1: the ids of users whose state appears in a carrier, so the caller can look their
/// settings up in one batch. Validates the whole body.
///
/// # Errors
/// The body is not valid JSON, or a carrier has the wrong container kind.
pub fn scan_users(body: &[u8], shape: Shape) -> Result<BTreeSet<String>, RewriteError> {
    let mut users = BTreeSet::new();
    let mut record = |id: &str, _: Indicator| {
        if !users.contains(id) {
            users.insert(id.to_owned());
        }
        false
    };
    Engine::new(body, &mut record, None).run(shape)?;
    Ok(users)
}

/// Pass 2: appends `body` to `out` without the carriers of users for whom `hidden(user,
/// indicator)` is true (rules in the module doc). `out` gains at most `body.len()` bytes, reserved
/// once; when nothing is removed it gains exactly `body`.
///
/// # Errors
/// As [`scan_users`]; `out` is then as it was.
pub fn rewrite(
    body: &[u8],
    shape: Shape,
    hidden: &dyn Fn(&str, Indicator) -> bool,
    out: &mut Vec<u8>,
) -> Result<Removed, RewriteError> {
    let base = out.len();
    out.reserve_exact(body.len());
    let mut hidden = |id: &str, ind: Indicator| hidden(id, ind);
    let mut engine = Engine::new(body, &mut hidden, Some(out));
    match engine.run(shape) {
        Ok(()) => Ok(engine.removed),
        Err(e) => {
            drop(engine);
            out.truncate(base);
            Err(e)
        }
    }
}

mod check;
mod lexer;
mod types;
mod walk;

pub use check::{leaks, reference};
pub use types::{Removed, RewriteError, Shape, MAX_ID_BYTES};
use walk::Engine;

#[cfg(test)]
mod tests;
