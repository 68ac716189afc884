//! The records the store holds: users and their devices, channels with their members, bounded
//! message history (threads included) and read state. Plain data with no behaviour beyond
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
