//! Unreal (stream-chat-unreal): raw JSON in the request target, the `wss` subprotocol, an empty
//! text frame every 20 s, errors read only from frames without `type`, and no reconnect after a
//! clean close.

use super::scenarios;
use super::wire::{Reaction, Sdk};

#[tokio::test]
async fn connects_with_a_raw_json_target_and_stays_up_on_empty_frames_while_busy() {
    scenarios::busy(Sdk::Unreal).await;
}

#[tokio::test]
async fn refreshes_after_code_40() {
    scenarios::refresh(Sdk::Unreal).await;
}

/// Unreal reconnects after every error; the gateway cannot make it stop.
#[tokio::test]
async fn a_bad_signature_is_retried() {
    assert_eq!(
        scenarios::bad_signature(Sdk::Unreal).await,
        Reaction::Reconnect { refresh: false }
    );
}

/// Drain, upstream loss and expiry end with a close Unreal would ignore for 40 s; the untyped
/// error frame before it brings Unreal back at once.
#[tokio::test]
async fn recovers_from_upstream_loss_expiry_and_drain() {
    scenarios::recovery(Sdk::Unreal).await;
}
