//! Records into slots and back: a tenant's or a key's record becomes the slot its map holds,
//! each value it names interned into the lineage's [`Tables`] (a table copied only when a new
//! value must be added while an older generation shares it), and a slot becomes a record again
//! for exports, lookups and checks. [`Filling`] is a full load being placed as it is read.

use std::sync::Arc;

use super::keys::{KeyRecord, KeySlot};
use super::tables::{Tables, limits_key};
use super::tenants::{Handles, Slot, TenantMapBuilder};
use super::trie::MapBuilder;
use super::{TenantRecord, TenantStatus};

pub(super) fn status_of(code: u8) -> TenantStatus {
    TenantStatus::ALL
        .get(usize::from(code))
        .copied()
        .unwrap_or(TenantStatus::Offboarded)
}

fn status_code(s: TenantStatus) -> u8 {
    #[allow(clippy::cast_possible_truncation)]
    let code = TenantStatus::ALL.iter().position(|x| *x == s).unwrap_or(3) as u8;
    code
}

pub(super) fn record_of(tables: &Tables, id: &str, s: &Slot) -> TenantRecord {
    TenantRecord {
        id: id.to_owned(),
        cell: tables.cells.entry(s.cell).id.to_string(),
        status: status_of(s.status),
        tier: tables.tiers.get(u32::from(s.tier)).to_string(),
        version: s.version(),
        issuers: tables
            .issuers
            .lists
            .get(s.issuers)
            .as_deref()
            .map(|l| l.iter().map(|i| i.to_string()).collect())
            .unwrap_or_default(),
        limits: *tables.limits.get(s.limits),
        arm: tables
            .arms
            .get(u32::from(s.arm))
            .as_deref()
            .map(str::to_owned),
        entitlements: names_of(tables, s.entitlements),
    }
}

fn names_of(tables: &Tables, handle: u32) -> Vec<String> {
    tables
        .names
        .get(handle)
        .as_deref()
        .map(|l| l.iter().map(|x| x.to_string()).collect())
        .unwrap_or_default()
}

/// The handle of name list `names` (0 for none), added on first sight.
fn name_list(tables: &mut Tables, names: &[String]) -> Result<u32, TablesFull> {
    if names.is_empty() {
        return Ok(0);
    }
    match tables.names.find(names) {
        Some(h) => Ok(h),
        None => Arc::make_mut(&mut tables.names)
            .handle(names.to_vec(), || {
                Some(names.iter().map(|n| Box::from(n.as_str())).collect())
            })
            .ok_or(TablesFull),
    }
}

/// The slot for key `k`, adding its scope list to `tables`.
pub(super) fn intern_key(tables: &mut Tables, k: &KeyRecord) -> Result<KeySlot, TablesFull> {
    Ok(KeySlot::new(k, name_list(tables, &k.scopes)?))
}

/// Too many distinct tiers or arms (more than 65,535) to give the record a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TablesFull;

/// The slot for `t`, adding what it names to `tables` (each table copied only when a new value
/// must be added while it is shared with an older generation).
pub(super) fn intern(tables: &mut Tables, t: &TenantRecord) -> Result<Slot, TablesFull> {
    let cell = match tables.cells.find(&t.cell) {
        Some(h) => h,
        None => Arc::make_mut(&mut tables.cells).handle(&t.cell),
    };
    let tier = match tables.tiers.find(t.tier.as_str()) {
        Some(h) => h,
        None => {
            let key: Arc<str> = Arc::from(t.tier.as_str());
            Arc::make_mut(&mut tables.tiers)
                .handle(Arc::clone(&key), || key)
                .ok_or(TablesFull)?
        }
    };
    let arm = match t.arm.as_deref() {
        None => 0,
        Some(a) => match tables.arms.find(a) {
            Some(h) => h,
            None => {
                let key: Arc<str> = Arc::from(a);
                Arc::make_mut(&mut tables.arms)
                    .handle(Arc::clone(&key), || Some(key))
                    .ok_or(TablesFull)?
            }
        },
    };
    let issuers = if t.issuers.is_empty() {
        0
    } else {
        match tables.issuers.lists.find(t.issuers.as_slice()) {
            Some(h) => h,
            None => Arc::make_mut(&mut tables.issuers)
                .lists
                .handle(t.issuers.clone(), || {
                    Some(t.issuers.iter().map(|i| Box::from(i.as_str())).collect())
                })
                .ok_or(TablesFull)?,
        }
    };
    let limits = if t.limits.is_empty() {
        0
    } else {
        let key = limits_key(&t.limits);
        match tables.limits.find(&key) {
            Some(h) => h,
            None => Arc::make_mut(&mut tables.limits)
                .handle(key, || t.limits)
                .ok_or(TablesFull)?,
        }
    };
    let entitlements = name_list(tables, &t.entitlements)?;
    Ok(Slot::new(
        t.version,
        status_code(t.status),
        Handles {
            cell,
            issuers,
            limits,
            entitlements,
            tier: u16::try_from(tier).map_err(|_| TablesFull)?,
            arm: u16::try_from(arm).map_err(|_| TablesFull)?,
        },
    ))
}

/// Counts (or uncounts) the tenant of `s` in the tables' derived sets.
pub(super) fn count(tables: &mut Tables, s: &Slot, add: bool) {
    Arc::make_mut(&mut tables.cells).count(s.cell, add);
    if s.issuers != 0 {
        Arc::make_mut(&mut tables.issuers).count(s.issuers, add);
    }
}

/// A full load being filled: the map and tables the snapshot will keep.
#[derive(Debug, Default)]
pub(super) struct Filling {
    pub map: TenantMapBuilder,
    pub keys: MapBuilder<KeySlot>,
    pub tables: Tables,
    pub skipped: usize,
}

impl Filling {
    /// Places `t`; `false` when its id is already held (or it cannot be held: counted).
    pub fn push(&mut self, t: &TenantRecord) -> bool {
        if self.map.get(&t.id).is_some() {
            return false;
        }
        let Ok(slot) = intern(&mut self.tables, t) else {
            self.skipped += 1;
            return false;
        };
        count(&mut self.tables, &slot, true);
        self.map.insert(&t.id, slot, &[])
    }

    /// Places key `k`; `false` when its id is already held (or it cannot be held: counted).
    pub fn push_key(&mut self, k: &KeyRecord) -> bool {
        if self.keys.get(&k.id).is_some() {
            return false;
        }
        let Ok(slot) = intern_key(&mut self.tables, k) else {
            self.skipped += 1;
            return false;
        };
        self.keys.insert(&k.id, slot, k.tenant.as_bytes())
    }
}
