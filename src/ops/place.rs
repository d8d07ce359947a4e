//! `cellgate tenant place`: placing a new tenant. Reads the cells, chooses one
//! ([`super::choose`]), and writes the tenant record and the cell's counts in one transaction:
//! the tenant on condition that it does not exist, the cell's `tenants` + 1 and `load` + units
//! on condition that it is still ACTIVE, has the capacity read, and has room for the units
//! under `--max-fill` *as the cell stands when the transaction commits* ([`Guarded`]). So two
//! placements racing for the last room in a cell cannot both land there: the loser re-reads
//! and chooses again, a bounded number of times.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};

use super::choose::{Ask, Choice, MaxFill, Refusal, Strategy, choose};
use super::io::{all_cells, current_tenant, stored};
use super::{OpsError, invalid};
use crate::placement::dynamo::schema::{cell_key, tenant_item, tenant_key};
use crate::placement::dynamo::write::{Guarded, Registry, WriteError, updated_at};
use crate::placement::record::{RawTenant, tenant_record};
use crate::ratelimit::TenantLimits;
use crate::rules::{TAG_RULE, valid_tag};

/// Attempts before giving up when other placements keep taking the room chosen.
const ATTEMPTS: u32 = 12;

/// `tenant place`, parsed.
#[derive(Debug, Clone)]
pub struct PlaceRequest {
    pub tenant: String,
    pub tier: Option<String>,
    pub region: Option<String>,
    pub require: Vec<String>,
    pub strategy: Strategy,
    pub max_fill: String,
    pub dry_run: bool,
}

/// Chooses a cell for a new tenant and writes it there (unless `dry_run`); prints the cell,
/// why it was chosen, and the stored record.
pub async fn place_tenant(reg: &Registry, req: &PlaceRequest) -> Result<Value, OpsError> {
    let max_fill =
        MaxFill::parse(&req.max_fill).map_err(|e| invalid("--max-fill", &req.max_fill, e))?;
    for tag in &req.require {
        if !valid_tag(tag) {
            return Err(invalid("--require", tag, TAG_RULE));
        }
    }
    if let Some(r) = &req.region
        && !valid_tag(&format!("region={r}"))
    {
        return Err(invalid("--region", r, "a region name, e.g. eu-west-1"));
    }
    // The record is checked (id, tier) before the table is read.
    let record = tenant_record(RawTenant {
        id: req.tenant.clone(),
        cell: "unplaced".to_owned(),
        status: None,
        tier: req.tier.clone(),
        version: Some(1),
        issuers: Vec::new(),
        limits: TenantLimits::default(),
        arm: None,
        entitlements: Vec::new(),
    })
    .map_err(|b| invalid(b.field, &b.value, b.reason))?;
    let ask = Ask {
        tenant: &record.id,
        tier: &record.tier,
        region: req.region.as_deref(),
        require: &req.require,
        strategy: req.strategy,
        max_fill,
    };
    let mut lost = Vec::new();
    for attempt in 1..=ATTEMPTS {
        if let Some(t) = current_tenant(reg, &record.id).await? {
            return Err(refused(Refusal::Exists {
                tenant: t.id,
                cell: t.cell,
                status: t.status.as_str().to_owned(),
            }));
        }
        let cells = all_cells(reg).await?;
        let choice = choose(&cells, &ask).map_err(refused)?;
        let mut next = record.clone();
        next.cell = choice.cell.clone();
        if req.dry_run {
            return Ok(json!({
                "tenant": next.id,
                "cell": choice.cell,
                "dry_run": true,
                "why": choice.why,
                "record": crate::placement::dynamo::schema::item_json(
                    &tenant_item(&next, &updated_at())
                ),
            }));
        }
        let item = tenant_item(&next, &updated_at());
        match reg
            .commit_guarded(vec![(item, None)], vec![claim(&choice)])
            .await
        {
            Ok(epoch) => {
                let out = stored(reg, &tenant_key(&next.id), epoch).await?;
                return Ok(json!({
                    "tenant": next.id,
                    "cell": choice.cell,
                    "why": choice.why,
                    "attempts": attempt,
                    "epoch": epoch,
                    "record": out["record"],
                }));
            }
            // The cell filled, changed or left ACTIVE meanwhile, or the tenant appeared (the
            // next read says so): read again and choose again.
            Err(
                WriteError::Condition { .. }
                | WriteError::Conflict { .. }
                | WriteError::Busy { .. },
            ) => {
                lost.push(choice.cell);
                let ceiling = 20 * u64::from(attempt) + 20;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(10..ceiling))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(invalid(
        "tenant",
        &record.id,
        format!(
            "other writes took the room chosen {ATTEMPTS} times (cells {}); nothing was written: \
             try again",
            lost.join(", ")
        ),
    ))
}

fn refused(r: Refusal) -> OpsError {
    OpsError::Refused(r.to_string())
}

/// The update taking the chosen room: `tenants` + 1, `load` + units, on condition that the
/// cell is ACTIVE, has the capacity the choice was made against, and holds at most `limit -
/// units` before it (an absent `load` is an empty cell).
fn claim(c: &Choice) -> Guarded {
    let most_before = c.limit.saturating_sub(c.units);
    let n = |v: u64| AttributeValue::N(v.to_string());
    Guarded {
        key: cell_key(&c.cell),
        add: vec![
            ("tenants".to_owned(), 1),
            (
                "load".to_owned(),
                i64::try_from(c.units).unwrap_or(i64::MAX),
            ),
        ],
        condition: Some(
            "#st = :active AND #cap = :cap AND (attribute_not_exists(#ld) OR #ld <= :most)"
                .to_owned(),
        ),
        names: vec![
            ("#st".to_owned(), "state".to_owned()),
            ("#cap".to_owned(), "capacity".to_owned()),
            ("#ld".to_owned(), "load".to_owned()),
        ],
        values: vec![
            (":active".to_owned(), AttributeValue::S("ACTIVE".to_owned())),
            (":cap".to_owned(), n(c.capacity)),
            (":most".to_owned(), n(most_before)),
        ],
        meaning: format!(
            "cell {}: ACTIVE, capacity {}, room for {} unit(s) under {} units",
            c.cell, c.capacity, c.units, c.limit
        ),
    }
}
