//! Every Prometheus metric the gateway exports, built once from one [`Registry`] per gateway
//! instance (tests run several gateways in one process). Labels are bounded enums or route
//! templates: never user ids, tokens or addresses.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Event types that get their own label value; everything else is counted as `other`, which
/// keeps label cardinality bounded whatever an upstream sends.
pub const EVENT_TYPES: &[&str] = &[
    "health.check",
    "message.new",
    "message.updated",
    "message.deleted",
    "message.read",
    "message.delivered",
    "reaction.new",
    "reaction.deleted",
    "typing.start",
    "typing.stop",
    "user.updated",
    "user.presence.changed",
    "user.watching.start",
    "user.watching.stop",
    "notification.message_new",
    "notification.mark_read",
    "notification.added_to_channel",
    "member.added",
    "member.updated",
    "channel.updated",
];

/// Every `stream_edge_me_changes_total{change}` label (`session::me::Change`).
pub const ME_CHANGES: [&str; 7] = [
    "counters",
    "user",
    "mutes",
    "devices",
    "blocks",
    "too_large",
    "unreadable",
];

/// Every `stream_edge_device_registrations_total{outcome}` label.
pub const DEVICE_REGISTRATION_OUTCOMES: [&str; 4] = ["ok", "known", "refused", "error"];

/// Every bound that counts its hits in `stream_edge_limit_hits_total{limit}`; each is named for
/// its config key (README, "Limits and overload").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    MaxConnections,
    MaxSessions,
    MaxSessionsPerUser,
    MaxUpstreamPerApp,
    ConnectRatePerIp,
    MaxBodyBytes,
    SessionQueue,
    TlsHandshakeTimeout,
    HeaderTimeout,
    MaxHeaderBytes,
    BodyTimeout,
    MaxConnectionsPerIp,
    SendTimeout,
    RestBufferedTotalBytes,
    RevocationCapacity,
    WatchHoldEvents,
    WatchesPerSession,
    ThreadCacheEntries,
    PresenceUsersPerSession,
    ChannelInfoBytes,
    MaxMeBytes,
    ForwardsInFlight,
    ConvergePending,
    PeerConnections,
    H2Streams,
}

impl Limit {
    /// Every limit, so each label is pre-created at 0.
    pub const ALL: [Limit; 25] = [
        Limit::MaxConnections,
        Limit::MaxSessions,
        Limit::MaxSessionsPerUser,
        Limit::MaxUpstreamPerApp,
        Limit::ConnectRatePerIp,
        Limit::MaxBodyBytes,
        Limit::SessionQueue,
        Limit::TlsHandshakeTimeout,
        Limit::HeaderTimeout,
        Limit::MaxHeaderBytes,
        Limit::BodyTimeout,
        Limit::MaxConnectionsPerIp,
        Limit::SendTimeout,
        Limit::RestBufferedTotalBytes,
        Limit::RevocationCapacity,
        Limit::WatchHoldEvents,
        Limit::WatchesPerSession,
        Limit::ThreadCacheEntries,
        Limit::PresenceUsersPerSession,
        Limit::ChannelInfoBytes,
        Limit::MaxMeBytes,
        Limit::ForwardsInFlight,
        Limit::ConvergePending,
        Limit::PeerConnections,
        Limit::H2Streams,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::MaxSessions => "max_sessions",
            Limit::MaxSessionsPerUser => "max_sessions_per_user",
            Limit::MaxUpstreamPerApp => "max_upstream_per_app",
            Limit::ConnectRatePerIp => "connect_rate_per_ip",
            Limit::MaxBodyBytes => "max_body_bytes",
            Limit::SessionQueue => "session_queue",
            Limit::TlsHandshakeTimeout => "tls_handshake_timeout",
            Limit::HeaderTimeout => "header_timeout",
            Limit::MaxHeaderBytes => "max_header_bytes",
            Limit::BodyTimeout => "body_timeout",
            Limit::MaxConnectionsPerIp => "max_connections_per_ip",
            Limit::SendTimeout => "send_timeout",
            Limit::RestBufferedTotalBytes => "rest_buffered_total_bytes",
            Limit::RevocationCapacity => "revocation_capacity",
            Limit::WatchHoldEvents => "watch_hold_events",
            Limit::WatchesPerSession => "watches_per_session",
            Limit::ThreadCacheEntries => "thread_cache_entries",
            Limit::PresenceUsersPerSession => "presence_users_per_session",
            Limit::ChannelInfoBytes => "channel_info_bytes",
            Limit::MaxMeBytes => "max_me_bytes",
            Limit::ForwardsInFlight => "max_forwards_in_flight",
            Limit::ConvergePending => "max_converge_pending",
            Limit::PeerConnections => "max_peer_connections",
            Limit::H2Streams => "h2_max_concurrent_streams",
        }
    }
}

