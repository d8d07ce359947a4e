//! `cellgate tenant ...`: put, read, list, suspend and resume tenant records (`put` also sets
//! the tenant's entitlements); `place` hands over to [`super::place`], `move` to
//! [`super::moves`]. Every write is conditional on the version just read, and keeps the
//! cells' counts right ([`super::counts`]).

use serde_json::Value;

use super::args::TenantCommand;
use super::io::{current_cell, current_tenant, list, write_tenant};
use super::moves::{MovePlan, move_tenant};
use super::place::{PlaceRequest, place_tenant};
use super::{OpsError, invalid, not_found};
use crate::placement::dynamo::schema::{item_json, tenant_key};
use crate::placement::dynamo::write::Registry;
use crate::placement::record::{RawTenant, tenant_record};
use crate::placement::{CellState, TenantRecord, TenantStatus};
use crate::ratelimit::TenantLimits;
use crate::rules::{ENTITLEMENT_RULE, MAX_ENTITLEMENTS, valid_entitlement};

pub async fn tenant_command(reg: &Registry, cmd: TenantCommand) -> Result<Value, OpsError> {
    match cmd {
        TenantCommand::Put {
            tenant,
            cell,
            tier,
            status,
            issuers,
            rate,
            burst,
            concurrency,
            clear_limits,
            arm,
            clear_arm,
            entitlements,
            clear_entitlements,
            expect_version,
            force,
        } => {
            check_entitlements(&entitlements)?;
            let current = current_tenant(reg, &tenant).await?;
            let held = if clear_limits {
                TenantLimits::default()
            } else {
                current.as_ref().map(|c| c.limits).unwrap_or_default()
            };
            let limits = TenantLimits {
                rate: rate.or(held.rate),
                burst: burst.or(held.burst),
                concurrency: concurrency.or(held.concurrency),
            };
            // The status is typed already (clap parsed it); the rest is checked as a source's.
            let status = status
                .or_else(|| current.as_ref().map(|c| c.status))
                .unwrap_or(TenantStatus::Active);
            let record = tenant_record(RawTenant {
                id: tenant.clone(),
                cell,
                status: None,
                tier: tier.or_else(|| current.as_ref().map(|c| c.tier.clone())),
                version: None,
                issuers: if issuers.is_empty() {
                    current
                        .as_ref()
                        .map(|c| c.issuers.clone())
                        .unwrap_or_default()
                } else {
                    issuers
                },
                limits,
                arm: if clear_arm {
                    None
                } else {
                    arm.or_else(|| current.as_ref().and_then(|c| c.arm.clone()))
                },
                entitlements: if clear_entitlements {
                    Vec::new()
                } else if entitlements.is_empty() {
                    current
                        .as_ref()
                        .map(|c| c.entitlements.clone())
                        .unwrap_or_default()
                } else {
                    entitlements
                },
            })
            .map(|r| TenantRecord { status, ..r })
            .map_err(|b| invalid(b.field, &b.value, b.reason))?;
            // Like `tenant move`: no new placement lands in a cell being emptied or down.
            let placing = current.as_ref().is_none_or(|c| c.cell != record.cell);
            if placing
                && !force
                && let Some(c) = current_cell(reg, &record.cell).await?
                && c.state != CellState::Active
            {
                return Err(invalid(
                    "--cell",
                    &record.cell,
                    format!(
                        "the cell is {} (use --force to place the tenant there anyway)",
                        c.state
                    ),
                ));
            }
            let expected = expect_version.or(current.as_ref().map(|c| c.version));
            write_tenant(reg, current.as_ref(), record, expected).await
        }
        TenantCommand::Place {
            tenant,
            tier,
            region,
            require,
            strategy,
            max_fill,
            dry_run,
        } => {
            let req = PlaceRequest {
                tenant,
                tier,
                region,
                require,
                strategy,
                max_fill,
                dry_run,
            };
            place_tenant(reg, &req).await
        }
        TenantCommand::Get { tenant } => match reg.get(&tenant_key(&tenant)).await? {
            Some(item) => Ok(item_json(&item)),
            None => Err(not_found(reg, "tenant", &tenant)),
        },
        TenantCommand::List => list(reg, "tenant").await,
        TenantCommand::Move {
            tenant,
            to,
            settle,
            hook,
            force,
        } => {
            let settle = humantime::parse_duration(&settle)
                .map_err(|e| invalid("--settle", &settle, e.to_string()))?;
            let plan = MovePlan {
                tenant,
                to,
                settle,
                hook,
                force,
            };
            move_tenant(reg, &plan).await
        }
        TenantCommand::Suspend { tenant } => {
            set_status(reg, &tenant, TenantStatus::Suspended).await
        }
        TenantCommand::Resume { tenant } => set_status(reg, &tenant, TenantStatus::Active).await,
    }
}

/// `--entitlement`s, checked before the table is read: each a valid name, none twice, at most
/// [`MAX_ENTITLEMENTS`].
fn check_entitlements(list: &[String]) -> Result<(), OpsError> {
    if list.len() > MAX_ENTITLEMENTS {
        return Err(invalid(
            "--entitlement",
            &list.len().to_string(),
            format!("at most {MAX_ENTITLEMENTS} entitlements"),
        ));
    }
    for (i, e) in list.iter().enumerate() {
        if !valid_entitlement(e) {
            return Err(invalid("--entitlement", e, ENTITLEMENT_RULE));
        }
        if list[..i].contains(e) {
            return Err(invalid("--entitlement", e, "given twice"));
        }
    }
    Ok(())
}

pub(super) async fn set_status(
    reg: &Registry,
    id: &str,
    status: TenantStatus,
) -> Result<Value, OpsError> {
    let Some(current) = current_tenant(reg, id).await? else {
        return Err(not_found(reg, "tenant", id));
    };
    let expected = current.version;
    let next = TenantRecord {
        status,
        ..current.clone()
    };
    write_tenant(reg, Some(&current), next, Some(expected)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    #[test]
    fn entitlements_are_checked_naming_the_flag() {
        assert!(check_entitlements(&[]).is_ok());
        assert!(check_entitlements(&list(&["reports", "billing:write"])).is_ok());
        let e = check_entitlements(&list(&["reports", "bad name"])).map_err(|e| e.to_string());
        assert_eq!(
            e,
            Err(format!("--entitlement = `bad name`: {ENTITLEMENT_RULE}"))
        );
        let e = check_entitlements(&list(&["a", "a"])).map_err(|e| e.to_string());
        assert_eq!(e, Err("--entitlement = `a`: given twice".to_owned()));
        let many: Vec<String> = (0..=MAX_ENTITLEMENTS).map(|i| format!("e{i}")).collect();
        assert!(check_entitlements(&many).is_err());
    }
}
