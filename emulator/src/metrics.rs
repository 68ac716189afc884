//! The emulator's own Prometheus registry: how often each bound was hit, and REST errors by
//! Stream code. It is the emulator's, not the gateway's (this crate imports nothing from the
//! gateway): `Emulator::metrics_text` renders it, and the emulator serves it at
//! `GET /_emulator/metrics` on its own port.

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

/// The counters of one emulator (every app it serves).
pub(crate) struct Metrics {
    registry: Registry,
    /// `stream_edge_emulator_bound_hits_total{bound}`: a request or event refused, cut or
    /// evicted because a named bound was reached.
    bound_hits: IntCounterVec,
    /// `stream_edge_emulator_rest_errors_total{code}`: REST answers with a Stream error.
    rest_errors: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        // invariant: the names and labels below are static and valid, and registered once on a
        // fresh registry.
        let bound_hits = IntCounterVec::new(
            Opts::new(
                "stream_edge_emulator_bound_hits_total",
                "Times the embedded upstream reached one of its bounds (refused, truncated or evicted)",
            ),
            &["bound"],
        )
        .expect("static metric definition");
        let rest_errors = IntCounterVec::new(
            Opts::new(
                "stream_edge_emulator_rest_errors_total",
                "REST answers of the embedded upstream that carry a Stream error, by code",
            ),
            &["code"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(bound_hits.clone()))
            .expect("fresh registry");
        registry
            .register(Box::new(rest_errors.clone()))
            .expect("fresh registry");
        Self {
            registry,
            bound_hits,
            rest_errors,
        }
    }

    /// Counts one hit of `bound` (a short snake_case name of what is bounded).
    pub(crate) fn bound(&self, bound: &'static str) {
        self.bound_hits.with_label_values(&[bound]).inc();
    }

    pub(crate) fn rest_error(&self, code: u32) {
        self.rest_errors
            .with_label_values(&[code.to_string().as_str()])
            .inc();
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every counter.
    pub(crate) fn text(&self) -> String {
        let mut out = Vec::new();
        // Encoding counters into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
