//! The circuit breaker in front of Redis: closed while exchanges succeed, open for a cooldown
//! after one fails, then half-open for a single probe whose outcome closes or reopens it.
//!
//! One failure opens it: the request path never waits on Redis, so what a failure costs is
//! fleet accounting's freshness, and the fallback (each node on its share, limit ÷ nodes) is
//! always safe to take.
//! A second consecutive failure doubles the cooldown, and it grows no further: a long outage
//! costs Redis one probe per node every two cooldowns (one a second by default) rather than
//! fifty, and a recovery is noticed within that.

use std::time::Duration;

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Closed,
    /// Open until the instant (ns on the limiter's clock) a probe may go.
    Open {
        until: u64,
    },
    /// A probe may go now; its outcome decides.
    HalfOpen,
}

#[derive(Debug)]
pub(super) struct Breaker {
    state: State,
    cooldown: u64,
    failures: u32,
}

impl Breaker {
    pub(super) fn new(cooldown: Duration) -> Self {
        Self {
            state: State::Closed,
            cooldown: u64::try_from(cooldown.as_nanos()).unwrap_or(u64::MAX),
            failures: 0,
        }
    }

    pub(super) const fn state(&self) -> State {
        self.state
    }

    /// Whether an exchange may go at `now` (moving an expired open breaker to half-open).
    pub(super) fn allow(&mut self, now: u64) -> bool {
        match self.state {
            State::Closed | State::HalfOpen => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                true
            }
            State::Open { .. } => false,
        }
    }

    pub(super) fn success(&mut self) {
        self.state = State::Closed;
        self.failures = 0;
    }

    /// Opens (or reopens) the breaker; returns whether it was closed before (to log once).
    pub(super) fn failure(&mut self, now: u64) -> bool {
        let was_closed = self.state == State::Closed;
        self.failures = self.failures.saturating_add(1);
        let factor = if self.failures > 1 { 2 } else { 1 };
        self.state = State::Open {
            until: now.saturating_add(self.cooldown.saturating_mul(factor)),
        };
        was_closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn one_failure_opens_a_probe_after_the_cooldown_decides() {
        let mut b = Breaker::new(Duration::from_millis(500));
        assert!(b.allow(0));
        assert!(b.failure(10 * MS), "was closed");
        assert!(!b.allow(100 * MS));
        assert!(!b.allow(509 * MS));
        assert!(b.allow(510 * MS));
        assert_eq!(b.state(), State::HalfOpen);
        // The probe fails: open again, twice as long, and not "newly opened".
        assert!(!b.failure(520 * MS));
        assert!(!b.allow(1_519 * MS));
        assert!(b.allow(1_520 * MS));
        b.success();
        assert_eq!(b.state(), State::Closed);
        // Closed again: the next failure starts from one cooldown.
        b.failure(2_000 * MS);
        assert!(b.allow(2_500 * MS));
    }

    #[test]
    fn the_cooldown_stops_growing_at_twice() {
        let mut b = Breaker::new(Duration::from_millis(100));
        let mut now = 0;
        for _ in 0..10 {
            b.failure(now);
            assert!(!b.allow(now + 100 * MS - 1));
            now += 200 * MS;
            assert!(b.allow(now), "at most 2 x 100 ms between probes");
        }
    }
}
