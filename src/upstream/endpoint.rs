//! Endpoints: the addresses behind each target, with their health, kept across registry
//! generations.
//!
//! A registry generation names targets (`https://my-alb.elb.amazonaws.com`); what the request
//! path connects to is an [`Endpoint`], one address of one target. Endpoints outlive snapshots:
//! [`Upstreams`] keeps one [`TargetState`] per target URL, so health and ejections survive a
//! reload, and a target's address set can change (DNS) without a new generation. The control
//! side ([`super::discovery`]) keeps the table in step with the snapshot and with DNS; the
//! request path only reads it: [`select`] picks a usable endpoint of the tenant's arm with a
//! few atomic loads and one `Arc` clone.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use super::Target;
use super::health::Health;
use super::retry::RetryBudget;
use crate::config::OutlierConfig;
use crate::metrics::upstream::UpstreamMetrics;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One address of one target.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Unique for the life of the process: the key of pooled connections to this address.
    pub id: u64,
    pub health: Health,
    /// The address left its target's set: pooled connections to it are dropped, not reused.
    retired: AtomicBool,
}

impl Endpoint {
    #[must_use]
    pub fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            addr,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            health: Health::default(),
            retired: AtomicBool::new(false),
        })
    }

    #[must_use]
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    /// In rotation: not retired, not failing active checks, not ejected.
    #[must_use]
    pub fn usable(&self) -> bool {
        self.health.usable() && !self.retired()
    }
}

/// What the last resolution of a DNS-named target found, for `GET /admin/cells`.
#[derive(Debug, Clone, Default)]
pub struct DnsStatus {
    pub resolved_at: Option<SystemTime>,
    /// The TTL applied (the record's, clamped to `upstream.dns.min_ttl..=max_ttl`).
    pub ttl_secs: u64,
    pub last_error: Option<String>,
    pub failures: u64,
}

/// The runtime side of one target: its current addresses.
#[derive(Debug)]
pub struct TargetState {
    pub url: Arc<str>,
    /// Name to resolve; `None` for an IP literal, whose one endpoint never changes.
    pub host: Option<Arc<str>>,
    pub port: u16,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    next: AtomicUsize,
    /// `true` once a first resolution finished, either way (requests wait for it, bounded).
    resolved: tokio::sync::watch::Sender<bool>,
    pub dns: Mutex<DnsStatus>,
}

impl TargetState {
    fn new(t: &Target) -> Self {
        let (endpoints, host) = match t.ip {
            Some(ip) => (vec![Endpoint::new(SocketAddr::new(ip, t.port))], None),
            None => (Vec::new(), Some(Arc::clone(&t.host))),
        };
        Self {
            url: Arc::clone(&t.url),
            resolved: tokio::sync::watch::Sender::new(host.is_none()),
            host,
            port: t.port,
            endpoints: ArcSwap::from_pointee(endpoints),
            next: AtomicUsize::new(fastrand::usize(..)),
            dns: Mutex::new(DnsStatus::default()),
        }
    }

    /// The current addresses.
    #[must_use]
    pub fn endpoints(&self) -> arc_swap::Guard<Arc<Vec<Arc<Endpoint>>>> {
        self.endpoints.load()
    }

    /// Replaces the address set with `addrs`: known addresses keep their endpoint (health,
    /// pooled connections), new ones start healthy, vanished ones are retired. Returns the
    /// added and the retired endpoints.
    pub fn set_addresses(&self, addrs: &[SocketAddr]) -> (Vec<Arc<Endpoint>>, Vec<Arc<Endpoint>>) {
        let old = self.endpoints.load_full();
        let mut next = Vec::with_capacity(addrs.len());
        let mut added = Vec::new();
        for a in addrs {
            if next.iter().any(|e: &Arc<Endpoint>| e.addr == *a) {
                continue;
            }
            match old.iter().find(|e| e.addr == *a) {
                Some(e) => next.push(Arc::clone(e)),
                None => {
                    let e = Endpoint::new(*a);
                    added.push(Arc::clone(&e));
                    next.push(e);
                }
            }
        }
        let gone: Vec<_> = old
            .iter()
            .filter(|e| !next.iter().any(|n| n.id == e.id))
            .cloned()
            .collect();
        self.endpoints.store(Arc::new(next));
        for e in &gone {
            e.retire();
        }
        (added, gone)
    }

    /// Marks the first resolution done (whatever it found).
    pub fn mark_resolved(&self) {
        self.resolved
            .send_if_modified(|r| !std::mem::replace(r, true));
    }

