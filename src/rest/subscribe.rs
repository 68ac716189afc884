//! What a REST call subscribes its session to on the user's upstream connection
//! (stream-event-recipients.md, "REST calls that create state on a connection"): channel watches
//! (`POST /channels`, channel queries, `queryThreads`, `getThread`, `sync` with `watch`) and
//! presence (`presence: true` on channel queries and `GET /users`). The request says what it asks
//! for; the answer says which channels and users that became.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::routes::Kind;
use crate::session::Watched;

/// What a request asks its session to subscribe to.
#[derive(Debug, Default)]
pub(super) struct Asks {
    pub(super) watch: bool,
    pub(super) presence: bool,
    /// `sync`'s watched channels come from the request (its answer is events).
    sync_cids: Vec<String>,
}

impl Kind {
    /// The route can subscribe the calling session (watch or presence).
    pub(super) fn subscribes(&self) -> bool {
        matches!(
            self,
            Kind::QueryChannels
                | Kind::QueryChannel { .. }
                | Kind::QueryThreads
                | Kind::GetThread
                | Kind::Sync
                | Kind::QueryUsers
        )
    }
}

#[derive(Deserialize, Default)]
struct Flags {
    #[serde(default)]
    watch: Option<bool>,
    #[serde(default)]
    presence: Option<bool>,
    #[serde(default)]
    channel_cids: Vec<String>,
}

/// Reads what the request asks for from its body (POST routes) or query (GET routes).
pub(super) fn asks(kind: &Kind, query: &str, body: Option<&[u8]>) -> Asks {
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match kind {
        Kind::GetThread => Asks {
            // The SDK's `getThread` watches unless told not to.
            watch: param("watch").is_some_and(|v| v == "true" || v == "1"),
            ..Asks::default()
        },
        Kind::QueryUsers => {
            let flags: Flags = param("payload")
                .and_then(|p| serde_json::from_str(&p).ok())
                .unwrap_or_default();
            Asks {
                presence: flags.presence == Some(true),
                ..Asks::default()
            }
        }
        _ => {
            let flags: Flags = body
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            let watch = flags.watch == Some(true);
            Asks {
                watch,
                presence: flags.presence == Some(true) && !matches!(kind, Kind::Sync),
                sync_cids: if watch && matches!(kind, Kind::Sync) {
                    flags.channel_cids
                } else {
                    Vec::new()
                },
            }
        }
    }
}

#[derive(Deserialize)]
struct Cid {
    cid: String,
}

#[derive(Deserialize)]
struct UserId {
    id: String,
}

#[derive(Deserialize)]
struct Member {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    user: Option<UserId>,
}

