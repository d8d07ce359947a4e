//! The placement snapshot's families (generation, age, sizes, reloads and failures) and the
//! on-demand lookups', recorded by the registry refresh service and the lookup path.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::ResultLabel;
use super::{counter_name, names as n};

/// The snapshot in use and its refreshes.
#[derive(Debug, Default)]
pub struct PlacementMetrics {
    pub generation: Gauge,
    pub age_seconds: Gauge<f64, AtomicU64>,
    pub tenants: Gauge,
    pub api_keys: Gauge,
    pub cells: Gauge,
    pub dangling: Gauge,
    pub reloads: Counter,
    pub refresh_failures: Counter,
    pub deltas: Counter,
    pub version_regressions: Counter,
    pub records_skipped: Counter,
}

impl PlacementMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            n::PLACEMENT_SNAPSHOT_GENERATION,
            "Generation of the placement snapshot in use",
            self.generation.clone(),
        );
        registry.register(
            n::PLACEMENT_SNAPSHOT_AGE_SECONDS,
            "Seconds since the snapshot was last confirmed current",
            self.age_seconds.clone(),
        );
        registry.register(
            n::PLACEMENT_TENANTS,
            "Tenants in the snapshot in use",
            self.tenants.clone(),
        );
        registry.register(
            n::PLACEMENT_API_KEYS,
            "API keys in the snapshot in use",
            self.api_keys.clone(),
        );
        registry.register(
            n::PLACEMENT_CELLS,
            "Cells in the snapshot in use",
            self.cells.clone(),
        );
        registry.register(
            n::PLACEMENT_DANGLING_TENANTS,
            "Tenant records naming a cell no source defines",
            self.dangling.clone(),
        );
        registry.register(
            counter_name(n::PLACEMENT_RELOADS_TOTAL),
            "Placement snapshots loaded and swapped in",
            self.reloads.clone(),
        );
        registry.register(
            counter_name(n::PLACEMENT_REFRESH_FAILURES_TOTAL),
            "Registry reads or parses that failed",
            self.refresh_failures.clone(),
        );
        registry.register(
            counter_name(n::PLACEMENT_DELTAS_TOTAL),
            "Change-log deltas applied without a full reload",
            self.deltas.clone(),
        );
        registry.register(
            counter_name(n::PLACEMENT_VERSION_REGRESSIONS_TOTAL),
            "Tenant records older than the one held, ignored",
            self.version_regressions.clone(),
        );
        registry.register(
            counter_name(n::PLACEMENT_RECORDS_SKIPPED_TOTAL),
            "Registry records skipped: invalid, or beyond what a snapshot holds",
            self.records_skipped.clone(),
        );
    }
}

/// Handles for on-demand registry lookups (`cellgate_registry_lookups_total{result}`).
#[derive(Debug, Clone, Default)]
pub struct LookupMetrics {
    pub found: Counter,
    pub absent: Counter,
    pub errors: Counter,
    pub coalesced: Counter,
    pub negative_hits: Counter,
    pub limited: Counter,
    pub registry_down: Counter,
}

impl LookupMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let family = Family::<ResultLabel, Counter>::default();
        registry.register(
            counter_name(n::REGISTRY_LOOKUPS_TOTAL),
            "On-demand registry lookups of tenants missing from the snapshot, by result",
            family.clone(),
        );
        let r = |result| family.get_or_create_owned(&ResultLabel { result });
        Self {
            found: r("found"),
            absent: r("absent"),
            errors: r("error"),
            coalesced: r("coalesced"),
            negative_hits: r("negative_hit"),
            limited: r("limited"),
            registry_down: r("registry_down"),
        }
    }
}
