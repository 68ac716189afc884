//! What an embedder tells the emulator: the apps it serves, the failures to inject, and the bounds
//! on everything that grows with a peer. The bottom of the crate: it imports nothing from it.

use std::time::Duration;

/// How often a session gets an unsolicited `health.check`; the SDK's 35 s
/// watchdog must never fire on an idle but healthy connection.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// Messages kept per channel; older ones are forgotten.
pub const MAX_MESSAGES_PER_CHANNEL: usize = 1000;
/// Events queued per connection before it counts as a slow consumer and is
/// closed with 1011.
pub const OUTBOUND_QUEUE_CAPACITY: usize = 256;
/// Largest accepted REST request body (larger ones get 413).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest accepted user object, serialized (Stream's documented limit).
pub const MAX_USER_BYTES: usize = 5 * 1024;
/// Push devices kept per user; registering one more forgets the oldest, as Stream does (its
/// documented limit is 25).
pub const MAX_DEVICES_PER_USER: usize = 25;
/// Users one connection may follow the presence of (`presence: true`); later subscriptions of a
/// connection at the limit are ignored.
pub const MAX_PRESENCE_PER_CONNECTION: usize = 10_000;
/// Largest accepted upload request (`multipart/form-data` to `…/file` or `…/image`); larger ones
/// get 413. Other REST bodies stay within `MAX_BODY_BYTES`.
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;
/// Bytes of uploaded files one app keeps in memory; an upload beyond it is refused (413) until
/// files are deleted.
pub const MAX_UPLOADS_TOTAL_BYTES: usize = 256 * 1024 * 1024;
/// Uploaded files one app keeps.
pub const MAX_UPLOADS_PER_APP: usize = 10_000;
/// Longest accepted message text (the channel config's `max_message_length`).
pub const MAX_MESSAGE_TEXT: usize = 5000;

/// One Stream application the emulator serves.
#[derive(Debug, Clone)]
pub struct App {
    /// The public API key clients send as `api_key`.
    pub api_key: String,
    /// HS256 app secrets; a token signed with any one of them verifies, which
    /// is how secret rotation works.
    pub secrets: Vec<String>,
}

/// Failures the emulator can be told to produce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// `GET /users` answers 500.
    pub fail_user_queries: bool,
}
