//! Which arm of a cell a tenant gets: forced arms, pins and weights.

use super::*;

#[test]
fn a_pinned_tenant_gets_its_arm_whatever_the_weights() {
    use crate::config::file::{FileCell, FileGroup};
    let group = |name: &str, weight: u32, ip: u8| FileGroup {
        name: name.to_owned(),
        version: None,
        weight,
        targets: vec![format!("http://10.9.0.{ip}:80")],
    };
    let fc = FileCell {
        id: "cell-c".to_owned(),
        state: None,
        targets: Vec::new(),
        groups: vec![group("stable", 100, 1), group("canary", 0, 2)],
        preserve_host: None,
        max_in_flight: None,
        wave: None,
        protocol: None,
    };
    let mut tenants: Vec<TenantRecord> = (0..200)
        .map(|i| record(&format!("t{i}"), "cell-c", TenantStatus::Active, 1))
        .collect();
    tenants[7].arm = Some("canary".to_owned());
    tenants[8].arm = Some("no-such-group".to_owned());
    let data = RegistryData::from_records(tenants, vec![Cell::from_file(&fc, "cells[0]").unwrap()]);
    let snap = PlacementSnapshot::build(data, &[], 1);
    for i in 0..200 {
        let d = route(&t(&format!("t{i}")), &Method::GET, None, &snap).unwrap();
        let want = if i == 7 { 1 } else { 0 };
        assert_eq!(d.group, want, "t{i}");
        assert!(d.cell.groups[want].targets.contains(&d.target));
    }
}

#[test]
fn a_forced_arm_wins_over_the_pin_which_wins_over_the_weights() {
    let snap = canary_snapshot(
        &[
            ("stable", 100, true),
            ("canary", 0, true),
            ("beta", 0, true),
        ],
        &[("pinned", Some("canary")), ("free", None)],
    );
    let none = ArmHint::default();
    assert_eq!(arm_of(&snap, "free", none), "stable");
    assert_eq!(arm_of(&snap, "pinned", none), "canary");
    // Forced beats pinned, and reaches a dark group (weight 0) too.
    assert_eq!(arm_of(&snap, "pinned", forced("beta")), "beta");
    assert_eq!(arm_of(&snap, "free", forced("canary")), "canary");
    assert_eq!(arm_of(&snap, "free", forced("stable")), "stable");
}

#[test]
fn a_forced_or_pinned_arm_the_cell_cannot_serve_is_passed_over() {
    let snap = canary_snapshot(
        &[
            ("stable", 100, true),
            ("canary", 0, true),
            ("empty", 0, false),
        ],
        &[
            ("pinned", Some("canary")),
            ("free", None),
            ("lost", Some("empty")),
        ],
    );
    // Unknown or target-less forced arm: the pin decides, else the weights.
    for arm in ["nope", "empty", "", "STABLE"] {
        assert_eq!(arm_of(&snap, "pinned", forced(arm)), "canary", "{arm:?}");
        assert_eq!(arm_of(&snap, "free", forced(arm)), "stable", "{arm:?}");
    }
    // A pin to a group without targets falls through to the weights as well.
    assert_eq!(arm_of(&snap, "lost", ArmHint::default()), "stable");
    assert_eq!(arm_of(&snap, "lost", forced("empty")), "stable");
}
