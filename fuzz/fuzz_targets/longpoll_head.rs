//! The lean front's request-head functions: any bytes, never a panic. `parse_head` accepts only a
//! bodiless `GET` of `/longpoll` whose head is all of the input; `lenient_connect_target` (Unreal's
//! raw JSON target) changes only the request line's target, never adds a line break, space or
//! control byte, and leaves every byte after the request line as it was.
// libFuzzer supplies `main`, except in a test build (`cargo test --workspace --all-targets`),
// which gets the test harness's and so runs no fuzzing.
#![cfg_attr(not(test), no_main)]

use libfuzzer_sys::fuzz_target;
use stream_edge::front::head::{lenient_connect_target, parse_head};

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
    if let Some(out) = lenient_connect_target(data) {
        let line_end = |b: &[u8]| b.iter().position(|&c| c == b'\n');
        let (a, b) = (line_end(data).unwrap(), line_end(&out).unwrap());
        // Same line ending and everything after it, byte for byte.
        assert_eq!(data[a..], out[b..]);
        let line = out[..b].strip_suffix(b"\r").unwrap_or(&out[..b]);
        assert!(line.starts_with(b"GET "));
        assert_eq!(line.iter().filter(|&&c| c == b' ').count(), 2);
        assert!(line.iter().all(|&c| c > b' ' && c < 0x7f || c == b' '));
        assert!(!line.iter().any(|c| b"\"{}<>\\^`|#".contains(c)));
    }
});
