//! The carrier walk: follows the schema paths of the carrier table over the scanner and decides,
//! entry by entry, what of a hidden user's state to drop from the output.

use super::lexer::*;
use super::types::*;
use crate::privacy::filter::Indicator;

/// Keys the walk reacts to, compared unescaped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
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

pub(super) fn key_of(name: &[u8]) -> Key {
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
pub(super) enum Role {
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
    pub(super) fn is_object(self) -> bool {
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
    pub(super) fn member(self, key: Key) -> Plan {
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
pub(super) enum Plan {
    /// Copied as is (validated).
    Skip,
    /// Removed whole.
    Remove,
    /// A container whose contents are walked with this role.
    Walk(Role),
}

/// An open container of the walk.
pub(super) struct Frame {
    pub(super) role: Role,
    /// Some item or member of this container is kept in the output.
    pub(super) kept_any: bool,
    /// The comma before the current item, if any.
    pub(super) prev_comma: usize,
    /// Where the current item (or member's key) starts.
    pub(super) item_start: usize,
    /// Nothing read yet after the opening bracket.
    pub(super) fresh: bool,
}

/// Indicator bits, for carriers that may be checked against several.
pub(super) const TYPING: u8 = 1;
pub(super) const READ: u8 = 2;
pub(super) const DELIVERY: u8 = 4;

pub(super) fn indicators(mask: u8) -> impl Iterator<Item = (u8, Indicator)> {
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
pub(super) struct Probe {
    /// Indicators of its `type` values (events).
    pub(super) kinds: u8,
    /// Usable user ids seen.
    pub(super) ids: u32,
    /// A user id was too long to decode.
    pub(super) oversized: bool,
    /// Indicators hidden for some id.
    pub(super) hidden: u8,
    /// It has a `last_read_at` (participants).
    pub(super) has_last_read_at: bool,
}

/// The copy of the input minus removed ranges.
pub(super) struct Emit<'o> {
    pub(super) out: Option<&'o mut Vec<u8>>,
    pub(super) copied: usize,
}

impl Emit<'_> {
    pub(super) fn delete(&mut self, input: &[u8], from: usize, to: usize) {
        debug_assert!(self.copied <= from && from <= to);
        if let Some(out) = self.out.as_deref_mut() {
            out.extend_from_slice(&input[self.copied..from]);
        }
        self.copied = to;
    }
}

pub(super) struct Engine<'a, 'h, 'o> {
    pub(super) lx: Lexer<'a>,
    pub(super) hidden: &'h mut dyn FnMut(&str, Indicator) -> bool,
    pub(super) emit: Emit<'o>,
    pub(super) stack: Vec<Frame>,
    pub(super) removed: Removed,
    pub(super) name: Vec<u8>,
    pub(super) id: Vec<u8>,
}

impl<'a, 'h, 'o> Engine<'a, 'h, 'o> {
    pub(super) fn new(
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

    pub(super) fn run(&mut self, shape: Shape) -> Result<(), RewriteError> {
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
    pub(super) fn open(&mut self, role: Role, item_start: usize) {
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
    pub(super) fn close(&mut self) -> Result<(), RewriteError> {
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
    pub(super) fn finish(&mut self, start: usize, removed: bool) -> Result<(), RewriteError> {
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

    pub(super) fn key(&mut self, s: Str) -> Key {
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
    pub(super) fn item(&mut self, role: Role) -> Result<Plan, RewriteError> {
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

    pub(super) fn decide(&mut self, role: Role) -> Result<Plan, RewriteError> {
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

    pub(super) fn unattributed(&mut self, p: &Probe) {
        self.removed.unattributed += 1;
        if p.oversized {
            self.removed.oversized_ids += 1;
        }
    }

    /// Looks ahead over the object at `pos` (validating it) for its `type`, `user.id`, `user_id`
    /// and `last_read_at`; asks `hidden` about each id for each indicator in `check`. `pos` is
    /// left where it was.
    pub(super) fn probe(&mut self, check: u8) -> Result<Probe, RewriteError> {
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
    pub(super) fn probe_user(&mut self, check: u8, p: &mut Probe) -> Result<(), RewriteError> {
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

    pub(super) fn id_seen(&mut self, s: Str, check: u8, p: &mut Probe) {
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
