//! On-demand lookup of tenants and API keys missing from the snapshot, and forced re-reads
//! (invalidation).
//!
//! Called by the *place* stage when a tenant is not in the snapshot (a tenant created since the
//! last change was applied, or a snapshot gone stale while the registry was failing), by the
//! key check for a key id the snapshot lacks, and by `POST /admin/tenants/{id}/invalidate`.
//! Requests for the same record are coalesced: one registry read however many requests wait. A
//! record the registry does not know is cached negatively (bounded, short TTL), and misses of
//! both kinds share one token bucket, so an enumeration flood of random tenant names or key ids
//! costs the table at most `lookup_rate` reads per second per node; beyond it, and while the registry is failing, unknown tenants get a fast
//! 503, never a default cell. The read itself runs in the refresh service, which applies a
//! found record as a one-record delta: the snapshot keeps a single writer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::LookupSettings;
use crate::metrics::LookupMetrics;
use crate::tracecontext::children::{self, Child, Kind, REGISTRY_READ, Value};

/// How long a request waits for a lookup before answering 503.
const WAIT: Duration = Duration::from_secs(3);

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupOutcome {
    /// The record exists and is in the snapshot now.
    Found,
    /// The registry has no such tenant (cached negatively).
    Absent,
    /// The registry could not be asked (failing, timeout).
    Unavailable,
    /// Not asked: the miss rate cap is spent (an enumeration flood, most likely).
    Limited,
}

/// What a lookup reads: a tenant record or an API key record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupKind {
    Tenant,
    Key,
}

impl LookupOutcome {
    /// Its name in spans.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Found => "found",
            Self::Absent => "absent",
            Self::Unavailable => "unavailable",
            Self::Limited => "limited",
        }
    }
}

impl LookupKind {
    /// Its name in spans.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Key => "api_key",
        }
    }
}

/// A read the refresh service must make.
#[derive(Debug)]
pub struct LookupRequest {
    pub kind: LookupKind,
    /// The tenant id or key id.
    pub id: Box<str>,
    /// An invalidation: apply whatever the registry says, removal included.
    pub force: bool,
}

/// Requests waiting for one registry read.
type Waiters = Vec<oneshot::Sender<LookupOutcome>>;

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct Lookup {
    settings: LookupSettings,
    tx: mpsc::Sender<LookupRequest>,
    /// Tenants the registry does not know.
    negative: moka::sync::Cache<Box<str>, ()>,
    /// Key ids the registry does not know.
    negative_keys: moka::sync::Cache<Box<str>, ()>,
    inflight: Mutex<HashMap<(LookupKind, Box<str>), Waiters>>,
    bucket: Mutex<Bucket>,
    /// False while the refresh service's polls fail: lookups answer at once instead of
    /// queueing behind a registry that is not answering.
    registry_up: AtomicBool,
    metrics: LookupMetrics,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("tokens", &self.tokens)
            .finish()
    }
}

impl Lookup {
    /// The lookup service and the receiving end the refresh service serves.
    #[must_use]
    pub fn new(
        settings: LookupSettings,
        metrics: LookupMetrics,
    ) -> (Self, mpsc::Receiver<LookupRequest>) {
        let (tx, rx) = mpsc::channel(1024);
        let cache = || {
            moka::sync::Cache::builder()
                .max_capacity(settings.negative_capacity)
                .time_to_live(settings.negative_ttl)
                .build()
        };
        let lookup = Self {
            settings,
            tx,
            negative: cache(),
            negative_keys: cache(),
            inflight: Mutex::new(HashMap::new()),
            bucket: Mutex::new(Bucket {
                tokens: settings.burst,
                at: Instant::now(),
            }),
            registry_up: AtomicBool::new(true),
            metrics,
        };
        (lookup, rx)
    }

    fn take_token(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.settings.rate;
        b.tokens = (b.tokens + refill).min(self.settings.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Set by the refresh service after each poll.
    pub fn set_registry_up(&self, up: bool) {
        self.registry_up.store(up, Ordering::Relaxed);
    }

    const fn negative(&self, kind: LookupKind) -> &moka::sync::Cache<Box<str>, ()> {
        match kind {
            LookupKind::Tenant => &self.negative,
            LookupKind::Key => &self.negative_keys,
        }
    }

    /// Looks `tenant` up in the registry (coalesced, negatively cached, rate-capped).
    pub async fn resolve(&self, tenant: &str) -> LookupOutcome {
        self.resolve_kind(LookupKind::Tenant, tenant).await
    }

    /// Looks API key `id` up in the registry (coalesced, negatively cached, rate-capped with
    /// the tenant lookups).
    pub async fn resolve_key(&self, id: &str) -> LookupOutcome {
        self.resolve_kind(LookupKind::Key, id).await
    }

    async fn resolve_kind(&self, kind: LookupKind, id: &str) -> LookupOutcome {
        if self.negative(kind).contains_key(id) {
            self.metrics.negative_hits.inc();
            return LookupOutcome::Absent;
        }
        if !self.registry_up.load(Ordering::Relaxed) {
            self.metrics.registry_down.inc();
            return LookupOutcome::Unavailable;
        }
        self.ask(kind, id, false).await
    }

    /// Re-reads `tenant` now, whatever the caches say (`POST /admin/tenants/{id}/invalidate`).
    pub async fn invalidate(&self, tenant: &str) -> LookupOutcome {
        self.negative.invalidate(tenant);
        self.ask(LookupKind::Tenant, tenant, true).await
    }

    async fn ask(&self, kind: LookupKind, id: &str, force: bool) -> LookupOutcome {
        let (tx, rx) = oneshot::channel();
        let joined;
        {
            let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            match inflight.get_mut(&(kind, Box::from(id))) {
                // Someone already asked (a forced re-read joins too: the answer is as fresh).
                Some(waiters) => {
                    self.metrics.coalesced.inc();
                    waiters.push(tx);
                    joined = true;
                }
                None => {
                    if !force && !self.take_token() {
                        self.metrics.limited.inc();
                        return LookupOutcome::Limited;
                    }
                    let request = LookupRequest {
                        kind,
                        id: Box::from(id),
                        force,
                    };
                    if self.tx.try_send(request).is_err() {
                        self.metrics.limited.inc();
                        return LookupOutcome::Limited;
                    }
                    inflight.insert((kind, Box::from(id)), vec![tx]);
                    joined = false;
                }
            }
        }
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => LookupOutcome::Unavailable,
        };
        if children::recording().is_some() {
            let read = if joined { "coalesced" } else { "miss" };
            let mut child = Child::ended(REGISTRY_READ, Kind::Client, started)
                .with("cellgate.registry.read", Value::Static(read))
                .with("cellgate.registry.kind", Value::Static(kind.as_str()))
                .with("cellgate.registry.outcome", Value::Static(outcome.as_str()));
            child.error = matches!(outcome, LookupOutcome::Unavailable).then_some("unavailable");
            children::record(child);
        }
        outcome
    }

    /// Answers everyone waiting for `id` (called by the refresh service).
    pub fn complete(&self, kind: LookupKind, id: &str, outcome: LookupOutcome) {
        match outcome {
            LookupOutcome::Found => {
                self.metrics.found.inc();
            }
            LookupOutcome::Absent => {
                self.metrics.absent.inc();
                self.negative(kind).insert(Box::from(id), ());
            }
            LookupOutcome::Unavailable | LookupOutcome::Limited => {
                self.metrics.errors.inc();
            }
        }
        let waiters = self
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(kind, Box::from(id)))
            .unwrap_or_default();
        for w in waiters {
            let _ = w.send(outcome);
        }
    }
}
