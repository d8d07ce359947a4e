//! Tracing's families: spans sent to the OTLP endpoint, spans lost (and why), and export
//! requests by result.
//!
//! The request path touches only `dropped{reason="queue_full"}`, when the export queue is full;
//! the exporter task records the rest once per batch.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{counter_name, names as n};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The tracing families; clones share the same series.
#[derive(Debug, Clone, Default)]
pub struct TraceMetrics {
    /// Spans the endpoint accepted.
    pub exported: Counter,
    dropped: Family<ReasonLabel, Counter>,
    /// Spans dropped because the export queue was full.
    pub queue_full: Counter,
    /// Spans dropped because their export failed (refused, unreachable, too slow).
    pub export_failed: Counter,
    exports: Family<ResultLabel, Counter>,
    /// Export requests the endpoint accepted.
    pub exports_ok: Counter,
    /// Export requests that failed.
    pub exports_failed: Counter,
}

impl TraceMetrics {
    pub(super) fn register(&mut self, registry: &mut Registry) {
        let dropped = |reason| self.dropped.get_or_create_owned(&ReasonLabel { reason });
        self.queue_full = dropped("queue_full");
        self.export_failed = dropped("export_failed");
        let exports = |result| self.exports.get_or_create_owned(&ResultLabel { result });
        self.exports_ok = exports("ok");
        self.exports_failed = exports("error");
        registry.register(
            counter_name(n::TRACE_SPANS_EXPORTED_TOTAL),
            "Spans the OTLP endpoint accepted",
            self.exported.clone(),
        );
        registry.register(
            counter_name(n::TRACE_SPANS_DROPPED_TOTAL),
            "Spans dropped, by reason: queue_full (the export queue was full), export_failed",
            self.dropped.clone(),
        );
        registry.register(
            counter_name(n::TRACE_EXPORTS_TOTAL),
            "OTLP export requests, by result (ok, error)",
            self.exports.clone(),
        );
    }
}
