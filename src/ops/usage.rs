//! `cellgate cell usage [--recount]`: per cell, its state, region, capacity, tenants, load,
//! fill and tags, as the cell items count them. `--recount` counts every cell's tenants from a
//! scan of the tenant records (each not OFFBOARDED, for its tier's units in its cell) and
//! writes the counts that drifted: for a table written before the counts were kept, or after
//! a cell's `tier_units` changed. Each corrected cell is written on condition of the version
//! read before the scan, so a tenant write that lands during the scan (it moves the versions
//! of the cells it counts in) makes the recount start over rather than write a stale count.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::choose::fill;
use super::io::all_cells;
use super::{OpsError, invalid};
use crate::placement::TenantStatus;
use crate::placement::dynamo::schema::{CellRecord, cell_item, tenant_from_item};
use crate::placement::dynamo::write::{MAX_BATCH, Registry, WriteError, updated_at};

/// Recounts started over (a tenant write raced the scan) before giving up.
const RECOUNT_ATTEMPTS: usize = 5;

/// `cell usage`, and with `recount` the counts corrected first.
pub async fn usage(reg: &Registry, recount: bool) -> Result<Value, OpsError> {
    let mut out = json!({"table": reg.table()});
    if recount {
        out["recount"] = recount_all(reg).await?;
    }
    let mut cells = all_cells(reg).await?;
    cells.sort_by(|a, b| a.id.cmp(&b.id));
    out["cells"] = cells.iter().map(view).collect();
    Ok(out)
}

fn view(c: &CellRecord) -> Value {
    json!({
        "cell": c.id,
        "state": c.state.as_str(),
        "region": c.region,
        "capacity": c.place.capacity,
        "tenants": c.tenants,
        "load": c.load,
        "fill": c.place.capacity.map(|cap| fill(c.load, cap)),
        "fill_percent": c.place.capacity.map(|cap| super::choose::percent(c.load, cap)),
        "tags": c.place.tags,
        "tier_units": c.place.tier_units,
    })
}

/// Per cell id: (tenants, load) counted from the tenant records, given the cells' units.
type Counted = BTreeMap<String, (u64, u64)>;

async fn recount_all(reg: &Registry) -> Result<Value, OpsError> {
    for _ in 0..RECOUNT_ATTEMPTS {
        let cells = all_cells(reg).await?;
        let units: BTreeMap<&str, &CellRecord> = cells.iter().map(|c| (c.id.as_str(), c)).collect();
        let mut counted: Counted = BTreeMap::new();
        let mut elsewhere: BTreeMap<String, u64> = BTreeMap::new();
        let (mut scanned, mut skipped) = (0u64, Vec::new());
        for item in reg.list("tenant").await? {
            let t = match tenant_from_item(&item) {
                Ok(t) => t,
                Err(b) => {
                    skipped.push(json!({"field": b.field, "value": b.value, "reason": b.reason}));
                    continue;
                }
            };
            scanned += 1;
            if t.status == TenantStatus::Offboarded {
                continue;
            }
            match units.get(t.cell.as_str()) {
                Some(c) => {
                    let e = counted.entry(t.cell.clone()).or_default();
                    e.0 += 1;
                    e.1 += c.place.units(&t.tier);
                }
                None => *elsewhere.entry(t.cell.clone()).or_default() += 1,
            }
        }
        let drifted: Vec<(&CellRecord, (u64, u64))> = cells
            .iter()
            .map(|c| (c, counted.get(&c.id).copied().unwrap_or((0, 0))))
            .filter(|(c, n)| (c.tenants, c.load) != *n)
            .collect();
        match write_counts(reg, &drifted).await {
            Ok(()) => {
                let drift: Vec<Value> = drifted
                    .iter()
                    .map(|(c, (t, l))| {
                        json!({
                            "cell": c.id,
                            "stored": {"tenants": c.tenants, "load": c.load},
                            "counted": {"tenants": t, "load": l},
                        })
                    })
                    .collect();
                return Ok(json!({
                    "tenants_scanned": scanned,
                    "fixed": drift.len(),
                    "drift": drift,
                    "tenants_in_cells_not_in_the_table": elsewhere,
                    "skipped_items": skipped,
                }));
            }
            // A tenant write moved a cell since it was read: count again.
            Err(WriteError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(invalid(
        "--recount",
        "true",
        format!("tenant writes kept changing the counts ({RECOUNT_ATTEMPTS} scans); try again"),
    ))
}

/// Writes the counted values over the drifted cells, in batches, each cell on condition of
/// the version it was read at.
async fn write_counts(
    reg: &Registry,
    drifted: &[(&CellRecord, (u64, u64))],
) -> Result<(), WriteError> {
    let stamp = updated_at();
    for chunk in drifted.chunks(MAX_BATCH) {
        let writes = chunk
            .iter()
            .map(|(c, (tenants, load))| {
                let next = CellRecord {
                    tenants: *tenants,
                    load: *load,
                    version: c.version + 1,
                    ..(*c).clone()
                };
                (cell_item(&next, &stamp), Some(c.version))
            })
            .collect();
        reg.commit_batch(writes).await?;
    }
    Ok(())
}
