//! Fleet-wide tenant rates on Redis/Valkey, with no Redis round trip on the request path.
//!
//! [`FleetStore`] is a [`LimitStore`] in front of the per-node [`LocalStore`]. A tenant's own
//! rate (route class 0) is judged against *fleet credit*: every `sync_interval` the sync task
//! ([`FleetSync`]) reports to Redis what this node admitted for each active tenant and learns
//! the credit left in that tenant's fleet-wide bucket (a GCRA kept by a Lua script on Redis's
//! clock); this node may spend its share of it (credit ÷ live nodes, at least one request when
//! the fleet has one) until the next flush. Requests go on being admitted from memory; what they
//! cost reaches Redis one flush later.
//!
//! So the fleet can overshoot by what the other nodes admit before their next report: about
//! (nodes − 1) × rate × sync interval in the worst case, paid back by the fleet's bucket running
//! ahead afterwards, so the long-run rate stays the configured one. docs/limits.md has the bound
//! and the measurement.
//!
//! When fleet credit is not current (Redis unreachable or slow, the breaker open, a tenant's
//! first request since it went idle), the tenant's rate is judged locally at this node's share
//! (rate ÷ last known node count, [`Gcra::share`]): *fail static*, never closed, never open.
//! After each flush the local bucket is set to the fleet's debt, so a fallback starts where the
//! fleet stood; after a fallback, the next report carries the local debt as a floor, so
//! recovery starts where the fallback left off, without a burst. In-flight limits and route
//! classes stay per node: they are local facts.

mod breaker;
mod remote;
mod slots;
mod sync;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub use remote::Secret;
pub use sync::FleetSync;

use self::slots::{FleetSlot, Slots};
use super::gcra::Gcra;
use super::store::{Hold, Key, LimitStore, LocalStore, StoreRefusal};
use crate::config::{FleetConfig, FleetMode, TierConfig};
use crate::metrics::{FleetMetrics, TierFleetCounters};

/// What the store and the sync task share.
#[derive(Debug)]
struct Inner {
    mode: FleetMode,
    local: LocalStore,
    slots: Slots,
    /// Successful flushes so far; a slot's credit counts while its `synced` equals this.
    epoch: AtomicU64,
    /// Fleet credit is used only before this instant (ns on the limiter's clock): a flush
    /// that succeeds moves it on, a failure sets it to 0.
    fresh_until: AtomicU64,
    /// Live nodes, as last seen (at least 1).
    nodes: AtomicU32,
    sync_interval: u64,
}

impl Inner {
    /// Whether fleet credit set by the latest flush may be used at `now`.
    fn fresh(&self, now: u64) -> bool {
        now < self.fresh_until.load(Ordering::Acquire)
    }

    fn nodes(&self) -> u32 {
        self.nodes.load(Ordering::Relaxed).max(1)
    }
}

/// The fleet-wide store (see the module doc).
#[derive(Debug)]
pub struct FleetStore {
    inner: Arc<Inner>,
    /// Refusal counters by tier index.
    tiers: Box<[TierFleetCounters]>,
}

/// Builds the store and its sync task (which must be run for fleet credit to flow; until then
/// every request is judged at this node's share).
pub fn fleet(
    config: &FleetConfig,
    tiers: &[TierConfig],
    local: LocalStore,
    password: Option<&Secret>,
    clock: Arc<dyn super::Clock>,
    metrics: FleetMetrics,
) -> Result<(FleetStore, FleetSync), String> {
    let inner = Arc::new(Inner {
        mode: config.mode,
        local,
        slots: Slots::new(),
        epoch: AtomicU64::new(1),
        fresh_until: AtomicU64::new(0),
        nodes: AtomicU32::new(config.initial_nodes.max(1)),
        sync_interval: u64::try_from(config.sync_interval.as_nanos()).unwrap_or(u64::MAX),
    });
    metrics.nodes.set(i64::from(config.initial_nodes.max(1)));
    let store = FleetStore {
        inner: Arc::clone(&inner),
        tiers: tiers.iter().map(|t| metrics.tier(&t.name)).collect(),
    };
    let sync =
        FleetSync::new(config, password, inner, clock, metrics).map_err(|e| e.to_string())?;
    Ok((store, sync))
}

impl FleetStore {
    fn counters(&self, tier: usize) -> Option<&TierFleetCounters> {
        self.tiers.get(tier)
    }

