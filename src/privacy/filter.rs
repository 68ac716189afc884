//! The filter decision table: which events a receiving user may see, given the sender's settings.
//! Events about the receiver's own user are never filtered: that would break unread sync across
//! the user's tabs (stream-protocol.md 5.4).

use super::Settings;
use crate::config::OnLookupFailure;

/// Which indicator an event reveals, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indicator {
    Typing,
    Read,
    Delivery,
}

/// The indicator an event type reveals about its `user`.
pub fn indicator(kind: &str) -> Option<Indicator> {
    match kind {
        "typing.start" | "typing.stop" => Some(Indicator::Typing),
        "message.read" => Some(Indicator::Read),
        "message.delivered" => Some(Indicator::Delivery),
        _ => None,
    }
}

/// The decision for one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    /// Drop, with the metric reason.
    Drop(&'static str),
}

/// What the sender's settings lookup produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    Settings(Settings),
    /// The lookup failed.
    Unknown,
}

/// Decides whether `receiver` may see an event of `kind` whose `user` is `sender`.
pub fn verdict(
    kind: &str,
    sender: Option<&str>,
    receiver: &str,
    known: impl FnOnce() -> Known,
    on_failure: OnLookupFailure,
) -> Verdict {
    let Some(ind) = indicator(kind) else {
        return Verdict::Deliver;
    };
    let Some(sender) = sender else {
        return Verdict::Deliver;
    };
    if sender == receiver {
        return Verdict::Deliver;
    }
    match known() {
        Known::Settings(s) => {
            let visible = match ind {
                Indicator::Typing => s.typing,
                Indicator::Read => s.read,
                Indicator::Delivery => s.delivery,
            };
            if visible {
                Verdict::Deliver
            } else {
                Verdict::Drop("privacy")
            }
        }
        Known::Unknown => match on_failure {
            OnLookupFailure::Drop => Verdict::Drop("privacy_lookup_failed"),
            OnLookupFailure::Deliver => Verdict::Deliver,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(typing: bool, read: bool, delivery: bool) -> Known {
        Known::Settings(Settings {
            typing,
            read,
            delivery,
        })
    }

    #[test]
    fn decision_table() {
        use OnLookupFailure as P;
        use Verdict as V;
        let hidden = V::Drop("privacy");
        let failed = V::Drop("privacy_lookup_failed");
        let cases = [
            // kind, sender, receiver, settings, policy, verdict
            (
                "typing.start",
                "b",
                "a",
                s(false, true, true),
                P::Drop,
                hidden,
            ),
            (
                "typing.stop",
                "b",
                "a",
                s(false, true, true),
                P::Drop,
                hidden,
            ),
            (
                "typing.start",
                "b",
                "a",
                s(true, false, false),
                P::Drop,
                V::Deliver,
            ),
            (
                "typing.start",
                "a",
                "a",
                s(false, false, false),
                P::Drop,
                V::Deliver,
            ),
            (
                "message.read",
                "b",
                "a",
                s(true, false, true),
                P::Drop,
                hidden,
            ),
            (
                "message.read",
                "b",
                "a",
                s(false, true, false),
                P::Drop,
                V::Deliver,
            ),
            (
                "message.read",
                "a",
                "a",
                s(true, false, true),
                P::Drop,
                V::Deliver,
            ),
            (
                "message.delivered",
                "b",
                "a",
                s(true, true, false),
                P::Drop,
                hidden,
            ),
            (
                "message.delivered",
                "b",
                "a",
                s(false, false, true),
                P::Drop,
                V::Deliver,
            ),
            (
                "message.new",
                "b",
                "a",
                s(false, false, false),
                P::Drop,
                V::Deliver,
            ),
            (
                "notification.mark_read",
                "a",
                "a",
                s(false, false, false),
                P::Drop,
                V::Deliver,
            ),
            ("typing.start", "b", "a", Known::Unknown, P::Drop, failed),
            (
                "typing.start",
                "b",
                "a",
                Known::Unknown,
                P::Deliver,
                V::Deliver,
            ),
            ("message.read", "b", "a", Known::Unknown, P::Drop, failed),
            (
                "typing.start",
                "a",
                "a",
                Known::Unknown,
                P::Drop,
                V::Deliver,
            ),
            ("message.new", "b", "a", Known::Unknown, P::Drop, V::Deliver),
        ];
        for (kind, sender, receiver, known, policy, want) in cases {
            let got = verdict(kind, Some(sender), receiver, || known, policy);
            assert_eq!(got, want, "{kind} {sender}->{receiver} {known:?}");
        }
        assert_eq!(
            verdict("typing.start", None, "a", || Known::Unknown, P::Drop),
            V::Deliver
        );
    }

    proptest! {
        /// No event of the receiver's own user is ever dropped, whatever the settings or policy.
        #[test]
        fn own_events_are_never_dropped(
            kind in prop_oneof![
                Just("typing.start".to_string()),
                Just("typing.stop".to_string()),
                Just("message.read".to_string()),
                Just("message.delivered".to_string()),
                "[a-z.]{1,20}",
            ],
            user in "[a-z0-9_-]{1,12}",
            t: bool, r: bool, d: bool, unknown: bool, deliver_on_failure: bool,
        ) {
            let known = if unknown { Known::Unknown } else { s(t, r, d) };
            let policy = if deliver_on_failure { OnLookupFailure::Deliver } else { OnLookupFailure::Drop };
            prop_assert_eq!(verdict(&kind, Some(&user), &user, || known, policy), Verdict::Deliver);
        }
    }
}
