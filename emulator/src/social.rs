//! State beyond the core records (`model`) that issue 17's routes keep: per-user mutes, channel
//! mutes, blocks and bans; channel bans; delivery receipts; truncation times; drafts; reminders;
//! flags; and the app settings `PATCH /app` changes. Plain data behind the store's mutex, kept
//! apart from `model` so the core records stay small; the handlers in `mutes`, `blocks`, `bans`,
//! `reads`, `channel_admin`, `drafts` and `reminders` own the behaviour.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Users one user may mute, block or be muted with; Stream documents no limit, so a generous one.
pub(crate) const MAX_MUTES_PER_USER: usize = 1_000;
/// Drafts one user may keep (one per channel or thread).
pub(crate) const MAX_DRAFTS_PER_USER: usize = 1_000;
/// Reminders one user may keep.
pub(crate) const MAX_REMINDERS_PER_USER: usize = 1_000;
/// Flags kept per app; older ones are forgotten (a flag has no read route here).
pub(crate) const MAX_FLAGS_PER_APP: usize = 10_000;

/// Everything in this module, per app.
#[derive(Default)]
pub(crate) struct Social {
    /// user id → their moderation state.
    pub users: HashMap<String, UserSocial>,
    /// (cid, user id) → a channel ban.
    pub channel_bans: HashMap<(String, String), Ban>,
    /// cid → when it was last truncated.
    pub truncated_at: HashMap<String, (OffsetDateTime, Option<String>)>,
    /// (cid, user id) → when and up to which message the user's clients got the channel.
    pub delivered: HashMap<(String, String), (OffsetDateTime, String)>,
    /// (user id, cid, parent id) → draft.
    pub drafts: HashMap<(String, String, Option<String>), Draft>,
    /// (user id, message id) → reminder.
    pub reminders: HashMap<(String, String), Reminder>,
    /// (when, user id, message id) of every reminder still to fall due, soonest first: what the
    /// reminder clock (`reminder_clock`) looks at. One entry per reminder at most.
    pub reminders_due: BTreeSet<(tokio::time::Instant, String, String)>,
    /// Flags, oldest first, at most `MAX_FLAGS_PER_APP`.
    pub flags: Vec<Flag>,
    /// Settings `PATCH /app` set, merged into `GET /app`.
    pub settings: Map<String, Value>,
}

/// One user's mutes, blocks and global ban.
#[derive(Default)]
pub(crate) struct UserSocial {
    pub mutes: Vec<Mute>,
    pub channel_mutes: Vec<ChannelMute>,
    /// Blocked user ids with when, oldest first.
    pub blocked: Vec<(String, OffsetDateTime)>,
    pub ban: Option<Ban>,
    /// `deactivateUser`: the user's tokens are refused until `reactivateUser`.
    pub deactivated_at: Option<OffsetDateTime>,
    /// `deleteUser`: kept as a marker (messages still name the user).
    pub deleted_at: Option<OffsetDateTime>,
}

pub(crate) struct Mute {
    pub target: String,
    pub created_at: OffsetDateTime,
    pub expires: Option<OffsetDateTime>,
}

pub(crate) struct ChannelMute {
    pub cid: String,
    pub created_at: OffsetDateTime,
    pub expires: Option<OffsetDateTime>,
}

#[derive(Clone)]
pub(crate) struct Ban {
    pub shadow: bool,
    pub reason: Option<String>,
    pub expires: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    /// Who banned (a server token's ban may name nobody).
    pub by: Option<String>,
}

pub(crate) struct Draft {
    pub message: Map<String, Value>,
    pub created_at: OffsetDateTime,
}

pub(crate) struct Reminder {
    pub cid: String,
    pub remind_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// When `remind_at` falls due on the runtime's clock (so paused tokio time drives it in
    /// tests); `None` once it fired, or without `remind_at`.
    pub due: Option<tokio::time::Instant>,
}

pub(crate) struct Flag {
    pub by: String,
    pub target_user: Option<String>,
    pub target_message: Option<String>,
}

// === impl Social ===

impl Social {
    /// Whether `ban` still applies at `now`.
    fn live(ban: &Ban, now: OffsetDateTime) -> bool {
        ban.expires.is_none_or(|t| t > now)
    }

    /// The user's global ban, if one is in force.
    pub(crate) fn global_ban(&self, user: &str) -> Option<&Ban> {
        let now = OffsetDateTime::now_utc();
        self.users
            .get(user)
            .and_then(|u| u.ban.as_ref())
            .filter(|b| Self::live(b, now))
    }

    /// The user's ban in `cid`, if one is in force.
    pub(crate) fn channel_ban(&self, cid: &str, user: &str) -> Option<&Ban> {
        let now = OffsetDateTime::now_utc();
        self.channel_bans
            .get(&(cid.to_owned(), user.to_owned()))
            .filter(|b| Self::live(b, now))
    }

    /// Marks a rendered `ChannelMemberResponse` of `cid` banned when a channel ban is in force
    /// (`render_chat::member` knows the member, not the channel). A shadow ban shows only to a
    /// server token, which the caller says with `reveal_shadow`.
    pub(crate) fn mark_channel_ban(&self, cid: &str, member: &mut Value, reveal_shadow: bool) {
        let Some(user) = member.get("user_id").and_then(Value::as_str) else {
            return;
        };
        let Some(ban) = self.channel_ban(cid, user) else {
            return;
        };
        let key = if ban.shadow {
            "shadow_banned"
        } else {
            "banned"
        };
        if let Some(obj) = member.as_object_mut() {
            if !ban.shadow || reveal_shadow {
                obj.insert(key.into(), Value::Bool(true));
            }
        }
    }

    /// Whether `user` has muted `cid` (and the mute has not expired).
    pub(crate) fn channel_muted(&self, user: &str, cid: &str) -> Option<&ChannelMute> {
        let now = OffsetDateTime::now_utc();
        self.users.get(user).and_then(|u| {
            u.channel_mutes
                .iter()
                .find(|m| m.cid == cid && m.expires.is_none_or(|t| t > now))
        })
    }

    /// Ids `user` has blocked.
    pub(crate) fn blocked_ids(&self, user: &str) -> Vec<String> {
        self.users
            .get(user)
            .map(|u| u.blocked.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default()
    }

    /// Forgets everything kept about a channel that is gone.
    pub(crate) fn forget_channel(&mut self, cid: &str) {
        self.channel_bans.retain(|(c, _), _| c != cid);
        self.truncated_at.remove(cid);
        self.delivered.retain(|(c, _), _| c != cid);
        self.drafts.retain(|(_, c, _), _| c != cid);
        self.reminders.retain(|_, r| r.cid != cid);
        let reminders = &self.reminders;
        self.reminders_due
            .retain(|(_, u, m)| reminders.contains_key(&(u.clone(), m.clone())));
        for u in self.users.values_mut() {
            u.channel_mutes.retain(|m| m.cid != cid);
        }
    }
}
