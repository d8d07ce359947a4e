//! Placement: which tenant lives in which cell, in what state.
//!
//! A [`PlacementSource`] (the file source now; DynamoDB behind the same trait later) yields
//! [`RegistryData`]; [`PlacementSnapshot::build`] turns it into one immutable snapshot per
//! registry generation, and [`SnapshotHandle`] holds the current one behind a single `ArcSwap`.
//! The *place* stage loads the snapshot once per request, so every later stage sees one
//! generation; the refresh service ([`refresh`]) swaps in the next one atomically.

pub mod capacity;
mod cell;
pub mod dynamo;
pub mod file;
pub mod group;
mod handle;
mod intern;
pub mod keys;
pub mod lookup;
pub mod record;
pub mod refresh;
mod snapshot;
mod tables;
mod tenants;
mod trie;

use std::future::Future;

pub use cell::{Cell, CellState};
pub use handle::{RefreshStatus, SnapshotHandle};
pub use keys::{KeyRecord, KeyStatus, KeyView};
pub use snapshot::{ApplyStats, PlacementSnapshot, TenantPlacement};

/// A tenant's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    Active,
    /// 403 for every request.
    Suspended,
    /// Being moved between cells: reads pass, writes get 503 with `Retry-After`.
    Migrating,
    /// 404, exactly like an unknown tenant.
    Offboarded,
}

impl TenantStatus {
    /// Every status, in the order error messages list them.
    pub const ALL: [Self; 4] = [
        Self::Active,
        Self::Suspended,
        Self::Migrating,
        Self::Offboarded,
    ];
    /// The accepted names, for error messages.
    pub const EXPECTED: &'static str = "ACTIVE, SUSPENDED, MIGRATING or OFFBOARDED";

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Migrating => "MIGRATING",
            Self::Offboarded => "OFFBOARDED",
        }
    }
}

impl std::str::FromStr for TenantStatus {
    type Err = UnknownName;

    /// The registry's spelling only (`SUSPENDED`, not `suspended`).
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Self::parse(s).ok_or_else(|| UnknownName::new("tenant status", s, Self::EXPECTED))
    }
}

impl std::fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name outside a closed set (a cell state, a tenant status), with the names accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {what}: expected {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl UnknownName {
    #[must_use]
    pub fn new(what: &'static str, value: &str, expected: &'static str) -> Self {
        Self {
            what,
            value: value.to_owned(),
            expected,
        }
    }
}

/// One tenant record as a source returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRecord {
    pub id: String,
    pub cell: String,
    pub status: TenantStatus,
    pub tier: String,
    /// Monotonic record version (optimistic concurrency in the registry).
    pub version: u64,
    /// Token issuers (`iss` values) bound to this tenant; when not empty, a token from any
    /// other issuer is refused for it (403), e.g. an enterprise tenant with its own IdP.
    pub issuers: Vec<String>,
    /// Per-tenant rate-limit overrides; each set field wins over the tenant's tier.
    pub limits: crate::ratelimit::TenantLimits,
    /// Pins the tenant to this target group of its cell (a canary arm, for testing), whatever
    /// the weights; a cell without such a group serves it by weight as usual.
    pub arm: Option<String>,
    /// What the tenant may use: routes under `[[entitlements.routes]]` that require a name
    /// not listed here are refused (403 `not_entitled`).
    pub entitlements: Vec<String>,
}

/// Everything a source knows, at one point in time, filled record by record as the source
/// reads them (a file line by line, a table page by page): each tenant is placed in the
/// snapshot's own compact form as it arrives, so a load never holds the registry twice.
#[derive(Debug, Default)]
pub struct RegistryData {
    filling: intern::Filling,
    /// Cells defined by the source; they win over config cells with the same id.
    cells: Vec<Cell>,
}

