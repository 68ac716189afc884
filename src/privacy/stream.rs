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

/// The longest user id the rewriter decodes: Stream caps user ids at 255 characters, at most 4
/// bytes each in UTF-8. A carrier naming a longer id cannot be a real user's and is removed.
pub const MAX_ID_BYTES: usize = 1024;

/// The longest key or event type worth decoding: every key and type matched is shorter.
const MAX_NAME_BYTES: usize = 32;

/// What the body's root is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A REST response of a client-side route (any of the table's response schemas).
    Response,
    /// One WebSocket event (`WSEvent`).
    Event,
}

/// What a rewrite removed. Disjoint counts by carrier kind, plus two "of which" counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Whole `read[]` entries.
    pub read_entries: u64,
    /// `last_delivered_at` / `last_delivered_message_id` fields of kept entries.
    pub delivery_fields: u64,
    /// `last_read_at` fields of thread participants.
    pub participant_reads: u64,
    /// Whole replayed events in `events[]`.
    pub events: u64,
    /// Of the above, carriers removed because they named no usable user.
    pub unattributed: u64,
    /// Of `unattributed`, those whose user id was longer than [`MAX_ID_BYTES`].
    pub oversized_ids: u64,
}

impl Removed {
    /// Carriers removed (entries, fields and events).
    pub fn total(&self) -> u64 {
        self.read_entries + self.delivery_fields + self.participant_reads + self.events
    }
}

/// Why a body could not be filtered. The body must not be passed on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unfilterable JSON body at byte {offset}: {reason}")]
pub struct RewriteError {
    pub offset: usize,
    pub reason: &'static str,
}

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

// ---------------------------------------------------------------------------------------------
// The validating scanner.

/// A raw JSON string: the bytes between the quotes, and whether any escape occurs.
#[derive(Clone, Copy)]
struct Str {
    start: usize,
    end: usize,
    escaped: bool,
}

/// One bit per open container of a skipped value (1 = object), so skipping costs depth/8 bytes.
#[derive(Default)]
struct BitStack {
    words: Vec<u64>,
    len: usize,
}

impl BitStack {
    fn push(&mut self, obj: bool) {
        let (w, b) = (self.len / 64, self.len % 64);
        if w == self.words.len() {
            self.words.push(0);
        }
        if obj {
            self.words[w] |= 1 << b;
        } else {
            self.words[w] &= !(1 << b);
        }
        self.len += 1;
    }

    /// Whether the innermost open container is an object; `None` when none is open.
    fn top(&self) -> Option<bool> {
        let i = self.len.checked_sub(1)?;
        Some(self.words[i / 64] >> (i % 64) & 1 == 1)
    }

    fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }
}

/// The end of the run of string bytes from `i` that need no attention (no `"`, `\\` or control
/// character), found eight bytes at a time; it may stop early, never late.
fn plain_run(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is below `n` (n <= 128) where this sets its high bit (exact for the first).
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(bytes);
        if below(w, 0x20) | below(w ^ (ONES * 0x22), 1) | below(w ^ (ONES * 0x5c), 1) != 0 {
            break;
        }
        i += 8;
    }
    i
}

struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
    bits: BitStack,
}

impl<'a> Lexer<'a> {
    fn err(&self, reason: &'static str) -> RewriteError {
        RewriteError {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8, reason: &'static str) -> Result<(), RewriteError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    fn hex4(&self, at: usize) -> Result<u32, RewriteError> {
        let digits = self.b.get(at..at + 4).ok_or(RewriteError {
            offset: at,
            reason: "truncated \\u escape",
        })?;
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char).to_digit(16).ok_or(RewriteError {
                offset: at,
                reason: "bad \\u escape",
            })?;
            v = v * 16 + n;
        }
        Ok(v)
    }

    /// Validates the string at `pos` (which must be `"`) and moves past it.
    fn string(&mut self) -> Result<Str, RewriteError> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = plain_run(self.b, i);
            let Some(&c) = self.b.get(i) else {
                self.pos = i;
                return Err(self.err("unterminated string"));
            };
            match c {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match self.b.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u') => {
                            let cp = self.hex4(i + 2)?;
                            i += 6;
                            if (0xD800..0xDC00).contains(&cp) {
                                let low = match self.b.get(i..i + 2) {
                                    Some(b"\\u") => self.hex4(i + 2)?,
                                    _ => 0,
                                };
                                if !(0xDC00..0xE000).contains(&low) {
                                    self.pos = i;
                                    return Err(self.err("lone surrogate escape"));
                                }
                                i += 6;
                            } else if (0xDC00..0xE000).contains(&cp) {
                                self.pos = i;
                                return Err(self.err("lone surrogate escape"));
                            }
                        }
                        _ => {
                            self.pos = i;
                            return Err(self.err("bad escape"));
                        }
                    }
                }
                0..=0x1f => {
                    self.pos = i;
                    return Err(self.err("control character in string"));
                }
                _ => i += 1,
            }
        }
        // Escapes are ASCII, so the raw bytes are valid UTF-8 exactly when the text is.
        if let Err(e) = std::str::from_utf8(&self.b[start..i]) {
            self.pos = start + e.valid_up_to();
            return Err(self.err("invalid UTF-8 in string"));
        }
        self.pos = i + 1;
        Ok(Str {
            start,
            end: i,
            escaped,
        })
    }

    fn digits(&mut self) -> Result<(), RewriteError> {
        let from = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        if self.pos == from {
            Err(self.err("bad number"))
        } else {
            Ok(())
        }
    }

    fn number(&mut self) -> Result<(), RewriteError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return Err(self.err("bad number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), RewriteError> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("bad literal"))
        }
    }

    /// A string, number or literal at `pos`.
    fn scalar(&mut self) -> Result<(), RewriteError> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => Err(self.err("expected a value")),
            None => Err(self.err("truncated: expected a value")),
        }
    }

    /// `"key" :` with whitespace around the colon.
    fn key(&mut self) -> Result<Str, RewriteError> {
        let s = self.string()?;
        self.ws();
        self.expect(b':', "expected ':'")?;
        self.ws();
        Ok(s)
    }

    /// Validates and moves past one value of any depth, without recursion.
    fn skip_value(&mut self) -> Result<(), RewriteError> {
        self.bits.len = 0;
        loop {
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        self.bits.push(true);
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        self.bits.push(false);
                        continue;
                    }
                }
                _ => self.scalar()?,
            }
            // A value ended: close containers until the next value starts or none is open.
            loop {
                let Some(obj) = self.bits.top() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if obj {
                            self.ws();
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if obj => {
                        self.pos += 1;
                        self.bits.pop();
                    }
                    Some(b']') if !obj => {
                        self.pos += 1;
                        self.bits.pop();
                    }
                    Some(_) => return Err(self.err("expected ',' or a closing bracket")),
                    None => return Err(self.err("truncated")),
                }
            }
        }
    }

    /// Appends the unescaped text of `s` to `buf`; false (and `buf` partial) past `cap` bytes.
    fn decode(&self, s: Str, buf: &mut Vec<u8>, cap: usize) -> bool {
        let raw = &self.b[s.start..s.end];
        if !s.escaped {
            if raw.len() > cap {
                return false;
            }
            buf.extend_from_slice(raw);
            return true;
        }
        let mut i = 0;
        while i < raw.len() {
            if buf.len() > cap {
                return false;
            }
            let c = raw[i];
            if c != b'\\' {
                buf.push(c);
                i += 1;
                continue;
            }
            // `string` validated every escape, so the digits and pairs below are well formed.
            let simple = match raw[i + 1] {
                b'b' => Some(0x08),
                b'f' => Some(0x0c),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                b'u' => None,
                other => Some(other),
            };
            if let Some(byte) = simple {
                buf.push(byte);
                i += 2;
                continue;
            }
            let hex = |at: usize| {
                raw[at..at + 4]
                    .iter()
                    .fold(0u32, |v, &d| v * 16 + (d as char).to_digit(16).unwrap_or(0))
            };
            let mut cp = hex(i + 2);
            i += 6;
            if (0xD800..0xDC00).contains(&cp) {
                let low = hex(i + 2);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                i += 6;
            }
            let ch = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
            buf.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
        }
        buf.len() <= cap
    }
}

