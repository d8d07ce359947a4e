//! Fleet-wide tenant rates on Redis/Valkey, with no Redis round trip on the request path.
//!
//! [`FleetStore`] is a [`LimitStore`] in front of the per-node [`LocalStore`]. A tenant's own
//! rate (route class 0) is judged on this node's *share* of it: a GCRA at rate ÷ live nodes
//! ([`Gcra::share`]) in the tenant's [`slots::FleetSlot`]. Every `sync_interval` the sync task
//! ([`FleetSync`]) reports to Redis what this node admitted for each active tenant and learns
//! the credit left in the tenant's fleet-wide bucket (a GCRA kept by a Lua script on Redis's
//! clock), and sets the share's bucket to this node's part of that credit (credit ÷ nodes, at
//! least one request when the fleet has one). Between flushes the share refills at rate ÷
//! nodes. So a node whose neighbours leave their part unused gets it at the next flush, and a
//! fleet over its limit leaves every node's share empty. Requests are admitted from memory;
//! what they cost reaches Redis one flush later.
//!
//! The fleet can overshoot by what the other nodes admit before their next report: about
//! (nodes − 1) × rate × sync interval in the worst case, charged to the fleet's bucket
//! afterwards (admitted requests are charged, never refused), so the long-run rate stays the
//! configured one. docs/limits.md has the bound and the measurement.
//!
//! When Redis is unreachable or slow (the breaker open), nothing re-seeds the share: each node
//! goes on at rate ÷ the last known node count from where the fleet last stood: *fail static*,
//! never closed, never open. The first report after a fallback carries the share's debt as a
//! floor, so recovery starts where the fallback left off, without a burst. In-flight limits and
//! route classes stay per node: they are local facts.

mod breaker;
mod remote;
mod slots;
mod sync;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

pub use remote::Secret;
pub use sync::FleetSync;

use self::slots::{FleetSlot, Slots};
use super::gcra::{Charge, Gcra};
use super::store::{Hold, Key, LimitStore, LocalStore, StoreRefusal};
use crate::config::{FleetConfig, FleetMode, TierConfig};
use crate::metrics::{BREAKER_CLOSED, BREAKER_OPEN, FleetMetrics, TierFleetCounters};

/// What the store and the sync task share.
#[derive(Debug)]
struct Inner {
    mode: FleetMode,
    local: LocalStore,
    slots: Slots,
    /// Fleet accounting is current until this instant (ns on the limiter's clock): a flush
    /// that succeeds moves it on, a failure sets it to 0. Admissions while current are
    /// reported; others are a fallback.
    fresh_until: AtomicU64,
    /// Live nodes, as last seen (at least 1).
    nodes: AtomicU32,
    sync_interval: u64,
    /// What the admin listener shows: this node's id and Redis, and the breaker as the sync
    /// task last set it (one of the `BREAKER_*` gauge values).
    node: String,
    redis: String,
    breaker: AtomicI64,
}

/// The fleet-wide store's state, as `/admin/limits` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetStatus {
    pub mode: &'static str,
    /// This node's id in the membership set.
    pub node: String,
    /// The Redis it reconciles with (no password).
    pub redis: String,
    /// Live nodes, as last seen.
    pub nodes: u32,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    /// Whether fleet accounting is current (the last flush succeeded recently).
    pub current: bool,
    /// Tenants this node keeps a share for.
    pub tenants: usize,
}

impl Inner {
    /// Whether fleet accounting is current at `now`.
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

/// Builds the store and its sync task (which must be run for fleet accounting to happen; until
/// then every tenant is held to this node's share of its rate).
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
        fresh_until: AtomicU64::new(0),
        nodes: AtomicU32::new(config.initial_nodes.max(1)),
        sync_interval: u64::try_from(config.sync_interval.as_nanos()).unwrap_or(u64::MAX),
        node: sync::node_id(),
        redis: config.redis.to_string(),
        breaker: AtomicI64::new(BREAKER_CLOSED),
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

