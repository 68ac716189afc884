//! The client WebSocket framing (`transport::wsframe`): arbitrary bytes, split anywhere, never
//! panic, and they are refused or parsed into the same messages however they were split.
// libFuzzer supplies `main`, except in a test build (`cargo test --workspace --all-targets`),
// which gets the test harness's and so runs no fuzzing.
#![cfg_attr(not(test), no_main)]

use libfuzzer_sys::fuzz_target;
use stream_edge::transport::wsframe::{Inbound, Msg};

fn run(data: &[u8], split: usize) -> (Vec<Msg>, bool) {
    let mut inb = Inbound::new(4096, 8192);
    let mut out = Vec::new();
    let mut ok = true;
    for part in data.chunks(split.max(1)) {
        if inb.feed(part, &mut out).is_err() {
            ok = false;
            break;
        }
    }
    (out, ok)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let (whole, whole_ok) = run(data, data.len());
    let (parts, parts_ok) = run(data, usize::from(split));
    // Split input reaches the same verdict and messages (an error stops at the same frame).
    assert_eq!(whole_ok, parts_ok);
    if whole_ok {
        assert_eq!(whole, parts);
    }
});
