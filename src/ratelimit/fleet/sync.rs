//! The sync task: every `sync_interval`, one pipelined round trip to Redis that reports what
//! this node admitted for each active tenant and brings back each one's fleet credit, plus a
//! membership heartbeat every `heartbeat_interval`; behind a [`Breaker`], with a timeout.
//!
//! A failure never reaches the request path: the shares stop being re-seeded (every tenant goes
//! on at this node's share as it stood), the unreported counts are kept for the next report, the
//! connection is dropped, and the breaker decides when to probe again. The first failure after a
//! success is logged as a warning and the recovery as info; failures in between are counted, not
//! logged, so an outage writes two lines per node, not fifty a second.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use super::Inner;
use super::breaker::{Breaker, State};
use super::remote::{self, Failure, Remote, Secret};
use super::slots::FleetSlot;
use crate::config::FleetConfig;
use crate::metrics::{BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN, FleetMetrics};
use crate::ratelimit::Clock;
use crate::ratelimit::gcra::Gcra;
use crate::shutdown::{Stop, stopped};

/// One tenant in a flush: the slot and what was taken from it (restored if the flush fails).
struct Report {
    slot: Arc<FleetSlot>,
    admitted: u64,
    floor: u64,
    /// How long before now the reported requests were admitted, at most.
    window: u64,
}

/// The background half of the fleet store; [`FleetSync::run`] until stopped.
pub struct FleetSync {
    inner: Arc<Inner>,
    remote: Remote,
    clock: Arc<dyn Clock>,
    metrics: FleetMetrics,
    breaker: Breaker,
    tenant_prefix: String,
    members_key: String,
    heartbeat: Duration,
    max_keys: usize,
    /// How long after a successful flush fleet accounting counts as current: three flushes
    /// and one timeout.
    fresh_for: u64,
    /// Shard the next flush starts at (rotated, so a capped flush starves nobody).
    rotation: usize,
}

impl std::fmt::Debug for FleetSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSync")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

/// This process's name in the membership set: host, pid and a random suffix (a restarted
/// process is a new member; the old one ages out).
pub(super) fn node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Microseconds as the script reads them (fractions kept: 1M req/s is 1 µs per request).
fn micros(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1000.0)
}

/// The bucket this node holds a tenant to: its share of the fleet rate ([`Gcra::share`]), with
/// room for two more flushes' refill. A flush sets the bucket to this node's part of the fleet's
/// credit whatever its size, so the room only lets the share refill between flushes that come
/// late (a busy runtime, a slow round trip) instead of capping it at the share's burst; an
/// unseeded bucket (a fallback, a tenant's first requests) holds that much more, a fleet-wide
/// 2 × rate × sync_interval at most.
pub(super) fn seeded_share(fleet: &Gcra, nodes: u32, sync_interval: u64) -> Gcra {
    let share = fleet.share(nodes);
    Gcra {
        interval: share.interval,
        tolerance: share
            .tolerance
            .saturating_add(sync_interval.saturating_mul(2)),
    }
}

/// The TAT of `share` (this node's bucket, [`seeded_share`]) holding this node's part of
/// `credit`, the fleet's credit in nanoseconds of `fleet`. A bucket's credit is a time (how long
/// it has refilled beyond its debt), and a share refills in the same time as the whole, so this
/// node's part of the fleet's credit is the same time in the share: credit ÷ nodes in requests.
/// At least one request whenever the fleet has one, and as far behind as the fleet is over.
pub(super) fn seeded_tat(fleet: &Gcra, share: &Gcra, credit: i64, now: u64) -> u64 {
    let one = i128::from(share.interval);
    let credit = i128::from(credit);
    let credit = if credit >= i128::from(fleet.interval) {
        credit.max(one)
    } else {
        credit
    };
    let tat = i128::from(now) + i128::from(share.tolerance) - credit;
    u64::try_from(tat.clamp(i128::from(now), i128::from(u64::MAX))).unwrap_or(u64::MAX)
}

impl FleetSync {
    pub(super) fn new(
        config: &FleetConfig,
        password: Option<&Secret>,
        inner: Arc<Inner>,
        clock: Arc<dyn Clock>,
        metrics: FleetMetrics,
    ) -> Result<Self, Failure> {
        Ok(Self {
            remote: Remote::new(&config.redis, password, config.timeout)?,
            inner,
            clock,
            metrics,
            breaker: Breaker::new(config.breaker_cooldown),
            tenant_prefix: format!("{}t:", config.key_prefix),
            members_key: format!("{}nodes", config.key_prefix),
            heartbeat: config.heartbeat_interval,
            max_keys: config.max_flush_keys,
            fresh_for: nanos(config.sync_interval * 3 + config.timeout),
            rotation: 0,
        })
    }