// ---------------------------------------------------------------------------------------------
// The carrier walk.

/// Keys the walk reacts to, compared unescaped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Read,
    Threads,
    Thread,
    Channels,
    Groups,
    Events,
    Event,
    ThreadParticipants,
    LastDeliveredAt,
    LastDeliveredMessageId,
    LastReadAt,
    User,
    Id,
    UserId,
    Type,
    Other,
}

fn key_of(name: &[u8]) -> Key {
    match name {
        b"read" => Key::Read,
        b"threads" => Key::Threads,
        b"thread" => Key::Thread,
        b"channels" => Key::Channels,
        b"groups" => Key::Groups,
        b"events" => Key::Events,
        b"event" => Key::Event,
        b"thread_participants" => Key::ThreadParticipants,
        b"last_delivered_at" => Key::LastDeliveredAt,
        b"last_delivered_message_id" => Key::LastDeliveredMessageId,
        b"last_read_at" => Key::LastReadAt,
        b"user" => Key::User,
        b"id" => Key::Id,
        b"user_id" => Key::UserId,
        b"type" => Key::Type,
        _ => Key::Other,
    }
}

/// The schema position of an open container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A REST response object (`ChannelStateResponse`, `QueryChannelsResponse`, …).
    ResponseRoot,
    /// A `WSEvent` (root of a WebSocket frame, `events[]` of `/sync`, `event` of a response).
    Event,
    ChannelList,
    ChannelState,
    /// `groups` of a grouped query: any key is a bucket.
    Groups,
    Group,
    ThreadList,
    ThreadState,
    ReadList,
    ParticipantList,
    EventList,
    /// A kept read entry whose user hides delivery: its delivery fields go.
    ReadEntry,
    /// A participant whose `last_read_at` goes.
    Participant,
}

impl Role {
    fn is_object(self) -> bool {
        !matches!(
            self,
            Role::ChannelList
                | Role::ThreadList
                | Role::ReadList
                | Role::ParticipantList
                | Role::EventList
        )
    }

    /// What a member of this object does.
    fn member(self, key: Key) -> Plan {
        use Key as K;
        use Role as R;
        let walk = match (self, key) {
            (R::ResponseRoot, K::Read) | (R::ChannelState | R::ThreadState, K::Read) => R::ReadList,
            (R::ResponseRoot | R::ChannelState, K::Threads) => R::ThreadList,
            (R::ResponseRoot | R::Event, K::Thread) => R::ThreadState,
            (R::ResponseRoot | R::Group, K::Channels) => R::ChannelList,
            (R::ResponseRoot, K::Groups) => R::Groups,
            (R::ResponseRoot, K::Events) => R::EventList,
            (R::ResponseRoot, K::Event) => R::Event,
            (R::Groups, _) => R::Group,
            (R::ThreadState, K::ThreadParticipants) => R::ParticipantList,
            (R::ReadEntry, K::LastDeliveredAt | K::LastDeliveredMessageId)
            | (R::Participant, K::LastReadAt) => return Plan::Remove,
            _ => return Plan::Skip,
        };
        Plan::Walk(walk)
    }
}

/// What happens to one member or item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Copied as is (validated).
    Skip,
    /// Removed whole.
    Remove,
    /// A container whose contents are walked with this role.
    Walk(Role),
}

/// An open container of the walk.
struct Frame {
    role: Role,
    /// Some item or member of this container is kept in the output.
    kept_any: bool,
    /// The comma before the current item, if any.
    prev_comma: usize,
    /// Where the current item (or member's key) starts.
    item_start: usize,
    /// Nothing read yet after the opening bracket.
    fresh: bool,
}

/// Indicator bits, for carriers that may be checked against several.
const TYPING: u8 = 1;
const READ: u8 = 2;
const DELIVERY: u8 = 4;

fn indicators(mask: u8) -> impl Iterator<Item = (u8, Indicator)> {
    [
        (TYPING, Indicator::Typing),
        (READ, Indicator::Read),
        (DELIVERY, Indicator::Delivery),
    ]
    .into_iter()
    .filter(move |(bit, _)| mask & bit != 0)
}

/// What a look-ahead over one entry found.
#[derive(Default)]
struct Probe {
    /// Indicators of its `type` values (events).
    kinds: u8,
    /// Usable user ids seen.
    ids: u32,
    /// A user id was too long to decode.
    oversized: bool,
    /// Indicators hidden for some id.
    hidden: u8,
    /// It has a `last_read_at` (participants).
    has_last_read_at: bool,
}

/// The copy of the input minus removed ranges.
struct Emit<'o> {
    out: Option<&'o mut Vec<u8>>,
    copied: usize,
}

impl Emit<'_> {
    fn delete(&mut self, input: &[u8], from: usize, to: usize) {
        debug_assert!(self.copied <= from && from <= to);
        if let Some(out) = self.out.as_deref_mut() {
            out.extend_from_slice(&input[self.copied..from]);
        }
        self.copied = to;
    }
}

struct Engine<'a, 'h, 'o> {
    lx: Lexer<'a>,
    hidden: &'h mut dyn FnMut(&str, Indicator) -> bool,
    emit: Emit<'o>,
    stack: Vec<Frame>,
    removed: Removed,
    name: Vec<u8>,
    id: Vec<u8>,
}

