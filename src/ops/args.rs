//! The operator commands' arguments, as clap parses them: where the table is ([`TableArgs`])
//! and the `registry`, `tenant`, `cell` and `apikey` subcommands. `src/main.rs` puts these on
//! its command line; the sibling modules carry them out.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};

use super::choose::Strategy;
use crate::placement::{CellState, TenantStatus};
use crate::upstream::Protocol;

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
    /// Write every tenant and cell as a JSON Lines registry file (for `registry.source =
    /// "file"`), replaced atomically; prints the counts (to stderr with `--out -`).
    Export {
        /// The file (`.jsonl` or `.ndjson`), or `-` for stdout.
        #[arg(long)]
        out: String,
        /// Parallel scan segments.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        segments: u32,
    },
}

impl RegistryCommand {
    /// Whether the command's records go to stdout (its JSON result then goes to stderr).
    #[must_use]
    pub fn writes_stdout(&self) -> bool {
        matches!(self, Self::Export { out, .. } if out == "-")
    }
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
        #[arg(long, value_parser = tenant_status())]
        status: Option<TenantStatus>,
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
        /// An entitlement the tenant holds (e.g. `reports`); repeat for several. Replaces the
        /// stored list (default: keep it).
        #[arg(long = "entitlement", conflicts_with = "clear_entitlements")]
        entitlements: Vec<String>,
        /// Drop every entitlement: routes that require one are refused (403 `not_entitled`).
        #[arg(long)]
        clear_entitlements: bool,
        /// Write only if the stored version is this one (default: the version just read).
        #[arg(long)]
        expect_version: Option<u64>,
        /// Place a new tenant, or move one, into a cell that is DRAINING or DOWN anyway.
        #[arg(long)]
        force: bool,
    },
    /// Place a new tenant: choose an ACTIVE cell with the required tags and room under
    /// `--max-fill`, and write the tenant and the cell's counts in one transaction.
    Place {
        tenant: String,
        /// The tenant's tier (default `standard`); its units in a cell are the cell's
        /// `tier_units` for it (default 1).
        #[arg(long)]
        tier: Option<String>,
        /// Only cells in this region (their `region`, or a `region=R` tag). For this command
        /// `--region` names the cells' region: the table's comes from AWS_REGION or the profile.
        #[arg(long)]
        region: Option<String>,
        /// A tag the cell must carry (e.g. `pci`); repeat for several.
        #[arg(long = "require")]
        require: Vec<String>,
        /// `least-loaded` (the lowest fill, ties by cell id) or `hash` (rendezvous hashing of
        /// the tenant id: the same tenant gets the same cell while the cells stay the same).
        #[arg(long, default_value = "least-loaded", value_parser = strategy())]
        strategy: Strategy,
        /// The fill (units / capacity) no cell may pass with this tenant, in (0, 1].
        #[arg(long, default_value = "0.7")]
        max_fill: String,
        /// Choose and print, write nothing.
        #[arg(long)]
        dry_run: bool,
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
            entitlements: Vec::new(),
            clear_entitlements: false,
            expect_version: None,
            force: false,
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum ApiKeyCommand {
    /// Make a key for a tenant of the table and print it, the only time it is shown (the table
    /// holds its hash); with `--print-record`, write nothing and print the key and its
    /// registry-file record.
    Create(CreateKey),
    /// Print a tenant's keys: ids, status, expiry, scopes; never a key or its hash. A filtered
    /// Scan: it reads the whole table.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key: refused on every proxy from its next poll (a key already revoked is left
    /// as it is).
    Revoke {
        /// The key's id (the 12 characters after `cgk_`).
        id: String,
    },
    /// Replace an ACTIVE key: a new key for the same tenant and scopes, while the old one
    /// works until the grace ends; both written in one transaction.
    Rotate {
        /// The old key's id.
        id: String,
        /// How long the old key keeps working (`0s`: it stops now); never beyond its expiry.
        #[arg(long, default_value = "24h")]
        grace: String,
        /// The new key's lifetime, e.g. `90d` (default: the old key's lifetime, if it had one).
        #[arg(long)]
        expires: Option<String>,
    },
}

/// `apikey create`'s flags.
#[derive(Debug, Clone, Args)]
pub struct CreateKey {
    /// The tenant the key speaks for (it must exist in the table, unless `--print-record`).
    #[arg(long)]
    pub tenant: String,
    /// Lifetime, e.g. `90d`, `12h` (default: none).
    #[arg(long)]
    pub expires: Option<String>,
    /// Limit the key to routes needing this entitlement (or none); repeat for several.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Write nothing: print the key and its record for a file registry (`{"apikey": ...}`
    /// line or `[[apikeys]]` table).
    #[arg(long)]
    pub print_record: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CellCommand {
    /// Create or update a cell. With `--target`, its targets become one group (`stable`); an
    /// existing cell written without `--target` keeps its target groups.
    Put {
        cell: String,
        /// A target URL (`http(s)://host[:port]`); repeat for several. Required for a new cell.
        #[arg(long = "target")]
        targets: Vec<String>,
        /// ACTIVE, DRAINING or DOWN (default: the current state, else ACTIVE).
        #[arg(long, value_parser = cell_state())]
        state: Option<CellState>,
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
        /// How the proxy speaks to the cell's targets: http1, http2 (HTTP/2 only: ALPN h2 over
        /// TLS, prior knowledge in cleartext) or auto (over TLS what ALPN settles; in cleartext
        /// HTTP/1.1). Default: the current one; a new cell, http1.
        #[arg(long, value_parser = protocol())]
        protocol: Option<Protocol>,
        /// Units the cell holds, for `tenant place` (default: the current value; `0` removes
        /// it, so `tenant place` never chooses the cell).
        #[arg(long)]
        capacity: Option<u64>,
        /// What one tenant of a tier weighs here, `TIER=UNITS` (a tier not named: 1); repeat
        /// for several. Replaces the stored map (default: keep it).
        #[arg(
            long = "tier-units",
            value_name = "TIER=UNITS",
            conflicts_with = "clear_tier_units"
        )]
        tier_units: Vec<String>,
        /// Every tier weighs 1 unit again.
        #[arg(long)]
        clear_tier_units: bool,
        /// A placement label (`pci`, `eu-only`, `region=eu-west-1`); repeat for several.
        /// Replaces the stored tags (default: keep them).
        #[arg(long = "tag", conflicts_with = "clear_tags")]
        tags: Vec<String>,
        /// Drop every tag.
        #[arg(long)]
        clear_tags: bool,
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
    /// Per cell: state, region, capacity, tenants, load, fill and tags.
    Usage {
        /// Count the tenants of every cell from a scan of the tenant records and write the
        /// counts that drifted (for a table written before the counts were kept).
        #[arg(long)]
        recount: bool,
    },
}

impl CellCommand {
    /// Whether `--region` names the cell's region (`cell put`) rather than the table's.
    #[must_use]
    pub fn names_cell_region(&self) -> bool {
        matches!(
            self,
            Self::Put {
                region: Some(_),
                ..
            }
        )
    }
}

impl TenantCommand {
    /// Whether `--region` names the cells' region (`tenant place`) rather than the table's.
    #[must_use]
    pub fn names_cell_region(&self) -> bool {
        matches!(
            self,
            Self::Place {
                region: Some(_),
                ..
            }
        )
    }
}

impl TableArgs {
    /// These args without a region, for a command whose `--region` is a cell's region: clap
    /// gives the one `--region` on the command line to both, so the table's region then comes
    /// from AWS_REGION or the profile.
    #[must_use]
    pub fn without_region(self) -> Self {
        Self {
            region: None,
            ..self
        }
    }
}

/// `--state`: a cell state as the registry spells it; clap lists the accepted ones on a miss.
fn cell_state() -> impl TypedValueParser<Value = CellState> {
    PossibleValuesParser::new(CellState::ALL.map(CellState::as_str)).try_map(|s| s.parse())
}

/// `--protocol`: how a cell's targets are spoken to; clap lists the accepted ones on a miss.
fn protocol() -> impl TypedValueParser<Value = Protocol> {
    PossibleValuesParser::new(Protocol::ALL.map(Protocol::as_str))
        .try_map(|s| Protocol::parse(&s).ok_or(format!("expected {}", Protocol::EXPECTED)))
}

/// `--status`: a tenant status as the registry spells it.
fn tenant_status() -> impl TypedValueParser<Value = TenantStatus> {
    PossibleValuesParser::new(TenantStatus::ALL.map(TenantStatus::as_str)).try_map(|s| s.parse())
}

/// `--strategy`: how `tenant place` chooses.
fn strategy() -> impl TypedValueParser<Value = Strategy> {
    PossibleValuesParser::new(Strategy::ALL.map(Strategy::as_str)).try_map(|s| s.parse())
}
