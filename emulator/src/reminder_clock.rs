//! The reminder clock: one task per served emulator that sends `notification.reminder_due` when a
//! reminder's `remind_at` comes (`reminders::fire_due`). It sleeps until the soonest due time, but
//! never longer than [`REMINDER_TICK`], so a reminder created meanwhile is noticed within a tick
//! without any wake-up channel between the handlers and the clock. Its timers are tokio's, so
//! paused time drives it in tests.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::handle::Emulator;
use crate::reminders;

/// The longest the clock sleeps between looks at the due index: how late a reminder created after
/// the clock went to sleep can fire.
pub(crate) const REMINDER_TICK: Duration = Duration::from_secs(1);

/// Fires due reminders until `shutdown`.
pub(crate) async fn run(emulator: Emulator, shutdown: CancellationToken) {
    loop {
        let now = Instant::now();
        let mut wake = now + REMINDER_TICK;
        {
            let mut store = emulator.lock();
            for app in store.apps.values_mut() {
                reminders::fire_due(app, now);
                if let Some(next) = reminders::next_due(app) {
                    wake = wake.min(next);
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}