impl<'a, 'h, 'o> Engine<'a, 'h, 'o> {
    fn new(
        body: &'a [u8],
        hidden: &'h mut dyn FnMut(&str, Indicator) -> bool,
        out: Option<&'o mut Vec<u8>>,
    ) -> Self {
        Engine {
            lx: Lexer {
                b: body,
                pos: 0,
                bits: BitStack::default(),
            },
            hidden,
            emit: Emit { out, copied: 0 },
            stack: Vec::with_capacity(9),
            removed: Removed::default(),
            name: Vec::with_capacity(MAX_NAME_BYTES + 4),
            id: Vec::new(),
        }
    }

    fn run(&mut self, shape: Shape) -> Result<(), RewriteError> {
        self.lx.ws();
        if self.lx.peek() == Some(b'{') {
            let root = match shape {
                Shape::Response => Role::ResponseRoot,
                Shape::Event => Role::Event,
            };
            self.open(root, 0);
        } else {
            self.lx.skip_value()?;
        }
        while let Some(frame) = self.stack.last_mut() {
            self.lx.ws();
            let role = frame.role;
            let obj = role.is_object();
            if frame.fresh {
                frame.fresh = false;
                if self.lx.peek() == Some(if obj { b'}' } else { b']' }) {
                    self.lx.pos += 1;
                    self.close()?;
                    continue;
                }
            }
            let start = self.lx.pos;
            let plan = if obj {
                let key = self.lx.key()?;
                role.member(self.key(key))
            } else {
                self.item(role)?
            };
            match plan {
                Plan::Skip => {
                    self.lx.skip_value()?;
                    self.finish(start, false)?;
                }
                Plan::Remove => {
                    match role {
                        Role::ReadEntry => self.removed.delivery_fields += 1,
                        Role::Participant => self.removed.participant_reads += 1,
                        _ => {}
                    }
                    self.lx.skip_value()?;
                    self.finish(start, true)?;
                }
                Plan::Walk(child) => {
                    let open = if child.is_object() { b'{' } else { b'[' };
                    match self.lx.peek() {
                        Some(c) if c == open => self.open(child, start),
                        Some(b'{' | b'[') => {
                            return Err(self.lx.err("carrier has an unexpected shape"));
                        }
                        _ => {
                            self.lx.skip_value()?;
                            self.finish(start, false)?;
                        }
                    }
                }
            }
        }
        self.lx.ws();
        if self.lx.pos != self.lx.b.len() {
            return Err(self.lx.err("trailing data after the value"));
        }
        let (input, end) = (self.lx.b, self.lx.b.len());
        self.emit.delete(input, end, end);
        Ok(())
    }

    /// Opens a container at `pos`; `item_start` is where the parent's item holding it starts.
    fn open(&mut self, role: Role, item_start: usize) {
        if let Some(parent) = self.stack.last_mut() {
            parent.item_start = item_start;
        }
        self.lx.pos += 1;
        self.stack.push(Frame {
            role,
            kept_any: false,
            prev_comma: 0,
            item_start: 0,
            fresh: true,
        });
    }

    /// The top container just closed (its bracket consumed): its parent's item ends here.
    fn close(&mut self) -> Result<(), RewriteError> {
        self.stack.pop();
        match self.stack.last() {
            Some(parent) => {
                let start = parent.item_start;
                self.finish(start, false)
            }
            None => Ok(()),
        }
    }

    /// The current item of the top container ended at `pos`: removes it if asked (with one
    /// adjacent comma), then reads the comma or the closing bracket that follows.
    fn finish(&mut self, start: usize, removed: bool) -> Result<(), RewriteError> {
        let end = self.lx.pos;
        self.lx.ws();
        let input = self.lx.b;
        let Some(frame) = self.stack.last_mut() else {
            return Ok(());
        };
        let close = if frame.role.is_object() { b'}' } else { b']' };
        let comma = match self.lx.peek() {
            Some(b',') => Some(self.lx.pos),
            Some(c) if c == close => None,
            Some(_) => return Err(self.lx.err("expected ',' or a closing bracket")),
            None => return Err(self.lx.err("truncated")),
        };
        if !removed {
            frame.kept_any = true;
        } else if frame.kept_any {
            // `…, kept , removed` → drop the comma before it.
            self.emit.delete(input, frame.prev_comma, end);
        } else if let Some(c) = comma {
            // Nothing kept before: drop it and the comma after it.
            self.emit.delete(input, start, c + 1);
        } else {
            self.emit.delete(input, start, end);
        }
        self.lx.pos += 1;
        match comma {
            Some(c) => {
                frame.prev_comma = c;
                Ok(())
            }
            None => self.close(),
        }
    }

    fn key(&mut self, s: Str) -> Key {
        if !s.escaped {
            return key_of(&self.lx.b[s.start..s.end]);
        }
        self.name.clear();
        if self.lx.decode(s, &mut self.name, MAX_NAME_BYTES) {
            key_of(&self.name)
        } else {
            Key::Other
        }
    }

    /// The plan for the array item at `pos`, deciding carrier entries by look-ahead.
    fn item(&mut self, role: Role) -> Result<Plan, RewriteError> {
        let plan = match role {
            Role::ChannelList => Plan::Walk(Role::ChannelState),
            Role::ThreadList => Plan::Walk(Role::ThreadState),
            Role::ReadList | Role::ParticipantList | Role::EventList
                if self.lx.peek() == Some(b'{') =>
            {
                self.decide(role)?
            }
            _ => Plan::Skip,
        };
        Ok(plan)
    }

    fn decide(&mut self, role: Role) -> Result<Plan, RewriteError> {
        let plan = match role {
            Role::ReadList => {
                let p = self.probe(READ | DELIVERY)?;
                if p.ids == 0 || p.oversized {
                    self.unattributed(&p);
                    self.removed.read_entries += 1;
                    Plan::Remove
                } else if p.hidden & READ != 0 {
                    self.removed.read_entries += 1;
                    Plan::Remove
                } else if p.hidden & DELIVERY != 0 {
                    Plan::Walk(Role::ReadEntry)
                } else {
                    Plan::Skip
                }
            }
            Role::ParticipantList => {
                // Only participants that carry a `last_read_at` are looked at (or looked up).
                let p = self.probe(0)?;
                if !p.has_last_read_at {
                    return Ok(Plan::Skip);
                }
                let p = self.probe(READ)?;
                if p.ids == 0 || p.oversized {
                    self.unattributed(&p);
                    Plan::Walk(Role::Participant)
                } else if p.hidden & READ != 0 {
                    Plan::Walk(Role::Participant)
                } else {
                    Plan::Skip
                }
            }
            _ => {
                let kinds = self.probe(0)?.kinds;
                if kinds == 0 {
                    return Ok(Plan::Walk(Role::Event));
                }
                let p = self.probe(kinds)?;
                if p.ids == 0 || p.oversized {
                    self.unattributed(&p);
                    self.removed.events += 1;
                    Plan::Remove
                } else if p.hidden != 0 {
                    self.removed.events += 1;
                    Plan::Remove
                } else {
                    Plan::Walk(Role::Event)
                }
            }
        };
        Ok(plan)
    }

