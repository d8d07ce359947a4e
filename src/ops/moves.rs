//! `cellgate tenant move`: evacuating a tenant to another cell as a resumable state machine of
//! conditional writes (MIGRATING, settle and hook, flip, ACTIVE). The flip moves the tenant's
//! count from the source cell to the destination in the same transaction
//! ([`super::counts`]).

use serde_json::{Value, json};

use super::io::{current_cell, current_tenant, write_tenant};
use super::{OpsError, invalid, not_found};
use crate::placement::dynamo::write::Registry;
use crate::placement::{CellState, TenantRecord, TenantStatus};
use crate::rules::valid_cell_id;

/// `tenant move`, parsed.
#[derive(Debug, Clone)]
pub struct MovePlan {
    pub tenant: String,
    pub to: String,
    pub settle: std::time::Duration,
    pub hook: Option<String>,
    pub force: bool,
}

/// The evacuation state machine. The stored record says where a run stands, so a second run
/// after a crash continues (settling again before a flip, to be safe) and a finished move is a
/// no-op: ACTIVE elsewhere -> MIGRATING -> (settle, hook) -> flip -> ACTIVE in `to`.
pub async fn move_tenant(reg: &Registry, plan: &MovePlan) -> Result<Value, OpsError> {
    if !valid_cell_id(&plan.to) {
        return Err(invalid("--to", &plan.to, "not a cell id"));
    }
    let mut steps: Vec<Value> = Vec::new();
    let target = current_cell(reg, &plan.to).await?;
    match &target {
        Some(c) if c.state != CellState::Active && !plan.force => {
            return Err(invalid(
                "--to",
                &plan.to,
                format!("the cell is {} (use --force to move there anyway)", c.state),
            ));
        }
        None => steps.push(json!({"warning": format!(
            "cell {} is not in the registry (it must come from the proxies' config)", plan.to
        )})),
        Some(_) => {}
    }
    let mut from: Option<String> = None;
    loop {
        let Some(t) = current_tenant(reg, &plan.tenant).await? else {
            return Err(not_found(reg, "tenant", &plan.tenant));
        };
        let from_cell = from.get_or_insert_with(|| t.cell.clone()).clone();
        let version = t.version;
        let before = t.clone();
        let (step, next) = match (t.status, t.cell == plan.to) {
            (TenantStatus::Active, true) => {
                steps.push(json!({"step": "done", "cell": t.cell, "version": version}));
                return Ok(
                    json!({"tenant": plan.tenant, "from": from_cell, "to": plan.to, "steps": steps}),
                );
            }
            (TenantStatus::Active, false) => (
                "migrating",
                TenantRecord {
                    status: TenantStatus::Migrating,
                    ..t
                },
            ),
            (TenantStatus::Migrating, false) => {
                tokio::time::sleep(plan.settle).await;
                steps.push(json!({"step": "settled", "waited_ms": plan.settle.as_millis()}));
                if let Some(cmd) = &plan.hook {
                    run_hook(cmd, &plan.tenant, &t.cell, &plan.to).await?;
                    steps.push(json!({"step": "hook", "command": cmd, "result": "ok"}));
                }
                (
                    "flipped",
                    TenantRecord {
                        cell: plan.to.clone(),
                        ..t
                    },
                )
            }
            (TenantStatus::Migrating, true) => (
                "active",
                TenantRecord {
                    status: TenantStatus::Active,
                    ..t
                },
            ),
            (other, _) => {
                return Err(invalid(
                    "status",
                    other.as_str(),
                    "only an ACTIVE (or half-moved MIGRATING) tenant can be moved",
                ));
            }
        };
        let cell = next.cell.clone();
        let out = write_tenant(reg, Some(&before), next, Some(version)).await?;
        let mut shown = json!({
            "step": step,
            "cell": cell,
            "version": out["record"]["version"],
            "epoch": out["epoch"],
        });
        if let Some(counts) = out.get("counts") {
            shown["counts"] = counts.clone();
        }
        steps.push(shown);
    }
}

async fn run_hook(cmd: &str, tenant: &str, from: &str, to: &str) -> Result<(), OpsError> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("TENANT", tenant)
        .env("FROM_CELL", from)
        .env("TO_CELL", to)
        .status()
        .await
        .map_err(|e| invalid("--hook", cmd, format!("cannot run: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(invalid(
            "--hook",
            cmd,
            format!("{status}; the tenant stays MIGRATING in its old cell: fix and re-run"),
        ))
    }
}
