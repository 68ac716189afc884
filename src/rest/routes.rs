//! Route templates: a bounded label for metrics, and the few routes the proxy must understand
//! (watching and unwatching channels). Every other route streams through untouched.

use http::Method;

/// What the proxy does with a route beyond forwarding it.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// `POST /channels` (watch ties the returned cids to the session).
    QueryChannels,
    /// `POST /channels/{type}/{id}/query` or `/channels/{type}/query`.
    QueryChannel {
        cid: Option<String>,
    },
    /// `POST /channels/{type}/{id}/stop-watching`.
    StopWatching {
        cid: String,
    },
    /// `POST /channels/{type}/{id}/event` (typing privacy, outbound).
    SendEvent {
        channel_type: String,
        channel_id: String,
    },
    /// `POST /threads` (`queryThreads`; `watch` ties the threads' channels to the session).
    QueryThreads,
    /// `GET /threads/{id}` (`getThread`; `?watch=true` ties its channel to the session).
    GetThread,
    /// `POST /sync` (`watch` ties the listed channels to the session).
    Sync,
    /// `GET /users` (`presence: true` subscribes the session to the returned users).
    QueryUsers,
    /// Other responses that can carry other users' state ([`carrier_route`]).
    ReadState,
    /// `POST`/`PATCH /users`: may change privacy settings.
    Users,
    Other,
}

impl Kind {
    /// Responses of this route can carry other users' read, delivery or typing state (README,
    /// "Privacy filtering"): they are read and filtered, never streamed through.
    pub fn carries_others_state(&self) -> bool {
        matches!(
            self,
            Kind::QueryChannels
                | Kind::QueryChannel { .. }
                | Kind::QueryThreads
                | Kind::GetThread
                | Kind::Sync
                | Kind::ReadState
                | Kind::SendEvent { .. }
        )
    }
}

#[derive(Debug)]
pub struct Route {
    /// Bounded metric label, e.g. `/channels/{type}/{id}/message`.
    pub template: String,
    pub kind: Kind,
}

/// Routes whose responses can carry other users' read, delivery or typing state, beyond the
/// watching queries (from the client-side OpenAPI spec; the carrier table is in
/// `privacy::stream` and the README): channel state (`GET /channels/{type}/{id}`), grouped
/// queries, threads (`/threads`, `/threads/{id}` and below), `/sync`, and mark-read answers
/// (`/channels/read`, `/channels/{type}/{id}/read`), which embed the event with its thread.
fn carrier_route(segs: &[&str]) -> bool {
    matches!(
        segs,
        ["channels", _, _]
            | ["channels", "grouped"]
            | ["channels", "read"]
            | ["channels", _, _, "read"]
            | ["threads", ..]
            | ["sync"]
    )
}

/// Top-level resources of the client-side API; anything else is labelled `other`.
const ROOTS: &[&str] = &[
    "app",
    "channels",
    "users",
    "messages",
    "threads",
    "sync",
    "devices",
    "moderation",
    "search",
    "guest",
    "og",
    "polls",
    "drafts",
    "reminders",
    "members",
    "query_members",
    "uploads",
    "hi",
    "longpoll",
    "reactions",
    "blocklists",
    "commands",
    "unread",
    "unread_batch",
    "export_channels",
    "search_users",
    "moderation_flags",
    "location",
    "users_live_locations",
];

/// Action words kept verbatim in templates; other segments are ids.
const WORDS: &[&str] = &[
    "query",
    "stop-watching",
    "message",
    "event",
    "read",
    "unread",
    "file",
    "image",
    "hide",
    "show",
    "truncate",
    "members",
    "delivered",
    "reaction",
    "reactions",
    "replies",
    "action",
    "translate",
    "pin",
    "mute",
    "unmute",
    "block",
    "unblock",
    "flag",
    "unflag",
    "ban",
    "partial",
    "draft",
    "votes",
    "options",
    "pinned_messages",
    "mark_read",
    "mark_unread",
    "typing",
    "undelete",
    "commit",
    "unread_counts",
];

/// Most segments kept in a template.
const MAX_DEPTH: usize = 6;

