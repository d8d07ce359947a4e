//! Usage metering's families: events by what became of them, sink failures, the spool's size,
//! windows closed early (the memory bound) or dropped, and when the sink last took events.
//!
//! The emitter thread ([`crate::metering`]) records all of them once per emission; nothing
//! here is touched on the request path.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{counter_name, names as n};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The metering families; clones share the same series.
#[derive(Debug, Clone, Default)]
pub struct MeteringMetrics {
    events: Family<ResultLabel, Counter>,
    /// Events the sink took (replays included).
    pub sent: Counter,
    /// Events the sink took from the spool.
    pub replayed: Counter,
    /// Events that went to the spool because the sink failed.
    pub spooled: Counter,
    /// Events dropped because the spool was full.
    pub dropped: Counter,
    /// Batches the sink refused.
    pub sink_errors: Counter,
    pub spool_batches: Gauge,
    pub spool_bytes: Gauge,
    /// Windows closed early because they held `max_tenants` pairs.
    pub closed_early: Counter,
    /// Windows dropped because the emitter did not take them in time.
    pub windows_dropped: Counter,
    /// Unix seconds of the last emission the sink took whole.
    pub last_success: Gauge,
}

impl MeteringMetrics {
    pub(super) fn register(&mut self, registry: &mut Registry) {
        let handle = |result| self.events.get_or_create_owned(&ResultLabel { result });
        self.sent = handle("sent");
        self.replayed = handle("replayed");
        self.spooled = handle("spooled");
        self.dropped = handle("dropped");
        registry.register(
            counter_name(n::METERING_EVENTS_TOTAL),
            "Usage events by result: sent (the sink took them), replayed (sent from the spool, also in sent), spooled (the sink failed), dropped (the spool was full)",
            self.events.clone(),
        );
        registry.register(
            counter_name(n::METERING_SINK_ERRORS_TOTAL),
            "Batches of usage events the sink refused or did not answer for",
            self.sink_errors.clone(),
        );
        registry.register(
            n::METERING_SPOOL_BATCHES,
            "Batches of usage events waiting in the local spool",
            self.spool_batches.clone(),
        );
        registry.register(
            n::METERING_SPOOL_BYTES,
            "Bytes of usage events waiting in the local spool",
            self.spool_bytes.clone(),
        );
        registry.register(
            counter_name(n::METERING_WINDOWS_CLOSED_EARLY_TOTAL),
            "Metering windows closed early because a worker's window held metering.max_tenants tenants",
            self.closed_early.clone(),
        );
        registry.register(
            counter_name(n::METERING_WINDOWS_DROPPED_TOTAL),
            "Closed metering windows dropped because the emitter did not take them in time",
            self.windows_dropped.clone(),
        );
        registry.register(
            n::METERING_LAST_SUCCESS_TIMESTAMP_SECONDS,
            "When the sink last took a whole emission (Unix seconds; 0: never)",
            self.last_success.clone(),
        );
    }
}
