//! Placement tests: the shared registry file, tenant records and cells.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use crate::config::file::FileCell;

mod cells;
mod generations;
mod jsonl;
mod keys;
mod parse;
mod snapshots;
mod source;

const GOOD: &str = r#"
[[cells]]
id = "cell-1"
targets = ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]

[[cells]]
id = "cell-2"
state = "DRAINING"
targets = ["https://cell-2.internal.example"]

[[tenants]]
id = "acme"
cell = "cell-1"
tier = "enterprise"
version = 7

[[tenants]]
id = "globex"
cell = "cell-2"
status = "MIGRATING"
"#;

fn tenant(id: &str, cell: &str, status: TenantStatus) -> TenantRecord {
    TenantRecord {
        id: id.to_owned(),
        cell: cell.to_owned(),
        status,
        tier: "standard".to_owned(),
        version: 1,
        issuers: Vec::new(),
        limits: Default::default(),
        arm: None,
        entitlements: Vec::new(),
    }
}

fn cell(id: &str, targets: &[&str]) -> Cell {
    let fc = FileCell {
        id: id.to_owned(),
        state: None,
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        groups: Vec::new(),
        preserve_host: None,
        max_in_flight: None,
        wave: None,
        protocol: None,
    };
    Cell::from_file(&fc, "cells[0]").unwrap()
}
