//! The sync task: every `sync_interval`, one pipelined round trip to Redis that reports what
//! this node admitted for each active tenant and brings back each one's fleet credit, plus a
//! membership heartbeat every `heartbeat_interval`; behind a [`Breaker`], with a timeout.
//!
//! A failure never reaches the request path: fleet credit stops being current (so every tenant
//! is judged at this node's share), the unreported counts are kept for the next report, the
//! connection is dropped, and the breaker decides when to probe again. The first failure after
//! a success is logged as a warning and the recovery as info; failures in between are counted,
//! not logged, so an outage writes two lines per node, not fifty a second.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use super::Inner;
use super::breaker::{Breaker, State};
use super::remote::{self, Failure, Remote, Secret};
use super::slots::FleetSlot;
use crate::config::{FleetConfig, FleetMode};
use crate::metrics::{BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN, FleetMetrics};
use crate::ratelimit::Clock;
use crate::ratelimit::store::Key;
use crate::shutdown::{Stop, stopped};

/// One tenant in a flush: the slot and what was taken from it (restored if the flush fails).
struct Report {
    slot: Arc<FleetSlot>,
    admitted: u64,
    floor: u64,
}

/// The background half of the fleet store; [`FleetSync::run`] until stopped.
pub struct FleetSync {
    inner: Arc<Inner>,
    remote: Remote,
    clock: Arc<dyn Clock>,
    metrics: FleetMetrics,
    breaker: Breaker,
    node: String,
    tenant_prefix: String,
    members_key: String,
    heartbeat: Duration,
    max_keys: usize,
    /// How long after a successful flush its credit counts: three flushes and one timeout.
    fresh_for: u64,
    /// Shard the next flush starts at (rotated, so a capped flush starves nobody).
    rotation: usize,
}

impl std::fmt::Debug for FleetSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSync")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// This process's name in the membership set: host, pid and a random suffix (a restarted
/// process is a new member; the old one ages out).
fn node_id() -> String {
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

/// This node's part of `credit` fleet nanoseconds across `nodes` nodes: a whole share, and at
/// least one request whenever the fleet has one; below one request it is kept as it is (it
/// admits nothing and says how far the fleet is over).
pub(super) fn node_share(credit: i64, interval: u64, nodes: u32) -> i64 {
    let one = i64::try_from(interval).unwrap_or(i64::MAX);
    if credit < one {
        return credit;
    }
    (credit / i64::from(nodes.max(1))).max(one)
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
            node: node_id(),
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
        &self.node
    }

    /// Flushes every `sync_interval` until `stop`, then leaves the membership set.
    pub async fn run(mut self, mut stop: Stop) {
        let every = Duration::from_nanos(self.inner.sync_interval);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next_heartbeat = 0u64;
        let mut last = self.clock.now();
        let mut last_sweep = last;
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
            if now.saturating_sub(last_sweep) >= 10_000_000_000 {
                last_sweep = now;
                self.inner.slots.sweep(now, 60_000_000_000);
            }
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
                        tracing::info!(node = %self.node, nodes = self.inner.nodes(), "fleet limits: Redis answers again; fleet accounting resumed");
                    }
                }
                Err(f) => {
                    self.inner.fresh_until.store(0, Ordering::Release);
                    self.metrics.redis_error(f.kind);
                    self.remote.reset();
                    if self.breaker.failure(now) {
                        tracing::warn!(
                            node = %self.node,
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
        self.metrics.breaker_state.set(match self.breaker.state() {
            State::Closed => BREAKER_CLOSED,
            State::Open { .. } => BREAKER_OPEN,
            State::HalfOpen => BREAKER_HALF_OPEN,
        });
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
                    let key = Key {
                        tenant: &slot.tenant,
                        class: 0,
                        tier: 0,
                    };
                    self.inner.local.debt(key, now).max(1)
                } else {
                    0
                };
                Report {
                    slot,
                    admitted,
                    floor,
                }
            })
            .collect();
        if reports.is_empty() && !heartbeat {
            // Nothing to say: Redis was fine at the last exchange and the next heartbeat
            // checks it again within one heartbeat interval.
            if self.breaker.state() == State::Closed {
                self.mark_fresh(now);
                return Ok(());
            }
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
                .arg(&self.node)
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
                .arg(micros(r.floor));
        }
        self.remote.exchange(&pipe).await
    }

    /// Sets each reported tenant's credit and local debt, then the new epoch.
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
        let epoch = self.inner.epoch.load(Ordering::Acquire) + 1;
        for r in reports {
            let credit = remote::int(replies.next().unwrap_or(&redis::Value::Nil))?;
            let slot = &r.slot;
            let interval = slot.interval.load(Ordering::Relaxed);
            slot.credit
                .store(node_share(credit, interval, nodes), Ordering::Release);
            slot.synced.store(epoch, Ordering::Release);
            if self.inner.mode == FleetMode::Enforce {
                // The local bucket follows the fleet's, for a fallback to start from.
                let tolerance = slot.tolerance.load(Ordering::Relaxed);
                let debt = i64::try_from(tolerance)
                    .unwrap_or(i64::MAX)
                    .saturating_sub(credit)
                    .clamp(0, i64::try_from(tolerance).unwrap_or(i64::MAX));
                let key = Key {
                    tenant: &slot.tenant,
                    class: 0,
                    tier: 0,
                };
                self.inner
                    .local
                    .set_debt(key, u64::try_from(debt).unwrap_or(0), now);
            }
        }
        self.inner.epoch.store(epoch, Ordering::Release);
        self.mark_fresh(now);
        Ok(())
    }

    /// Fleet credit may be used for three more flushes and one timeout from `now`.
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
            .arg(&self.node)
            .arg(1000)
            .arg(1);
        if let Err(f) = self.remote.exchange(&pipe).await {
            tracing::debug!(error = %f, "fleet limits: could not leave the membership set; it ages out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::node_share;

    #[test]
    fn a_node_takes_its_share_and_at_least_one_request_when_the_fleet_has_one() {
        assert_eq!(node_share(900, 10, 3), 300);
        assert_eq!(
            node_share(25, 10, 3),
            10,
            "less than a share's request: one"
        );
        assert_eq!(
            node_share(9, 10, 3),
            9,
            "not one request in the fleet: nothing"
        );
        assert_eq!(node_share(-500, 10, 3), -500, "over: says by how much");
        assert_eq!(node_share(900, 10, 0), 900, "no count yet: one node");
    }
}
