//! The immutable placement snapshot: one registry generation, built in full or from the last
//! one plus a delta.
//!
//! A generation is a [`TenantMap`] and a [`KeyMap`] (persistent hash tries shared with the
//! generation before) and the [`Tables`] their slots point into. Applying a delta copies only what it touches: the
//! trie path of each changed tenant, and the tables whose counts or values change, so one
//! change costs microseconds at a million tenants, and a cell change costs O(cells). A
//! [`TenantPlacement`] is a borrowed view of one tenant in one generation.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderValue;

use super::intern::{TablesFull, count, intern, intern_key, record_of, status_of};
use super::keys::{KeyRecord, KeySlot, KeyView};
use super::tables::Tables;
use super::tenants::{Slot, TenantMap};
use super::trie::{Found, Map};
use super::{Cell, Delta, RegistryData, TenantRecord, TenantStatus};
use crate::ratelimit::TenantLimits;

/// The API keys of a generation.
pub type KeyMap = Map<KeySlot>;

/// One tenant as a generation places it (borrowed from the snapshot).
#[derive(Debug, Clone, Copy)]
pub struct TenantPlacement<'a> {
    tables: &'a Tables,
    found: Found<'a, Slot>,
}

impl<'a> TenantPlacement<'a> {
    /// The cell id the record names.
    #[must_use]
    pub fn cell_id(&self) -> &'a Arc<str> {
        &self.tables.cells.entry(self.found.value.cell).id
    }

    /// The cell, resolved in the same generation (`None`: no source defines it; 503).
    #[must_use]
    pub fn cell(&self) -> Option<&'a Arc<Cell>> {
        self.tables.cells.entry(self.found.value.cell).cell.as_ref()
    }

    #[must_use]
    pub fn status(&self) -> TenantStatus {
        status_of(self.found.value.status)
    }

    #[must_use]
    pub fn tier(&self) -> &'a Arc<str> {
        self.tables.tiers.get(u32::from(self.found.value.tier))
    }

    #[must_use]
    pub const fn version(&self) -> u64 {
        self.found.value.version()
    }

    /// The trusted `x-tenant-id` value: the stored id, shared (a reference count, no copy).
    #[must_use]
    pub fn tenant_header(&self) -> HeaderValue {
        // Stored ids are validated tenant ids (`[a-z0-9_-]`), always a valid header value.
        HeaderValue::from_maybe_shared(self.found.id_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Issuers bound to the tenant (`None`: any issuer no other tenant claims as its own).
    #[must_use]
    pub fn issuers(&self) -> Option<&'a [Box<str>]> {
        self.tables
            .issuers
            .lists
            .get(self.found.value.issuers)
            .as_deref()
    }

    /// Rate-limit overrides from the record (each set field wins over the tier).
    #[must_use]
    pub fn limits(&self) -> TenantLimits {
        *self.tables.limits.get(self.found.value.limits)
    }

    /// The entitlements the record names (`None`: none).
    #[must_use]
    pub fn entitlements(&self) -> Option<&'a Arc<[Box<str>]>> {
        self.tables
            .names
            .get(self.found.value.entitlements)
            .as_ref()
    }

    /// Whether the tenant holds entitlement `name`.
    #[must_use]
    pub fn entitled(&self, name: &str) -> bool {
        self.entitlements()
            .is_some_and(|l| l.iter().any(|e| &**e == name))
    }

    /// The target group the tenant is pinned to, if any.
    #[must_use]
    pub fn arm(&self) -> Option<&'a str> {
        self.tables
            .arms
            .get(u32::from(self.found.value.arm))
            .as_deref()
    }

    /// The record as a source would hand it over.
    #[must_use]
    pub fn record(&self, id: &str) -> TenantRecord {
        record_of(self.tables, id, &self.found.value)
    }
}

/// What applying a delta did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub applied: usize,
    /// Records older than the one held, ignored (versions never go backwards in a node).
    pub regressions: usize,
    /// API key records applied (also counted in `applied`).
    pub keys: usize,
    /// Records that could not be held (a table full), skipped.
    pub skipped: usize,
}

/// One registry generation, never mutated after it is built.
#[derive(Debug)]
pub struct PlacementSnapshot {
    /// Increments on every swap in this process; 0 means nothing was loaded yet.
    pub generation: u64,
    pub loaded_at: SystemTime,
    tenants: TenantMap,
    keys: KeyMap,
    tables: Tables,
}

impl PlacementSnapshot {
    /// The empty generation-0 snapshot used before the first load (not ready).
    #[must_use]
    pub fn empty() -> Self {
        Self {
            generation: 0,
            loaded_at: SystemTime::UNIX_EPOCH,
            tenants: TenantMap::new(),
            keys: KeyMap::new(),
            tables: Tables::default(),
        }
    }

    /// Builds a snapshot from a full load; cells from `data` win over `config_cells` with the
    /// same id. The tenants were placed as the source read them: this only freezes them.
    #[must_use]
    pub fn build(data: RegistryData, config_cells: &[Cell], generation: u64) -> Self {
        let (map, keys, mut tables, cells) = data.into_parts();
        let table = Arc::make_mut(&mut tables.cells);
        for c in config_cells.iter().chain(&cells) {
            table.define(&c.id, Some(Arc::new(c.clone())));
        }
        Self {
            generation,
            loaded_at: SystemTime::now(),
            tenants: map.freeze(),
            keys: keys.freeze(),
            tables,
        }
    }

