//! Message history pagination, shared by the channel query (`messages: {…}`), `GetReplies` and
//! the pinned-message list: a page is `limit` messages before (`id_lt`, `id_lte`,
//! `created_at_before[_or_equal]`), after (`id_gt`, `id_gte`, `created_at_after[_or_equal]`) or
//! around (`id_around`, `created_at_around`) an anchor, else the newest `limit`. Scrolling back
//! past the oldest message, or from an id the emulator no longer holds, yields an empty page,
//! never the newest page again (the SDK would then loop, re-adding what it has).

use std::collections::HashMap;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::render_extra::is_pinned;
use crate::store::{Channel, Message};

/// Pinned messages in a channel state (`pinned_messages`); `GET …/pinned_messages` pages further.
pub(crate) const DEFAULT_PINNED_IN_STATE: usize = 10;

/// The channel's pinned messages (expired pins and deleted messages excepted), most recently
/// pinned first.
pub(crate) fn pinned(ch: &Channel, now: OffsetDateTime) -> Vec<&Message> {
    let mut list: Vec<&Message> = ch
        .messages
        .iter()
        .filter(|m| m.extra.deleted_at.is_none() && is_pinned(m, now))
        .collect();
    list.sort_by_key(|m| std::cmp::Reverse(m.extra.pin.as_ref().map(|p| p.at)));
    list
}

/// Where a page sits relative to its anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Before { inclusive: bool },
    After { inclusive: bool },
    Around,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Id(String),
    At(OffsetDateTime),
}

/// One page request: `limit` and at most one anchor (the first one given, in the order of
/// `ANCHORS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    pub limit: usize,
    anchor: Option<(Side, Key)>,
}

/// The anchor parameters Stream documents, in the order they take precedence.
const ANCHORS: &[(&str, Side, bool)] = &[
    ("id_lt", Side::Before { inclusive: false }, true),
    ("id_lte", Side::Before { inclusive: true }, true),
    ("id_gt", Side::After { inclusive: false }, true),
    ("id_gte", Side::After { inclusive: true }, true),
    ("id_around", Side::Around, true),
    (
        "created_at_before",
        Side::Before { inclusive: false },
        false,
    ),
    (
        "created_at_before_or_equal",
        Side::Before { inclusive: true },
        false,
    ),
    ("created_at_after", Side::After { inclusive: false }, false),
    (
        "created_at_after_or_equal",
        Side::After { inclusive: true },
        false,
    ),
    ("created_at_around", Side::Around, false),
];

// === impl Page ===

impl Page {
    /// The newest `limit` messages.
    pub(crate) fn latest(limit: usize) -> Self {
        Self {
            limit,
            anchor: None,
        }
    }

    /// From a JSON object (the channel query's `messages`, a search's or pinned list's payload).
    pub(crate) fn from_json(
        obj: Option<&Map<String, Value>>,
        default: usize,
        max: usize,
    ) -> Result<Self, ApiError> {
        let Some(obj) = obj else {
            return Ok(Self::latest(default));
        };
        Self::parse(|k| obj.get(k).cloned(), default, max)
    }

    /// From query parameters (`GET /messages/{id}/replies?id_lt=…&limit=…`).
    pub(crate) fn from_query(
        query: &HashMap<String, String>,
        default: usize,
        max: usize,
    ) -> Result<Self, ApiError> {
        Self::parse(
            |k| query.get(k).map(|v| Value::String(v.clone())),
            default,
            max,
        )
    }

