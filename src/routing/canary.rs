//! Canary by cell: which target group (deployment arm) of a cell serves a tenant.
//!
//! Weighted rendezvous hashing over the groups with a weight: each group scores
//! `weight / -ln(u)`, with `u` a uniform number from a stable hash of (tenant, group name), and
//! the highest score wins. So one tenant sees one arm on every request and every node; the share
//! of tenants on a group is its weight over the total; and raising one group's weight moves
//! tenants only *to* that group (5 -> 10 moves about 5% of tenants, all of them to it), while
//! lowering it moves only its own tenants away. The hash is FNV-1a with a SplitMix64 finish,
//! fixed forever, so a fleet on mixed builds agrees.

use crate::hash::{StableHasher, mix};
use crate::placement::group::Group;

/// The hash a tenant's arm is chosen by: the tenant id alone, or with a per-request `key` (the
/// token's `sub` under `canary.hash_by = "sub"`) the tenant id, a 0x00 byte and the key. Tenant
/// ids never contain 0x00, so one `sub` in two tenants hashes independently; without a key
/// this is `stable_hash(tenant)`, the tenant's own arm.
#[must_use]
pub fn arm_hash(tenant: &str, key: Option<&str>) -> u64 {
    let mut h = StableHasher::new();
    h.write(tenant.as_bytes());
    if let Some(k) = key {
        h.write(&[0]);
        h.write(k.as_bytes());
    }
    h.finish()
}

/// The group serving `key` (a tenant id), or `None` when no group has both a weight and
/// targets.
#[must_use]
pub fn arm(groups: &[Group], key: &str) -> Option<usize> {
    arm_keyed(groups, key, None)
}

/// The group serving `tenant` for a request hashed with `key` (see [`arm_hash`]), or `None`
/// when no group has both a weight and targets.
#[must_use]
pub fn arm_keyed(groups: &[Group], tenant: &str, key: Option<&str>) -> Option<usize> {
    // One group: no hashing (the common case of a cell without a canary).
    if let [only] = groups {
        return (only.weight > 0 && !only.targets.is_empty()).then_some(0);
    }
    let h = arm_hash(tenant, key);
    let mut best: Option<(usize, f64)> = None;
    for (i, g) in groups.iter().enumerate() {
        if g.weight == 0 || g.targets.is_empty() {
            continue;
        }
        // u in (0, 1): 53 random bits, centred so it is never 0 or 1.
        let u = ((mix(h ^ g.seed) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(g.weight) / -u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::config::file::{FileCell, FileGroup};
    use crate::placement::Cell;

    fn cell(groups: &[(&str, u32)]) -> Cell {
        let fc = FileCell {
            id: "c".to_owned(),
            state: None,
            targets: Vec::new(),
            groups: groups
                .iter()
                .enumerate()
                .map(|(i, (name, weight))| FileGroup {
                    name: (*name).to_owned(),
                    version: None,
                    weight: *weight,
                    targets: vec![format!("http://10.0.0.{}:80", i + 1)],
                })
                .collect(),
            preserve_host: None,
            max_in_flight: None,
            wave: None,
            protocol: None,
        };
        Cell::from_file(&fc, "cells[0]").unwrap()
    }

    fn tenants(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("tenant-{i:06}")).collect()
    }

    fn arms(c: &Cell, ts: &[String]) -> Vec<usize> {
        ts.iter().map(|t| arm(&c.groups, t).unwrap()).collect()
    }

    fn share(arms: &[usize], group: usize) -> f64 {
        arms.iter().filter(|&&a| a == group).count() as f64 * 100.0 / arms.len() as f64
    }

    #[test]
    fn the_arm_hash_is_the_tenant_then_its_key() {
        // Without a key the arm hash is the tenant's own; with one it is tenant, 0x00, key.
        assert_eq!(arm_hash("acme", None), crate::hash::stable_hash(b"acme"));
        assert_eq!(
            arm_hash("acme", Some("u1")),
            crate::hash::stable_hash(b"acme\0u1")
        );
        assert_ne!(arm_hash("acme", Some("u1")), arm_hash("acmeu", Some("1")));
    }

    #[test]
    fn split_over_100k_tenants_is_within_half_a_point_of_the_weights() {
        let ts = tenants(100_000);
        let a = arms(&cell(&[("stable", 95), ("canary", 5)]), &ts);
        let canary = share(&a, 1);
        assert!((canary - 5.0).abs() <= 0.5, "canary share {canary:.3}%");
        let a = arms(&cell(&[("a", 70), ("b", 20), ("c", 10)]), &ts);
        for (g, want) in [(0, 70.0), (1, 20.0), (2, 10.0)] {
            let got = share(&a, g);
            assert!(
                (got - want).abs() <= 0.5,
                "group {g}: {got:.3}% (want {want}%)"
            );
        }
    }

    #[test]
    fn a_tenant_keeps_its_arm_across_weight_preserving_reloads() {
        let ts = tenants(20_000);
        let before = arms(&cell(&[("stable", 95), ("canary", 5)]), &ts);
        // A reload (new generation) with the same weights, and one listing the groups in
        // another order (names, not positions, decide).
        let again = arms(&cell(&[("stable", 95), ("canary", 5)]), &ts);
        assert_eq!(before, again);
        let swapped = arms(&cell(&[("canary", 5), ("stable", 95)]), &ts);
        assert!(before.iter().zip(&swapped).all(|(b, s)| *b == 1 - *s));
        // Every request of one tenant: the same arm.
        let c = cell(&[("stable", 95), ("canary", 5)]);
        let first = arm(&c.groups, "acme");
        assert!((0..1_000).all(|_| arm(&c.groups, "acme") == first));
    }

    #[test]
    fn raising_the_canary_weight_moves_only_the_tenants_needed() {
        let ts = tenants(100_000);
        let at5 = arms(&cell(&[("stable", 95), ("canary", 5)]), &ts);
        let at10 = arms(&cell(&[("stable", 90), ("canary", 10)]), &ts);
        let mut moved = 0;
        for (a, b) in at5.iter().zip(&at10) {
            if a != b {
                assert_eq!((*a, *b), (0, 1), "a tenant left the canary when it grew");
                moved += 1;
            }
        }
        let moved_pct = moved as f64 * 100.0 / ts.len() as f64;
        assert!((moved_pct - 5.0).abs() <= 0.5, "moved {moved_pct:.3}%");
        // A third group added at weight 0 moves nobody.
        let with_idle = arms(&cell(&[("stable", 90), ("canary", 10), ("next", 0)]), &ts);
        assert_eq!(at10, with_idle);
    }

    #[test]
    fn groups_without_weight_or_targets_take_no_tenant() {
        let c = cell(&[("stable", 100), ("dark", 0)]);
        assert!(tenants(1_000).iter().all(|t| arm(&c.groups, t) == Some(0)));
        let only = cell(&[("stable", 100)]);
        assert_eq!(arm(&only.groups, "acme"), Some(0));
        assert_eq!(arm(&[], "acme"), None);
    }
}
