//! The lean long-poll front's request-head parser: any bytes, never a panic; what it accepts is a
//! bodiless `GET` of `/longpoll` whose head is all of the input.
// libFuzzer supplies `main`, except in a test build (`cargo test --workspace --all-targets`),
// which gets the test harness's and so runs no fuzzing.
#![cfg_attr(not(test), no_main)]

use libfuzzer_sys::fuzz_target;
use stream_edge::front::head::parse_head;

fuzz_target!(|data: &[u8]| {
    if let Some(head) = parse_head(data) {
        // httparse skips empty lines before the request line.
        let start = data
            .iter()
            .position(|b| !matches!(b, b'\r' | b'\n'))
            .unwrap_or(data.len());
        assert!(data[start..].starts_with(b"GET "));

        assert!(data.ends_with(b"\n"));
        assert!(!head.query.contains(' '));
    }
});
