//! The `connection_id` checker (`session::id`): arbitrary ids never panic, and none without a
//! replica's MAC is ever taken for a session here or sent to a peer (`[cluster]` forwarding).
// libFuzzer supplies `main`, except in a test build (`cargo test --workspace --all-targets`),
// which gets the test harness's and so runs no fuzzing.
#![cfg_attr(not(test), no_main)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stream_edge::config::{AppConfig, Secret};
use stream_edge::session::id::{Ids, Owner};

fn ids() -> &'static Ids {
    static I: OnceLock<Ids> = OnceLock::new();
    I.get_or_init(|| {
        Ids::new(
            Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 9091)),
            &[AppConfig {
                api_key: "k".into(),
                secrets: vec![Secret("fuzz-secret-never-guessed".into())],
            }],
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let id = String::from_utf8_lossy(data);
    // Random input cannot carry a valid 64-bit MAC of the secret, whichever app it names.
    for app in [None, Some("k"), Some("other")] {
        assert_eq!(
            ids().owner(&id, app),
            Owner::Invalid,
            "accepted a forged id: {id:?}"
        );
    }
});
