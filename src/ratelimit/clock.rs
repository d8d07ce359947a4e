//! The limiter's clock: nanoseconds on a monotonic line, injectable so tests can drive time.
//!
//! The request path reads [`MonotonicClock`] (one `Instant::now()`); unit tests use
//! [`ManualClock`] and move it by exact amounts, so "refill after 20 ms" is asserted exactly
//! rather than slept for.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic time source in nanoseconds since an arbitrary origin (never goes backwards).
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> u64;
}

/// Real time: nanoseconds since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    #[must_use]
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> u64 {
        // u64 nanoseconds cover 584 years of uptime.
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to (tests, benches, simulations).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start` nanoseconds.
    #[must_use]
    pub fn at(start: u64) -> Self {
        Self {
            now: AtomicU64::new(start),
        }
    }

    pub fn advance(&self, by: Duration) {
        let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.now.fetch_add(ns, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }
}

/// Whole seconds, rounded up, for `Retry-After` and the `t` parameter (at least 1 when any
/// wait is left, since a client told `0` retries at once).
#[must_use]
pub const fn ceil_secs(ns: u64) -> u64 {
    if ns == 0 {
        0
    } else {
        ns.div_ceil(1_000_000_000)
    }
}
