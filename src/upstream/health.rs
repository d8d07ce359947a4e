//! Endpoint health: active HTTP checks and passive outlier ejection.
//!
//! An endpoint leaves rotation for either of two reasons, tracked as two bits so neither can
//! clear the other's verdict by accident:
//! - **active**: `upstream.health_check` probes each address every `interval`;
//!   `unhealthy_threshold` failures in a row take it out, `healthy_threshold` passes bring it
//!   back (and also end a passive ejection, as in Envoy);
//! - **passive**: `upstream.outlier.consecutive_failures` gateway failures in a row (connect
//!   failure, reset, 502/503/504 from the target) eject it for `base_ejection`, doubling with
//!   each repeat within `max_ejection`, up to `max_ejection`; at most `max_ejection_percent`
//!   of a group's addresses are ejected at once (one always may be).
//!
//! Only gateway failures count: an application's 500, a slow answer (response timeout) or a
//! client's broken upload can be caused by one tenant's requests, and a noisy tenant must not
//! be able to eject its neighbours' targets. A hung target is the active checks' job. This
//! module holds each endpoint's state; [`super::checks`] runs the probes and judges the gateway
//! failures. The request path reads it with one relaxed load per pick.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{HealthCheckConfig, OutlierConfig};

const ACTIVE_DOWN: u8 = 1;
const EJECTED: u8 = 2;

/// An endpoint's health, all atomics (read by every worker, written on transitions).
#[derive(Debug, Default)]
pub struct Health {
    flags: AtomicU8,
    /// Consecutive gateway failures seen by the request path.
    failures: AtomicU32,
    /// Ejections in the current streak (for the back-off).
    ejections: AtomicU32,
    /// When the last ejection started, in ms since the process epoch.
    last_ejected_ms: AtomicU64,
    /// Active-check streaks (written by the endpoint's one checker task).
    passes: AtomicU32,
    fails: AtomicU32,
}

/// Milliseconds since the process epoch, plus one (0 means "never").
fn now_ms() -> u64 {
    u64::try_from(super::since_epoch(Instant::now()).as_millis()).unwrap_or(u64::MAX - 1) + 1
}

impl Health {
    #[must_use]
    pub fn usable(&self) -> bool {
        self.flags.load(Ordering::Relaxed) == 0
    }

    #[must_use]
    pub fn ejected(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & EJECTED != 0
    }

    #[must_use]
    pub fn active_down(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & ACTIVE_DOWN != 0
    }

