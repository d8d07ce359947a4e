//! GCRA (the generic cell rate algorithm): an exact token bucket kept in one `u64`.
//!
//! State is the *theoretical arrival time* (TAT): the instant at which the bucket would be full
//! again. A request at `now` is admitted when `max(TAT, now) + interval <= now + tolerance`
//! (`interval` = 1/rate, `tolerance` = burst × interval), and then TAT moves by one interval.
//! So a fresh tenant may send `burst` requests at once, then one per `interval`; a TAT at or
//! before `now` is a full bucket, identical to no state at all, which is what lets idle tenants
//! be forgotten without handing anyone a burst they did not earn. Updates are one
//! compare-and-swap: no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::rules::MIN_RATE;

const NANOS: f64 = 1_000_000_000.0;

/// One rate: `rate` requests per second, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds per request (1/rate).
    pub interval: u64,
    /// Nanoseconds of credit a full bucket holds (burst × interval).
    pub tolerance: u64,
}

/// What charging one request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Admitted; `remaining` more would be admitted right now.
    Admitted { remaining: u32 },
    /// Refused; the next request is admitted `wait` nanoseconds from now.
    Refused { wait: u64 },
}

impl Gcra {
    /// `rate` requests per second (finite, > 0) with a bucket of `burst` (>= 1).
    #[must_use]
    pub fn new(rate: f64, burst: u32) -> Self {
        // Config and records keep rates within MIN_RATE..=1e6; the clamp keeps any other
        // caller's rate from overflowing the arithmetic below into "unlimited".
        let rate = if rate.is_finite() {
            rate.clamp(MIN_RATE, 1e9)
        } else {
            MIN_RATE
        };
        // Whole nanoseconds: at 1M req/s that is exact; rounding errs towards admitting at
        // most one request more per second than asked for, at the very top of the range.
        let interval = (NANOS / rate).round().clamp(1.0, u64::MAX as f64) as u64;
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
        }
    }

    /// Requests per second, for headers.
    #[must_use]
    pub fn rate(&self) -> f64 {
        NANOS / self.interval as f64
    }

    /// The bucket size.
    #[must_use]
    pub fn burst(&self) -> u64 {
        self.tolerance / self.interval
    }

    /// One node's share of this rate across `nodes` nodes: 1/`nodes` of the rate and of the
    /// burst (at least one request), so the bucket refills in the same time as the whole.
    #[must_use]
    pub fn share(&self, nodes: u32) -> Self {
        if nodes <= 1 {
            return *self;
        }
        let n = u64::from(nodes);
        let interval = self.interval.saturating_mul(n);
        let burst = self.burst().div_ceil(n).max(1);
        Self {
            interval,
            tolerance: interval.saturating_mul(burst),
        }
    }

    /// A fingerprint of these limits (never 0), so state can tell when its limits changed.
    #[must_use]
    pub fn fingerprint(&self) -> u32 {
        let mixed =
            (self.interval ^ self.tolerance.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((mixed >> 32) as u32) | 1
    }

    /// Adopts state run up under other limits (the tenant's limits changed, or the state came
    /// from an evicted key): debt beyond this bucket's size is read as an empty bucket now, so
    /// raising a tenant's limits never makes it wait out debt run up at the old, slower rate.
    /// Call it only when the limits changed: under unchanged limits an admitted charge never
    /// leaves the TAT beyond `now + tolerance`, and lowering it for a request whose `now` was
    /// read a little late would hand out credit.
    pub fn adopt(&self, tat: &AtomicU64, now: u64) {
        let limit = now.saturating_add(self.tolerance);
        let _ = tat.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
            (cur > limit).then_some(limit)
        });
    }

    /// Charges one request against `tat` at `now`.
    pub fn charge(&self, tat: &AtomicU64, now: u64) -> Charge {
        let limit = now.saturating_add(self.tolerance);
        let mut cur = tat.load(Ordering::Relaxed);
        loop {
            let next = cur.max(now).saturating_add(self.interval);
            if next > limit {
                return Charge::Refused { wait: next - limit };
            }
            match tat.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    let remaining = (limit - next) / self.interval;
                    return Charge::Admitted {
                        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                    };
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back one request charged at `now` (a later stage refused it, so it never ran).
    pub fn refund(&self, tat: &AtomicU64, now: u64) {
        let mut cur = tat.load(Ordering::Relaxed);
        loop {
            if cur <= now {
                return; // already full
            }
            // Never below `now`: a refund restores credit, it does not create extra credit.
            let next = cur.saturating_sub(self.interval).max(now);
            match tat.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn admitted(c: Charge) -> bool {
        matches!(c, Charge::Admitted { .. })
    }

    #[test]
    fn burst_then_exact_refill() {
        let g = Gcra::new(50.0, 20);
        assert_eq!(g.interval, 20 * MS);
        let tat = AtomicU64::new(0);
        let t0 = 1_000 * MS;
        for i in 0..20 {
            assert_eq!(
                g.charge(&tat, t0),
                Charge::Admitted { remaining: 19 - i },
                "request {i} of the burst"
            );
        }
        assert_eq!(g.charge(&tat, t0), Charge::Refused { wait: 20 * MS });
        // One nanosecond short of one interval: still refused, and the wait says exactly how long.
        assert_eq!(
            g.charge(&tat, t0 + 20 * MS - 1),
            Charge::Refused { wait: 1 }
        );
        assert!(admitted(g.charge(&tat, t0 + 20 * MS)));
        assert!(!admitted(g.charge(&tat, t0 + 20 * MS)));
    }

    #[test]
    fn sustained_rate_is_exact_over_a_second() {
        let g = Gcra::new(50.0, 20);
        let tat = AtomicU64::new(0);
        let t0 = 5_000 * MS;
        // A client hammering every millisecond for 10 s gets the burst plus 50 per second.
        let mut n = 0;
        for ms in 0..10_000 {
            if admitted(g.charge(&tat, t0 + ms * MS)) {
                n += 1;
            }
        }
        assert_eq!(
            n,
            20 + 50 * 10 - 1,
            "burst + rate x time (the last interval is not over)"
        );
    }

    #[test]
    fn idle_bucket_refills_to_burst_and_no_further() {
        let g = Gcra::new(10.0, 5);
        let tat = AtomicU64::new(0);
        let t0 = 1_000 * MS;
        for _ in 0..5 {
            assert!(admitted(g.charge(&tat, t0)));
        }
        let later = t0 + 3_600_000 * MS;
        let mut n = 0;
        while admitted(g.charge(&tat, later)) {
            n += 1;
        }
        assert_eq!(n, 5, "an hour idle earns one full burst, not more");
    }

    #[test]
    fn refund_restores_exactly_one() {
        let g = Gcra::new(1.0, 2);
        let tat = AtomicU64::new(0);
        let t0 = 10_000 * MS;
        assert!(admitted(g.charge(&tat, t0)));
        assert!(admitted(g.charge(&tat, t0)));
        assert!(!admitted(g.charge(&tat, t0)));
        g.refund(&tat, t0);
        assert!(admitted(g.charge(&tat, t0)));
        assert!(!admitted(g.charge(&tat, t0)));
        // A refund on a full bucket does nothing.
        let fresh = AtomicU64::new(0);
        g.refund(&fresh, t0);
        assert_eq!(fresh.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn debt_from_older_slower_limits_is_capped_at_an_empty_bucket() {
        let slow = Gcra::new(0.1, 2);
        let tat = AtomicU64::new(0);
        let t0 = 1_000 * MS;
        assert!(admitted(slow.charge(&tat, t0)));
        assert!(admitted(slow.charge(&tat, t0)));
        assert_eq!(slow.charge(&tat, t0), Charge::Refused { wait: 10_000 * MS });
        // The limits are raised 100x: the wait is one new interval, not the old debt.
        let fast = Gcra::new(10.0, 20);
        assert_ne!(fast.fingerprint(), slow.fingerprint());
        assert_eq!(
            fast.charge(&tat, t0),
            Charge::Refused { wait: 18_100 * MS },
            "without adopting, the old debt would stand"
        );
        fast.adopt(&tat, t0);
        assert_eq!(fast.charge(&tat, t0), Charge::Refused { wait: 100 * MS });
        assert!(admitted(fast.charge(&tat, t0 + 100 * MS)));
        assert!(!admitted(fast.charge(&tat, t0 + 100 * MS)));
        let mut n = 0;
        while admitted(fast.charge(&tat, t0 + 2_100 * MS)) {
            n += 1;
        }
        assert_eq!(n, 20, "two seconds later: the new, full burst");
    }

    #[test]
    fn a_share_is_a_fraction_of_the_rate_and_burst_never_below_one() {
        let g = Gcra::new(300.0, 30);
        assert_eq!(g.share(1), g);
        let third = g.share(3);
        assert!((third.rate() - 100.0).abs() < 1e-3, "{}", third.rate());
        assert_eq!(third.burst(), 10);
        assert_eq!(Gcra::new(1.0, 1).share(4).burst(), 1);
        assert_eq!(Gcra::new(10.0, 10).share(4).burst(), 3, "rounded up");
        assert!((Gcra::new(1.0, 1).share(4).rate() - 0.25).abs() < 1e-9);
    }

    #[test]
    fn fractional_and_extreme_rates_do_not_overflow() {
        let slow = Gcra::new(0.01, 1_000_000);
        assert_eq!(slow.interval, 100_000 * MS);
        // Arithmetic saturates at the end of time instead of wrapping (or panicking in debug).
        let tat = AtomicU64::new(u64::MAX - 5);
        let _ = slow.charge(&tat, u64::MAX - 10);
        slow.refund(&tat, u64::MAX - 10);
        let fast = Gcra::new(1_000_000.0, 1);
        assert_eq!(fast.interval, 1_000);
        assert_eq!(fast.burst(), 1);
        assert!((fast.rate() - 1_000_000.0).abs() < 1e-6);
        // A rate too small to express is the slowest rate, never "unlimited".
        for tiny in [1e-12, 0.0, -1.0, f64::NAN] {
            let g = Gcra::new(tiny, 1_000_000);
            assert_eq!(g, Gcra::new(MIN_RATE, 1_000_000));
            let tat = AtomicU64::new(0);
            let t0 = 1_000 * MS;
            let mut n = 0;
            while admitted(g.charge(&tat, t0)) {
                n += 1;
            }
            assert_eq!(n, 1_000_000, "exactly the burst, rate {tiny}");
        }
    }
}
