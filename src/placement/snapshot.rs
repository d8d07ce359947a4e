//! The immutable placement snapshot and the `ArcSwap` that publishes it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::time::Instant;

use super::{Cell, RegistryData, TenantStatus};

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
            HashMap::with_capacity(config_cells.len() + data.cells.len());
        for c in config_cells.iter().chain(&data.cells) {
            cells.insert(Box::from(&*c.id), Arc::new(c.clone()));
        }
        let mut tenants = HashMap::with_capacity(data.tenants.len());
        let mut dangling = Vec::new();
        let mut bound_issuers = HashSet::new();
        for t in &data.tenants {
            bound_issuers.extend(t.issuers.iter().map(|i| Box::from(i.as_str())));
            let cell = cells.get(t.cell.as_str()).cloned();
            if cell.is_none() {
                dangling.push((t.id.clone(), t.cell.clone()));
            }
            // Ids were validated by the source, so both are valid header values.
            let Ok(tenant_header) = HeaderValue::from_str(&t.id) else {
                continue;
            };
            tenants.insert(
                t.id.clone().into_boxed_str(),
                TenantPlacement {
                    cell_id: Arc::from(t.cell.as_str()),
                    cell,
                    status: t.status,
                    tier: Arc::from(t.tier.as_str()),
                    version: t.version,
                    tenant_header,
                    issuers: (!t.issuers.is_empty())
                        .then(|| t.issuers.iter().map(|i| Box::from(i.as_str())).collect()),
                },
            );
        }
        Self {
            generation,
            loaded_at: SystemTime::now(),
            tenants,
            cells,
            dangling,
            bound_issuers,
        }
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
    confirmed: std::sync::Mutex<Instant>,
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
            confirmed: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// The current snapshot (cheap; hold it for one request, not across long waits).
    #[must_use]
    pub fn load(&self) -> arc_swap::Guard<Arc<PlacementSnapshot>> {
        self.current.load()
    }

    /// Publishes a new generation.
    pub fn store(&self, snapshot: PlacementSnapshot) {
        self.current.store(Arc::new(snapshot));
        self.confirm();
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

    #[must_use]
    pub fn ready(&self) -> bool {
        self.current.load().generation > 0
    }
}
