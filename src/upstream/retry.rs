//! The per-cell retry budget: retries may add at most `budget_ratio` of a cell's requests
//! (plus `budget_min_per_second`), so retries cannot multiply the load of a failing cell.
//!
//! Requests and retries are counted in ten one-second buckets (a ring indexed by the second);
//! a retry is allowed while the retries of the last ten seconds stay under
//! `min_per_second * 10 + ratio * requests`. This is the Finagle/Linkerd budget without its
//! token bucket: counting is one relaxed `fetch_add` per request on the cell's own counter,
//! and the ten-bucket sum is only read when a retry is considered. Bucket roll-over races can
//! lose a count at a second's edge; the bound stays within a request or two of exact.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::config::RetryConfig;

const WINDOW: usize = 10;

#[derive(Debug, Default)]
struct Bucket {
    /// Second (since the process epoch) + 1 this bucket counts; 0: never used.
    second: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

/// One cell's budget (kept across registry generations, like its metrics).
#[derive(Debug, Default)]
pub struct RetryBudget {
    buckets: [Bucket; WINDOW],
}

fn second(at: Instant) -> u64 {
    super::since_epoch(at).as_secs() + 1
}

impl RetryBudget {
    fn bucket(&self, s: u64) -> &Bucket {
        #[allow(clippy::cast_possible_truncation)] // WINDOW is tiny
        let b = &self.buckets[(s % WINDOW as u64) as usize];
        let seen = b.second.load(Ordering::Acquire);
        if seen != s
            && b.second
                .compare_exchange(seen, s, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }

    /// Counts one request that arrived at `at`.
    pub fn deposit(&self, at: Instant) {
        self.bucket(second(at))
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget if there is room at `now`.
    pub fn withdraw(&self, cfg: &RetryConfig, now: Instant) -> bool {
        let s = second(now);
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.buckets {
            let bs = b.second.load(Ordering::Acquire);
            if bs + (WINDOW as u64) > s && bs <= s {
                requests += u64::from(b.requests.load(Ordering::Relaxed));
                retries += u64::from(b.retries.load(Ordering::Relaxed));
            }
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let allowed = u64::from(cfg.budget_min_per_second) * WINDOW as u64
            + (cfg.budget_ratio * requests as f64) as u64;
        if retries >= allowed {
            return false;
        }
        self.bucket(s).retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg(ratio: f64, min: u32) -> RetryConfig {
        RetryConfig {
            max_attempts: 3,
            idempotent: true,
            budget_ratio: ratio,
            budget_min_per_second: min,
        }
    }

    #[test]
    fn ratio_bounds_retries() {
        let b = RetryBudget::default();
        let now = Instant::now();
        for _ in 0..1000 {
            b.deposit(now);
        }
        let granted = (0..1000).filter(|_| b.withdraw(&cfg(0.2, 0), now)).count();
        assert_eq!(granted, 200);
    }

    #[test]
    fn minimum_allows_retries_without_traffic_and_window_expires() {
        let b = RetryBudget::default();
        let t0 = Instant::now();
        let c = cfg(0.2, 1);
        let granted = (0..100).filter(|_| b.withdraw(&c, t0)).count();
        assert_eq!(granted, 10, "1/s over a 10 s window");
        assert!(!b.withdraw(&c, t0 + Duration::from_secs(5)));
        // Ten seconds later the old retries no longer count.
        assert!(b.withdraw(&c, t0 + Duration::from_secs(11)));
    }

    #[test]
    fn old_requests_do_not_fund_retries() {
        let b = RetryBudget::default();
        let t0 = Instant::now();
        for _ in 0..1000 {
            b.deposit(t0);
        }
        let later = t0 + Duration::from_secs(30);
        assert!(!b.withdraw(&cfg(0.2, 0), later));
    }
}
