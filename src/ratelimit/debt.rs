//! The debt of keys evicted from a full store, so they cannot come back with a fresh burst.
//!
//! When more keys are active than the store may hold, it evicts some that still owe (their
//! bucket is not full again). Each evicted key's arrival time goes here, in a small 4-way
//! set-associative table keyed by the key's hash; a key created later starts from the debt
//! recorded under its own hash. When a bucket has no free or expired way left, the smallest
//! debt in it becomes *shared*, max-merged with the new one: every key of that bucket inherits
//! it until it expires. So a collision can cost an innocent key part of its burst for at most
//! the evicted key's refill time, and never hands anyone a burst it did not earn. Reads are
//! lock-free (a new key's first request); writes, which only forced evictions make, take a
//! mutex.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

const WAYS: usize = 4;
/// The key of a way whose debt every key of its bucket inherits.
const SHARED: u64 = u64::MAX;
/// The key of a way never written.
const EMPTY: u64 = 0;

#[derive(Debug)]
pub struct DebtTable {
    keys: Box<[AtomicU64]>,
    tats: Box<[AtomicU64]>,
    buckets_mask: usize,
    write: Mutex<()>,
}

impl DebtTable {
    /// A table with about one way per 16 keys the store may hold (at least 1024 ways).
    #[must_use]
    pub fn new(max_keys: usize) -> Self {
        let buckets = (max_keys / 16 / WAYS).next_power_of_two().max(1024 / WAYS);
        let ways = buckets * WAYS;
        Self {
            keys: (0..ways).map(|_| AtomicU64::new(EMPTY)).collect(),
            tats: (0..ways).map(|_| AtomicU64::new(0)).collect(),
            buckets_mask: buckets - 1,
            write: Mutex::new(()),
        }
    }

    fn bucket(&self, key: u64) -> std::ops::Range<usize> {
        // High bits: the store's shards use the middle ones and hashbrown the low ones.
        let b = ((key >> 40) as usize) & self.buckets_mask;
        b * WAYS..(b + 1) * WAYS
    }

    /// Where a new `key` starts: the largest debt recorded for it or shared in its bucket
    /// (0 when none: a full bucket).
    #[must_use]
    pub fn start(&self, key: u64) -> u64 {
        self.bucket(key)
            .filter(|&i| {
                let k = self.keys[i].load(Ordering::Acquire);
                k == key || k == SHARED
            })
            .map(|i| self.tats[i].load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// Records that `key` was evicted owing until `tat`.
    pub fn record(&self, key: u64, tat: u64, now: u64) {
        if tat <= now {
            return; // owes nothing
        }
        let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let ways = self.bucket(key);
        let way = |i: usize| {
            (
                self.keys[i].load(Ordering::Relaxed),
                self.tats[i].load(Ordering::Relaxed),
            )
        };
        if let Some(i) = ways.clone().find(|&i| way(i).0 == key) {
            self.tats[i].fetch_max(tat, Ordering::Relaxed);
            return;
        }
        if let Some(i) = ways.clone().find(|&i| {
            let (k, t) = way(i);
            k == EMPTY || (k != SHARED && t <= now)
        }) {
            // The debt first, then the key, so a reader never sees this key with an old debt.
            self.tats[i].store(tat, Ordering::Relaxed);
            self.keys[i].store(key, Ordering::Release);
            return;
        }
        // Full: merge into the smallest debt and share it with the whole bucket.
        let i = ways.min_by_key(|&i| way(i).1).unwrap_or(0);
        self.tats[i].fetch_max(tat, Ordering::Relaxed);
        self.keys[i].store(SHARED, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys in one bucket: same high bits, different low bits.
    fn key(n: u64) -> u64 {
        (7 << 40) | (n + 1)
    }

    #[test]
    fn a_key_finds_its_own_debt_and_others_do_not() {
        let d = DebtTable::new(1 << 16);
        d.record(key(1), 5_000, 1_000);
        assert_eq!(d.start(key(1)), 5_000);
        assert_eq!(
            d.start(key(2)),
            0,
            "same bucket, other key: nothing inherited"
        );
        d.record(key(1), 4_000, 1_000);
        assert_eq!(d.start(key(1)), 5_000, "max-merged");
        d.record(key(3), 900, 1_000);
        assert_eq!(d.start(key(3)), 0, "no debt, nothing recorded");
    }

    #[test]
    fn a_full_bucket_shares_rather_than_forgets() {
        let d = DebtTable::new(1 << 16);
        for n in 0..WAYS as u64 {
            d.record(key(n), 10_000 + n, 1_000);
        }
        d.record(key(99), 20_000, 1_000);
        for n in 1..WAYS as u64 {
            assert_eq!(
                d.start(key(n)),
                20_000,
                "shared with the bucket: stricter, never freer"
            );
        }
        assert_eq!(d.start(key(99)), 20_000, "the newest debt is never lost");
        assert_eq!(d.start(key(0)), 20_000, "nor the one it was merged with");
        // An expired way is reused for a new key without sharing.
        let e = DebtTable::new(1 << 16);
        for n in 0..WAYS as u64 {
            e.record(key(n), 2_000, 1_000);
        }
        e.record(key(50), 9_000, 3_000);
        assert_eq!(e.start(key(50)), 9_000);
        assert!(
            e.start(key(51)) <= 3_000,
            "nothing live leaks to a bystander"
        );
    }
}
