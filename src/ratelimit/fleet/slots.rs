//! What this node knows about each tenant the fleet limiter has seen: its bucket for this
//! node's share of the tenant's fleet rate (re-seeded from the fleet at every flush), what it
//! admitted since the last report, and the rate to report in.
//!
//! One [`FleetSlot`] per active tenant, in 64 shards of `RwLock<HashMap>` keyed by a hash of
//! the tenant id (the slot keeps the id itself: the flush names the tenant's Redis key). A
//! request takes one shard's read lock and touches only its slot's atomics; only a tenant's
//! first request takes the write lock and allocates. Slots idle for a while are swept.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::ratelimit::gcra::Gcra;
use crate::ratelimit::store::KeyHasher;

/// One tenant's fleet state on this node.
#[derive(Debug)]
pub(super) struct FleetSlot {
    pub(super) tenant: Box<str>,
    /// The TAT of this node's share of the tenant's fleet bucket (a GCRA at rate ÷ nodes,
    /// [`Gcra::share`]): set from the fleet's credit at each flush, refilling at the share's
    /// rate in between and through a fallback.
    pub(super) tat: AtomicU64,
    /// Requests admitted and not yet reported.
    pub(super) admitted: AtomicU64,
    /// Admitted on the local fallback since the last report: the next report carries the
    /// local bucket's debt as a floor, so recovery starts from where the fallback left off.
    pub(super) fell_back: AtomicBool,
    /// A request arrived since the last flush took this slot.
    pub(super) active: AtomicBool,
    /// The fleet rate last applied: nanoseconds per request and bucket tolerance.
    pub(super) interval: AtomicU64,
    pub(super) tolerance: AtomicU64,
    /// Clock reading (ns) of the last request, for the sweep.
    pub(super) last_seen: AtomicU64,
    /// Clock reading (ns) of the last successful report (0: none yet).
    pub(super) reported: AtomicU64,
}

impl FleetSlot {
    fn new(tenant: &str, now: u64) -> Self {
        Self {
            tenant: Box::from(tenant),
            tat: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            fell_back: AtomicBool::new(false),
            active: AtomicBool::new(false),
            interval: AtomicU64::new(0),
            tolerance: AtomicU64::new(0),
            last_seen: AtomicU64::new(now),
            reported: AtomicU64::new(0),
        }
    }

    /// Marks a request under `rate` at `now`. Stores only what changed, so a busy tenant's
    /// requests mostly read.
    pub(super) fn touch(&self, rate: &Gcra, now: u64) {
        if !self.active.load(Ordering::Relaxed) {
            self.active.store(true, Ordering::Relaxed);
        }
        if self.interval.load(Ordering::Relaxed) != rate.interval {
            self.interval.store(rate.interval, Ordering::Relaxed);
        }
        if self.tolerance.load(Ordering::Relaxed) != rate.tolerance {
            self.tolerance.store(rate.tolerance, Ordering::Relaxed);
        }
        // Coarse: the sweep needs seconds, not nanoseconds; skip the store within 10 ms.
        if now.saturating_sub(self.last_seen.load(Ordering::Relaxed)) > 10_000_000 {
            self.last_seen.store(now, Ordering::Relaxed);
        }
    }
}

type Map = HashMap<u64, Arc<FleetSlot>, BuildHasherDefault<KeyHasher>>;

#[repr(align(64))]
#[derive(Debug, Default)]
struct Shard(RwLock<Map>);

const SHARDS: usize = 64;

/// Every tenant's [`FleetSlot`], sharded.
#[derive(Debug)]
pub(super) struct Slots {
    shards: Box<[Shard]>,
    hasher: foldhash::fast::RandomState,
}

impl Slots {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, tenant: &str) -> (u64, &RwLock<Map>) {
        let h = self.hasher.hash_one(tenant);
        (h, &self.shards[(h >> 32) as usize % SHARDS].0)
    }

    /// Runs `f` on `tenant`'s slot, creating it on first use. Two tenants whose 64-bit hashes
    /// collide would share a slot; the slot keeps the first one's id, so the second is
    /// accounted under the first's key (a stricter limit for both, never a looser one).
    pub(super) fn with<R>(&self, tenant: &str, now: u64, f: impl FnOnce(&FleetSlot) -> R) -> R {
        let (h, shard) = self.shard(tenant);
        {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = map.get(&h) {
                return f(slot);
            }
        }
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        let slot = map
            .entry(h)
            .or_insert_with(|| Arc::new(FleetSlot::new(tenant, now)));
        f(slot)
    }

    /// Slots with a request since the last flush, at most `max`, starting at shard `start`
    /// (rotated by the caller so a cap never starves the same tenants); clears their marks.
    pub(super) fn take_active(&self, max: usize, start: usize) -> Vec<Arc<FleetSlot>> {
        let mut out = Vec::new();
        for i in 0..SHARDS {
            let map = self.shards[(start + i) % SHARDS]
                .0
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for slot in map.values() {
                if out.len() >= max {
                    return out;
                }
                if slot.active.swap(false, Ordering::AcqRel)
                    || slot.admitted.load(Ordering::Relaxed) > 0
                {
                    out.push(Arc::clone(slot));
                }
            }
        }
        out
    }

    /// Forgets slots with no request for `idle` ns and nothing left to report (or with
    /// something to report but no request for ten times that: Redis has been away too long).
    pub(super) fn sweep(&self, now: u64, idle: u64) -> usize {
        let mut n = 0;
        for s in &*self.shards {
            let mut map = s.0.write().unwrap_or_else(PoisonError::into_inner);
            let before = map.len();
            map.retain(|_, slot| {
                let quiet = now.saturating_sub(slot.last_seen.load(Ordering::Relaxed));
                let unreported = slot.admitted.load(Ordering::Relaxed) > 0
                    || slot.fell_back.load(Ordering::Relaxed);
                // Something still to report waits for Redis, but not forever.
                quiet < idle || (unreported && quiet < idle.saturating_mul(10))
            });
            n += before - map.len();
        }
        n
    }

    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}