    /// Enforce mode: fleet credit decides when it is current; else this node's share.
    fn enforce(
        &self,
        slot: &FleetSlot,
        key: Key<'_>,
        rate: &Gcra,
        max_in_flight: Option<u32>,
        now: u64,
        current: bool,
    ) -> Result<Hold, StoreRefusal> {
        let inner = &*self.inner;
        if current {
            let hold = inner.local.acquire(key, None, max_in_flight, now)?;
            if slot.spend(rate.interval) {
                slot.admitted.fetch_add(1, Ordering::Relaxed);
                return Ok(hold);
            }
            if let Some(c) = self.counters(key.tier) {
                c.refused.inc();
            }
            return Err(StoreRefusal::Rate {
                wait: self.wait(slot, rate),
            });
        }
        let hold =
            inner
                .local
                .acquire(key, Some(&rate.share(inner.nodes())), max_in_flight, now)?;
        self.record_local(slot, now);
        Ok(hold)
    }

    /// Shadow mode: this node's share decides; fleet credit only counts what it would refuse.
    fn shadow(
        &self,
        slot: &FleetSlot,
        key: Key<'_>,
        rate: &Gcra,
        max_in_flight: Option<u32>,
        now: u64,
        current: bool,
    ) -> Result<Hold, StoreRefusal> {
        let inner = &*self.inner;
        let hold =
            inner
                .local
                .acquire(key, Some(&rate.share(inner.nodes())), max_in_flight, now)?;
        if current
            && !slot.spend(rate.interval)
            && let Some(c) = self.counters(key.tier)
        {
            c.would_refuse.inc();
        }
        self.record_local(slot, now);
        Ok(hold)
    }

    /// A request admitted outside fleet credit: reported with the next flush while Redis is
    /// reachable, else remembered as a fallback (the next report carries the local debt).
    fn record_local(&self, slot: &FleetSlot, now: u64) {
        if !self.inner.fresh(now) {
            slot.fell_back.store(true, Ordering::Relaxed);
        } else {
            slot.admitted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How long until a refused tenant may try again: the shortfall at this node's share,
    /// and never less than one flush.
    fn wait(&self, slot: &FleetSlot, rate: &Gcra) -> u64 {
        let credit = slot.credit.load(Ordering::Relaxed);
        let short = u64::try_from(i64::try_from(rate.interval).unwrap_or(i64::MAX) - credit)
            .unwrap_or(rate.interval);
        short
            .saturating_mul(u64::from(self.inner.nodes()))
            .max(self.inner.sync_interval)
    }
}

impl LimitStore for FleetStore {
    fn acquire(
        &self,
        key: Key<'_>,
        rate: Option<&Gcra>,
        max_in_flight: Option<u32>,
        now: u64,
    ) -> Result<Hold, StoreRefusal> {
        let inner = &*self.inner;
        let (Some(rate), 0) = (rate, key.class) else {
            return inner.local.acquire(key, rate, max_in_flight, now);
        };
        let epoch = inner.epoch.load(Ordering::Acquire);
        let fresh = inner.fresh(now);
        inner.slots.with(key.tenant, now, |slot| {
            slot.touch(rate, now);
            let current = fresh && slot.synced.load(Ordering::Acquire) == epoch;
            match inner.mode {
                FleetMode::Enforce => self.enforce(slot, key, rate, max_in_flight, now, current),
                FleetMode::Shadow => self.shadow(slot, key, rate, max_in_flight, now, current),
            }
        })
    }

    fn refund(&self, key: Key<'_>, rate: &Gcra, now: u64) {
        let inner = &*self.inner;
        if key.class != 0 {
            return inner.local.refund(key, rate, now);
        }
        let epoch = inner.epoch.load(Ordering::Acquire);
        let fresh = inner.fresh(now);
        inner.slots.with(key.tenant, now, |slot| {
            let _ = slot
                .admitted
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            let current = fresh && slot.synced.load(Ordering::Acquire) == epoch;
            if current && inner.mode == FleetMode::Enforce {
                let cost = i64::try_from(rate.interval).unwrap_or(i64::MAX);
                slot.credit.fetch_add(cost, Ordering::Relaxed);
            } else {
                inner.local.refund(key, &rate.share(inner.nodes()), now);
            }
        });
    }

    fn tracked(&self) -> usize {
        self.inner.local.tracked()
    }

    fn sweep(&self, now: u64) -> usize {
        // A tenant silent for a minute is forgotten here; its fleet bucket lives on in Redis.
        self.inner.slots.sweep(now, 60_000_000_000);
        self.inner.local.sweep(now)
    }
}

#[cfg(test)]
mod tests;
