//! The long-poll request parser.
// libFuzzer supplies `main`, except in a test build (`cargo test --workspace --all-targets`),
// which gets the test harness's and so runs no fuzzing.
#![cfg_attr(not(test), no_main)]

use libfuzzer_sys::fuzz_target;
use stream_edge::transport::longpoll::LpRequest;

fuzz_target!(|data: &[u8]| {
    let q = String::from_utf8_lossy(data);
    let r = LpRequest::parse(&q);
    if r.close {
        assert!(q.contains("close"));
    }
});
