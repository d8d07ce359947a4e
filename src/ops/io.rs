//! Record I/O for the operator commands: reading a tenant or cell record (checked as the proxy
//! checks it), writing one (version + 1, through [`Registry::commit`]; a tenant with the
//! updates that keep its cells' counts right, [`super::counts`]) and the JSON printed for a
//! stored record or a listing. Every command reads and writes through here.

use serde_json::{Value, json};

use super::{OpsError, invalid};
use crate::placement::TenantRecord;
use crate::placement::dynamo::schema::{
    CellRecord, Item, cell_from_item, cell_item, cell_key, item_json, tenant_from_item,
    tenant_item, tenant_key,
};
use crate::placement::dynamo::write::{Registry, WriteError, updated_at};

/// Attempts at a tenant write whose cell counts moved underneath (each re-reads the cells).
const COUNT_RETRIES: usize = 5;

pub(super) async fn current_tenant(
    reg: &Registry,
    id: &str,
) -> Result<Option<TenantRecord>, OpsError> {
    match reg.get(&tenant_key(id)).await? {
        None => Ok(None),
        Some(item) => tenant_from_item(&item).map(Some).map_err(|b| {
            invalid(
                format!("stored tenant {id}: {}", b.field),
                &b.value,
                b.reason,
            )
        }),
    }
}

/// Writes `next` over `before` (the record read; version + 1 of `expected`) with the count
/// updates of its cells in the same transaction, and prints the stored record (and `counts`,
/// the changes to the cells' counts, when there were any). A count that moved underneath
/// (another tenant write on the same cell) is re-read and the write retried.
pub(super) async fn write_tenant(
    reg: &Registry,
    before: Option<&TenantRecord>,
    mut next: TenantRecord,
    expected: Option<u64>,
) -> Result<Value, OpsError> {
    next.version = expected.map_or(1, |v| v + 1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (updates, counts) = super::counts::count_updates(reg, before, &next).await?;
        let item = tenant_item(&next, &updated_at());
        let written = if updates.is_empty() {
            reg.commit(item, expected).await
        } else {
            reg.commit_guarded(vec![(item, expected)], updates).await
        };
        match written {
            Ok(epoch) => {
                let mut out = stored(reg, &tenant_key(&next.id), epoch).await?;
                if !counts.is_empty() {
                    out["counts"] = Value::Array(counts);
                }
                return Ok(out);
            }
            Err(WriteError::Condition { .. }) if attempt < COUNT_RETRIES => {}
            Err(e) => return Err(e.into()),
        }
    }
}

pub(super) async fn stored(reg: &Registry, key: &str, epoch: u64) -> Result<Value, OpsError> {
    let item = reg.get(key).await?.unwrap_or_default();
    Ok(json!({"epoch": epoch, "record": item_json(&item)}))
}

pub(super) async fn list(reg: &Registry, kind: &str) -> Result<Value, OpsError> {
    let mut items: Vec<Item> = reg.list(kind).await?;
    items.sort_by_key(|i| item_json(i)[kind].as_str().unwrap_or_default().to_owned());
    Ok(Value::Array(items.iter().map(item_json).collect()))
}

pub(super) async fn current_cell(reg: &Registry, id: &str) -> Result<Option<CellRecord>, OpsError> {
    match reg.get(&cell_key(id)).await? {
        None => Ok(None),
        Some(item) => cell_from_item(&item)
            .map(Some)
            .map_err(|b| invalid(format!("stored cell {id}: {}", b.field), &b.value, b.reason)),
    }
}

pub(super) async fn write_cell(
    reg: &Registry,
    mut next: CellRecord,
    expected: Option<u64>,
) -> Result<Value, OpsError> {
    next.version = expected.map_or(1, |v| v + 1);
    // The same checks the proxy applies when it loads the cell.
    crate::placement::Cell::from_file(&next.to_file_cell(), "cell")
        .map_err(|f| invalid(f.key, &f.value, f.reason))?;
    let epoch = reg
        .commit(cell_item(&next, &updated_at()), expected)
        .await?;
    stored(reg, &cell_key(&next.id), epoch).await
}

/// Every cell record of the table (an item that fails the checks stops the command: a cell
/// that cannot be read cannot be judged).
pub(super) async fn all_cells(reg: &Registry) -> Result<Vec<CellRecord>, OpsError> {
    reg.list("cell")
        .await?
        .iter()
        .map(|item| {
            cell_from_item(item)
                .map_err(|b| invalid(format!("stored cell item: {}", b.field), &b.value, b.reason))
        })
        .collect()
}
