//! Where limiter state lives: the [`LimitStore`] seam and the per-node [`LocalStore`].
//!
//! `LocalStore` keeps one small slot per active key (a tenant, or a tenant and route class): a
//! GCRA arrival time, an in-flight count and a fingerprint of the limits last applied (16 bytes,
//! 32 with the `Arc` header), in 64 shards of `RwLock<HashMap>`. A check takes one shard's read
//! lock (64 shards: two cores rarely meet on one) and does one compare-and-swap; only a key's
//! first request takes the write lock. There is no global lock.
//!
//! Memory is bounded by `max_keys`. A slot whose bucket is full again and that has nothing in
//! flight carries no information (it equals a fresh slot), so the periodic sweep and an insert
//! into a full shard forget those first: forgetting them grants nothing. Only when a shard is
//! full of keys still paying off a burst does it evict the ones closest to full, and it records
//! their debt in the [`DebtTable`] that every new slot starts from, so an evicted tenant never
//! comes back with a fresh burst it did not earn. Forced evictions are counted and logged.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::metrics::counter::Counter;

use super::debt::DebtTable;
use super::gcra::{Charge, Gcra};

/// What a limit is keyed by. A shared store keys by these fields; the local one hashes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    pub tenant: &'a str,
    /// The route class (index + 1), or 0 for the tenant's own limit.
    pub class: u8,
    /// The tier's index, for a store's metrics (not part of the key's identity).
    pub tier: usize,
}

/// Why a store refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreRefusal {
    /// Over the rate; the next request is admitted `wait` ns from now.
    Rate { wait: u64 },
    /// `max_in_flight` requests already in flight.
    InFlight,
}

/// Gives an in-flight place back.
pub trait Release: Send + Sync {
    fn release(&self);
}

/// An in-flight place, given back when dropped (response finished, failed, or abandoned).
#[derive(Default)]
pub struct Hold(Option<Arc<dyn Release>>);

impl Hold {
    #[must_use]
    pub fn new(r: Arc<dyn Release>) -> Self {
        Self(Some(r))
    }
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hold"
        } else {
            "Hold(none)"
        })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.release();
        }
    }
}

/// Rate and in-flight state by key.
///
/// This is the seam for a fleet-wide limiter: an implementation backed by a shared store
/// (Redis, DynamoDB) answers from quota it leases ahead in the background, because the
/// request path never waits on a network round trip. In-flight counts are per node by nature
/// and may stay local.
pub trait LimitStore: Send + Sync + fmt::Debug {
    /// Charges one request to `key`: an in-flight place when `max_in_flight` is set, then one
    /// request of `rate` when set. All or nothing: a refusal leaves no charge behind.
    fn acquire(
        &self,
        key: Key<'_>,
        rate: Option<&Gcra>,
        max_in_flight: Option<u32>,
        now: u64,
    ) -> Result<Hold, StoreRefusal>;
    /// Gives back one request charged at `now` that a later check refused.
    fn refund(&self, key: Key<'_>, rate: &Gcra, now: u64);
    /// Keys held now.
    fn tracked(&self) -> usize;
    /// Forgets keys that carry no information at `now`; returns how many.
    fn sweep(&self, now: u64) -> usize;
    /// The fleet-wide store's state, for the admin listener (`None`: limits are per node).
    fn fleet(&self) -> Option<super::fleet::FleetStatus> {
        None
    }
}

/// One key's state: 16 bytes.
#[derive(Debug, Default)]
struct Slot {
    tat: AtomicU64,
    in_flight: AtomicU32,
    /// [`Gcra::fingerprint`] of the limits `tat` was last charged under (0: none yet).
    limits: AtomicU32,
}

impl Release for Slot {
    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// Keys are already hashes; hashing them again would only cost time (also the fleet store's
/// slot map's hasher).
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<u64, Arc<Slot>, BuildHasherDefault<KeyHasher>>;

/// A shard on its own cache line, so two cores taking two shards' locks do not collide.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Shard(RwLock<Map>);

const SHARDS: usize = 64;

/// The per-node store: bounded, sharded, lock-free per request after a key's first.
pub struct LocalStore {
    shards: Box<[Shard]>,
    shard_cap: usize,
    hasher: foldhash::fast::RandomState,
    debt: DebtTable,
    idle_evictions: Counter,
    forced_evictions: Counter,
    /// When the last forced-eviction warning was logged (ns), to log at most one per minute.
    last_warning: AtomicU64,
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStore")
            .field("max_keys", &(self.shard_cap * SHARDS))
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

impl LocalStore {
    /// A store holding at most about `max_keys` keys (rounded up to a multiple of 64), plus
    /// keys with requests in flight, which are never forgotten.
    #[must_use]
    pub fn new(max_keys: usize) -> Self {
        Self::with_counters(max_keys, Counter::default(), Counter::default())
    }

    /// [`LocalStore::new`], counting keys forgotten because idle and keys evicted from a full
    /// shard into the given counters.
    #[must_use]
    pub fn with_counters(max_keys: usize, idle: Counter, forced: Counter) -> Self {
        let shard_cap = max_keys.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            shard_cap,
            hasher: foldhash::fast::RandomState::default(),
            debt: DebtTable::new(shard_cap * SHARDS),
            idle_evictions: idle,
            forced_evictions: forced,
            last_warning: AtomicU64::new(0),
        }
    }

