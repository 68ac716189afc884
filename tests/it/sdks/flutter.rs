//! Flutter (stream_chat): `user_token` in the payload, a JSON-quoted `X-Stream-Client`, a typed
//! `health.check` ping at connect and every 20 s, and a 40 s watchdog fed by any event.

use super::scenarios;
use super::wire::{Reaction, Sdk};

#[tokio::test]
async fn connects_pings_and_stays_up_while_busy() {
    scenarios::busy(Sdk::Flutter).await;
}

#[tokio::test]
async fn refreshes_after_code_40() {
    scenarios::refresh(Sdk::Flutter).await;
}

/// An error before the connect completed is final for Flutter.
#[tokio::test]
async fn a_bad_signature_ends_for_good() {
    assert_eq!(
        scenarios::bad_signature(Sdk::Flutter).await,
        Reaction::Final { code: 43 }
    );
}

#[tokio::test]
async fn recovers_from_upstream_loss_expiry_and_drain() {
    scenarios::recovery(Sdk::Flutter).await;
}
