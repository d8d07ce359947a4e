//! The immutable placement snapshot and the `ArcSwap` that publishes it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::time::Instant;

use super::{Cell, Delta, RegistryData, TenantRecord, TenantStatus};

/// Where a tenant is placed, resolved against the cells of the same generation.
#[derive(Debug, Clone)]
pub struct TenantPlacement {
    pub cell_id: Arc<str>,
    /// `None` when no source defines the cell the record names (requests get 503).
    pub cell: Option<Arc<Cell>>,
    pub status: TenantStatus,
    pub tier: Arc<str>,
    pub version: u64,
    /// The trusted `x-tenant-id` value, built once.
    pub tenant_header: HeaderValue,
    /// Issuers bound to the tenant (`None`: any issuer no other tenant claims as its own).
    pub issuers: Option<Arc<[Box<str>]>>,
    /// Rate-limit overrides from the record (each set field wins over the tier).
    pub limits: crate::ratelimit::TenantLimits,
    /// The target group the tenant is pinned to, if any.
    pub arm: Option<Arc<str>>,
}

/// What applying a delta did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub applied: usize,
    /// Records older than the one held, ignored (versions never go backwards in a node).
    pub regressions: usize,
}

/// A tenant's placement resolved against `cells` (`None` for an id that is not a header value,
/// which sources never hand over).
fn placement(t: &TenantRecord, cells: &HashMap<Box<str>, Arc<Cell>>) -> Option<TenantPlacement> {
    let tenant_header = HeaderValue::from_str(&t.id).ok()?;
    Some(TenantPlacement {
        cell_id: Arc::from(t.cell.as_str()),
        cell: cells.get(t.cell.as_str()).cloned(),
        status: t.status,
        tier: Arc::from(t.tier.as_str()),
        version: t.version,
        tenant_header,
        issuers: (!t.issuers.is_empty())
            .then(|| t.issuers.iter().map(|i| Box::from(i.as_str())).collect()),
        limits: t.limits,
        arm: t.arm.as_deref().map(Arc::from),
    })
}

/// One registry generation, never mutated after it is built.
#[derive(Debug)]
pub struct PlacementSnapshot {
    /// Increments on every swap in this process; 0 means nothing was loaded yet.
    pub generation: u64,
    pub loaded_at: SystemTime,
    tenants: HashMap<Box<str>, TenantPlacement>,
    cells: HashMap<Box<str>, Arc<Cell>>,
    /// Tenant records whose cell no source defines.
    pub dangling: Vec<(String, String)>,
    /// Issuers some tenant record names as its own: each may speak only for the tenants that
    /// name it.
    bound_issuers: HashSet<Box<str>>,
}

impl PlacementSnapshot {
    /// The empty generation-0 snapshot used before the first load (not ready).
    #[must_use]
    pub fn empty() -> Self {
        Self {
            generation: 0,
            loaded_at: SystemTime::UNIX_EPOCH,
            tenants: HashMap::new(),
            cells: HashMap::new(),
            dangling: Vec::new(),
            bound_issuers: HashSet::new(),
        }
    }

    /// Builds a snapshot; cells from `data` win over `config_cells` with the same id.
    #[must_use]
    pub fn build(data: &RegistryData, config_cells: &[Cell], generation: u64) -> Self {
        let mut cells: HashMap<Box<str>, Arc<Cell>> =
            HashMap::with_capacity(config_cells.len() + data.cells().len());
        for c in config_cells.iter().chain(data.cells()) {
            cells.insert(Box::from(&*c.id), Arc::new(c.clone()));
        }
        let mut tenants = HashMap::with_capacity(data.tenant_count());
        for t in data.tenants() {
            if let Some(p) = placement(t, &cells) {
                tenants.insert(t.id.clone().into_boxed_str(), p);
            }
        }
        Self::finish(tenants, cells, generation)
    }

    /// Computes the derived parts (dangling records, bound issuers) and stamps the generation.
    fn finish(
        tenants: HashMap<Box<str>, TenantPlacement>,
        cells: HashMap<Box<str>, Arc<Cell>>,
        generation: u64,
    ) -> Self {
        let mut dangling = Vec::new();
        let mut bound_issuers = HashSet::new();
        for (id, p) in &tenants {
            if p.cell.is_none() {
                dangling.push((id.to_string(), p.cell_id.to_string()));
            }
            if let Some(list) = &p.issuers {
                bound_issuers.extend(list.iter().cloned());
            }
        }
        dangling.sort();
        Self {
            generation,
            loaded_at: SystemTime::now(),
            tenants,
            cells,
            dangling,
            bound_issuers,
        }
    }

