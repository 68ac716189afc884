//! The long-poll request parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stream_edge::transport::longpoll::LpRequest;

fuzz_target!(|data: &[u8]| {
    let q = String::from_utf8_lossy(data);
    let r = LpRequest::parse(&q);
    if r.close {
        assert!(q.contains("close"));
    }
});