pub fn classify(method: &Method, path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let kind = if method == Method::PATCH && segs.as_slice() == ["users"] {
        Kind::Users
    } else if method == Method::POST {
        match segs.as_slice() {
            ["users"] => Kind::Users,
            ["channels", t, id, "event"] => Kind::SendEvent {
                channel_type: t.to_string(),
                channel_id: id.to_string(),
            },
            ["channels"] => Kind::QueryChannels,
            ["channels", _, "query"] => Kind::QueryChannel { cid: None },
            ["channels", t, id, "query"] => Kind::QueryChannel {
                cid: Some(format!("{t}:{id}")),
            },
            ["channels", t, id, "stop-watching"] => Kind::StopWatching {
                cid: format!("{t}:{id}"),
            },
            ["threads"] => Kind::QueryThreads,
            ["sync"] => Kind::Sync,
            segs if carrier_route(segs) => Kind::ReadState,
            _ => Kind::Other,
        }
    } else if method == Method::GET && matches!(segs.as_slice(), ["threads", _]) {
        Kind::GetThread
    } else if method == Method::GET && segs.as_slice() == ["users"] {
        Kind::QueryUsers
    } else if matches!(*method, Method::GET | Method::PATCH) && carrier_route(&segs) {
        Kind::ReadState
    } else {
        Kind::Other
    };
    let template = match segs.first() {
        None => "/".to_string(),
        Some(root) if ROOTS.contains(root) => {
            let mut t = String::new();
            for (i, s) in segs.iter().take(MAX_DEPTH).enumerate() {
                t.push('/');
                if i == 0 || WORDS.contains(s) {
                    t.push_str(s);
                } else if i == 1 && *root == "channels" {
                    t.push_str("{type}");
                } else {
                    t.push_str("{id}");
                }
            }
            t
        }
        Some(_) => "other".to_string(),
    };
    Route { template, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_bounded() {
        let cases = [
            ("/channels", "/channels"),
            (
                "/channels/messaging/general/query",
                "/channels/{type}/{id}/query",
            ),
            ("/channels/messaging/query", "/channels/{type}/query"),
            (
                "/channels/messaging/x-9/message",
                "/channels/{type}/{id}/message",
            ),
            ("/users", "/users"),
            ("/messages/abc/reaction", "/messages/{id}/reaction"),
            ("/secret-admin/x", "other"),
        ];
        for (path, want) in cases {
            assert_eq!(classify(&Method::POST, path).template, want, "{path}");
        }
    }

    #[test]
    fn watch_routes_are_recognised() {
        assert_eq!(
            classify(&Method::POST, "/channels").kind,
            Kind::QueryChannels
        );
        assert_eq!(
            classify(&Method::POST, "/channels/messaging/g/query").kind,
            Kind::QueryChannel {
                cid: Some("messaging:g".into())
            }
        );
        assert_eq!(
            classify(&Method::POST, "/channels/messaging/g/stop-watching").kind,
            Kind::StopWatching {
                cid: "messaging:g".into()
            }
        );
        assert_eq!(classify(&Method::GET, "/channels").kind, Kind::Other);
    }

    #[test]
    fn every_carrier_route_is_filtered() {
        for (m, path) in [
            (Method::GET, "/channels/messaging/g"),
            (Method::POST, "/channels/grouped"),
            (Method::POST, "/channels/read"),
            (Method::POST, "/channels/messaging/g/read"),
            (Method::POST, "/threads"),
            (Method::GET, "/threads/m1"),
            (Method::PATCH, "/threads/m1"),
            (Method::POST, "/sync"),
            (Method::POST, "/channels"),
            (Method::POST, "/channels/messaging/g/query"),
            (Method::POST, "/channels/messaging/g/event"),
        ] {
            assert!(classify(&m, path).kind.carries_others_state(), "{m} {path}");
        }
        for (m, path) in [
            (Method::POST, "/channels/messaging/g/message"),
            (Method::GET, "/users"),
            (Method::DELETE, "/channels/messaging/g"),
        ] {
            assert!(
                !classify(&m, path).kind.carries_others_state(),
                "{m} {path}"
            );
        }
    }
}
