//! Operator commands on the DynamoDB registry: `cellgate registry|tenant|cell|apikey ...`.
//!
//! The CLI (`src/main.rs`) parses these argument structs and calls [`registry_command`],
//! [`tenant_command`], [`cell_command`] or [`apikey_command`] (and [`print_record`], which
//! touches no table); each command prints one JSON document on success and
//! fails with a message naming what went wrong (a lost conditional write included), so the
//! commands script well. Every write goes through
//! [`Registry::commit`]: versioned, change-logged, and visible to every proxy at its next poll.
//!
//! Layout: `args` (the clap types), `io` (reading, writing and printing records), `counts`
//! (keeping the cells' placement counts right on every tenant write), `tenant`, `moves`
//! (`tenant move`), `choose` (the pure choice of a cell for a new tenant) and `place`
//! (`tenant place`), `cell`, `weights` (`cell weights`), `usage` (`cell usage`), `export`
//! (`registry export`, the table as a JSON Lines registry file) and `apikey` (the API key
//! lifecycle); this file holds the shared error type, the connection and the `registry`
//! commands.

mod apikey;
mod args;
mod cell;
pub mod choose;
mod counts;
mod export;
mod io;
mod moves;
mod place;
mod tenant;
mod usage;
mod weights;

use serde_json::{Value, json};

pub use self::apikey::{apikey_command, print_record};
pub use self::args::{
    ApiKeyCommand, CellCommand, CreateKey, RegistryCommand, TableArgs, TenantCommand,
};
pub use self::cell::{GroupEdit, cell_command};
pub use self::moves::{MovePlan, move_tenant};
pub use self::place::{PlaceRequest, place_tenant};
pub use self::tenant::tenant_command;
pub use crate::placement::dynamo::write::Registry;
use crate::placement::dynamo::write::{InitOutcome, WriteError};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no registry table: pass --table or set CELLGATE_REGISTRY_TABLE")]
    NoTable,
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{what} {id} not found in table {table}")]
    NotFound {
        what: &'static str,
        id: String,
        table: String,
    },
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{field} = `{value}`: {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: String,
    },
    /// `tenant place` found no cell to take the tenant (the message says why, cell by cell).
    #[error("{0}")]
    Refused(String),
    #[error("making an API key: the system's random source failed")]
    Random,
    #[error("printing the record: {0}")]
    Print(#[from] serde_json::Error),
    /// A multi-cell write stopped part-way: which cells were written and which were not.
    /// (`error`, not `source`: the message carries it, and a source would be printed twice.)
    #[error(
        "cell {cell}: {error}; written before it: {}; not attempted: {}",
        names(.written), names(.pending)
    )]
    Partial {
        cell: String,
        error: Box<OpsError>,
        written: Vec<String>,
        pending: Vec<String>,
    },
}

fn names(ids: &[String]) -> String {
    if ids.is_empty() {
        "none".to_owned()
    } else {
        ids.join(", ")
    }
}

pub(super) fn invalid(
    field: impl Into<String>,
    value: &str,
    reason: impl Into<String>,
) -> OpsError {
    OpsError::Invalid {
        field: field.into(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

pub(super) fn not_found(reg: &Registry, what: &'static str, id: &str) -> OpsError {
    OpsError::NotFound {
        what,
        id: id.to_owned(),
        table: reg.table().to_owned(),
    }
}

/// Connects to the table named by `args`.
pub async fn registry(args: &TableArgs) -> Result<Registry, OpsError> {
    let table = args.table.clone().ok_or(OpsError::NoTable)?;
    if let Some(url) = &args.endpoint_url {
        check_endpoint(url)?;
    }
    let client =
        crate::placement::dynamo::client(args.region.as_deref(), args.endpoint_url.as_deref())
            .await;
    Ok(Registry::new(client, table))
}

/// An endpoint the SDK can use: it would otherwise fail at the first call, quoting the request.
fn check_endpoint(url: &str) -> Result<(), OpsError> {
    let ok = url
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "--endpoint-url",
            url,
            "expected http(s)://host[:port]",
        ))
    }
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
        RegistryCommand::Export { out, segments } => export::export(reg, &out, segments).await,
    }
}