#[derive(Deserialize)]
struct ChannelState {
    #[serde(default)]
    channel: Option<Box<RawValue>>,
    #[serde(default)]
    membership: Option<IgnoredAny>,
    #[serde(default)]
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct ThreadState {
    channel_cid: String,
    #[serde(default)]
    channel: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    channels: Vec<ChannelState>,
    #[serde(default)]
    channel: Option<Box<RawValue>>,
    #[serde(default)]
    membership: Option<IgnoredAny>,
    #[serde(default)]
    members: Vec<Member>,
    #[serde(default)]
    threads: Vec<ThreadState>,
    #[serde(default)]
    thread: Option<ThreadState>,
    #[serde(default)]
    users: Vec<UserId>,
}

/// What a successful answer subscribed the session to: the channels it now watches (when it asked
/// to watch) and the users whose presence it follows (when it asked for presence).
pub(super) fn answered(asks: &Asks, body: &[u8]) -> (Vec<Watched>, Vec<String>) {
    let Ok(a) = serde_json::from_slice::<Answer>(body) else {
        return (Vec::new(), Vec::new());
    };
    let mut states = a.channels;
    if a.channel.is_some() {
        states.push(ChannelState {
            channel: a.channel,
            membership: a.membership,
            members: a.members,
        });
    }
    let mut watched = Vec::new();
    let mut users = Vec::new();
    for s in states {
        if asks.presence {
            users.extend(
                s.members
                    .into_iter()
                    .filter_map(|m| m.user_id.or(m.user.map(|u| u.id))),
            );
        }
        let Some(channel) = s.channel else { continue };
        let Ok(Cid { cid }) = serde_json::from_str(channel.get()) else {
            continue;
        };
        watched.push(Watched {
            cid,
            channel: Some(channel),
            member: Some(s.membership.is_some()),
        });
    }
    for t in a.threads.into_iter().chain(a.thread) {
        watched.push(Watched {
            cid: t.channel_cid,
            channel: t.channel,
            member: None,
        });
    }
    for cid in &asks.sync_cids {
        watched.push(Watched {
            cid: cid.clone(),
            channel: None,
            member: None,
        });
    }
    if asks.presence {
        users.extend(a.users.into_iter().map(|u| u.id));
    }
    if !asks.watch {
        watched.clear();
    }
    (watched, users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cids(w: &[Watched]) -> Vec<&str> {
        w.iter().map(|w| w.cid.as_str()).collect()
    }

    #[test]
    fn every_answer_shape_names_its_channels() {
        let watch = Asks {
            watch: true,
            presence: true,
            ..Asks::default()
        };
        let q = br#"{"channels":[{"channel":{"cid":"m:a","type":"m"},"membership":{"user_id":"u"},"members":[{"user_id":"u"},{"user":{"id":"v"}}]},{"channel":{"cid":"m:b"},"membership":null}],"duration":"1ms"}"#;
        let (w, users) = answered(&watch, q);
        assert_eq!(cids(&w), vec!["m:a", "m:b"]);
        assert_eq!((w[0].member, w[1].member), (Some(true), Some(false)));
        assert_eq!(users, vec!["u", "v"]);
        let one = br#"{"channel":{"cid":"m:c","type":"m"},"messages":[]}"#;
        assert_eq!(cids(&answered(&watch, one).0), vec!["m:c"]);
        let threads = br#"{"threads":[{"channel_cid":"m:d","parent_message_id":"p"}]}"#;
        assert_eq!(cids(&answered(&watch, threads).0), vec!["m:d"]);
        let thread = br#"{"thread":{"channel_cid":"m:e","channel":{"cid":"m:e"}}}"#;
        assert_eq!(cids(&answered(&watch, thread).0), vec!["m:e"]);
        let users = br#"{"users":[{"id":"x"},{"id":"y"}]}"#;
        assert_eq!(answered(&watch, users).1, vec!["x", "y"]);
        assert!(answered(&watch, b"garbage").0.is_empty());
    }

    #[test]
    fn nothing_is_watched_unless_asked() {
        let q = br#"{"channels":[{"channel":{"cid":"m:a"}}]}"#;
        assert!(answered(&Asks::default(), q).0.is_empty());
    }

    #[test]
    fn requests_say_what_they_ask() {
        let a = asks(
            &Kind::QueryChannels,
            "",
            Some(br#"{"watch":true,"presence":true}"#),
        );
        assert!(a.watch && a.presence);
        let a = asks(&Kind::GetThread, "watch=true&reply_limit=3", None);
        assert!(a.watch && !a.presence);
        let a = asks(
            &Kind::QueryUsers,
            "payload=%7B%22presence%22%3Atrue%7D",
            None,
        );
        assert!(a.presence && !a.watch);
        let a = asks(
            &Kind::Sync,
            "",
            Some(br#"{"channel_cids":["m:a"],"watch":true}"#),
        );
        let (w, _) = answered(&a, br#"{"events":[]}"#);
        assert_eq!(cids(&w), vec!["m:a"]);
        let a = asks(&Kind::QueryChannels, "", Some(b"not json"));
        assert!(!a.watch && !a.presence);
    }
}
