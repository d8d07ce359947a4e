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
use crate::rules::{CELL_ID_RULE, MAX_WEIGHT, valid_cell_id, valid_label};
use crate::placement::record::{RawTenant, tenant_record};
use crate::placement::{TenantLimits, TenantRecord, TenantStatus};

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
        /// Place a new tenant, or move one, into a cell that is DRAINING or DOWN anyway.
        #[arg(long)]
        force: bool,
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
            force: false,
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum CellCommand {
    /// Create or update a cell. With `--target`, its targets become one group (`stable`); an
    /// existing cell written without `--target` keeps its target groups.
    Put {
        cell: String,
        /// A target URL (http(s)://host[:port]); repeat for several. Required for a new cell.
        #[arg(long = "target")]
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
        /// The cell's canary wave, selected by `cell weights --wave N` (default: the current one).
        #[arg(long, conflicts_with = "clear_wave")]
        wave: Option<u32>,
        /// Take the cell out of its wave.
        #[arg(long)]
        clear_wave: bool,
    },
    /// Create or update one target group (deployment arm) of a cell, keeping the others; or
    /// remove one with `--remove`.
    Group {
        cell: String,
        /// The group's name (1-64 of A-Z a-z 0-9 . _ -).
        #[arg(long)]
        name: String,
        /// Version label (default: the current one; for a new group, its name).
        #[arg(long)]
        version: Option<String>,
        /// Relative share of the cell's tenants, 0-10000 (default: the current one; for a new
        /// group 0, a dark arm only pinned or forced requests reach).
        #[arg(long)]
        weight: Option<u32>,
        /// A target URL; repeat for several. Replaces the group's targets; required for a new
        /// group.
        #[arg(long = "target")]
        targets: Vec<String>,
        /// Remove the group (refused for the last group with a weight unless the cell is DOWN).
        #[arg(long, conflicts_with_all = ["version", "weight", "targets"])]
        remove: bool,
    },
    /// Set the weights of named groups in several cells: every cell is checked first, then
    /// written with one conditional write each.
    Weights {
        /// A cell to change; repeat for several.
        #[arg(
            long = "cell",
            required_unless_present = "wave",
            conflicts_with = "wave"
        )]
        cells: Vec<String>,
        /// Change every cell of this wave.
        #[arg(long)]
        wave: Option<u32>,
        /// GROUP=WEIGHT (0-10000); repeat for several groups.
        #[arg(long = "set", required = true)]
        set: Vec<String>,
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
    /// A multi-cell write stopped part-way: which cells were written and which were not.
    #[error("cell {cell}: {source}; written before it: {written:?}; not attempted: {pending:?}")]
    Partial {
        cell: String,
        source: Box<OpsError>,
        written: Vec<String>,
        pending: Vec<String>,
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
            force,
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
            // Like `tenant move`: no new placement lands in a cell being emptied or down.
            let placing = current.as_ref().is_none_or(|c| c.cell != record.cell);
            if placing
                && !force
                && let Some(c) = current_cell(reg, &record.cell).await?
                && c.state != "ACTIVE"
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
            wave,
            clear_wave,
        } => {
            if !valid_cell_id(&cell) {
                return Err(invalid("cell", &cell, CELL_ID_RULE));
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
            let groups = match (&current, targets.is_empty()) {
                (_, false) => vec![TargetGroup {
                    name: "stable".to_owned(),
                    targets,
                    weight: 100,
                    version: "stable".to_owned(),
                }],
                (Some(c), true) => c.groups.clone(),
                (None, true) => {
                    return Err(invalid(
                        "--target",
                        "[]",
                        format!("cell {cell} is new: give it at least one target"),
                    ));
                }
            };
            let record = CellRecord {
                id: cell.clone(),
                state: state
                    .or_else(|| current.as_ref().map(|c| c.state.clone()))
                    .unwrap_or_else(|| "ACTIVE".to_owned()),
                region: region.or_else(|| current.as_ref().and_then(|c| c.region.clone())),
                groups,
                preserve_host,
                max_in_flight: match max_in_flight {
                    Some(0) => None,
                    Some(n) => Some(n),
                    None => current.as_ref().and_then(|c| c.max_in_flight),
                },
                wave: if clear_wave {
                    None
                } else {
                    wave.or_else(|| current.as_ref().and_then(|c| c.wave))
                },
                version: 0,
            };
            write_cell(reg, record, current.map(|c| c.version)).await
        }
        CellCommand::Group {
            cell,
            name,
            version,
            weight,
            targets,
            remove,
        } => {
            let edit = GroupEdit {
                name,
                version,
                weight,
                targets,
            };
            cell_group(reg, &cell, edit, remove).await
        }
        CellCommand::Weights { cells, wave, set } => set_weights(reg, &cells, wave, &set).await,
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

/// `cell group`, parsed: the fields to set on one group (unset ones keep their values).
#[derive(Debug, Clone)]
pub struct GroupEdit {
    pub name: String,
    pub version: Option<String>,
    pub weight: Option<u32>,
    pub targets: Vec<String>,
}

const LABEL_RULE: &str = "1-64 characters of A-Z a-z 0-9 . _ -";

fn check_weight(field: &str, value: &str, weight: u32) -> Result<u32, OpsError> {
    if weight > MAX_WEIGHT {
        return Err(invalid(field, value, format!("a weight is 0-{MAX_WEIGHT}")));
    }
    Ok(weight)
}

fn group_names(c: &CellRecord) -> String {
    let names: Vec<&str> = c.groups.iter().map(|g| g.name.as_str()).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Creates, updates or removes one target group of a registry cell; the other groups are kept
/// and the result is checked as the proxy will check it before it is written (version + 1).
async fn cell_group(
    reg: &Registry,
    cell: &str,
    edit: GroupEdit,
    remove: bool,
) -> Result<Value, OpsError> {
    if !valid_cell_id(cell) {
        return Err(invalid("cell", cell, CELL_ID_RULE));
    }
    if !valid_label(&edit.name) {
        return Err(invalid("--name", &edit.name, LABEL_RULE));
    }
    if let Some(v) = &edit.version
        && !valid_label(v)
    {
        return Err(invalid("--version", v, LABEL_RULE));
    }
    if let Some(w) = edit.weight {
        check_weight("--weight", &w.to_string(), w)?;
    }
    let Some(current) = current_cell(reg, cell).await? else {
        return Err(not_found(reg, "cell", cell));
    };
    let expected = current.version;
    let mut next = current.clone();
    let at = next.groups.iter().position(|g| g.name == edit.name);
    if remove {
        let Some(i) = at else {
            return Err(invalid(
                "--name",
                &edit.name,
                format!(
                    "cell {cell} has no such group (its groups: {})",
                    group_names(&current)
                ),
            ));
        };
        next.groups.remove(i);
        let weighted = next
            .groups
            .iter()
            .any(|g| g.weight > 0 && !g.targets.is_empty());
        if !weighted && next.state != "DOWN" {
            return Err(invalid(
                "--remove",
                &edit.name,
                format!(
                    "the last group with a weight in cell {cell} ({}): give another group a \
                     weight first, or mark the cell DOWN",
                    current.state
                ),
            ));
        }
    } else {
        match at {
            Some(i) => {
                let g = &mut next.groups[i];
                if let Some(v) = edit.version {
                    g.version = v;
                }
                if let Some(w) = edit.weight {
                    g.weight = w;
                }
                if !edit.targets.is_empty() {
                    g.targets = edit.targets;
                }
            }
            None if edit.targets.is_empty() => {
                return Err(invalid(
                    "--target",
                    "[]",
                    format!(
                        "group {} is new in cell {cell}: give it at least one target",
                        edit.name
                    ),
                ));
            }
            None => next.groups.push(TargetGroup {
                version: edit.version.unwrap_or_else(|| edit.name.clone()),
                name: edit.name,
                targets: edit.targets,
                weight: edit.weight.unwrap_or(0),
            }),
        }
    }
    write_cell(reg, next, Some(expected)).await
}

/// `cell weights`: the cells named, or every cell of `wave`; each must have every group in
/// `set` and stay valid with the new weights, all checked before the first write. Then one
/// conditional write per cell (a cell already at those weights is left alone); a failed write
/// stops the run and says which cells were written.
async fn set_weights(
    reg: &Registry,
    cells: &[String],
    wave: Option<u32>,
    set: &[String],
) -> Result<Value, OpsError> {
    let mut weights: Vec<(String, u32)> = Vec::with_capacity(set.len());
    for s in set {
        let Some((group, w)) = s.split_once('=') else {
            return Err(invalid("--set", s, "GROUP=WEIGHT, e.g. canary=10"));
        };
        if !valid_label(group) {
            return Err(invalid("--set", s, format!("group names are {LABEL_RULE}")));
        }
        let w = w
            .trim()
            .parse::<u32>()
            .map_err(|_| invalid("--set", s, format!("a weight is 0-{MAX_WEIGHT}")))?;
        if weights.iter().any(|(g, _)| g == group) {
            return Err(invalid("--set", s, format!("group {group} is set twice")));
        }
        weights.push((group.to_owned(), check_weight("--set", s, w)?));
    }
    let selected = select_cells(reg, cells, wave).await?;
    // Check everything before writing anything.
    let mut plans: Vec<(CellRecord, CellRecord)> = Vec::with_capacity(selected.len());
    for current in selected {
        let mut next = current.clone();
        for (group, w) in &weights {
            let Some(g) = next.groups.iter_mut().find(|g| &g.name == group) else {
                return Err(invalid(
                    "--set",
                    &format!("{group}={w}"),
                    format!(
                        "cell {} has no group {group} (its groups: {}); nothing was written",
                        current.id,
                        group_names(&current)
                    ),
                ));
            };
            g.weight = *w;
        }
        crate::placement::Cell::from_file(&next.to_file_cell(), &format!("cell {}", current.id))
            .map_err(|f| {
                invalid(
                    f.key,
                    &f.value,
                    format!("{} with the new weights; nothing was written", f.reason),
                )
            })?;
        plans.push((current, next));
    }
    let ids: Vec<String> = plans.iter().map(|(c, _)| c.id.clone()).collect();
    let mut results = Vec::with_capacity(plans.len());
    let mut written = Vec::new();
    for (i, (current, next)) in plans.into_iter().enumerate() {
        let id = current.id.clone();
        if next.groups == current.groups {
            results.push(json!({"cell": id, "result": "unchanged", "version": current.version}));
            continue;
        }
        match write_cell(reg, next, Some(current.version)).await {
            Ok(out) => {
                let record = &out["record"];
                results.push(json!({
                    "cell": id,
                    "result": "written",
                    "version": record["version"],
                    "epoch": out["epoch"],
                    "target_groups": record["target_groups"],
                }));
                written.push(id);
            }
            Err(e) => {
                return Err(OpsError::Partial {
                    cell: id,
                    source: Box::new(e),
                    written,
                    pending: ids[i + 1..].to_vec(),
                });
            }
        }
    }
    let set: serde_json::Map<String, Value> =
        weights.into_iter().map(|(g, w)| (g, json!(w))).collect();
    Ok(json!({"set": set, "wave": wave, "cells": results}))
}

/// The cells `cell weights` works on, sorted by id: the ones named (each must exist), or every
/// registry cell of `wave` (at least one).
async fn select_cells(
    reg: &Registry,
    cells: &[String],
    wave: Option<u32>,
) -> Result<Vec<CellRecord>, OpsError> {
    let mut out = Vec::new();
    if let Some(n) = wave {
        for item in reg.list("cell").await? {
            let c = cell_from_item(&item)
                .map_err(|b| invalid(format!("stored cell: {}", b.field), &b.value, b.reason))?;
            if c.wave == Some(n) {
                out.push(c);
            }
        }
        if out.is_empty() {
            return Err(invalid(
                "--wave",
                &n.to_string(),
                format!("no cell in table {} has this wave", reg.table()),
            ));
        }
    } else {
        if cells.is_empty() {
            return Err(invalid("--cell", "", "name at least one cell, or a --wave"));
        }
        for id in cells {
            if !valid_cell_id(id) {
                return Err(invalid("--cell", id, CELL_ID_RULE));
            }
            if out.iter().any(|c: &CellRecord| &c.id == id) {
                continue;
            }
            match current_cell(reg, id).await? {
                Some(c) => out.push(c),
                None => return Err(not_found(reg, "cell", id)),
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}
