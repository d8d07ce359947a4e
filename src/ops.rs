//! Operator commands on the DynamoDB registry: `cellgate registry|tenant|cell ...`.
//!
//! The CLI (`src/main.rs`) parses these argument structs and calls [`run`]; each command prints
//! one JSON document on success and fails with a message naming what went wrong (a lost
//! conditional write included), so the commands script well. Every write goes through
//! [`Registry::commit`]: versioned, change-logged, and visible to every proxy at its next poll.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::placement::dynamo::schema::{
    CellRecord, Item, TargetGroup, cell_from_item, cell_item, cell_key, item_json,
    tenant_from_item, tenant_item, tenant_key,
};
pub use crate::placement::dynamo::write::Registry;
use crate::placement::dynamo::write::{InitOutcome, WriteError, updated_at};
use crate::placement::record::{RawTenant, tenant_record};
use crate::placement::{TenantLimits, TenantRecord, TenantStatus, valid_cell_id};

/// Where the registry table is.
#[derive(Debug, Clone, Args)]
pub struct TableArgs {
    /// Registry table name.
    #[arg(long, env = "CELLGATE_REGISTRY_TABLE", global = true)]
    pub table: Option<String>,
    /// AWS region (else AWS_REGION and the standard chain).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// DynamoDB endpoint, e.g. a local server (else AWS_ENDPOINT_URL).
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RegistryCommand {
    /// Create the registry table (idempotent): on-demand billing, TTL on change items, the epoch.
    Init {
        /// Also enable a DynamoDB Stream (NEW_IMAGE) for consumers other than the proxies.
        #[arg(long)]
        streams: bool,
    },
    /// Print the current epoch (bumped by every write).
    Epoch,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TenantCommand {
    /// Create or update a tenant (version + 1; fails if someone else wrote it meanwhile).
    Put {
        tenant: String,
        #[arg(long)]
        cell: String,
        /// Default: the current tier, else `standard`.
        #[arg(long)]
        tier: Option<String>,
        /// ACTIVE, SUSPENDED, MIGRATING or OFFBOARDED (default: the current status, else ACTIVE).
        #[arg(long)]
        status: Option<String>,
        /// Bind the tenant to a token issuer (exact `iss`); repeat for several.
        #[arg(long = "issuer")]
        issuers: Vec<String>,
        /// Rate-limit override: requests per second (default: keep the current one).
        #[arg(long)]
        rate: Option<f64>,
        /// Rate-limit override: burst size.
        #[arg(long)]
        burst: Option<u32>,
        /// Rate-limit override: requests in flight at once.
        #[arg(long)]
        concurrency: Option<u32>,
        /// Drop every rate-limit override (the tier's limits apply).
        #[arg(long)]
        clear_limits: bool,
        /// Pin the tenant to this target group of its cell (e.g. `canary`), whatever the weights.
        #[arg(long, conflicts_with = "clear_arm")]
        arm: Option<String>,
        /// Unpin: the tenant's arm follows the weights again.
        #[arg(long)]
        clear_arm: bool,
        /// Write only if the stored version is this one (default: the version just read).
        #[arg(long)]
        expect_version: Option<u64>,
    },
    /// Print a tenant's record.
    Get { tenant: String },
    /// Print every tenant record.
    List,
    /// Evacuate a tenant to another cell: MIGRATING, settle (and hook), flip, ACTIVE. Every step
    /// is a conditional write; re-running after an interruption resumes where it stopped.
    Move {
        tenant: String,
        #[arg(long)]
        to: String,
        /// Wait after marking MIGRATING, so every proxy has stopped sending writes.
        #[arg(long, default_value = "5s")]
        settle: String,
        /// A command run (by `sh -c`) after settling and before the flip, with TENANT,
        /// FROM_CELL and TO_CELL in its environment (e.g. a data copy); non-zero aborts.
        #[arg(long)]
        hook: Option<String>,
        /// Move even when the target cell is DRAINING or DOWN in the registry.
        #[arg(long)]
        force: bool,
    },
    /// Refuse the tenant's requests (403) until resumed.
    Suspend { tenant: String },
    /// Serve a suspended tenant again.
    Resume { tenant: String },
}

impl TenantCommand {
    /// `tenant put TENANT --cell CELL` with every other field kept as stored.
    #[must_use]
    pub fn place(tenant: &str, cell: &str) -> Self {
        Self::Put {
            tenant: tenant.to_owned(),
            cell: cell.to_owned(),
            tier: None,
            status: None,
            issuers: Vec::new(),
            rate: None,
            burst: None,
            concurrency: None,
            clear_limits: false,
            arm: None,
            clear_arm: false,
            expect_version: None,
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum CellCommand {
    /// Create or update a cell with one target group (`stable`).
    Put {
        cell: String,
        /// A target URL (http(s)://host[:port]); repeat for several.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// ACTIVE, DRAINING or DOWN (default: the current state, else ACTIVE).
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// Forward the client's Host (default: true when every target is http).
        #[arg(long)]
        preserve_host: Option<bool>,
        /// Requests in flight to the cell at most; beyond it, 503 `cell_overloaded`
        /// (default: the current value; `0` removes it, so `limits.cell_max_in_flight` applies).
        #[arg(long)]
        max_in_flight: Option<u32>,
    },
    /// Print a cell's record.
    Get { cell: String },
    /// Print every cell record.
    List,
    /// Mark a cell DRAINING: its tenants are still served; place no new tenants there.
    Drain { cell: String },
}

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no registry table: pass --table or set CELLGATE_REGISTRY_TABLE")]
    NoTable,
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{what} {id:?} not found in table {table}")]
    NotFound {
        what: &'static str,
        id: String,
        table: String,
    },
    #[error("{field} = {value:?}: {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: String,
    },
}

fn invalid(field: impl Into<String>, value: &str, reason: impl Into<String>) -> OpsError {
    OpsError::Invalid {
        field: field.into(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Connects to the table named by `args`.
pub async fn registry(args: &TableArgs) -> Result<Registry, OpsError> {
    let table = args.table.clone().ok_or(OpsError::NoTable)?;
    let client =
        crate::placement::dynamo::client(args.region.as_deref(), args.endpoint_url.as_deref())
            .await;
    Ok(Registry::new(client, table))
}

pub async fn registry_command(reg: &Registry, cmd: RegistryCommand) -> Result<Value, OpsError> {
    match cmd {
        RegistryCommand::Init { streams } => {
            let outcome = reg.init(streams).await?;
            Ok(json!({
                "table": reg.table(),
                "result": if outcome == InitOutcome::Created { "created" } else { "already exists" },
                "epoch": reg.epoch().await?,
            }))
        }
        RegistryCommand::Epoch => Ok(json!({"table": reg.table(), "epoch": reg.epoch().await?})),
    }
}

async fn current_tenant(reg: &Registry, id: &str) -> Result<Option<TenantRecord>, OpsError> {
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
async fn write_tenant(
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

async fn stored(reg: &Registry, key: &str, epoch: u64) -> Result<Value, OpsError> {
    let item = reg.get(key).await?.unwrap_or_default();
    Ok(json!({"epoch": epoch, "record": item_json(&item)}))
}

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
            expect_version,
        } => {
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
            let record = tenant_record(RawTenant {
                id: tenant.clone(),
                cell,
                status: status.or_else(|| current.as_ref().map(|c| c.status.as_str().to_owned())),
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
            })
            .map_err(|b| invalid(b.field, &b.value, b.reason))?;
            let expected = expect_version.or(current.map(|c| c.version));
            write_tenant(reg, record, expected).await
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
        Some(c) if c.state != "ACTIVE" && !plan.force => {
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
        let out = write_tenant(reg, next, Some(version)).await?;
        steps.push(json!({
            "step": step,
            "cell": cell,
            "version": out["record"]["version"],
            "epoch": out["epoch"],
        }));
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

async fn set_status(reg: &Registry, id: &str, status: TenantStatus) -> Result<Value, OpsError> {
    let Some(current) = current_tenant(reg, id).await? else {
        return Err(not_found(reg, "tenant", id));
    };
    let expected = current.version;
    write_tenant(reg, TenantRecord { status, ..current }, Some(expected)).await
}

fn not_found(reg: &Registry, what: &'static str, id: &str) -> OpsError {
    OpsError::NotFound {
        what,
        id: id.to_owned(),
        table: reg.table().to_owned(),
    }
}

async fn list(reg: &Registry, kind: &str) -> Result<Value, OpsError> {
    let mut items: Vec<Item> = reg.list(kind).await?;
    items.sort_by_key(|i| item_json(i)[kind].as_str().unwrap_or_default().to_owned());
    Ok(Value::Array(items.iter().map(item_json).collect()))
}

pub async fn cell_command(reg: &Registry, cmd: CellCommand) -> Result<Value, OpsError> {
    match cmd {
        CellCommand::Put {
            cell,
            targets,
            state,
            region,
            preserve_host,
            max_in_flight,
        } => {
            if !valid_cell_id(&cell) {
                return Err(invalid("cell", &cell, crate::placement::CELL_ID_RULE));
            }
            if let Some(n) = max_in_flight
                && n > 1_000_000
            {
                return Err(invalid(
                    "max_in_flight",
                    &n.to_string(),
                    "at most 1000000 (0 removes the cell's own cap)",
                ));
            }
            let current = current_cell(reg, &cell).await?;
            let record = CellRecord {
                id: cell.clone(),
                state: state
                    .or_else(|| current.as_ref().map(|c| c.state.clone()))
                    .unwrap_or_else(|| "ACTIVE".to_owned()),
                region: region.or_else(|| current.as_ref().and_then(|c| c.region.clone())),
                groups: vec![TargetGroup {
                    name: "stable".to_owned(),
                    targets,
                    weight: 100,
                    version: "stable".to_owned(),
                }],
                preserve_host,
                max_in_flight: match max_in_flight {
                    Some(0) => None,
                    Some(n) => Some(n),
                    None => current.as_ref().and_then(|c| c.max_in_flight),
                },
                wave: current.as_ref().and_then(|c| c.wave),
                version: 0,
            };
            write_cell(reg, record, current.map(|c| c.version)).await
        }
        CellCommand::Get { cell } => match reg.get(&cell_key(&cell)).await? {
            Some(item) => Ok(item_json(&item)),
            None => Err(not_found(reg, "cell", &cell)),
        },
        CellCommand::List => list(reg, "cell").await,
        CellCommand::Drain { cell } => {
            let Some(current) = current_cell(reg, &cell).await? else {
                return Err(not_found(reg, "cell", &cell));
            };
            let expected = current.version;
            let next = CellRecord {
                state: "DRAINING".to_owned(),
                ..current
            };
            write_cell(reg, next, Some(expected)).await
        }
    }
}

async fn current_cell(reg: &Registry, id: &str) -> Result<Option<CellRecord>, OpsError> {
    match reg.get(&cell_key(id)).await? {
        None => Ok(None),
        Some(item) => cell_from_item(&item)
            .map(Some)
            .map_err(|b| invalid(format!("stored cell {id}: {}", b.field), &b.value, b.reason)),
    }
}

async fn write_cell(
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