    fn unattributed(&mut self, p: &Probe) {
        self.removed.unattributed += 1;
        if p.oversized {
            self.removed.oversized_ids += 1;
        }
    }

    /// Looks ahead over the object at `pos` (validating it) for its `type`, `user.id`, `user_id`
    /// and `last_read_at`; asks `hidden` about each id for each indicator in `check`. `pos` is
    /// left where it was.
    fn probe(&mut self, check: u8) -> Result<Probe, RewriteError> {
        let at = self.lx.pos;
        let mut p = Probe::default();
        self.lx.expect(b'{', "expected an object")?;
        self.lx.ws();
        if self.lx.peek() == Some(b'}') {
            self.lx.pos = at;
            return Ok(p);
        }
        loop {
            self.lx.ws();
            let k = self.lx.key()?;
            match self.key(k) {
                Key::Type if self.lx.peek() == Some(b'"') => {
                    let s = self.lx.string()?;
                    self.name.clear();
                    if self.lx.decode(s, &mut self.name, MAX_NAME_BYTES) {
                        p.kinds |= match self.name.as_slice() {
                            b"typing.start" | b"typing.stop" => TYPING,
                            b"message.read" => READ,
                            b"message.delivered" => DELIVERY,
                            _ => 0,
                        };
                    }
                }
                Key::UserId if self.lx.peek() == Some(b'"') => {
                    let s = self.lx.string()?;
                    self.id_seen(s, check, &mut p);
                }
                Key::User if self.lx.peek() == Some(b'{') => self.probe_user(check, &mut p)?,
                Key::LastReadAt => {
                    p.has_last_read_at = true;
                    self.lx.skip_value()?;
                }
                _ => self.lx.skip_value()?,
            }
            self.lx.ws();
            match self.lx.peek() {
                Some(b',') => self.lx.pos += 1,
                Some(b'}') => break,
                _ => return Err(self.lx.err("expected ',' or '}'")),
            }
        }
        self.lx.pos = at;
        Ok(p)
    }

    /// The `user` object at `pos`: each string `id` member is a user id.
    fn probe_user(&mut self, check: u8, p: &mut Probe) -> Result<(), RewriteError> {
        self.lx.pos += 1;
        self.lx.ws();
        if self.lx.peek() == Some(b'}') {
            self.lx.pos += 1;
            return Ok(());
        }
        loop {
            self.lx.ws();
            let k = self.lx.key()?;
            if self.key(k) == Key::Id && self.lx.peek() == Some(b'"') {
                let s = self.lx.string()?;
                self.id_seen(s, check, p);
            } else {
                self.lx.skip_value()?;
            }
            self.lx.ws();
            match self.lx.peek() {
                Some(b',') => self.lx.pos += 1,
                Some(b'}') => {
                    self.lx.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.lx.err("expected ',' or '}'")),
            }
        }
    }