    /// Enforce mode: the share's bucket decides (fleet-seeded while Redis answers).
    fn enforce(
        &self,
        slot: &FleetSlot,
        key: Key<'_>,
        rate: &Gcra,
        max_in_flight: Option<u32>,
        now: u64,
        fresh: bool,
    ) -> Result<Hold, StoreRefusal> {
        // The in-flight limit stays local; without one there is nothing to take there.
        let hold = match max_in_flight {
            Some(_) => self.inner.local.acquire(key, None, max_in_flight, now)?,
            None => Hold::default(),
        };
        if let Charge::Refused { wait } = self.seeded(rate).charge(&slot.tat, now) {
            if fresh && let Some(c) = self.counters(key.tier) {
                c.refused.inc();
            }
            return Err(StoreRefusal::Rate { wait });
        }
        record(slot, fresh);
        Ok(hold)
    }

    /// Shadow mode: an unseeded per-node share decides; the fleet-seeded one only counts what
    /// it would refuse.
    fn shadow(
        &self,
        slot: &FleetSlot,
        key: Key<'_>,
        rate: &Gcra,
        max_in_flight: Option<u32>,
        now: u64,
        fresh: bool,
    ) -> Result<Hold, StoreRefusal> {
        let share = rate.share(self.inner.nodes());
        let hold = self
            .inner
            .local
            .acquire(key, Some(&share), max_in_flight, now)?;
        if let Charge::Refused { .. } = self.seeded(rate).charge(&slot.tat, now)
            && fresh
            && let Some(c) = self.counters(key.tier)
        {
            c.would_refuse.inc();
        }
        record(slot, fresh);
        Ok(hold)
    }

    /// The bucket a tenant of `rate` is held to on this node (its share, with room for late
    /// flushes: [`sync::seeded_share`]).
    fn seeded(&self, rate: &Gcra) -> Gcra {
        sync::seeded_share(rate, self.inner.nodes(), self.inner.sync_interval)
    }
}

/// An admitted request: reported with the next flush while fleet accounting is current (`fresh`),
/// else remembered as a fallback (the next report carries the share's debt).
fn record(slot: &FleetSlot, fresh: bool) {
    if fresh {
        slot.admitted.fetch_add(1, Ordering::Relaxed);
    } else {
        slot.fell_back.store(true, Ordering::Relaxed);
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
        let fresh = inner.fresh(now);
        inner.slots.with(key.tenant, now, |slot| {
            slot.touch(rate, now);
            match inner.mode {
                FleetMode::Enforce => self.enforce(slot, key, rate, max_in_flight, now, fresh),
                FleetMode::Shadow => self.shadow(slot, key, rate, max_in_flight, now, fresh),
            }
        })
    }

    fn refund(&self, key: Key<'_>, rate: &Gcra, now: u64) {
        let inner = &*self.inner;
        if key.class != 0 {
            return inner.local.refund(key, rate, now);
        }
        if inner.mode == FleetMode::Shadow {
            inner.local.refund(key, &rate.share(inner.nodes()), now);
        }
        inner.slots.with(key.tenant, now, |slot| {
            self.seeded(rate).refund(&slot.tat, now);
            if inner.fresh(now) {
                // It was counted for the next report (a fallback admission was not).
                let _ = slot
                    .admitted
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        });
    }

    fn tracked(&self) -> usize {
        // Tenants' shares, plus the local keys (in-flight counts, route classes).
        self.inner.slots.len() + self.inner.local.tracked()
    }

    fn fleet(&self) -> Option<FleetStatus> {
        let inner = &*self.inner;
        Some(FleetStatus {
            mode: match inner.mode {
                FleetMode::Enforce => "enforce",
                FleetMode::Shadow => "shadow",
            },
            node: inner.node.clone(),
            redis: inner.redis.clone(),
            nodes: inner.nodes(),
            breaker: match inner.breaker.load(Ordering::Relaxed) {
                BREAKER_CLOSED => "closed",
                BREAKER_OPEN => "open",
                _ => "half_open",
            },
            current: inner.fresh_until.load(Ordering::Relaxed) > 0,
            tenants: inner.slots.len(),
        })
    }

    fn sweep(&self, now: u64) -> usize {
        // A tenant silent for a minute is forgotten here; its fleet bucket lives on in Redis.
        self.inner.slots.sweep(now, 60_000_000_000);
        self.inner.local.sweep(now)
    }
}

#[cfg(test)]
mod tests;