    /// A good exchange: the failure streak ends (written only when there was one).
    pub fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A gateway failure; returns how long to eject for when this one crossed the threshold
    /// and `room` (asked only then) allows another ejection.
    pub fn failure(&self, cfg: &OutlierConfig, room: impl FnOnce() -> bool) -> Option<Duration> {
        if cfg.consecutive_failures == 0 {
            return None;
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < cfg.consecutive_failures
            || self.ejected()
            || !room()
            || self.flags.fetch_or(EJECTED, Ordering::AcqRel) & EJECTED != 0
        {
            return None;
        }
        let now = now_ms();
        let last = self.last_ejected_ms.swap(now, Ordering::Relaxed);
        let max_ms = u64::try_from(cfg.max_ejection.as_millis()).unwrap_or(u64::MAX);
        // A quiet spell as long as the longest ejection forgives earlier ones.
        let streak = if last == 0 || now.saturating_sub(last) > max_ms.saturating_mul(2) {
            0
        } else {
            self.ejections.load(Ordering::Relaxed)
        };
        self.ejections.store(streak + 1, Ordering::Relaxed);
        // Active checks must pass `healthy_threshold` times anew to end the ejection early.
        self.passes.store(0, Ordering::Relaxed);
        let factor = 1u32 << streak.min(16);
        Some(
            cfg.base_ejection
                .saturating_mul(factor)
                .min(cfg.max_ejection),
        )
    }

    /// Ends a passive ejection.
    pub fn uneject(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.flags.fetch_and(!EJECTED, Ordering::AcqRel);
    }

    /// One active check's result; `Some(up)` when the endpoint changed state.
    pub fn checked(&self, pass: bool, cfg: &HealthCheckConfig) -> Option<bool> {
        if pass {
            self.fails.store(0, Ordering::Relaxed);
            let n = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
            let flags = self.flags.load(Ordering::Relaxed);
            if flags != 0 && n >= cfg.healthy_threshold {
                self.failures.store(0, Ordering::Relaxed);
                self.flags.store(0, Ordering::Release);
                return Some(true);
            }
        } else {
            self.passes.store(0, Ordering::Relaxed);
            let n = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= cfg.unhealthy_threshold
                && self.flags.fetch_or(ACTIVE_DOWN, Ordering::AcqRel) & ACTIVE_DOWN == 0
            {
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier(n: u32) -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: n,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(60),
            max_ejection_percent: 50,
        }
    }

    #[test]
    fn consecutive_failures_eject_once_and_back_off() {
        let h = Health::default();
        let cfg = outlier(3);
        assert_eq!(h.failure(&cfg, || true), None);
        h.success();
        assert_eq!(h.failure(&cfg, || true), None);
        assert_eq!(h.failure(&cfg, || true), None);
        assert_eq!(h.failure(&cfg, || true), Some(Duration::from_secs(10)));
        assert!(!h.usable() && h.ejected());
        // Already ejected: no second timer.
        assert_eq!(h.failure(&cfg, || true), None);
        h.uneject();
        assert!(h.usable());
        for _ in 0..2 {
            assert_eq!(h.failure(&cfg, || true), None);
        }
        assert_eq!(
            h.failure(&cfg, || true),
            Some(Duration::from_secs(20)),
            "doubles"
        );
        h.uneject();
        for _ in 0..2 {
            h.failure(&cfg, || true);
        }
        assert_eq!(h.failure(&cfg, || true), Some(Duration::from_secs(40)));
        h.uneject();
        for _ in 0..2 {
            h.failure(&cfg, || true);
        }
        assert_eq!(
            h.failure(&cfg, || true),
            Some(Duration::from_secs(60)),
            "capped"
        );
    }

    #[test]
    fn no_room_no_ejection() {
        let h = Health::default();
        let cfg = outlier(2);
        assert_eq!(h.failure(&cfg, || false), None);
        assert_eq!(h.failure(&cfg, || false), None);
        assert!(h.usable());
        assert_eq!(h.failure(&cfg, || true), Some(Duration::from_secs(10)));
    }

    #[test]
    fn zero_threshold_never_ejects() {
        let h = Health::default();
        for _ in 0..100 {
            assert_eq!(h.failure(&outlier(0), || true), None);
        }
        assert!(h.usable());
    }

    #[test]
    fn active_thresholds_and_active_pass_ends_ejection() {
        let cfg = HealthCheckConfig {
            path: http::uri::PathAndQuery::from_static("/"),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            statuses: vec![(200, 399)],
        };
        let h = Health::default();
        assert_eq!(h.checked(false, &cfg), None);
        assert_eq!(h.checked(false, &cfg), None);
        assert_eq!(h.checked(false, &cfg), Some(false));
        assert!(h.active_down() && !h.usable());
        assert_eq!(h.checked(false, &cfg), None, "one transition only");
        assert_eq!(h.checked(true, &cfg), None);
        assert_eq!(h.checked(true, &cfg), Some(true));
        assert!(h.usable());
        // An ejected endpoint that passes active checks comes back.
        assert!(h.failure(&outlier(1), || true).is_some());
        assert!(!h.usable());
        assert_eq!(
            h.checked(true, &cfg),
            None,
            "passes count anew after an ejection"
        );
        assert_eq!(h.checked(true, &cfg), Some(true));
        assert!(h.usable());
        assert!(cfg.passes(204) && !cfg.passes(500));
    }
}
