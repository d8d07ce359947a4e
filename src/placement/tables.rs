//! What tenants and keys name, held once per snapshot lineage: cells, tiers, arms, issuer lists,
//! limit overrides and entitlement or scope lists, each behind a small handle that a tenant's slot stores.
//!
//! A tenant names its cell by handle, so a cell record that changes (a canary weight, a drain)
//! replaces one entry here and every tenant of the cell sees it in the same generation: a cell
//! change costs O(cells), not O(tenants). The derived sets are kept as counts updated with
//! each tenant change: tenants per cell (a cell no source defines with tenants > 0 is
//! dangling), and tenants per bound issuer (an issuer some tenant names as its own).
//!
//! Values are appended, never removed, for the life of a lineage (a full reload starts a fresh
//! one): a handle a slot holds stays valid in every later generation. Each table sits behind
//! its own `Arc` and is copied only when a change touches it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use super::Cell;
use crate::ratelimit::TenantLimits;

/// One cell id a tenant or a source named.
#[derive(Debug, Clone)]
pub struct CellEntry {
    pub id: Arc<str>,
    /// `None`: no source defines it (its tenants get 503 and are counted as dangling).
    pub cell: Option<Arc<Cell>>,
    /// Tenants whose record names it.
    pub tenants: u32,
}

/// Cells by handle, and handles by id.
#[derive(Debug, Clone, Default)]
pub struct CellTable {
    entries: Vec<CellEntry>,
    index: HashMap<Arc<str>, u32>,
}

impl CellTable {
    /// The handle of cell `id`, added (undefined) on first mention.
    pub fn handle(&mut self, id: &str) -> u32 {
        if let Some(&h) = self.index.get(id) {
            return h;
        }
        let h = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        let id: Arc<str> = Arc::from(id);
        self.index.insert(Arc::clone(&id), h);
        self.entries.push(CellEntry {
            id,
            cell: None,
            tenants: 0,
        });
        h
    }

    /// Sets (or, with `None`, clears) the definition of cell `id`.
    pub fn define(&mut self, id: &str, cell: Option<Arc<Cell>>) {
        let h = self.handle(id) as usize;
        self.entries[h].cell = cell;
    }

    #[must_use]
    pub fn entry(&self, handle: u32) -> &CellEntry {
        &self.entries[handle as usize]
    }

    pub fn count(&mut self, handle: u32, add: bool) {
        let n = &mut self.entries[handle as usize].tenants;
        *n = if add {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
    }

    #[must_use]
    pub fn find(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    #[must_use]
    pub fn get(&self, id: &str) -> Option<&CellEntry> {
        self.index.get(id).map(|&h| self.entry(h))
    }

    pub fn entries(&self) -> impl Iterator<Item = &CellEntry> {
        self.entries.iter()
    }
}

/// Append-only values by handle; handle 0 is `T::default()` (no value).
#[derive(Debug, Clone)]
pub struct Interned<T, K> {
    values: Vec<T>,
    index: HashMap<K, u32>,
}

impl<T: Clone + Default, K: Hash + Eq> Default for Interned<T, K> {
    fn default() -> Self {
        Self {
            values: vec![T::default()],
            index: HashMap::new(),
        }
    }
}

impl<T: Clone + Default, K: Hash + Eq> Interned<T, K> {
    /// The handle of the value with key `key` (built by `make` on first sight); `None` when
    /// the table is full.
    pub fn handle(&mut self, key: K, make: impl FnOnce() -> T) -> Option<u32> {
        if let Some(&h) = self.index.get(&key) {
            return Some(h);
        }
        let h = u32::try_from(self.values.len()).ok()?;
        self.values.push(make());
        self.index.insert(key, h);
        Some(h)
    }

    /// The handle `key` has, if any (no insertion, no allocation).
    pub fn find<Q: ?Sized + Hash + Eq>(&self, key: &Q) -> Option<u32>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.index.get(key).copied()
    }

    #[must_use]
    pub fn get(&self, handle: u32) -> &T {
        &self.values[handle as usize]
    }
}

/// Limit overrides as a hashable key (the rate by its bits).
pub type LimitsKey = (Option<u64>, Option<u32>, Option<u32>);

#[must_use]
pub fn limits_key(l: &TenantLimits) -> LimitsKey {
    (l.rate.map(f64::to_bits), l.burst, l.concurrency)
}

/// An issuer list as tenants share it (`None`: the tenant names no issuer).
pub type IssuerList = Option<Arc<[Box<str>]>>;

/// A list of names as records share it: a tenant's entitlements, a key's scopes (`None`:
/// none named).
pub type NameList = Option<Arc<[Box<str>]>>;

/// Issuer lists by handle (0: none), and how many tenants name each issuer.
#[derive(Debug, Clone, Default)]
pub struct IssuerTable {
    pub lists: Interned<IssuerList, Vec<String>>,
    /// Tenants naming each issuer as their own (absent: none).
    bound: HashMap<Box<str>, u32>,
}

impl IssuerTable {
    /// Counts (or uncounts) the tenants naming list `handle`.
    pub fn count(&mut self, handle: u32, add: bool) {
        let Some(list) = self.lists.get(handle).clone() else {
            return;
        };
        for iss in list.iter() {
            if add {
                *self.bound.entry(iss.clone()).or_default() += 1;
            } else if let Some(n) = self.bound.get_mut(iss) {
                *n -= 1;
                if *n == 0 {
                    self.bound.remove(iss);
                }
            }
        }
    }

    #[must_use]
    pub fn is_bound(&self, iss: &str) -> bool {
        self.bound.contains_key(iss)
    }
}

/// Every table a generation's slots point into.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    pub cells: Arc<CellTable>,
    pub tiers: Arc<Interned<Arc<str>, Arc<str>>>,
    pub arms: Arc<Interned<Option<Arc<str>>, Arc<str>>>,
    pub issuers: Arc<IssuerTable>,
    pub limits: Arc<Interned<TenantLimits, LimitsKey>>,
    /// Entitlement lists (tenants) and scope lists (API keys), by handle (0: none).
    pub names: Arc<Interned<NameList, Vec<String>>>,
}