/// Maps an event type to a bounded label value.
pub fn event_label(kind: &str) -> &'static str {
    EventKind::of(kind).label()
}

/// An event type as its bounded label: a position in [`EVENT_TYPES`], or `other`. Taken once per
/// upstream frame; each delivery then finds its counter by index ([`Metrics::delivered`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventKind(u8);

// Every label and `other` fit the index.
const _: () = assert!(EVENT_TYPES.len() < u8::MAX as usize);

impl EventKind {
    /// The catch-all label of types without their own.
    pub const OTHER: EventKind = EventKind(EVENT_TYPES.len() as u8);

    pub fn of(kind: &str) -> Self {
        EVENT_TYPES
            .iter()
            .position(|t| *t == kind)
            .map_or(Self::OTHER, |i| EventKind(i as u8))
    }

    pub fn label(self) -> &'static str {
        EVENT_TYPES
            .get(usize::from(self.0))
            .copied()
            .unwrap_or("other")
    }

    /// Every label, `other` last.
    pub fn all() -> impl Iterator<Item = EventKind> {
        (0..=EVENT_TYPES.len() as u8).map(EventKind)
    }
}

/// The client transports as metric labels (`transport`), in the order of
/// [`Metrics::delivered`]'s index.
pub const TRANSPORTS: [&str; 2] = ["ws", "longpoll"];

/// All metrics of one gateway.
pub struct Metrics {
    pub registry: Registry,
    pub sessions_open: IntGaugeVec,
    pub sessions_opened: IntCounterVec,
    pub sessions_closed: IntCounterVec,
    pub connect_rejected: IntCounterVec,
    pub bad_input: IntCounterVec,
    pub upstream_open: IntGaugeVec,
    pub upstream_connects: IntCounterVec,
    pub upstream_disconnects: IntCounterVec,
    pub upstream_sessions: IntGaugeVec,
    pub jwt_validations: IntCounterVec,
    pub jwt_cache: IntCounterVec,
    pub jwt_cache_evictions: IntCounter,
    pub events_received: IntCounterVec,
    pub events_delivered: IntCounterVec,
    /// `events_delivered` resolved once for every label pair, by [`EventKind`] then transport:
    /// each delivery counts without hashing its labels.
    delivered: Box<[[IntCounter; 2]]>,
    pub events_dropped: IntCounterVec,
    pub event_delivery_seconds: Histogram,
    pub watch_routing: IntCounterVec,
    /// `stream_edge_subscriptions_released_total{via,outcome}`.
    pub subscriptions_released: IntCounterVec,
    /// `stream_edge_watch_held_events_total{outcome}`.
    pub watch_held: IntCounterVec,
    pub rest_requests: IntCounterVec,
    pub rest_seconds: HistogramVec,
    pub bytes: IntCounterVec,
    /// `bytes{direction="out",transport="ws"}`, taken once: the per-delivery path adds to it.
    pub ws_bytes_out: IntCounter,
    /// `bytes{direction="in",transport="ws"}`, taken once: every client ping adds to it.
    pub ws_bytes_in: IntCounter,
    pub limit_hits: IntCounterVec,
    pub longpoll_held: IntGauge,
    pub longpoll_polls: IntCounterVec,
    pub longpoll_expired: IntCounterVec,
    pub longpoll_poll_seconds: Histogram,
    pub privacy_lookups: IntCounterVec,
    /// Responses the privacy filter had to read and could not (refused with 502), by reason.
    pub unfilterable: IntCounterVec,
    pub ready: IntGauge,
    pub upstream_up: IntGauge,
    pub tls_reloads: IntCounterVec,
    pub config_warnings: IntCounterVec,
    /// First frames of sessions, by whether their `me` changed since the hub's handshake.
    pub me_refreshes: IntCounterVec,
    /// Changes learned into a hub's live `me`, by kind.
    pub me_changes: IntCounterVec,
    /// Connect payload devices, by registration outcome.
    pub device_registrations: IntCounterVec,
    /// WebSocket upgrades, by the client SDK recognised (`transport::dialect`).
    pub ws_dialects: IntCounterVec,
    /// WebSocket connects made over HTTP/2 (RFC 8441 extended CONNECT, `http2.websockets`).
    pub ws_h2_sessions: IntCounter,
    /// Calls for another replica's session forwarded to it, by result (`[cluster]`).
    pub forwarded: IntCounterVec,
    /// Calls forwarded to this replica by a peer and accepted.
    pub forwarded_received: IntCounter,
    /// Forwarded calls for a session this replica no longer has.
    pub owner_misses: IntCounter,
    /// Users whose sessions were closed because the balancer routes them elsewhere.
    pub convergence_closes: IntCounter,
    /// Users scheduled for a convergence close now.
    pub convergence_pending: IntGauge,
    /// `connection_id`s no replica minted (malformed, or a MAC that does not verify).
    pub connection_id_refused: IntCounter,
}

