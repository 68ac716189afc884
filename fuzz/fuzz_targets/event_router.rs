//! The event router and privacy filter: the light parse of upstream frames, the routing decision,
//! the privacy verdict (own events are never dropped) and the user-update reader (the read-state
//! rewriter has its own target, `read_rewriter`).
// libFuzzer supplies `main`, except in a test build (`cargo test --workspace --all-targets`),
// which gets the test harness's and so runs no fuzzing.
#![cfg_attr(not(test), no_main)]

use libfuzzer_sys::fuzz_target;
use stream_edge::config::OnLookupFailure;
use stream_edge::privacy::filter::{verdict, Known, Verdict};
use stream_edge::privacy::{rewrite, Settings};
use stream_edge::session::event::{Audience, EventHead};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(head) = EventHead::parse(text) {
        match head.audience("me") {
            Audience::Watchers(cid) => assert!(!cid.is_empty() && cid != "*"),
            // Another user's presence, never the user's own.
            Audience::Presence(user) => assert_ne!(user, "me"),
            Audience::AllSessions | Audience::Gateway => {}
        }
        let sender = head.user.as_ref().map(|u| u.id.as_ref());
        if let Some(s) = sender {
            let hidden = Known::Settings(Settings {
                typing: false,
                read: false,
                delivery: false,
            });
            let v = verdict(&head.kind, Some(s), s, || hidden, OnLookupFailure::Drop);
            assert_eq!(v, Verdict::Deliver, "own events are never dropped");
        }
    }
    let _ = stream_edge::transport::frames::is_ping(text);
    let _ = rewrite::typing_kind(data);
    let _ = rewrite::named_users(data);
});
