//! Android (stream-chat-android): form-encoded payload with `X-Stream-Client` in the query and
//! a header, the connect event echoed back as its ping, a monitor fed only by health checks, and
//! a close 1000 it ignores.

use super::scenarios;
use super::wire::{Reaction, Sdk};

#[tokio::test]
async fn connects_echoes_its_connect_event_and_stays_up_while_busy() {
    scenarios::busy(Sdk::Kotlin).await;
}

#[tokio::test]
async fn refreshes_after_code_40() {
    scenarios::refresh(Sdk::Kotlin).await;
}

/// Android expires its token on 41–43 and asks the provider again; it never gives up on them.
#[tokio::test]
async fn a_bad_signature_makes_it_fetch_a_new_token() {
    assert_eq!(
        scenarios::bad_signature(Sdk::Kotlin).await,
        Reaction::Reconnect { refresh: true }
    );
}

#[tokio::test]
async fn recovers_from_upstream_loss_expiry_and_drain() {
    scenarios::recovery(Sdk::Kotlin).await;
}
