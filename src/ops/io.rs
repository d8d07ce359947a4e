//! Record I/O for the operator commands: reading a tenant or cell record (checked as the proxy
//! checks it), writing one (version + 1, through [`Registry::commit`]) and the JSON printed
//! for a stored record or a listing. Every command reads and writes through here.

use serde_json::{Value, json};

use super::{OpsError, invalid};
use crate::placement::TenantRecord;
use crate::placement::dynamo::schema::{
    CellRecord, Item, cell_from_item, cell_item, cell_key, item_json, tenant_from_item,
    tenant_item, tenant_key,
};
use crate::placement::dynamo::write::{Registry, updated_at};

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

/// Writes `next` over `current` (version + 1) and prints the stored record.
pub(super) async fn write_tenant(
    reg: &Registry,
    mut next: TenantRecord,
    expected: Option<u64>,
) -> Result<Value, OpsError> {
    next.version = expected.map_or(1, |v| v + 1);
    let epoch = reg
        .commit(tenant_item(&next, &updated_at()), expected)
        .await?;
    stored(reg, &tenant_key(&next.id), epoch).await
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