    /// The next generation: this one with `delta` applied. A tenant record older than the one
    /// held (a late read) never replaces it; a deleted registry cell falls back to the config
    /// cell with the same id, if any. Costs what the delta touches, not the tenant count.
    #[must_use]
    pub fn apply(
        &self,
        delta: &Delta,
        config_cells: &[Cell],
        generation: u64,
    ) -> (Self, ApplyStats) {
        let mut stats = ApplyStats::default();
        let mut tables = self.tables.clone();
        let mut tenants = self.tenants.clone();
        let mut keys = self.keys.clone();
        for (id, cell) in &delta.cells {
            let def = match cell {
                Some(c) => Some(Arc::new(c.clone())),
                None => config_cells
                    .iter()
                    .find(|c| &*c.id == id.as_str())
                    .map(|c| Arc::new(c.clone())),
            };
            Arc::make_mut(&mut tables.cells).define(id, def);
        }
        for (id, record) in &delta.tenants {
            let held = tenants.get(id).map(|f| f.value);
            let slot = match record {
                Some(t) if held.is_some_and(|h| h.version() > t.version) => {
                    stats.regressions += 1;
                    continue;
                }
                Some(t) => match intern(&mut tables, t) {
                    Ok(s) => Some(s),
                    Err(TablesFull) => {
                        stats.skipped += 1;
                        continue;
                    }
                },
                None => None,
            };
            if let Some(h) = &held {
                count(&mut tables, h, false);
            }
            if let Some(s) = &slot {
                count(&mut tables, s, true);
            }
            tenants.set(id, slot.map(|s| (s, &[][..])));
            stats.applied += 1;
        }
        for (id, record) in &delta.keys {
            let held = keys.get(id).map(|f| f.value);
            match record {
                Some(k) if held.is_some_and(|h| h.version() > k.version) => {
                    stats.regressions += 1;
                    continue;
                }
                Some(k) => match intern_key(&mut tables, k) {
                    Ok(s) => {
                        keys.set(id, Some((s, k.tenant.as_bytes())));
                    }
                    Err(TablesFull) => {
                        stats.skipped += 1;
                        continue;
                    }
                },
                None => {
                    keys.set(id, None);
                }
            }
            stats.applied += 1;
            stats.keys += 1;
        }
        let next = Self {
            generation,
            loaded_at: SystemTime::now(),
            tenants,
            keys,
            tables,
        };
        (next, stats)
    }

    /// Whether a token from issuer `iss` may speak for the tenant placed at `p`: a tenant that
    /// names its issuers takes only those, and an issuer some tenant names as its own speaks
    /// for no tenant that does not name it (so one tenant's IdP cannot mint for another).
    #[must_use]
    pub fn issuer_allowed(&self, p: &TenantPlacement<'_>, iss: &str) -> bool {
        match p.issuers() {
            Some(list) => list.iter().any(|i| &**i == iss),
            None => !self.tables.issuers.is_bound(iss),
        }
    }

    #[must_use]
    pub fn tenant(&self, id: &str) -> Option<TenantPlacement<'_>> {
        self.tenants.get(id).map(|found| TenantPlacement {
            tables: &self.tables,
            found,
        })
    }

    /// The API key with public id `id`.
    #[must_use]
    pub fn api_key(&self, id: &str) -> Option<KeyView<'_>> {
        self.keys.get(id).map(|found| KeyView {
            tables: &self.tables,
            found,
        })
    }

    #[must_use]
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Every API key record (the order is the map's), for exports and checks.
    pub fn key_records(&self) -> impl Iterator<Item = KeyRecord> + '_ {
        self.keys
            .iter()
            .map(|(id, s, tail)| super::keys::record_of(&self.tables, id, &s, tail))
    }

    #[must_use]
    pub fn cell(&self, id: &str) -> Option<&Arc<Cell>> {
        self.tables.cells.get(id).and_then(|e| e.cell.as_ref())
    }

    #[must_use]
    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    #[must_use]
    pub fn cell_count(&self) -> usize {
        self.tables
            .cells
            .entries()
            .filter(|e| e.cell.is_some())
            .count()
    }

    /// Cells, sorted by id.
    #[must_use]
    pub fn cells(&self) -> Vec<&Arc<Cell>> {
        let mut v: Vec<_> = self
            .tables
            .cells
            .entries()
            .filter_map(|e| e.cell.as_ref())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Tenants per cell id, for every cell a tenant names or a source defines, sorted by id.
    #[must_use]
    pub fn cell_tenants(&self) -> Vec<(&Arc<str>, u32, bool)> {
        let mut v: Vec<_> = self
            .tables
            .cells
            .entries()
            .filter(|e| e.cell.is_some() || e.tenants > 0)
            .map(|e| (&e.id, e.tenants, e.cell.is_some()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Cell ids that tenant records name but no source defines, with how many tenants name
    /// each, sorted by id.
    #[must_use]
    pub fn dangling(&self) -> Vec<(&Arc<str>, u32)> {
        self.cell_tenants()
            .into_iter()
            .filter(|(_, n, defined)| !defined && *n > 0)
            .map(|(id, n, _)| (id, n))
            .collect()
    }

    /// Tenant records whose cell no source defines.
    #[must_use]
    pub fn dangling_tenants(&self) -> u64 {
        self.dangling().iter().map(|(_, n)| u64::from(*n)).sum()
    }

    /// Every tenant record (the order is the map's), for exports and checks.
    pub fn records(&self) -> impl Iterator<Item = TenantRecord> + '_ {
        self.tenants
            .iter()
            .map(|(id, s, _)| record_of(&self.tables, id, &s))
    }

    /// Bytes the tenant map holds (nodes, slots, ids), for the memory benchmark.
    #[must_use]
    pub fn tenant_map_bytes(&self) -> usize {
        self.tenants.heap_bytes()
    }

    /// Bytes the key map holds (nodes, slots, ids, tenant ids), for the memory benchmark.
    #[must_use]
    pub fn key_map_bytes(&self) -> usize {
        self.keys.heap_bytes()
    }
}
