//! The rewriter's unit tests: every carrier path, delivery-only hiding, escapes, depth, size,
//! truncation and malformed input, and agreement with the tree reference.

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
    let users = scan_users(channel_state().to_string().as_bytes(), Shape::Response).expect("scan");
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
    crate::privacy::rewrite::visit_reads(&mut old, &mut |u| u == "b");
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
