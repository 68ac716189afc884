//! The connect request parser (`/connect` and `/longpoll` query strings): never panics, and whatever
//! it accepts satisfies the invariants the rest of the gateway relies on.
// libFuzzer supplies `main`, except in a test build (`cargo test --workspace --all-targets`),
// which gets the test harness's and so runs no fuzzing.
#![cfg_attr(not(test), no_main)]

use libfuzzer_sys::fuzz_target;
use stream_edge::transport::connect::{parse, valid_user_id};

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let header_token = query.get(..16);
    if let Ok(req) = parse(&query, header_token, Some("jwt"), 5 * 1024) {
        assert!(valid_user_id(&req.user_id));
        assert!(!req.api_key.is_empty());
        let details: serde_json::Value =
            serde_json::from_str(req.details.get()).expect("details are JSON");
        assert_eq!(details["id"], serde_json::Value::from(req.user_id.as_str()));
    }
});
