//! The token decoder and validator: arbitrary bytes never panic, and nothing forged without the
//! secret is ever accepted.
// libFuzzer supplies `main`, except in a test build (`cargo test --workspace --all-targets`),
// which gets the test harness's and so runs no fuzzing.
#![cfg_attr(not(test), no_main)]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use stream_edge::auth::{Authenticator, Credentials};
use stream_edge::config::{AppConfig, Config, Secret};
use stream_edge::metrics::Metrics;

fn authn() -> &'static Authenticator {
    static A: OnceLock<Authenticator> = OnceLock::new();
    A.get_or_init(|| {
        let mut cfg = Config::local_dev().auth;
        cfg.allow_dev_tokens = false;
        Authenticator::new(
            &[AppConfig {
                api_key: "k".into(),
                secrets: vec![Secret("fuzz-secret-never-guessed".into())],
            }],
            cfg,
            Arc::new(Metrics::new()),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    for anonymous in [false, true] {
        let r = authn().authenticate(Credentials {
            api_key: "k",
            token: Some(&token),
            anonymous,
            user_id: Some("u"),
            client_connection: true,
        });
        // Random input cannot carry a valid HMAC of the secret; only the (disabled) anonymous path
        // could accept, and it is off.
        assert!(r.is_err(), "accepted a forged token: {token:?}");
    }
});