    fn hash(&self, key: Key<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(key.tenant.as_bytes());
        h.write_u8(key.class);
        // `tier` is not hashed: a tenant moved to another tier keeps its state.
        h.finish()
    }

    fn shard(&self, h: u64) -> &RwLock<Map> {
        // Middle bits: hashbrown uses the low bits for the bucket and the top 7 for its tags.
        &self.shards[(h >> 32) as usize % SHARDS].0
    }

    /// Runs `f` on `key`'s slot, creating it on first use.
    fn with_slot<R>(&self, key: Key<'_>, now: u64, f: impl FnOnce(&Arc<Slot>) -> R) -> R {
        let h = self.hash(key);
        let shard = self.shard(h);
        {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = map.get(&h) {
                return f(slot);
            }
        }
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(&h) && map.len() >= self.shard_cap {
            self.make_room(&mut map, now);
        }
        let slot = map.entry(h).or_insert_with(|| {
            Arc::new(Slot {
                tat: AtomicU64::new(self.debt.start(h)),
                in_flight: AtomicU32::new(0),
                limits: AtomicU32::new(0),
            })
        });
        f(slot)
    }

    /// Frees room in a full shard: idle slots first (they carry nothing); only if none was
    /// idle, the 1/16 of evictable slots closest to a full bucket, their debt kept in the debt
    /// table.
    fn make_room(&self, map: &mut Map, now: u64) {
        let before = map.len();
        map.retain(|_, s| !idle(s, now));
        self.idle_evictions.inc_by((before - map.len()) as u64);
        if map.len() < self.shard_cap {
            return;
        }
        let target = self.shard_cap - self.shard_cap / 16 - 1;
        let mut candidates: Vec<(u64, u64)> = map
            .iter()
            .filter(|(_, s)| Arc::strong_count(s) == 1 && s.in_flight.load(Ordering::Acquire) == 0)
            .map(|(k, s)| (s.tat.load(Ordering::Relaxed), *k))
            .collect();
        let n = (map.len() - target).min(candidates.len());
        if n == 0 {
            return; // everything is in flight; in-flight slots are bounded by connections
        }
        candidates.select_nth_unstable(n - 1);
        for &(tat, k) in &candidates[..n] {
            map.remove(&k);
            self.debt.record(k, tat, now);
        }
        self.forced_evictions.inc_by(n as u64);
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 60_000_000_000)
            && self
                .last_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                evicted = n,
                max_keys = self.shard_cap * SHARDS,
                "rate-limit state full of active tenants: evicted those closest to a full bucket \
                 (their debt is kept); raise limits.max_tenants"
            );
        }
    }
}

#[cfg(test)]
impl LocalStore {
    /// Whether `key` has state now.
    pub(crate) fn holds(&self, key: Key<'_>) -> bool {
        let h = self.hash(key);
        self.shard(h)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&h)
    }
}

/// A slot that equals a fresh one: bucket full, nothing in flight, nobody holding it.
fn idle(s: &Arc<Slot>, now: u64) -> bool {
    Arc::strong_count(s) == 1
        && s.in_flight.load(Ordering::Acquire) == 0
        && s.tat.load(Ordering::Relaxed) <= now
}

impl LimitStore for LocalStore {
    fn acquire(
        &self,
        key: Key<'_>,
        rate: Option<&Gcra>,
        max_in_flight: Option<u32>,
        now: u64,
    ) -> Result<Hold, StoreRefusal> {
        self.with_slot(key, now, |slot| {
            let hold = match max_in_flight {
                Some(max) => {
                    let prev = slot.in_flight.fetch_add(1, Ordering::AcqRel);
                    if prev >= max {
                        slot.in_flight.fetch_sub(1, Ordering::Release);
                        return Err(StoreRefusal::InFlight);
                    }
                    Hold::new(Arc::clone(slot) as Arc<dyn Release>)
                }
                None => Hold::default(),
            };
            if let Some(g) = rate {
                let fp = g.fingerprint();
                if slot.limits.load(Ordering::Relaxed) != fp
                    && slot.limits.swap(fp, Ordering::Relaxed) != fp
                {
                    g.adopt(&slot.tat, now);
                }
                if let Charge::Refused { wait } = g.charge(&slot.tat, now) {
                    drop(hold);
                    return Err(StoreRefusal::Rate { wait });
                }
            }
            Ok(hold)
        })
    }

    fn refund(&self, key: Key<'_>, rate: &Gcra, now: u64) {
        self.with_slot(key, now, |slot| rate.refund(&slot.tat, now));
    }

    fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    fn sweep(&self, now: u64) -> usize {
        let mut n = 0;
        for s in &*self.shards {
            let mut map = s.0.write().unwrap_or_else(PoisonError::into_inner);
            let before = map.len();
            map.retain(|_, s| !idle(s, now));
            n += before - map.len();
        }
        self.idle_evictions.inc_by(n as u64);
        n
    }
}
