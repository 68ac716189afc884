//! The rewriter's vocabulary, shared by the scanner, the walk and the checkers: what a body is
//! ([`Shape`]), what was removed ([`Removed`]), why a body cannot be filtered ([`RewriteError`]).

/// The longest user id the rewriter decodes: Stream caps user ids at 255 characters, at most 4
/// bytes each in UTF-8. A carrier naming a longer id cannot be a real user's and is removed.
pub const MAX_ID_BYTES: usize = 1024;

/// The longest key or event type worth decoding: every key and type matched is shorter.
pub(super) const MAX_NAME_BYTES: usize = 32;

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