/// Registers a metric built from static names, labels and buckets.
fn register<C>(r: &Registry, built: prometheus::Result<C>) -> C
where
    C: prometheus::core::Collector + Clone + 'static,
{
    // invariant: names, labels and buckets are compile-time constants and every name is distinct,
    // so building and registering cannot fail (the metric tests would fail first).
    let c = built.expect("invariant: static, unique metric"); // invariant: as above
    r.register(Box::new(c.clone()))
        .expect("invariant: static, unique metric"); // invariant: as above
    c
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(r, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    register(
        r,
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels),
    )
}

/// Latency buckets from 50 µs to 10 s.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5, 5.0, 10.0,
    ]
}

impl Metrics {
    /// Builds and registers every metric, including the process collector (RSS, fds, CPU).
    pub fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::new(
                std::process::id() as i32,
                "stream_edge",
            );
            let _ = r.register(Box::new(pc));
        }
        let bytes = counter(
            &r,
            "stream_edge_bytes_total",
            "Payload bytes to and from clients, by direction and transport.",
            &["direction", "transport"],
        );
        let ws_bytes_out = bytes.with_label_values(&["out", "ws"]);
        let ws_bytes_in = bytes.with_label_values(&["in", "ws"]);
        let events_delivered = counter(
            &r,
            "stream_edge_events_delivered_total",
            "Events queued to client sessions, by transport and type.",
            &["transport", "type"],
        );
        let delivered = EventKind::all()
            .map(|k| TRANSPORTS.map(|t| events_delivered.with_label_values(&[t, k.label()])))
            .collect();
        let m = Metrics {
            sessions_open: gauge(&r, "stream_edge_sessions_open", "Client sessions open now.", &["transport"]),
            sessions_opened: counter(&r, "stream_edge_sessions_opened_total", "Client sessions that completed the handshake.", &["transport"]),
            sessions_closed: counter(&r, "stream_edge_sessions_closed_total", "Client sessions closed, by reason.", &["transport", "reason"]),
            connect_rejected: counter(&r, "stream_edge_connect_rejected_total", "Connect attempts refused before a session existed, by reason.", &["transport", "reason"]),
            bad_input: counter(&r, "stream_edge_bad_input_total", "Malformed client input answered with an error, by reason.", &["transport", "reason"]),
            upstream_open: gauge(&r, "stream_edge_upstream_connections_open", "Upstream WebSocket connections open now.", &["app"]),
            upstream_connects: counter(&r, "stream_edge_upstream_connects_total", "Upstream connection attempts, by outcome.", &["app", "outcome"]),
            upstream_disconnects: counter(&r, "stream_edge_upstream_disconnects_total", "Upstream connections ended, by reason.", &["app", "reason"]),
            upstream_sessions: gauge(&r, "stream_edge_upstream_sessions", "Client sessions attached to upstream connections (divide by stream_edge_upstream_connections_open for the multiplexing ratio).", &["app"]),
            jwt_validations: counter(&r, "stream_edge_jwt_validations_total", "Token validations, by outcome and Stream error code.", &["outcome", "code"]),
            jwt_cache: counter(&r, "stream_edge_jwt_cache_requests_total", "Token validation cache lookups, by result.", &["result"]),
            jwt_cache_evictions: register(&r, IntCounter::new("stream_edge_jwt_cache_evictions_total", "Token validations evicted from the cache (size, expiry, secret removed).")),
            forwarded: counter(&r, "stream_edge_forwarded_requests_total", "Calls for another replica's session forwarded to their owner, by result (ok, owner_gone, error, busy).", &["result"]),
            forwarded_received: register(&r, IntCounter::new("stream_edge_forwarded_received_total", "Calls a peer replica forwarded here, accepted after their signature checked.")),
            owner_misses: register(&r, IntCounter::new("stream_edge_owner_misses_total", "Forwarded calls for a session this replica does not have (closed, or minted by an earlier process).")),
            convergence_closes: register(&r, IntCounter::new("stream_edge_convergence_closes_total", "Users whose sessions were closed to reconnect through the balancer, which now routes them to another replica.")),
            convergence_pending: register(&r, IntGauge::new("stream_edge_convergence_pending", "Users scheduled for a convergence close (their calls arrived forwarded; a direct call cancels).")),
            connection_id_refused: register(&r, IntCounter::new("stream_edge_connection_id_refused_total", "connection_ids no replica minted (malformed or failing their MAC), refused without forwarding.")),
            events_received: counter(&r, "stream_edge_events_received_total", "Events received from upstream, by type.", &["type"]),
            events_delivered,
            delivered,
            events_dropped: counter(&r, "stream_edge_events_dropped_total", "Events deliberately not delivered, by reason and type.", &["reason", "type"]),
            event_delivery_seconds: histogram(&r, "stream_edge_event_delivery_seconds", "Time from receiving an event from upstream to writing it to a client.", &[], latency_buckets()).with_label_values(&[] as &[&str]),
            watch_routing: counter(&r, "stream_edge_watch_changes_total", "Watch routing table changes, by action.", &["action"]),
            subscriptions_released: counter(&r, "stream_edge_subscriptions_released_total", "Channel subscriptions released upstream because no session of the user watches them any more, by cause (stop_watching, session_closed) and outcome.", &["via", "outcome"]),
            watch_held: counter(&r, "stream_edge_watch_held_events_total", "Events held for a session while its watching call was in flight, by outcome (held, delivered, notified, discarded, dropped).", &["outcome"]),
            rest_requests: counter(&r, "stream_edge_rest_requests_total", "Proxied REST requests, by route template, method and status class.", &["route", "method", "status"]),
            rest_seconds: histogram(&r, "stream_edge_rest_request_duration_seconds", "Proxied REST request latency, by route template.", &["route"], latency_buckets()),
            bytes,
            ws_bytes_out,
            ws_bytes_in,
            limit_hits: counter(&r, "stream_edge_limit_hits_total", "Times a configured bound was hit, by limit.", &["limit"]),
            longpoll_held: register(&r, IntGauge::new("stream_edge_longpoll_held_requests", "Long-poll requests held open now.")),
            longpoll_polls: counter(&r, "stream_edge_longpoll_polls_total", "Long-poll requests answered, by outcome.", &["outcome"]),
            longpoll_expired: counter(&r, "stream_edge_longpoll_expired_total", "Long-poll sessions expired, by reason.", &["reason"]),
            longpoll_poll_seconds: histogram(&r, "stream_edge_longpoll_poll_duration_seconds", "How long long-poll requests were held.", &[], vec![0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 20.0, 25.0, 30.0]).with_label_values(&[] as &[&str]),
            privacy_lookups: counter(&r, "stream_edge_privacy_lookups_total", "Privacy settings lookups against upstream, by outcome.", &["outcome"]),
            unfilterable: counter(&r, "stream_edge_privacy_unfilterable_total", "Responses carrying other users' state that could not be filtered and were refused with 502, by reason.", &["reason"]),
            ready: register(&r, IntGauge::new("stream_edge_ready", "1 while the gateway takes traffic, 0 before start and while draining.")),
            upstream_up: register(&r, IntGauge::new(
                    "stream_edge_upstream_up",
                    "1 while the upstream accepts connections (last probe succeeded).",
                )),
            tls_reloads: counter(
                &r,
                "stream_edge_tls_reloads_total",
                "Certificate reloads after the files changed, by outcome.",
                &["outcome"],
            ),
            config_warnings: counter(
                &r,
                "stream_edge_config_warnings_total",
                "Configuration problems noticed at run time (each warned once), by warning.",
                &["warning"],
            ),
            me_refreshes: counter(&r, "stream_edge_me_refreshes_total", "Sessions' first frames, by whether their `me` was updated since the upstream connection opened.", &["outcome"]),
            me_changes: counter(&r, "stream_edge_me_changes_total", "Changes learned into a user's live `me` (events, devices, blocks), by kind.", &["change"]),
            device_registrations: counter(&r, "stream_edge_device_registrations_total", "Push devices from connect payloads, by registration outcome upstream.", &["outcome"]),
            ws_dialects: counter(&r, "stream_edge_ws_dialect_total", "WebSocket connects, by the client SDK dialect recognised from the upgrade (js also counts unrecognised clients).", &["dialect"]),
            ws_h2_sessions: register(&r, IntCounter::new("stream_edge_ws_h2_sessions_total", "WebSocket connects made over HTTP/2 (RFC 8441 extended CONNECT, http2.websockets); also counted in stream_edge_ws_dialect_total.")),
            registry: r,

        };
        m.precreate();
        m
    }

    /// `stream_edge_events_delivered_total{transport,type}` for the transport at `transport` in
    /// [`TRANSPORTS`].
    pub fn delivered(&self, transport: usize, kind: EventKind) -> &IntCounter {
        // Both indices are bounded by construction (`EventKind`, the session's transport).
        &self.delivered[usize::from(kind.0)][transport]
    }

    /// Pre-creates known label sets so dashboards see zeros instead of gaps.
    fn precreate(&self) {
        for t in TRANSPORTS {
            self.sessions_open.with_label_values(&[t]);
            self.sessions_opened.with_label_values(&[t]);
            for d in ["in", "out"] {
                self.bytes.with_label_values(&[d, t]);
            }
        }
        for r in ["hit", "miss"] {
            self.jwt_cache.with_label_values(&[r]);
        }
        self.jwt_validations.with_label_values(&["ok", "0"]);
        for limit in Limit::ALL {
            self.limit_hits.with_label_values(&[limit.label()]);
        }
        for outcome in ["ok", "error"] {
            self.tls_reloads.with_label_values(&[outcome]);
        }
        for via in ["stop_watching", "session_closed", "orphan"] {
            for outcome in ["ok", "error"] {
                self.subscriptions_released
                    .with_label_values(&[via, outcome]);
            }
        }
        for outcome in ["held", "delivered", "notified", "discarded", "dropped"] {
            self.watch_held.with_label_values(&[outcome]);
        }
        for reason in ["encoding", "parse", "too_large"] {
            self.unfilterable.with_label_values(&[reason]);
        }
        self.config_warnings
            .with_label_values(&["untrusted_forwarded_for"]);
        for d in crate::transport::dialect::Dialect::LABELS {
            self.ws_dialects.with_label_values(&[d]);
        }
        for outcome in ["updated", "unchanged"] {
            self.me_refreshes.with_label_values(&[outcome]);
        }
        for change in ME_CHANGES {
            self.me_changes.with_label_values(&[change]);
        }
        for outcome in DEVICE_REGISTRATION_OUTCOMES {
            self.device_registrations.with_label_values(&[outcome]);
        }
    }

    /// Counts one hit of `limit`.
    pub fn limit_hit(&self, limit: Limit) {
        self.limit_hits.with_label_values(&[limit.label()]).inc();
    }

    /// Text exposition of everything registered.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let enc = prometheus::TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = enc.encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_and_the_pre_resolved_delivery_counters_name_the_same_series() {
        assert_eq!(EventKind::of("message.new").label(), "message.new");
        assert_eq!(EventKind::of("no.such.event"), EventKind::OTHER);
        assert_eq!(EventKind::OTHER.label(), "other");
        assert_eq!(EventKind::all().count(), EVENT_TYPES.len() + 1);
        let m = Metrics::new();
        for kind in EventKind::all() {
            for (t, transport) in TRANSPORTS.iter().enumerate() {
                m.delivered(t, kind).inc();
                let series = m
                    .events_delivered
                    .with_label_values(&[transport, kind.label()]);
                assert_eq!(series.get(), 1, "{transport} {}", kind.label());
            }
        }
    }
}