    fn id_seen(&mut self, s: Str, check: u8, p: &mut Probe) {
        self.id.clear();
        if !self.lx.decode(s, &mut self.id, MAX_ID_BYTES) {
            p.oversized = true;
            return;
        }
        // Decoded from validated UTF-8 and escapes without lone surrogates: always UTF-8.
        let Ok(id) = std::str::from_utf8(&self.id) else {
            p.oversized = true;
            return;
        };
        p.ids += 1;
        for (bit, ind) in indicators(check) {
            if (self.hidden)(id, ind) {
                p.hidden |= bit;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The checker.

/// The carriers of hidden users' state left in a parsed body, each described in one line; empty
/// when the body is clean. An independent implementation of the carrier table over
/// `serde_json::Value`, for tests and fuzzing (a parsed body is bounded by serde_json's depth
/// limit, so it is never used on the request path).
pub fn leaks(
    v: &serde_json::Value,
    shape: Shape,
    hidden: &dyn Fn(&str, Indicator) -> bool,
) -> Vec<String> {
    use serde_json::Value;
    type Map = serde_json::Map<String, Value>;
    fn ids(o: &Map) -> Vec<&str> {
        let mut ids = Vec::new();
        if let Some(Value::String(id)) = o.get("user").and_then(|u| u.get("id")) {
            ids.push(id.as_str());
        }
        if let Some(Value::String(id)) = o.get("user_id") {
            ids.push(id.as_str());
        }
        ids
    }
    struct Check<'h> {
        hidden: &'h dyn Fn(&str, Indicator) -> bool,
        found: Vec<String>,
    }
    impl Check<'_> {
        fn any(&self, ids: &[&str], ind: Indicator) -> bool {
            ids.is_empty() || ids.iter().any(|u| (self.hidden)(u, ind))
        }
        fn reads(&mut self, v: Option<&Value>, path: &str) {
            let Some(Value::Array(entries)) = v else {
                return;
            };
            for (i, e) in entries.iter().enumerate() {
                let Some(o) = e.as_object() else { continue };
                let ids = ids(o);
                if self.any(&ids, Indicator::Read) {
                    self.found.push(format!("{path}.read[{i}] of {ids:?}"));
                } else if self.any(&ids, Indicator::Delivery)
                    && (o.contains_key("last_delivered_at")
                        || o.contains_key("last_delivered_message_id"))
                {
                    self.found
                        .push(format!("{path}.read[{i}] delivery of {ids:?}"));
                }
            }
        }
        fn thread(&mut self, v: Option<&Value>, path: &str) {
            let Some(Value::Object(t)) = v else { return };
            self.reads(t.get("read"), path);
            if let Some(Value::Array(ps)) = t.get("thread_participants") {
                for (i, p) in ps.iter().enumerate() {
                    let Some(o) = p.as_object() else { continue };
                    if o.contains_key("last_read_at") && self.any(&ids(o), Indicator::Read) {
                        self.found.push(format!(
                            "{path}.thread_participants[{i}].last_read_at of {:?}",
                            ids(o)
                        ));
                    }
                }
            }
        }
        fn threads(&mut self, v: Option<&Value>, path: &str) {
            if let Some(Value::Array(ts)) = v {
                for (i, t) in ts.iter().enumerate() {
                    self.thread(Some(t), &format!("{path}.threads[{i}]"));
                }
            }
        }
        fn channels(&mut self, v: Option<&Value>, path: &str) {
            if let Some(Value::Array(cs)) = v {
                for (i, c) in cs.iter().enumerate() {
                    let p = format!("{path}.channels[{i}]");
                    self.reads(c.get("read"), &p);
                    self.threads(c.get("threads"), &p);
                }
            }
        }
        fn event(&mut self, v: &Value, path: &str) {
            self.thread(v.get("thread"), &format!("{path}.thread"));
        }
        fn response(&mut self, o: &Map) {
            self.reads(o.get("read"), "");
            self.threads(o.get("threads"), "");
            self.thread(o.get("thread"), ".thread");
            self.channels(o.get("channels"), "");
            if let Some(Value::Object(groups)) = o.get("groups") {
                for (name, g) in groups {
                    self.channels(g.get("channels"), &format!(".groups.{name}"));
                }
            }
            if let Some(e) = o.get("event") {
                self.event(e, ".event");
            }
            if let Some(Value::Array(events)) = o.get("events") {
                for (i, e) in events.iter().enumerate() {
                    let Some(eo) = e.as_object() else { continue };
                    let kind = eo.get("type").and_then(Value::as_str).unwrap_or("");
                    if let Some(ind) = super::filter::indicator(kind) {
                        if self.any(&ids(eo), ind) {
                            self.found
                                .push(format!(".events[{i}] {kind} of {:?}", ids(eo)));
                        }
                    }
                    self.event(e, &format!(".events[{i}]"));
                }
            }
        }
    }
    let mut check = Check {
        hidden,
        found: Vec::new(),
    };
    match (shape, v) {
        (Shape::Response, Value::Object(o)) => check.response(o),
        (Shape::Event, v) => check.event(v, ""),
        _ => {}
    }
    check.found
}

/// The body the carrier table asks for, computed on a parsed tree: `v` without the carriers of
/// hidden users. The reference the rewriter is compared with in tests and fuzzing (where keys are
/// not duplicated: a tree keeps only the last of duplicated keys, the rewriter looks at all).
pub fn reference(
    v: &serde_json::Value,
    shape: Shape,
    hidden: &dyn Fn(&str, Indicator) -> bool,
) -> serde_json::Value {
    use serde_json::Value;
    type Map = serde_json::Map<String, Value>;
    let ids = |o: &Map| -> Vec<String> {
        let mut ids = Vec::new();
        if let Some(Value::String(id)) = o.get("user").and_then(|u| u.get("id")) {
            ids.push(id.clone());
        }
        if let Some(Value::String(id)) = o.get("user_id") {
            ids.push(id.clone());
        }
        ids
    };
    let any = |ids: &[String], ind: Indicator| ids.is_empty() || ids.iter().any(|u| hidden(u, ind));
    let reads = |v: &mut Value| {
        if let Value::Array(entries) = v {
            entries.retain(|e| match e.as_object() {
                Some(o) => !any(&ids(o), Indicator::Read),
                None => true,
            });
            for e in entries.iter_mut() {
                if let Some(o) = e.as_object_mut() {
                    if any(&ids(o), Indicator::Delivery) {
                        o.remove("last_delivered_at");
                        o.remove("last_delivered_message_id");
                    }
                }
            }
        }
    };
    let thread = |v: &mut Value| {
        if let Value::Object(t) = v {
            if let Some(r) = t.get_mut("read") {
                reads(r);
            }
            if let Some(Value::Array(ps)) = t.get_mut("thread_participants") {
                for p in ps {
                    if let Some(o) = p.as_object_mut() {
                        if o.contains_key("last_read_at") && any(&ids(o), Indicator::Read) {
                            o.remove("last_read_at");
                        }
                    }
                }
            }
        }
    };
    let event = |v: &mut Value| {
        if let Some(t) = v.get_mut("thread") {
            thread(t);
        }
    };
    let channels = |v: &mut Value| {
        if let Value::Array(cs) = v {
            for c in cs {
                if let Some(r) = c.get_mut("read") {
                    reads(r);
                }
                if let Some(Value::Array(ts)) = c.get_mut("threads") {
                    ts.iter_mut().for_each(thread);
                }
            }
        }
    };
    let mut v = v.clone();
    match (shape, &mut v) {
        (Shape::Response, Value::Object(o)) => {
            if let Some(r) = o.get_mut("read") {
                reads(r);
            }
            if let Some(Value::Array(ts)) = o.get_mut("threads") {
                ts.iter_mut().for_each(thread);
            }
            if let Some(t) = o.get_mut("thread") {
                thread(t);
            }
            if let Some(c) = o.get_mut("channels") {
                channels(c);
            }
            if let Some(Value::Object(groups)) = o.get_mut("groups") {
                for g in groups.values_mut() {
                    if let Some(c) = g.get_mut("channels") {
                        channels(c);
                    }
                }
            }
            if let Some(e) = o.get_mut("event") {
                event(e);
            }
            if let Some(Value::Array(events)) = o.get_mut("events") {
                events.retain(|e| {
                    let Some(o) = e.as_object() else { return true };
                    let kind = o.get("type").and_then(Value::as_str).unwrap_or("");
                    super::filter::indicator(kind).is_none_or(|ind| !any(&ids(o), ind))
                });
                events.iter_mut().for_each(event);
            }
        }
        (Shape::Event, v) => event(v),
        _ => {}
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// Hides `read` for users named h*, `delivery` for d* and h*, `typing` for t* and h*.
    fn hide(id: &str, ind: Indicator) -> bool {
        match ind {
            Indicator::Read => id.starts_with('h'),
            Indicator::Delivery => id.starts_with('h') || id.starts_with('d'),
            Indicator::Typing => id.starts_with('h') || id.starts_with('t'),
        }
    }

    fn run(body: &str, shape: Shape) -> (String, Removed) {
        let mut out = Vec::new();
        let removed = rewrite(body.as_bytes(), shape, &hide, &mut out).expect("rewrites");
        assert!(out.len() <= body.len());
        (String::from_utf8(out).expect("utf-8"), removed)
    }

    fn err(body: &[u8]) -> RewriteError {
        let mut out = b"kept".to_vec();
        let e = rewrite(body, Shape::Response, &hide, &mut out).expect_err("must fail");
        assert_eq!(out, b"kept", "out is left as it was");
        assert!(scan_users(body, Shape::Response).is_err());
        e
    }

    fn entry(user: &str) -> Value {
        json!({"user": {"id": user, "name": user}, "last_read": "2026-01-01T00:00:00Z",
               "last_read_message_id": "m1", "unread_messages": 3,
               "last_delivered_at": "2026-01-01T00:00:00Z", "last_delivered_message_id": "m1"})
    }

    fn participant(user: &str) -> Value {
        json!({"user_id": user, "user": {"id": user}, "last_read_at": "2026-01-01T00:00:00Z",
               "thread_id": "p1"})
    }

    fn thread() -> Value {
        json!({"parent_message_id": "p1", "custom": {"read": [entry("h1")]},
               "read": [entry("a"), entry("h1"), entry("d1")],
               "thread_participants": [participant("a"), participant("h1")]})
    }

    fn channel_state() -> Value {
        json!({"channel": {"id": "c", "read": [entry("h1")]},
               "messages": [{"id": "m1", "user": {"id": "h1"}, "read": [entry("h1")],
                             "thread_participants": [{"id": "h1", "last_read_at": "x"}]}],
               "members": [{"user_id": "h1", "user": {"id": "h1"}}],
               "read": [entry("h1"), entry("a"), entry("d1")],
               "threads": [thread()]})
    }

    /// Rewrites `v` (serialised compactly and pretty) and checks no hidden state is left, and
    /// returns the parsed output.
    fn clean(v: &Value, shape: Shape) -> (Value, Removed) {
        let mut first = None;
        for text in [
            serde_json::to_string(v).expect("json"),
            serde_json::to_string_pretty(v).expect("json"),
        ] {
            let (out, removed) = run(&text, shape);
            let parsed: Value = serde_json::from_str(&out).expect("valid JSON out");
            assert_eq!(leaks(&parsed, shape, &hide), Vec::<String>::new(), "{out}");
            assert_eq!(
                parsed,
                reference(v, shape, &hide),
                "removes exactly the carriers"
            );
            assert!(!leaks(v, shape, &hide).is_empty(), "the input had leaks");
            match &first {
                None => first = Some((parsed, removed)),
                Some((p, r)) => assert_eq!((p, r), (&parsed, &removed), "formatting matters"),
            }
        }
        first.expect("ran")
    }

    fn filtered_entries(v: &Value) -> Vec<&str> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|e| e["user"]["id"].as_str().expect("id"))
            .collect()
    }

    #[test]
    fn channel_state_carriers() {
        let (out, removed) = clean(&channel_state(), Shape::Response);
        assert_eq!(filtered_entries(&out["read"]), ["a", "d1"]);
        assert!(out["read"][0].get("last_delivered_at").is_some());
        assert!(out["read"][1].get("last_delivered_at").is_none());
        assert!(out["read"][1].get("last_delivered_message_id").is_none());
        assert_eq!(out["read"][1]["last_read_message_id"], "m1");
        let t = &out["threads"][0];
        assert_eq!(filtered_entries(&t["read"]), ["a", "d1"]);
        assert!(t["thread_participants"][0].get("last_read_at").is_some());
        assert!(t["thread_participants"][1].get("last_read_at").is_none());
        assert_eq!(
            t["thread_participants"][1]["user_id"], "h1",
            "participation stays"
        );
        // Custom data and non-carriers pass untouched.
        assert_eq!(out["channel"], channel_state()["channel"]);
        assert_eq!(out["messages"], channel_state()["messages"]);
        assert_eq!(out["members"], channel_state()["members"]);
        assert_eq!(t["custom"], thread()["custom"]);
        assert_eq!(
            removed,
            Removed {
                read_entries: 2,
                delivery_fields: 4,
                participant_reads: 1,
                ..Removed::default()
            }
        );
    }

    #[test]
    fn query_channels_grouped_threads_and_thread_carriers() {
        let bodies = [
            json!({"channels": [channel_state(), channel_state()], "duration": "1ms"}),
            json!({"groups": {"inbox": {"channels": [channel_state()], "unread_count": 1},
                              "archived": {"channels": []}}}),
            json!({"threads": [thread(), thread()], "next": "x"}),
            json!({"thread": thread(), "duration": "1ms"}),
            json!({"event": {"type": "message.read", "user": {"id": "a"}, "thread": thread()}}),
        ];
        for body in &bodies {
            let (_, removed) = clean(body, Shape::Response);
            assert!(removed.total() > 0, "{body}");
        }
        let (out, _) = clean(&bodies[0], Shape::Response);
        assert_eq!(filtered_entries(&out["channels"][1]["read"]), ["a", "d1"]);
        let (out, _) = clean(&bodies[1], Shape::Response);
        let inbox = &out["groups"]["inbox"]["channels"][0];
        assert_eq!(filtered_entries(&inbox["read"]), ["a", "d1"]);
        assert_eq!(filtered_entries(&inbox["threads"][0]["read"]), ["a", "d1"]);
    }

    #[test]
    fn sync_events() {
        let body = json!({"events": [
            {"type": "message.read", "user": {"id": "h1"}, "cid": "m:c"},
            {"type": "message.read", "user": {"id": "a"}, "thread": thread()},
            {"type": "message.delivered", "user": {"id": "d1"}, "last_delivered_at": "x"},
            {"type": "message.delivered", "user": {"id": "a"}},
            {"type": "typing.start", "user": {"id": "t1"}},
            {"type": "typing.stop", "user": {"id": "h1"}},
            {"type": "typing.start", "user": {"id": "d1"}},
            {"type": "message.new", "user": {"id": "h1"}, "message": {"read": [entry("h1")]}},
            {"type": "thread.updated", "thread": thread()},
            {"user": {"id": "h1"}, "type": "message.read"},
            {"type": "message.read"}
        ], "inaccessible_cids": [], "duration": "1ms"});
        let (out, removed) = clean(&body, Shape::Response);
        let kinds: Vec<(&str, &str)> = out["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or(""),
                    e["user"]["id"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("message.read", "a"),
                ("message.delivered", "a"),
                ("typing.start", "d1"),
                ("message.new", "h1"),
                ("thread.updated", "")
            ]
        );
        assert_eq!(removed.events, 6);
        assert_eq!(removed.unattributed, 1);
        assert_eq!(out["events"][3]["message"], body["events"][7]["message"]);
        assert!(out["events"][0]["thread"]["thread_participants"][1]
            .get("last_read_at")
            .is_none());
        assert_eq!(
            filtered_entries(&out["events"][4]["thread"]["read"]),
            ["a", "d1"]
        );
    }

    #[test]
    fn websocket_events_lose_embedded_thread_reads_only() {
        let ev = json!({"type": "thread.updated", "thread": thread(), "read": [entry("h1")],
                        "channels": [channel_state()]});
        let (out, _) = clean(&ev, Shape::Event);
        let ps = &out["thread"]["thread_participants"];
        assert!(ps[1].get("last_read_at").is_none());
        // An event has no `read` or `channels` of its own: those are custom data and pass.
        assert_eq!(out["read"], ev["read"]);
        assert_eq!(out["channels"], ev["channels"]);
        // A whole event of a hidden user is the event path's verdict, not this module's.
        let typing = r#"{"type":"typing.start","user":{"id":"h1"}}"#;
        assert_eq!(run(typing, Shape::Event).0, typing);
    }

    #[test]
    fn delivery_only_hiding_keeps_the_read_state_byte_for_byte() {
        let body = r#"{"read":[{"last_delivered_at":"x","user":{"id":"d1"},"last_read":"y","last_delivered_message_id":"m"}]}"#;
        let (out, removed) = run(body, Shape::Response);
        assert_eq!(out, r#"{"read":[{"user":{"id":"d1"},"last_read":"y"}]}"#);
        assert_eq!(removed.delivery_fields, 2);
        assert_eq!(removed.read_entries, 0);
    }

    #[test]
    fn requester_independent() {
        // The rewriter has no notion of a requester: whoever the caller hides goes.
        let body = json!({"read": [entry("a"), entry("b")]}).to_string();
        for hidden_user in ["a", "b"] {
            let mut out = Vec::new();
            let only = |u: &str, ind: Indicator| u == hidden_user && ind == Indicator::Read;
            rewrite(body.as_bytes(), Shape::Response, &only, &mut out).expect("ok");
            let v: Value = serde_json::from_slice(&out).expect("json");
            let kept = filtered_entries(&v["read"]);
            assert_eq!(kept.len(), 1);
            assert_ne!(kept[0], hidden_user);
        }
        let mut out = Vec::new();
        rewrite(body.as_bytes(), Shape::Response, &|_, _| false, &mut out).expect("ok");
        assert_eq!(out, body.as_bytes());
    }

    #[test]
    fn scan_lists_carrier_users_only() {
        let users =
            scan_users(channel_state().to_string().as_bytes(), Shape::Response).expect("scan");
        assert_eq!(
            users.into_iter().collect::<Vec<_>>(),
            ["a", "d1", "h1"],
            "no message senders or members"
        );
        let sync = json!({"events": [{"type": "message.new", "user": {"id": "x"}},
                                     {"type": "typing.start", "user": {"id": "y"}, "user_id": "z"}]});
        let users = scan_users(sync.to_string().as_bytes(), Shape::Response).expect("scan");
        assert_eq!(users.into_iter().collect::<Vec<_>>(), ["y", "z"]);
    }

    #[test]
    fn unchanged_bodies_are_copied_exactly() {
        let bodies = [
            r#" { "read" : [ ] , "x" : [1,2.5e-3,-0,true,false,null,"\u00e9\"]"] } "#,
            r#"[{"read":[{"user":{"id":"h1"}}]}]"#,
            r#""a string root""#,
            "42",
            r#"{"read":null,"threads":null,"thread":null,"channels":"x","events":7}"#,
            r#"{"read":[1,"s",null,[]],"events":[null,{"type":"message.new"}]}"#,
        ];
        for body in bodies {
            let mut out = Vec::with_capacity(0);
            let removed = rewrite(body.as_bytes(), Shape::Response, &hide, &mut out).expect("ok");
            assert_eq!(removed, Removed::default(), "{body}");
            assert_eq!(out, body.as_bytes());
            assert_eq!(out.capacity(), body.len(), "reserved exactly once");
        }
    }

    #[test]
    fn removal_keeps_commas_right() {
        for (body, want) in [
            (r#"{"read":[{"user":{"id":"h1"}}]}"#, r#"{"read":[]}"#),
            (
                r#"{"read":[ {"user":{"id":"h1"}} , {"user":{"id":"a"}} ]}"#,
                r#"{"read":[  {"user":{"id":"a"}} ]}"#,
            ),
            (
                r#"{"read":[{"user":{"id":"a"}},{"user":{"id":"h1"}},{"user":{"id":"h2"}},{"user":{"id":"b"}}]}"#,
                r#"{"read":[{"user":{"id":"a"}},{"user":{"id":"b"}}]}"#,
            ),
            (
                r#"{"read":[{"user":{"id":"h1"}},{"user":{"id":"h2"}}],"x":1}"#,
                r#"{"read":[],"x":1}"#,
            ),
            (
                r#"{"read":[{"user":{"id":"d1"},"last_delivered_at":"x"}]}"#,
                r#"{"read":[{"user":{"id":"d1"}}]}"#,
            ),
            (
                r#"{"read":[{"last_delivered_at":"x","last_delivered_message_id":"m","user":{"id":"d1"}}]}"#,
                r#"{"read":[{"user":{"id":"d1"}}]}"#,
            ),
            (
                r#"{"read":[{"last_delivered_at":"x" , "last_delivered_message_id":"m"  ,"user_id":"d1"}]}"#,
                r#"{"read":[{ "user_id":"d1"}]}"#,
            ),
        ] {
            assert_eq!(run(body, Shape::Response).0, want);
        }
    }

    #[test]
    fn escaped_keys_and_ids_are_decoded() {
        let body = r#"{"r\u0065ad":[{"user":{"\u0069d":"\u0068\u0031"}},{"user":{"id":"a\"]}"}}],"thr\u0065ads":[{"thread_p\u0061rticipants":[{"user_id":"h1","last_re\u0061d_at":"x"}]}]}"#;
        let (out, removed) = run(body, Shape::Response);
        assert_eq!(
            out,
            r#"{"r\u0065ad":[{"user":{"id":"a\"]}"}}],"thr\u0065ads":[{"thread_p\u0061rticipants":[{"user_id":"h1"}]}]}"#
        );
        assert_eq!(removed.read_entries, 1);
        assert_eq!(removed.participant_reads, 1);
        // An event type spelled with escapes is still `message.read`.
        let sync = r#"{"events":[{"type":"message.r\u0065ad","user":{"id":"h1"}}]}"#;
        assert_eq!(run(sync, Shape::Response).0, r#"{"events":[]}"#);
        // A surrogate pair in an id decodes to the character.
        let mut seen = Vec::new();
        let body = r#"{"read":[{"user":{"id":"\ud83d\ude00"}}]}"#;
        let users = scan_users(body.as_bytes(), Shape::Response).expect("scan");
        seen.extend(users);
        assert_eq!(seen, ["\u{1F600}"]);
    }

    #[test]
    fn unattributed_carriers_are_removed() {
        for body in [
            r#"{"read":[{"last_read":"x"}]}"#,
            r#"{"read":[{"user":{"id":7},"last_read":"x"}]}"#,
            r#"{"read":[{"user":null}]}"#,
        ] {
            let (out, removed) = run(body, Shape::Response);
            assert_eq!(out, r#"{"read":[]}"#);
            assert_eq!(removed.unattributed, 1);
        }
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let body = format!(r#"{{"read":[{{"user":{{"id":"{long}"}}}}]}}"#);
        let (out, removed) = run(&body, Shape::Response);
        assert_eq!(out, r#"{"read":[]}"#);
        assert_eq!(removed.oversized_ids, 1);
        let (out, removed) = run(
            r#"{"thread":{"thread_participants":[{"last_read_at":"x"},{"user_id":"a"}]}}"#,
            Shape::Response,
        );
        assert_eq!(
            out,
            r#"{"thread":{"thread_participants":[{},{"user_id":"a"}]}}"#
        );
        assert_eq!(removed.participant_reads, 1);
    }

    #[test]
    fn duplicate_ids_hide_if_any_is_hidden() {
        let body = r#"{"read":[{"user":{"id":"a","id":"h1"}},{"user":{"id":"h1"},"user":{"id":"a"}},{"user_id":"h1","user":{"id":"a"}}]}"#;
        assert_eq!(run(body, Shape::Response).0, r#"{"read":[]}"#);
    }

    #[test]
    fn deep_nesting_passes_through() {
        let depth = 10_000;
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let deep_obj = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
        let body = format!(
            r#"{{"messages":[{{"id":"m","custom_deep":{deep},"more":{deep_obj}}}],"read":[{{"user":{{"id":"a","x":{deep}}}}},{{"user":{{"id":"h1","x":{deep_obj}}}}}]}}"#
        );
        let mut out = Vec::new();
        let removed = rewrite(body.as_bytes(), Shape::Response, &hide, &mut out).expect("deep");
        assert_eq!(removed.read_entries, 1);
        let want = format!(
            r#"{{"messages":[{{"id":"m","custom_deep":{deep},"more":{deep_obj}}}],"read":[{{"user":{{"id":"a","x":{deep}}}}}]}}"#
        );
        assert_eq!(out, want.as_bytes());
        // Unbalanced deep input is still an error.
        let bad = format!(r#"{{"x":{}{}}}"#, "[".repeat(depth), "]".repeat(depth - 1));
        err(bad.as_bytes());
    }

    #[test]
    fn huge_arrays() {
        let n = 100_000;
        let mut body = String::from(r#"{"read":["#);
        for i in 0..n {
            if i > 0 {
                body.push(',');
            }
            let who = if i % 2 == 0 { "h" } else { "a" };
            body.push_str(&format!(
                r#"{{"user":{{"id":"{who}{i}"}},"last_read":"x"}}"#
            ));
        }
        body.push_str("]}");
        let (out, removed) = run(&body, Shape::Response);
        assert_eq!(removed.read_entries, n / 2);
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["read"].as_array().expect("array").len() as u64, n / 2);
        assert!(leaks(&v, Shape::Response, &hide).is_empty());
    }

    #[test]
    fn every_truncation_fails() {
        let body = json!({"channels": [channel_state()], "events": [
            {"type": "message.read", "user": {"id": "h1"}, "n": [1.5e3, -2, true, null]}]})
        .to_string();
        for cut in 0..body.len() {
            err(&body.as_bytes()[..cut]);
        }
        assert!(run(&body, Shape::Response).1.total() > 0);
    }

    #[test]
    fn malformed_bodies_fail() {
        for body in [
            &b"{\"read\":[{\"user\":{\"id\":\"\xff\"}}]}"[..],
            b"{\"x\":\"\xc3\"}",
            b"{\"x\":\"\xed\xa0\x80\"}",
            br#"{"x":"\ud800"}"#,
            br#"{"x":"\udc00\ud800"}"#,
            br#"{"x":"\u12g4"}"#,
            br#"{"x":"\q"}"#,
            b"{\"x\":\"a\nb\"}",
            br#"{"x":1}x"#,
            br#"{"x":1}{"#,
            br#"{"x":1,}"#,
            br#"{"x":[1,]}"#,
            br#"{"x":01}"#,
            br#"{"x":1.}"#,
            br#"{"x":-}"#,
            br#"{"x":tru}"#,
            br#"{"x":nulll}"#,
            br#"{x:1}"#,
            br#"{"x" 1}"#,
            br#"{"x":[1}"#,
            br#"{"x":{"a":1]}"#,
            b"\xef\xbb\xbf{}",
            b"",
            b"   ",
            br#"{"read":{"user":{"id":"h1"}}}"#,
            br#"{"threads":[{"read":{}}]}"#,
            br#"{"thread":[]}"#,
        ] {
            err(body);
        }
    }

    #[test]
    fn special_bytes_are_seen_at_every_offset() {
        // The eight-bytes-at-a-time scan must stop at a quote, backslash or control character
        // wherever it sits in a word.
        for at in 0..24 {
            for special in ["\"", "\\n", "\n", "\u{1f}", "\u{7f}", "é", "\u{80}"] {
                let text = format!("{}{special}{}", "a".repeat(at), "b".repeat(at % 9));
                let body = format!(r#"{{"k":"{text}","read":[{{"user":{{"id":"h{text}"}}}}]}}"#);
                let ours = rewrite(body.as_bytes(), Shape::Response, &hide, &mut Vec::new());
                let theirs = serde_json::from_str::<Value>(&body);
                assert_eq!(ours.is_ok(), theirs.is_ok(), "{body:?}");
                if let Ok(removed) = ours {
                    assert_eq!(removed.read_entries, 1, "{body:?}");
                }
            }
        }
    }

    #[test]
    fn agrees_with_serde_json_on_validity() {
        for body in [
            r#"{"a":"\u00e9\/\b\f\n\r\t\\"}"#,
            r#"{"a":[-0.0e+10,1E5,123456789012345678901234567890]}"#,
            "{\"a\":\"\u{1F600} é\"}",
        ] {
            assert!(serde_json::from_str::<Value>(body).is_ok());
            assert_eq!(run(body, Shape::Response).0, body);
        }
    }

    #[test]
    fn same_result_as_visit_reads() {
        let text = r#"{
            "read":[{"user":{"id":"a"}},{"user":{"id":"b"}}],
            "channels":[{"read":[{"user":{"id":"b"}}]}],
            "threads":[{"read":[{"user":{"id":"b"}}]}],
            "thread":{"read":[{"user":{"id":"b"}},{"user":{"id":"a"}}]},
            "events":[{"type":"message.read","user":{"id":"b"}},{"type":"message.new","user":{"id":"b"}}]
        }"#;
        let mut old: Value = serde_json::from_str(text).expect("json");
        super::super::rewrite::visit_reads(&mut old, &mut |u| u == "b");
        let mut out = Vec::new();
        let only_b = |u: &str, _: Indicator| u == "b";
        rewrite(text.as_bytes(), Shape::Response, &only_b, &mut out).expect("ok");
        let new: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(new, old);
    }

    proptest! {
        /// Random lists of entries, hidden or not, with random whitespace: the output is the
        /// visible entries in order, whatever the layout.
        #[test]
        fn lists_filter_like_a_tree(
            entries in proptest::collection::vec((any::<bool>(), 0usize..4, 0usize..4), 0..12),
        ) {
            let space = ["", " ", "\n\t", "  \r\n"];
            let mut body = String::from("{\"read\" :[");
            let mut want = Vec::new();
            for (i, (hidden, a, b)) in entries.iter().enumerate() {
                if i > 0 {
                    body.push_str(space[*a]);
                    body.push(',');
                }
                body.push_str(space[*b]);
                let id = format!("{}{i}", if *hidden { "h" } else { "a" });
                body.push_str(&format!(r#"{{"user":{{"id":"{id}"}}}}"#));
                body.push_str(space[*a]);
                if !hidden {
                    want.push(id);
                }
            }
            body.push_str("]}");
            let (out, removed) = run(&body, Shape::Response);
            let v: Value = serde_json::from_str(&out).expect("valid");
            prop_assert_eq!(filtered_entries(&v["read"]), want.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(removed.read_entries as usize, entries.len() - want.len());
        }
    }
}
