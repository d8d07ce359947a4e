//! Limiter behaviour under a clock the tests drive: exact rates and bursts, overrides, route
//! classes, in-flight limits and caps, and eviction that never hands out an unearned burst.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::*;
use crate::config::{LimitsConfig, TierConfig};
use crate::metrics::{CellMetrics, Metrics};

mod concurrency;
mod eviction;
mod rates;
mod routes;

const MS: Duration = Duration::from_millis(1);

fn tier(name: &str, rate: Option<f64>, burst: Option<u32>, concurrency: Option<u32>) -> TierConfig {
    TierConfig {
        name: name.to_owned(),
        rate,
        burst,
        concurrency,
    }
}

/// free: 10/s burst 5, 2 in flight; standard: 50/s burst 20; (default) ; ops: concurrency only.
fn config() -> LimitsConfig {
    LimitsConfig {
        tiers: vec![
            tier("free", Some(10.0), Some(5), Some(2)),
            tier("ops", None, None, Some(3)),
            tier("standard", Some(50.0), Some(20), None),
        ],
        default_tier: 2,
        ..LimitsConfig::default()
    }
}

struct Rig {
    clock: Arc<ManualClock>,
    store: Arc<LocalStore>,
    limiter: Limiter,
    cell_id: Arc<str>,
    cell_cap: Option<u32>,
    cm: Arc<CellMetrics>,
    metrics: Metrics,
}

fn rig_with(config: &LimitsConfig, max_keys: usize, cell_cap: Option<u32>) -> Rig {
    let clock = Arc::new(ManualClock::at(1_000_000_000_000));
    let metrics = Metrics::new();
    let store = Arc::new(LocalStore::with_counters(
        max_keys,
        metrics.ratelimit_idle_evictions.clone(),
        metrics.ratelimit_forced_evictions.clone(),
    ));
    let limiter = Limiter::new(config, store.clone(), clock.clone());
    let cm = metrics.cell("cell-1");
    Rig {
        clock,
        store,
        limiter,
        cell_id: Arc::from("cell-1"),
        cell_cap,
        cm,
        metrics,
    }
}

fn rig() -> Rig {
    rig_with(&config(), 1 << 16, None)
}

fn ask<'a>(tenant: &'a str, tier: &'a str, method: &'a Method, path: &'a str) -> Ask<'a> {
    Ask {
        tenant,
        tier,
        overrides: TenantLimits::default(),
        method,
        path,
    }
}

impl Rig {
    fn admit(&self, a: &Ask<'_>) -> Result<Permit, Limited> {
        let cell = CellCap {
            id: &self.cell_id,
            max_in_flight: self.cell_cap,
        };
        self.limiter.admit(a, &cell, &self.cm)
    }

    /// Admits `a` until refused (dropping each permit); returns how many got in.
    fn drain(&self, a: &Ask<'_>) -> usize {
        let mut n = 0;
        while self.admit(a).is_ok() {
            n += 1;
            assert!(n < 10_000, "never refused");
        }
        n
    }
}
