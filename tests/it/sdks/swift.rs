//! iOS (stream-chat-swift 4.x/5.x): token only in the `Authorization` header, RFC 6455 pings
//! that need a `health.check` within 3 s, errors read only as a typed `connection.error`.

use super::scenarios;
use super::wire::{Reaction, Sdk};

#[tokio::test]
async fn connects_with_a_header_token_and_stays_up_on_ws_pings_while_busy() {
    scenarios::busy(Sdk::Swift).await;
}

#[tokio::test]
async fn refreshes_after_code_40() {
    scenarios::refresh(Sdk::Swift).await;
}

#[tokio::test]
async fn a_bad_signature_ends_for_good() {
    assert_eq!(
        scenarios::bad_signature(Sdk::Swift).await,
        Reaction::Final { code: 43 }
    );
}

#[tokio::test]
async fn recovers_from_upstream_loss_expiry_and_drain() {
    scenarios::recovery(Sdk::Swift).await;
}
