//! The records the store holds: users and their devices, channels with their members, bounded
//! message history (threads, reactions and pins included), uploads and read state. Plain data with no behaviour beyond
//! construction; `store` owns the maps they live in.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};
use time::OffsetDateTime;

/// A user record. Typed fields are validated on the way in (see `users`).
pub(crate) struct User {
    pub id: String,
    pub role: String,
    /// name, image, language, teams, invisible, privacy_settings and custom
    /// fields, as last upserted.
    pub fields: Map<String, Value>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_active: Option<OffsetDateTime>,
    /// `revokeUserToken`: this user's tokens issued before it (or without `iat`) are refused.
    /// Only a server token sets it.
    pub revoke_tokens_issued_before: Option<OffsetDateTime>,
    /// Push devices, oldest first, at most `MAX_DEVICES_PER_USER` (see `devices`).
    pub devices: Vec<Device>,
}

/// A push device (`DeviceResponse`): registered by `POST /devices` or the connect payload.
#[derive(Clone)]
pub(crate) struct Device {
    /// The push token; unique in the app.
    pub id: String,
    pub push_provider: String,
    pub push_provider_name: Option<String>,
    pub created_at: OffsetDateTime,
}

/// A channel with its members, history and read state.
pub(crate) struct Channel {
    pub kind: String,
    pub id: String,
    pub cid: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_message_at: Option<OffsetDateTime>,
    /// Custom channel data (`name`, `image`, …).
    pub data: Map<String, Value>,
    pub members: Vec<Member>,
    /// The newest `MAX_MESSAGES_PER_CHANNEL` messages, oldest first.
    pub messages: VecDeque<Message>,
    pub message_count: u64,
    /// user id → read state; every member has one.
    pub reads: HashMap<String, ReadState>,
    /// Connection ids watching this channel.
    /// (user id, parent message id) → the user's read state of that thread: one entry per
    /// participant of each thread of the channel (`thread_reads`).
    pub thread_reads: HashMap<(String, String), ReadState>,
    pub watchers: HashSet<String>,
}

pub(crate) struct Member {
    pub user_id: String,
    pub created_at: OffsetDateTime,
    pub is_creator: bool,
    /// Hidden for this member (`hide`) until shown or a new message arrives.
    pub hidden: bool,
    /// `hide` with `clear_history`: this member sees no message created before it.
    pub hide_messages_before: Option<OffsetDateTime>,
    /// Promoted with `add_moderators` (the creator is one from the start).
    pub moderator: bool,
    /// Invited (`invites`) and not yet accepted or rejected.
    pub invited: bool,
    pub invite_accepted_at: Option<OffsetDateTime>,
    pub invite_rejected_at: Option<OffsetDateTime>,
    /// Per-member pin and archive (`PATCH …/member`, `set: {pinned, archived}`).
    pub pinned_at: Option<OffsetDateTime>,
    pub archived_at: Option<OffsetDateTime>,
    /// When the membership last changed.
    pub updated_at: OffsetDateTime,
}

// === impl Member ===

impl Member {
    pub(crate) fn new(user_id: String, is_creator: bool, now: OffsetDateTime) -> Self {
        Self {
            user_id,
            created_at: now,
            is_creator,
            hidden: false,
            hide_messages_before: None,
            moderator: is_creator,
            invited: false,
            invite_accepted_at: None,
            invite_rejected_at: None,
            pinned_at: None,
            archived_at: None,
            updated_at: now,
        }
    }
}

pub(crate) struct Message {
    pub id: String,
    pub user_id: String,
    pub text: String,
    pub parent_id: Option<String>,
    pub show_in_channel: bool,
    pub silent: bool,
    pub attachments: Vec<Value>,
    /// Custom message fields.
    pub custom: Map<String, Value>,
    pub reply_count: u32,
    /// Set on a parent message once it has a reply.
    pub thread: Option<Thread>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// What happened to it after it was sent: edits, pin, reactions, deletion.
    pub extra: MessageExtra,
}

