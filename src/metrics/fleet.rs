//! The fleet-wide limiter's families: Redis round trips, flush sizes, errors, the breaker, the
//! membership count, time on the local fallback, and fleet refusals by tier.
//!
//! The sync task ([`crate::ratelimit`]'s fleet store) records everything but the per-tier
//! counters, which the admit stage bumps through handles resolved once per tier.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::histogram::LatencyHistogram;
use super::{counter_name, names as n};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TierLabel {
    tier: String,
}

/// Why a Redis exchange failed, as the `kind` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisErrorKind {
    Timeout,
    Connect,
    Io,
    Auth,
    Script,
    Response,
}

impl RedisErrorKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Io => "io",
            Self::Auth => "auth",
            Self::Script => "script",
            Self::Response => "response",
        }
    }
}

/// Breaker states, as the gauge shows them.
pub const BREAKER_CLOSED: i64 = 0;
pub const BREAKER_OPEN: i64 = 1;
pub const BREAKER_HALF_OPEN: i64 = 2;

/// The fleet families; clones share the same series.
#[derive(Debug, Clone)]
pub struct FleetMetrics {
    pub sync_seconds: LatencyHistogram,
    pub flush_keys: Histogram,
    errors: Family<KindLabel, Counter>,
    pub breaker_state: Gauge,
    pub nodes: Gauge,
    pub fallback_seconds: Counter<f64, AtomicU64>,
    would_refuse: Family<TierLabel, Counter>,
    refused: Family<TierLabel, Counter>,
}

impl Default for FleetMetrics {
    fn default() -> Self {
        Self {
            sync_seconds: LatencyHistogram::default(),
            flush_keys: Histogram::new([1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0]),
            errors: Family::default(),
            breaker_state: Gauge::default(),
            nodes: Gauge::default(),
            fallback_seconds: Counter::default(),
            would_refuse: Family::default(),
            refused: Family::default(),
        }
    }
}

/// One tier's fleet refusal counters.
#[derive(Debug, Clone, Default)]
pub struct TierFleetCounters {
    /// Shadow mode: refusals fleet accounting would have made.
    pub would_refuse: Counter,
    /// Enforce mode: refusals it made.
    pub refused: Counter,
}

impl FleetMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            n::FLEET_SYNC_SECONDS,
            "One flush round trip to Redis (every tenant key in it)",
            self.sync_seconds.clone(),
        );
        registry.register(
            n::FLEET_FLUSH_KEYS,
            "Tenant keys reconciled per flush",
            self.flush_keys.clone(),
        );
        registry.register(
            counter_name(n::FLEET_REDIS_ERRORS_TOTAL),
            "Failed Redis exchanges, by kind (timeout, connect, io, auth, script, response)",
            self.errors.clone(),
        );
        registry.register(
            n::FLEET_BREAKER_STATE,
            "The Redis circuit breaker: 0 closed, 1 open, 2 half-open",
            self.breaker_state.clone(),
        );
        registry.register(
            n::FLEET_NODES,
            "Live nodes in the fleet membership set, as last seen",
            self.nodes.clone(),
        );
        registry.register(
            counter_name(n::FLEET_FALLBACK_SECONDS_TOTAL),
            "Seconds this node enforced the local fallback (limit / nodes) instead of fleet accounting",
            self.fallback_seconds.clone(),
        );
        registry.register(
            counter_name(n::FLEET_WOULD_REFUSE_TOTAL),
            "Shadow mode: requests fleet accounting would have refused, by tier",
            self.would_refuse.clone(),
        );
        registry.register(
            counter_name(n::FLEET_REFUSED_TOTAL),
            "Requests refused by fleet accounting, by tier",
            self.refused.clone(),
        );
        // Every kind shows from the start, at 0, so alerts and rate() see the series.
        for kind in [
            RedisErrorKind::Timeout,
            RedisErrorKind::Connect,
            RedisErrorKind::Io,
            RedisErrorKind::Auth,
            RedisErrorKind::Script,
            RedisErrorKind::Response,
        ] {
            let _ = self.errors.get_or_create(&KindLabel {
                kind: kind.as_str(),
            });
        }
    }

    /// Counts one failed Redis exchange.
    pub fn redis_error(&self, kind: RedisErrorKind) {
        self.errors
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// The refusal counters of tier `tier` (created at 0).
    #[must_use]
    pub fn tier(&self, tier: &str) -> TierFleetCounters {
        let label = TierLabel {
            tier: tier.to_owned(),
        };
        TierFleetCounters {
            would_refuse: self.would_refuse.get_or_create_owned(&label),
            refused: self.refused.get_or_create_owned(&label),
        }
    }
}
