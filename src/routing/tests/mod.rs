//! Routing tests: the shared registry snapshot, records, cells and the canary fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use crate::config::file::FileCell;
use crate::placement::{RegistryData, TenantRecord};

mod arms;
mod hints;
mod issuers;
mod status;
mod targets;

fn cell(id: &str, state: &str, targets: &[&str]) -> Cell {
    let fc = FileCell {
        id: id.to_owned(),
        state: Some(state.to_owned()),
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        groups: Vec::new(),
        preserve_host: None,
        max_in_flight: None,
        wave: None,
        protocol: None,
    };
    Cell::from_file(&fc, "cells[0]").unwrap()
}

fn record(id: &str, cell: &str, status: TenantStatus, version: u64) -> TenantRecord {
    TenantRecord {
        id: id.to_owned(),
        cell: cell.to_owned(),
        status,
        tier: "standard".to_owned(),
        version,
        issuers: Vec::new(),
        limits: Default::default(),
        arm: None,
        entitlements: Vec::new(),
    }
}

/// Generation 1: cell-1 (two targets), cell-2 (draining), cell-down (DOWN) and one tenant per
/// interesting status; `lost` names a cell nobody defines.
fn snapshot() -> PlacementSnapshot {
    let data = RegistryData::from_records(
        vec![
            record("acme", "cell-1", TenantStatus::Active, 7),
            record("globex", "cell-2", TenantStatus::Active, 1),
            record("sus", "cell-1", TenantStatus::Suspended, 1),
            record("gone", "cell-1", TenantStatus::Offboarded, 1),
            record("moving", "cell-1", TenantStatus::Migrating, 1),
            record("downy", "cell-down", TenantStatus::Active, 1),
            record("lost", "cell-nowhere", TenantStatus::Active, 1),
            record("lost-sus", "cell-nowhere", TenantStatus::Suspended, 1),
        ],
        vec![
            cell(
                "cell-1",
                "ACTIVE",
                &["http://10.0.0.1:8080", "http://10.0.0.2:8080"],
            ),
            cell("cell-2", "DRAINING", &["http://10.0.1.1:8080"]),
            cell("cell-down", "DOWN", &["http://10.0.2.1:8080"]),
        ],
    );
    PlacementSnapshot::build(data, &[], 1)
}

fn t(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

/// A snapshot of one cell `cell-c` with the groups `(name, weight, has targets)` and the
/// tenants `(id, pinned arm)`.
fn canary_snapshot(
    groups: &[(&str, u32, bool)],
    tenants: &[(&str, Option<&str>)],
) -> PlacementSnapshot {
    use crate::config::file::FileGroup;
    let fc = FileCell {
        id: "cell-c".to_owned(),
        state: None,
        targets: Vec::new(),
        groups: groups
            .iter()
            .enumerate()
            .map(|(i, (name, weight, has_targets))| FileGroup {
                name: (*name).to_owned(),
                version: None,
                weight: *weight,
                targets: if *has_targets {
                    vec![format!("http://10.9.1.{}:80", i + 1)]
                } else {
                    Vec::new()
                },
            })
            .collect(),
        preserve_host: None,
        max_in_flight: None,
        wave: None,
        protocol: None,
    };
    let data = RegistryData::from_records(
        tenants
            .iter()
            .map(|(id, arm)| {
                let mut r = record(id, "cell-c", TenantStatus::Active, 1);
                r.arm = arm.map(str::to_owned);
                r
            })
            .collect::<Vec<_>>(),
        vec![Cell::from_file(&fc, "cells[0]").unwrap()],
    );
    PlacementSnapshot::build(data, &[], 1)
}

/// The name of the arm `tenant` gets under `hint`.
fn arm_of(snap: &PlacementSnapshot, tenant: &str, hint: ArmHint<'_>) -> String {
    let d = route_with(
        &t(tenant),
        &Method::GET,
        None,
        snap,
        RoutePolicy::default(),
        hint,
        None,
    )
    .unwrap();
    assert!(d.cell.groups[d.group].targets.contains(&d.target));
    d.cell.groups[d.group].name.to_string()
}

fn forced(arm: &str) -> ArmHint<'_> {
    ArmHint {
        key: None,
        forced: Some(arm),
    }
}