impl Message {
    /// Whether `viewer` may see it: a shadow-banned author's message is theirs alone.
    pub(crate) fn visible_to(&self, viewer: Option<&str>) -> bool {
        !self.extra.shadowed || viewer == Some(self.user_id.as_str())
    }
}

/// A thread: what a parent message gains with its first reply.
pub(crate) struct Thread {
    /// When the first reply came.
    pub started_at: OffsetDateTime,
    pub last_reply_at: OffsetDateTime,
    /// The last reply or partial update.
    pub updated_at: OffsetDateTime,
    /// The parent's author, then every replier, each with when they joined; in joining order.
    pub participants: Vec<(String, OffsetDateTime)>,
    /// Set by a partial update; until then the title is the parent's text.
    pub title: Option<String>,
    /// Custom thread data, set by a partial update.
    pub custom: Map<String, Value>,
}

pub(crate) struct ReadState {
    pub last_read: OffsetDateTime,
    pub last_read_message_id: Option<String>,
    pub unread: u32,
}

/// A message's life after it was sent (see `messages`, `reactions`).
#[derive(Default)]
pub(crate) struct MessageExtra {
    /// Set by `pinned: true` on an update; cleared by `pinned: false` or when it expires.
    pub pin: Option<Pin>,
    /// Soft deletion: the message stays, as `type: deleted`.
    pub deleted_at: Option<OffsetDateTime>,
    /// A channel notice (`type: system`: the `message` of a channel update or truncation).
    pub system: bool,
    /// Sent under a shadow ban: shown to its author only (`shadowed: true`), as Stream does.
    pub shadowed: bool,
    /// Users who deleted it for themselves only (`delete_for_me`), and when; one entry per user.
    pub deleted_for: Vec<(String, OffsetDateTime)>,
    /// The last change of `text` by an update.
    pub text_updated_at: Option<OffsetDateTime>,
    /// Oldest first; at most one per (user, type), at most `MAX_REACTIONS_PER_MESSAGE`.
    pub reactions: Vec<Reaction>,
    /// The poll this message carries (`poll_id` when sent; see `polls`).
    pub poll_id: Option<String>,
    /// The message of the same channel it quotes, and the users it mentions (`message_refs`).
    pub quoted_message_id: Option<String>,
    pub mentioned_users: Vec<String>,
}

pub(crate) struct Pin {
    pub at: OffsetDateTime,
    pub by: String,
    pub expires: Option<OffsetDateTime>,
}

/// One user's reaction of one type to a message (`ReactionResponse`).
#[derive(Clone)]
pub(crate) struct Reaction {
    pub user_id: String,
    pub kind: String,
    pub score: u32,
    pub custom: Map<String, Value>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A file stored by `POST /channels/{type}/{id}/file|image`, served back at its URL.
pub(crate) struct Upload {
    pub cid: String,
    pub user_id: String,
    pub name: String,
    pub content_type: String,
    pub bytes: bytes::Bytes,
}

/// A poll (`POST /polls`), attached to a message by its `poll_id`.
pub(crate) struct Poll {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub options: Vec<PollOption>,
    /// Option votes and answers, oldest first, at most `MAX_VOTES_PER_POLL`.
    pub votes: Vec<PollVote>,
    pub voting_visibility: String,
    pub enforce_unique_vote: bool,
    pub allow_answers: bool,
    pub allow_user_suggested_options: bool,
    pub max_votes_allowed: Option<u32>,
    pub is_closed: bool,
    pub custom: Map<String, Value>,
}

pub(crate) struct PollOption {
    pub id: String,
    pub text: String,
    pub custom: Map<String, Value>,
}

/// A vote for an option, or (with `answer_text`) an answer.
#[derive(Clone)]
pub(crate) struct PollVote {
    pub id: String,
    pub user_id: String,
    pub option_id: Option<String>,
    pub answer_text: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}