    /// Waits until a first resolution finished.
    pub async fn wait_resolved(&self) {
        let mut rx = self.resolved.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    #[must_use]
    pub fn is_resolved(&self) -> bool {
        *self.resolved.borrow()
    }

    /// A usable endpoint, round robin, other than those in `tried`.
    fn pick(&self, tried: &Tried) -> Option<Arc<Endpoint>> {
        let eps = self.endpoints.load();
        match eps.len() {
            0 => None,
            1 => eps
                .first()
                .filter(|e| e.usable() && !tried.contains(e.id))
                .cloned(),
            n => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| &eps[(start + i) % n])
                    .find(|e| e.usable() && !tried.contains(e.id))
                    .cloned()
            }
        }
    }

    /// Retires every endpoint (the target left the registry).
    pub fn retire_all(&self) {
        for e in self.endpoints.load().iter() {
            e.retire();
        }
    }

    pub fn dns_status(&self) -> DnsStatus {
        self.dns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Endpoints already tried by one request (at most `upstream.retry.max_attempts`, <= 5).
#[derive(Debug, Default)]
pub struct Tried {
    ids: [u64; 5],
    len: usize,
}

impl Tried {
    #[must_use]
    pub fn contains(&self, id: u64) -> bool {
        self.ids[..self.len].contains(&id)
    }

    pub fn push(&mut self, id: u64) {
        if self.len < self.ids.len() {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }

    #[must_use]
    pub const fn len(&self) -> usize {
        self.len
    }

    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Every target's runtime state, by URL, plus what the request path needs to report failures.
#[derive(Debug)]
pub struct Upstreams {
    targets: RwLock<HashMap<Arc<str>, Arc<TargetState>>>,
    budgets: Mutex<HashMap<Arc<str>, Arc<RetryBudget>>>,
    /// Wakes the control task when the request path met a target it has not seen.
    pub(super) wake: tokio::sync::Notify,
    pub outlier: OutlierConfig,
    pub metrics: UpstreamMetrics,
}

impl Upstreams {
    #[must_use]
    pub fn new(outlier: OutlierConfig, metrics: UpstreamMetrics) -> Self {
        Self {
            targets: RwLock::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            outlier,
            metrics,
        }
    }

    /// The retry budget of cell `id` (created on first use, then shared).
    pub fn budget(&self, id: &Arc<str>) -> Arc<RetryBudget> {
        Arc::clone(
            self.budgets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(Arc::clone(id))
                .or_default(),
        )
    }

    /// The state of `t`, created (and announced to the control task) on first sight.
    pub(super) fn get_or_register(&self, t: &Target) -> Arc<TargetState> {
        if let Some(s) = self
            .targets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&t.url)
        {
            return Arc::clone(s);
        }
        let state = Arc::clone(
            self.targets
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(Arc::clone(&t.url))
                .or_insert_with(|| Arc::new(TargetState::new(t))),
        );
        self.wake.notify_one();
        state
    }

    /// Every known target.
    #[must_use]
    pub fn all(&self) -> Vec<Arc<TargetState>> {
        self.targets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Drops (and retires) every target not in the set `current` returns. `current` runs under
    /// the write lock, so a target registered meanwhile by a request of a newer generation
    /// cannot be dropped by a decision taken on an older one.
    pub fn retain(&self, current: impl FnOnce() -> HashSet<Arc<str>>) -> Vec<Arc<TargetState>> {
        let mut map = self.targets.write().unwrap_or_else(PoisonError::into_inner);
        let keep = current();
        let gone: Vec<_> = map
            .iter()
            .filter(|(url, _)| !keep.contains(*url))
            .map(|(_, s)| Arc::clone(s))
            .collect();
        for s in &gone {
            map.remove(&s.url);
            s.retire_all();
        }
        gone
    }

    /// The state of `url`, if known (admin).
    #[must_use]
    pub fn get(&self, url: &str) -> Option<Arc<TargetState>> {
        self.targets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(url)
            .cloned()
    }
}

/// Where a request of `group` goes next.
#[derive(Debug)]
pub enum Pick {
    /// A usable endpoint of target `.0` (an index into `cell.targets`).
    Endpoint(usize, Arc<Endpoint>),
    /// No usable endpoint, but target `.0` has not been resolved yet: wait for it, then pick again.
    Unresolved(usize),
    /// Every address of the group is out of rotation (or already tried).
    None,
}

/// The targets one request may go to: a cell's targets, and the run of them that the
/// request's arm (target group) holds. Indices are into `targets`, as the route decision
/// gives them.
#[derive(Debug, Clone, Copy)]
pub struct Arm<'a> {
    /// The cell's id, for logs.
    pub cell: &'a str,
    pub targets: &'a [Target],
    /// `targets[start..end]` are the arm's.
    pub start: usize,
    pub end: usize,
}

impl<'a> Arm<'a> {
    /// The arm's own targets.
    #[must_use]
    pub fn members(&self) -> &'a [Target] {
        &self.targets[self.start..self.end]
    }

    /// The target after `idx` within the arm (for failover), wrapping around.
    #[must_use]
    pub fn after(&self, idx: usize) -> usize {
        let n = (self.end - self.start).max(1);
        let offset = idx.saturating_sub(self.start);
        self.start + (offset + 1) % n
    }
}

/// Picks a usable endpoint of `arm`: round robin over its targets, starting at `first`,
/// then over each target's addresses, skipping `tried`.
pub fn select(arm: &Arm<'_>, first: usize, up: &Upstreams, tried: &Tried) -> Pick {
    let n = arm.end - arm.start;
    let mut unresolved = None;
    let mut idx = first;
    for _ in 0..n {
        let state = arm.targets[idx].state(up);
        if let Some(ep) = state.pick(tried) {
            return Pick::Endpoint(idx, ep);
        }
        if unresolved.is_none() && !state.is_resolved() {
            unresolved = Some(idx);
        }
        idx = arm.after(idx);
    }
    unresolved.map_or(Pick::None, Pick::Unresolved)
}

/// How many endpoints of these targets (an arm's) are in rotation (for the admin API).
#[must_use]
pub fn usable(targets: &[Target], up: &Upstreams) -> usize {
    targets
        .iter()
        .map(|t| {
            t.state(up)
                .endpoints()
                .iter()
                .filter(|e| e.usable())
                .count()
        })
        .sum()
}