    fn parse(
        get: impl Fn(&str) -> Option<Value>,
        default: usize,
        max: usize,
    ) -> Result<Self, ApiError> {
        let limit = match get("limit") {
            None | Some(Value::Null) => default,
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .map(|n| usize::try_from(n).unwrap_or(max).min(max))
                .ok_or_else(|| ApiError::input("limit must be a non-negative number"))?,
        };
        for (name, side, is_id) in ANCHORS {
            let Some(v) = get(name).filter(|v| !v.is_null()) else {
                continue;
            };
            let text = v
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ApiError::input(format!("{name} must be a non-empty string")))?;
            let key = if *is_id {
                Key::Id(text.to_owned())
            } else {
                Key::At(OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
                    ApiError::input(format!("{name} must be an RFC 3339 timestamp"))
                })?)
            };
            return Ok(Self {
                limit,
                anchor: Some((*side, key)),
            });
        }
        Ok(Self::latest(limit))
    }

    /// The page out of `list` (oldest first, ordered by `created_at`).
    pub(crate) fn select<'a, 'm>(&self, list: &'a [&'m Message]) -> &'a [&'m Message] {
        let n = self.limit;
        let Some((side, key)) = &self.anchor else {
            return &list[list.len().saturating_sub(n)..];
        };
        // For ids: the anchor's index (an id the list lacks gives an empty page). For times: how
        // many messages come strictly before it, and how many at or before it.
        let (lt, le) = match key {
            Key::Id(id) => match list.iter().position(|m| &m.id == id) {
                Some(i) => (i, i + 1),
                None => return &[],
            },
            Key::At(t) => (
                list.partition_point(|m| m.created_at < *t),
                list.partition_point(|m| m.created_at <= *t),
            ),
        };
        match side {
            Side::Before { inclusive } => {
                let end = if *inclusive { le } else { lt };
                &list[end.saturating_sub(n)..end]
            }
            Side::After { inclusive } => {
                let start = if *inclusive { lt } else { le };
                &list[start..(start + n).min(list.len())]
            }
            Side::Around => {
                let start = lt.saturating_sub(n / 2);
                let end = (start + n).min(list.len());
                &list[end.saturating_sub(n)..end]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::Duration;

    fn msgs(n: usize) -> Vec<Message> {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        (0..n)
            .map(|i| Message {
                id: format!("m{i}"),
                user_id: "u".into(),
                text: String::new(),
                parent_id: None,
                show_in_channel: false,
                silent: false,
                attachments: Vec::new(),
                custom: Map::new(),
                reply_count: 0,
                thread: None,
                created_at: t0 + Duration::seconds(i as i64),
                updated_at: t0,
                extra: Default::default(),
            })
            .collect()
    }

    fn ids(page: &[&Message]) -> Vec<String> {
        page.iter().map(|m| m.id.clone()).collect()
    }

    fn page(v: Value) -> Page {
        Page::from_json(v.as_object(), 3, 300).expect("valid page")
    }

    #[test]
    fn scroll_back_never_repeats_the_newest_page() {
        let all = msgs(7);
        let list: Vec<&Message> = all.iter().collect();
        assert_eq!(ids(page(json!({})).select(&list)), ["m4", "m5", "m6"]);
        assert_eq!(
            ids(page(json!({"id_lt": "m4"})).select(&list)),
            ["m1", "m2", "m3"]
        );
        assert_eq!(ids(page(json!({"id_lt": "m1"})).select(&list)), ["m0"]);
        assert!(page(json!({"id_lt": "m0"})).select(&list).is_empty());
        assert!(
            page(json!({"id_lt": "gone"})).select(&list).is_empty(),
            "an unknown anchor is an empty page, not the newest one"
        );
        assert_eq!(
            ids(page(json!({"id_lte": "m4", "limit": 2})).select(&list)),
            ["m3", "m4"]
        );
    }

    #[test]
    fn forward_around_and_by_time() {
        let all = msgs(7);
        let list: Vec<&Message> = all.iter().collect();
        assert_eq!(
            ids(page(json!({"id_gt": "m1"})).select(&list)),
            ["m2", "m3", "m4"]
        );
        assert_eq!(
            ids(page(json!({"id_gte": "m5"})).select(&list)),
            ["m5", "m6"]
        );
        assert_eq!(
            ids(page(json!({"id_around": "m3"})).select(&list)),
            ["m2", "m3", "m4"]
        );
        assert_eq!(
            ids(page(json!({"id_around": "m0"})).select(&list)),
            ["m0", "m1", "m2"]
        );
        assert_eq!(
            ids(page(json!({"id_around": "m6"})).select(&list)),
            ["m4", "m5", "m6"]
        );
        let at = "1970-01-01T00:00:03Z";
        assert_eq!(
            ids(page(json!({"created_at_before": at})).select(&list)),
            ["m0", "m1", "m2"]
        );
        assert_eq!(
            ids(page(json!({"created_at_before_or_equal": at})).select(&list)),
            ["m1", "m2", "m3"]
        );
        assert_eq!(
            ids(page(json!({"created_at_after": at})).select(&list)),
            ["m4", "m5", "m6"]
        );
        assert_eq!(
            ids(page(json!({"created_at_after_or_equal": at, "limit": 1})).select(&list)),
            ["m3"]
        );
        assert_eq!(
            ids(page(json!({"created_at_around": at})).select(&list)),
            ["m2", "m3", "m4"]
        );
    }

    #[test]
    fn bad_parameters_are_input_errors() {
        for bad in [
            json!({"limit": -1}),
            json!({"id_lt": 5}),
            json!({"created_at_before": "yesterday"}),
        ] {
            let err = Page::from_json(bad.as_object(), 3, 300).expect_err("refused");
            assert_eq!(err.code, 4, "{bad}");
        }
        let q: HashMap<String, String> = [("limit".into(), "1000".into())].into();
        assert_eq!(Page::from_query(&q, 3, 300).map(|p| p.limit), Ok(300));
    }
}
