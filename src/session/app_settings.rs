//! Learning each app's token revocation cutoff (`revokeTokens`, the app setting
//! `revoke_tokens_issued_before`): `GET /app` with a server token for every configured app, every
//! `auth.app_settings_refresh_seconds` and at once on demand (SIGHUP, or a `PATCH /app` that passed
//! through the proxy). A newly learned cutoff ends the app's live sessions whose tokens it revokes.
//! A failed read keeps the last known cutoff.

use std::time::Duration;

use http::Method;

use super::Hubs;
use crate::auth::revocation;
use crate::upstream::calls;

/// Runs until the gateway drains.
pub async fn run(hubs: Hubs, every: Duration) {
    let stop = hubs.inner.shutdown.clone();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = hubs.inner.app_settings_now.notified() => {}
            () = stop.cancelled() => return,
        }
        refresh(&hubs).await;
    }
}

/// Reads every app's settings once.
pub async fn refresh(hubs: &Hubs) {
    let upstream = hubs.upstream().clone();
    for app in upstream.app_keys() {
        let read = calls::call(
            &upstream,
            &app,
            calls::Authority::Server,
            Method::GET,
            "/app",
            "",
            None,
        )
        .await;
        let cutoff = match read {
            Ok((status, body)) if status.is_success() => {
                revocation::app_cutoff(&body).map_err(|e| format!("app settings response: {e}"))
            }
            Ok((status, _)) => Err(format!("GET /app answered {status}")),
            Err(e) => Err(e.to_string()),
        };
        match cutoff {
            Ok(cutoff) => {
                if hubs.revocations().set_app(&app, cutoff) {
                    tracing::info!(app = %app, revoked = cutoff.is_some(), "app token revocation changed");
                    hubs.end_revoked(&app, None);
                }
            }
            Err(error) => {
                tracing::warn!(app = %app, error = %error, "reading app settings failed; keeping the last known revocation")
            }
        }
    }
}