    /// This node's id in the membership set.
    #[must_use]
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Flushes every `sync_interval` until `stop`, then leaves the membership set.
    pub async fn run(mut self, mut stop: Stop) {
        let every = Duration::from_nanos(self.inner.sync_interval);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next_heartbeat = 0u64;
        let mut last = self.clock.now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stopped(&mut stop) => break,
            }
            let now = self.clock.now();
            if !self.inner.fresh(now) {
                self.metrics
                    .fallback_seconds
                    .inc_by(now.saturating_sub(last) as f64 / 1e9);
            }
            last = now;
            if !self.breaker.allow(now) {
                self.show_breaker();
                continue;
            }
            let heartbeat = now >= next_heartbeat;
            let was = self.breaker.state();
            match self.flush(now, heartbeat).await {
                Ok(()) => {
                    self.breaker.success();
                    if heartbeat {
                        next_heartbeat = now.saturating_add(nanos(self.heartbeat));
                    }
                    if was != State::Closed {
                        tracing::info!(node = %self.inner.node, nodes = self.inner.nodes(), "fleet limits: Redis answers again; fleet accounting resumed");
                    }
                }
                Err(f) => {
                    self.inner.fresh_until.store(0, Ordering::Release);
                    self.metrics.redis_error(f.kind);
                    self.remote.reset();
                    if self.breaker.failure(now) {
                        tracing::warn!(
                            node = %self.inner.node,
                            kind = f.kind.as_str(),
                            error = %f,
                            nodes = self.inner.nodes(),
                            "fleet limits: Redis failed; each tenant limited to its share here (rate / nodes) until it answers"
                        );
                    }
                }
            }
            self.show_breaker();
        }
        self.leave().await;
    }

    fn show_breaker(&self) {
        let state = match self.breaker.state() {
            State::Closed => BREAKER_CLOSED,
            State::Open { .. } => BREAKER_OPEN,
            State::HalfOpen => BREAKER_HALF_OPEN,
        };
        self.metrics.breaker_state.set(state);
        self.inner.breaker.store(state, Ordering::Relaxed);
    }

    /// One flush: report and learn every active tenant, heartbeat if due.
    async fn flush(&mut self, now: u64, heartbeat: bool) -> Result<(), Failure> {
        let slots = self.inner.slots.take_active(self.max_keys, self.rotation);
        self.rotation = self.rotation.wrapping_add(1);
        let reports: Vec<Report> = slots
            .into_iter()
            .map(|slot| {
                let admitted = slot.admitted.swap(0, Ordering::AcqRel);
                let floor = if slot.fell_back.swap(false, Ordering::AcqRel) {
                    // How far the share's bucket ran ahead: a time, the same at any share.
                    slot.tat.load(Ordering::Relaxed).saturating_sub(now).max(1)
                } else {
                    0
                };
                // Since the last report, at most two flushes (a longer gap was idle).
                let sync = self.inner.sync_interval;
                let window = match slot.reported.load(Ordering::Relaxed) {
                    0 => sync,
                    at => now.saturating_sub(at).min(sync.saturating_mul(2)),
                };
                Report {
                    slot,
                    admitted,
                    floor,
                    window,
                }
            })
            .collect();
        if reports.is_empty() && !heartbeat && self.breaker.state() == State::Closed {
            // Nothing to say: Redis was fine at the last exchange and the next heartbeat
            // checks it again within one heartbeat interval.
            self.mark_fresh(now);
            return Ok(());
        }
        let started = Instant::now();
        match self.exchange(&reports, heartbeat).await {
            Ok(replies) => {
                self.metrics.sync_seconds.observe(started.elapsed());
                self.metrics.flush_keys.observe(reports.len() as f64);
                self.apply(&reports, &replies, heartbeat, now)
            }
            Err(f) => {
                for r in &reports {
                    r.slot.admitted.fetch_add(r.admitted, Ordering::AcqRel);
                    if r.floor > 0 {
                        r.slot.fell_back.store(true, Ordering::Release);
                    }
                }
                Err(f)
            }
        }
    }

    async fn exchange(
        &mut self,
        reports: &[Report],
        heartbeat: bool,
    ) -> Result<Vec<redis::Value>, Failure> {
        self.remote.ready().await?;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if heartbeat {
            let ttl_ms = self.heartbeat.as_millis().saturating_mul(3).max(1);
            pipe.cmd("EVALSHA")
                .arg(self.remote.members_sha())
                .arg(1)
                .arg(&self.members_key)
                .arg(&self.inner.node)
                .arg(u64::try_from(ttl_ms).unwrap_or(u64::MAX))
                .arg(0);
        }
        for r in reports {
            let mut key = String::with_capacity(self.tenant_prefix.len() + r.slot.tenant.len());
            key.push_str(&self.tenant_prefix);
            key.push_str(&r.slot.tenant);
            pipe.cmd("EVALSHA")
                .arg(self.remote.flush_sha())
                .arg(1)
                .arg(key)
                .arg(r.admitted)
                .arg(micros(r.slot.interval.load(Ordering::Relaxed)))
                .arg(micros(r.slot.tolerance.load(Ordering::Relaxed)))
                .arg(micros(r.floor))
                .arg(micros(r.window));
        }
        self.remote.exchange(&pipe).await
    }

    /// Seeds each reported tenant's share bucket with this node's part of the fleet's credit.
    fn apply(
        &self,
        reports: &[Report],
        replies: &[redis::Value],
        heartbeat: bool,
        now: u64,
    ) -> Result<(), Failure> {
        let mut replies = replies.iter();
        if heartbeat {
            let n = remote::int(replies.next().unwrap_or(&redis::Value::Nil))?;
            let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
            self.inner.nodes.store(n, Ordering::Relaxed);
            self.metrics.nodes.set(i64::from(n));
        }
        let nodes = self.inner.nodes();
        for r in reports {
            let credit = remote::int(replies.next().unwrap_or(&redis::Value::Nil))?;
            let slot = &r.slot;
            let fleet = Gcra {
                interval: slot.interval.load(Ordering::Relaxed),
                tolerance: slot.tolerance.load(Ordering::Relaxed),
            };
            let share = seeded_share(&fleet, nodes, self.inner.sync_interval);
            slot.tat
                .store(seeded_tat(&fleet, &share, credit, now), Ordering::Release);
            slot.reported.store(now.max(1), Ordering::Relaxed);
        }
        self.mark_fresh(now);
        Ok(())
    }

    /// Fleet accounting is current for three more flushes and one timeout from `now`.
    fn mark_fresh(&self, now: u64) {
        let until = now.saturating_add(self.fresh_for);
        self.inner.fresh_until.store(until, Ordering::Release);
    }

    /// Leaves the membership set, so the others count one node fewer at once.
    async fn leave(&mut self) {
        if self.breaker.state() != State::Closed || self.remote.ready().await.is_err() {
            return;
        }
        let mut pipe = redis::pipe();
        pipe.cmd("EVALSHA")
            .arg(self.remote.members_sha())
            .arg(1)
            .arg(&self.members_key)
            .arg(&self.inner.node)
            .arg(1000)
            .arg(1);
        if let Err(f) = self.remote.exchange(&pipe).await {
            tracing::debug!(error = %f, "fleet limits: could not leave the membership set; it ages out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{seeded_share, seeded_tat};
    use crate::ratelimit::gcra::{Charge, Gcra};

    #[test]
    fn a_seeded_share_admits_this_nodes_part_of_the_fleet_credit_then_refills_at_its_rate() {
        let fleet = Gcra::new(100.0, 30); // 10 ms a request, 30 at once
        let now = 1_000_000_000;
        let share = fleet.share(3); // no room: the plain share's burst caps a full bucket
        let seeded = |credit| seeded_tat(&fleet, &share, credit, now);
        let count = |tat: u64, at: u64| {
            let t = std::sync::atomic::AtomicU64::new(tat);
            (0..100)
                .take_while(|_| matches!(share.charge(&t, at), Charge::Admitted { .. }))
                .count()
        };
        // 12 fleet requests of credit over 3 nodes: 4 here.
        assert_eq!(count(seeded(12 * 10_000_000), now), 4);
        // A full fleet bucket: the share's own burst (10), no more.
        assert_eq!(count(seeded(300_000_000), now), 10);
        // The fleet 5 requests over: nothing now; the share's first request 50 + 30 ms later.
        let over = seeded(-50_000_000);
        assert_eq!(count(over, now), 0);
        assert_eq!(count(over, now + 80_000_000 - 1), 0);
        assert_eq!(count(over, now + 80_000_000), 1);
        // One fleet request left: any node may take it.
        assert_eq!(count(seeded(10_000_000), now), 1);
        // The seeded share's room: the same credit, but 40 ms more refill before it is full.
        let roomy = seeded_share(&fleet, 3, 20_000_000);
        assert_eq!(roomy.tolerance, share.tolerance + 40_000_000);
        let t = std::sync::atomic::AtomicU64::new(seeded_tat(&fleet, &roomy, 12 * 10_000_000, now));
        let n = (0..100)
            .take_while(|_| matches!(roomy.charge(&t, now), Charge::Admitted { .. }))
            .count();
        assert_eq!(n, 4, "a seeded bucket holds the credit, not the room");
    }
}
