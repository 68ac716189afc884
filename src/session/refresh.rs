//! Keeps each hub's live `me` (`me.rs`) current and hands it out: the hooks the upstream task
//! (every frame, before routing), the REST proxy and the device registration call, and the `me` of
//! a session's first frame. Kept apart from `me.rs`, which knows nothing of hubs, so the hub can
//! hold a [`LiveMe`] without an import cycle.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::hub::{Hub, Ready, Status};
use super::me::Change;
use super::{Attachment, Hubs};
use crate::metrics::Limit;

/// The hub's upstream connection's handshake, once ready.
fn ready(hub: &Hub) -> Option<Arc<Ready>> {
    match &*hub.status.borrow() {
        Status::Ready(r) => Some(r.clone()),
        _ => None,
    }
}

/// Counts one change of a hub's `me`.
fn count(hub: &Hub, change: Change) {
    if change == Change::TooLarge {
        hub.metrics.limit_hit(Limit::MaxMeBytes);
    }
    if change != Change::None {
        hub.metrics
            .me_changes
            .with_label_values(&[change.label()])
            .inc();
    }
}

/// Hook for every upstream frame of `hub`, before it is routed (or dropped as not watched).
pub(super) fn on_event(hub: &Hub, hubs: &Hubs, frame: &str) {
    let Some(ready) = ready(hub) else { return };
    let max = hubs.inner.limits.max_me_bytes;
    count(hub, hub.me.apply_event(frame, &hub.user, &ready.me, max));
}

/// Applies `f` to `hub`'s `me` (a change learned outside the event stream) and counts it.
pub(super) fn edit_hub(
    hub: &Hub,
    hubs: &Hubs,
    done: Change,
    f: impl FnOnce(&mut Map<String, Value>),
) -> Change {
    let Some(ready) = ready(hub) else {
        return Change::None;
    };
    let max = hubs.inner.limits.max_me_bytes;
    let change = hub.me.edit(&ready.me, max, done, f);
    count(hub, change);
    change
}

impl Hubs {
    /// The hub of (`app`, `user`), if one is open.
    pub(crate) fn hub_of(&self, app: &str, user: &str) -> Option<Arc<Hub>> {
        super::lock(&self.inner.hubs)
            .get(&(Arc::from(app), Arc::from(user)))
            .cloned()
    }
}

impl Attachment {
    /// The `me` of this session's first frame: its hub's live `me`, current now
    /// (`stream_edge_me_refreshes_total{outcome}`).
    pub fn me(&self) -> Cow<'_, RawValue> {
        let current = self.hub.me.current(&self.ready.me);
        let outcome = if current.is_some() {
            "updated"
        } else {
            "unchanged"
        };
        self.hub
            .metrics
            .me_refreshes
            .with_label_values(&[outcome])
            .inc();
        match current {
            Some(me) => Cow::Owned(me),
            None => Cow::Borrowed(&*self.ready.me),
        }
    }
}