    /// The next generation: this one with `delta` applied. A tenant record older than the one
    /// held (a late read) never replaces it; a deleted registry cell falls back to the config
    /// cell with the same id, if any. Costs a copy of the maps (memory and CPU, not registry
    /// reads).
    #[must_use]
    pub fn apply(
        &self,
        delta: &Delta,
        config_cells: &[Cell],
        generation: u64,
    ) -> (Self, ApplyStats) {
        let mut stats = ApplyStats::default();
        let mut cells = self.cells.clone();
        for (id, cell) in &delta.cells {
            match cell {
                Some(c) => cells.insert(Box::from(id.as_str()), Arc::new(c.clone())),
                None => match config_cells.iter().find(|c| &*c.id == id.as_str()) {
                    Some(c) => cells.insert(Box::from(id.as_str()), Arc::new(c.clone())),
                    None => cells.remove(id.as_str()),
                },
            };
        }
        let mut tenants = self.tenants.clone();
        if !delta.cells.is_empty() {
            // Tenants hold their cell by pointer: re-resolve those whose cell changed.
            for p in tenants.values_mut() {
                if delta.cells.iter().any(|(id, _)| id.as_str() == &*p.cell_id) {
                    p.cell = cells.get(&*p.cell_id).cloned();
                }
            }
        }
        for (id, record) in &delta.tenants {
            let held = tenants.get(id.as_str()).map(|p| p.version);
            match record {
                Some(t) if held.is_some_and(|v| v > t.version) => stats.regressions += 1,
                Some(t) => {
                    if let Some(p) = placement(t, &cells) {
                        tenants.insert(Box::from(id.as_str()), p);
                        stats.applied += 1;
                    }
                }
                None => {
                    tenants.remove(id.as_str());
                    stats.applied += 1;
                }
            }
        }
        (Self::finish(tenants, cells, generation), stats)
    }

    /// Whether a token from issuer `iss` may speak for the tenant placed at `p`: a tenant that
    /// names its issuers takes only those, and an issuer some tenant names as its own speaks
    /// for no tenant that does not name it (so one tenant's IdP cannot mint for another).
    #[must_use]
    pub fn issuer_allowed(&self, p: &TenantPlacement, iss: &str) -> bool {
        match &p.issuers {
            Some(list) => list.iter().any(|i| &**i == iss),
            None => self.bound_issuers.is_empty() || !self.bound_issuers.contains(iss),
        }
    }

    #[must_use]
    pub fn tenant(&self, id: &str) -> Option<&TenantPlacement> {
        self.tenants.get(id)
    }

    #[must_use]
    pub fn cell(&self, id: &str) -> Option<&Arc<Cell>> {
        self.cells.get(id)
    }

    #[must_use]
    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    #[must_use]
    pub fn cell_count(&self) -> usize {
        self.cells.len()
    }

    /// Cells, sorted by id.
    #[must_use]
    pub fn cells(&self) -> Vec<&Arc<Cell>> {
        let mut v: Vec<_> = self.cells.values().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

/// The one published snapshot, plus when the source last confirmed it.
#[derive(Debug)]
pub struct SnapshotHandle {
    current: ArcSwap<PlacementSnapshot>,
    /// The generation last published, for tasks that follow changes (target discovery,
    /// long-lived connections of moved tenants).
    published: tokio::sync::watch::Sender<u64>,
    confirmed: std::sync::Mutex<Instant>,
    status: std::sync::Mutex<RefreshStatus>,
}

/// What the refresh service last did, for `GET /admin/registry`.
#[derive(Debug, Clone, Default)]
pub struct RefreshStatus {
    /// The source's description (`file:...`, `dynamodb:...`).
    pub source: String,
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    pub failures: u64,
}

impl Default for SnapshotHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotHandle {
    #[must_use]
    pub fn new() -> Self {
        Self {
            current: ArcSwap::from_pointee(PlacementSnapshot::empty()),
            published: tokio::sync::watch::Sender::new(0),
            confirmed: std::sync::Mutex::new(Instant::now()),
            status: std::sync::Mutex::new(RefreshStatus::default()),
        }
    }

    /// The current snapshot (cheap; hold it for one request, not across long waits).
    #[must_use]
    pub fn load(&self) -> arc_swap::Guard<Arc<PlacementSnapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc` (for building the next generation from it).
    #[must_use]
    pub fn load_full(&self) -> Arc<PlacementSnapshot> {
        self.current.load_full()
    }

    /// Publishes a new generation.
    pub fn store(&self, snapshot: PlacementSnapshot) {
        drop(self.replace(snapshot));
    }

    /// Publishes a new generation and hands back the one it replaced (whoever drops the last
    /// reference frees every tenant entry of it).
    pub fn replace(&self, snapshot: PlacementSnapshot) -> Arc<PlacementSnapshot> {
        let generation = snapshot.generation;
        let old = self.current.swap(Arc::new(snapshot));
        self.confirm();
        self.published.send_replace(generation);
        old
    }

    /// Follows published generations (the receiver sees the latest one, never a backlog).
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Records that the source was checked and the snapshot is still current.
    pub fn confirm(&self) {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// Time since the source last confirmed the snapshot (what "stale" means).
    #[must_use]
    pub fn age(&self) -> std::time::Duration {
        self.confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// Records the source's name (once, at start) and each failure.
    pub fn set_source(&self, source: &str) {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .source = source.to_owned();
    }

    pub fn record_failure(&self, error: &str) {
        let mut st = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.last_error = Some(error.to_owned());
        st.last_error_at = Some(SystemTime::now());
        st.failures += 1;
    }

    #[must_use]
    pub fn status(&self) -> RefreshStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    #[must_use]
    pub fn ready(&self) -> bool {
        self.current.load().generation > 0
    }
}

/// Discovery follows the targets of the current generation's cells.
impl crate::upstream::discovery::Watched for SnapshotHandle {
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.subscribe()
    }

    fn each_target(&self, f: &mut dyn FnMut(&crate::upstream::Target)) {
        let snap = self.load_full();
        for cell in snap.cells() {
            cell.targets.iter().for_each(&mut *f);
        }
    }
}