impl RegistryData {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Data holding `tenants` and `cells` (a later tenant record with an id already held is
    /// dropped, as [`Self::push_tenant`] does).
    #[must_use]
    pub fn from_records(tenants: impl IntoIterator<Item = TenantRecord>, cells: Vec<Cell>) -> Self {
        let mut data = Self::new();
        for t in tenants {
            data.push_tenant(t);
        }
        for c in cells {
            data.push_cell(c);
        }
        data
    }

    /// Adds a tenant record; `false` (and the record is dropped) when one with the same id is
    /// already held, or when it names a 65,536th distinct tier or arm (counted in
    /// [`Self::skipped`]).
    pub fn push_tenant(&mut self, t: TenantRecord) -> bool {
        self.filling.push(&t)
    }

    /// Adds an API key record; `false` (and the record is dropped) when one with the same id
    /// is already held.
    pub fn push_key(&mut self, k: KeyRecord) -> bool {
        self.filling.push_key(&k)
    }

    #[must_use]
    pub fn key_count(&self) -> usize {
        self.filling.keys.len()
    }

    /// The key held for `id`, as a record.
    #[must_use]
    pub fn key(&self, id: &str) -> Option<KeyRecord> {
        let (slot, tail) = self.filling.keys.get(id)?;
        Some(keys::record_of(&self.filling.tables, id, &slot, tail))
    }

    /// The key records, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = KeyRecord> + '_ {
        self.filling
            .keys
            .iter()
            .map(|(id, s, tail)| keys::record_of(&self.filling.tables, id, &s, tail))
    }

    /// Adds a cell the source defines (a later one with the same id wins).
    pub fn push_cell(&mut self, c: Cell) {
        self.cells.retain(|held| held.id != c.id);
        self.cells.push(c);
    }

    #[must_use]
    pub fn tenant_count(&self) -> usize {
        self.filling.map.len()
    }

    /// Records the source could not use (invalid; each logged with its key by the source).
    pub const fn count_skipped(&mut self, n: usize) {
        self.filling.skipped += n;
    }

    /// Records left out: invalid ones the source counted, and those beyond a full table.
    #[must_use]
    pub const fn skipped(&self) -> usize {
        self.filling.skipped
    }

    /// The cells the source defines, in the order read.
    #[must_use]
    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    /// The tenant held for `id`, as a record.
    #[must_use]
    pub fn tenant(&self, id: &str) -> Option<TenantRecord> {
        let (slot, _) = self.filling.map.get(id)?;
        Some(intern::record_of(&self.filling.tables, id, &slot))
    }

    /// The tenant records, in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = TenantRecord> + '_ {
        self.filling
            .map
            .iter()
            .map(|(id, s, _)| intern::record_of(&self.filling.tables, id, &s))
    }

    fn into_parts(
        self,
    ) -> (
        tenants::TenantMapBuilder,
        trie::MapBuilder<keys::KeySlot>,
        tables::Tables,
        Vec<Cell>,
    ) {
        (
            self.filling.map,
            self.filling.keys,
            self.filling.tables,
            self.cells,
        )
    }
}

/// What changed since the source's last load or delta: each entry is the record as it is now,
/// or `None` when it was deleted.
#[derive(Debug, Default)]
pub struct Delta {
    pub tenants: Vec<(String, Option<TenantRecord>)>,
    /// API keys by public id.
    pub keys: Vec<(String, Option<KeyRecord>)>,
    pub cells: Vec<(String, Option<Cell>)>,
    /// Records the source read but could not use (invalid; each logged with its key).
    pub skipped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{source_name}: {message}")]
    Remote {
        source_name: String,
        message: String,
    },
    #[error("{file}: {key} = {value:?}: {reason}")]
    Invalid {
        file: String,
        key: String,
        value: String,
        reason: String,
    },
}

/// Where placements come from.
///
/// `changed` must be cheap (a file's metadata, a single epoch item): it is polled often, so that
/// a flip reaches every node quickly without re-reading everything. `load` reads everything.
pub trait PlacementSource: Send + Sync + 'static {
    /// Human-readable origin, for logs and the admin API.
    fn describe(&self) -> String;
    /// Reads the full registry.
    fn load(&self) -> impl Future<Output = Result<RegistryData, RegistryError>> + Send;
    /// Whether anything may have changed since the last `load` attempt (a failed attempt is
    /// remembered too, so a broken source is reported once per change, not on every poll).
    fn changed(&self) -> impl Future<Output = Result<bool, RegistryError>> + Send;
    /// After `changed` said yes: only what changed, when the source can tell (a change log), at
    /// a cost that does not grow with the number of tenants. `None` asks for a full `load`.
    fn delta(&self) -> impl Future<Output = Result<Option<Delta>, RegistryError>> + Send {
        std::future::ready(Ok(None))
    }
    /// One tenant's record as the source holds it now (`None`: no such tenant).
    fn fetch_tenant(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<TenantRecord>, RegistryError>> + Send;
    /// One API key's record as the source holds it now (`None`: no such key).
    fn fetch_key(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<KeyRecord>, RegistryError>> + Send;
}

#[cfg(test)]
mod tests;
