//! Generations built from deltas: the same answers as a full build of the same records, old
//! generations untouched, and the derived sets (dangling cells, bound issuers) kept by counts.

use std::collections::BTreeMap;

use super::*;

fn sorted(snap: &PlacementSnapshot) -> Vec<TenantRecord> {
    let mut v: Vec<_> = snap.records().collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// A random record from a small space of values, so that changes collide, repeat and delete.
fn random_record(rng: &mut fastrand::Rng, id: String, version: u64) -> TenantRecord {
    let mut t = tenant(&id, &format!("cell-{}", rng.u8(0..5)), TenantStatus::Active);
    t.status = TenantStatus::ALL[rng.usize(0..4)];
    t.tier = ["standard", "gold", "free"][rng.usize(0..3)].to_owned();
    t.version = version;
    if rng.u8(0..4) == 0 {
        t.issuers = vec![format!("https://idp-{}.test", rng.u8(0..3))];
    }
    if rng.u8(0..4) == 0 {
        t.limits.rate = Some(f64::from(rng.u8(1..4)) * 10.0);
    }
    if rng.u8(0..5) == 0 {
        t.arm = Some("canary".to_owned());
    }
    t
}

#[test]
fn deltas_give_what_a_full_build_of_the_same_records_gives() {
    let mut rng = fastrand::Rng::with_seed(18);
    let cells: Vec<Cell> = (0..4)
        .map(|i| cell(&format!("cell-{i}"), &["http://127.0.0.1:1"]))
        .collect();
    let mut model: BTreeMap<String, TenantRecord> = BTreeMap::new();
    for i in 0..3000 {
        let id = format!("t{i}");
        model.insert(id.clone(), random_record(&mut rng, id, 1));
    }
    let mut snap = PlacementSnapshot::build(
        RegistryData::from_records(model.values().cloned(), cells.clone()),
        &[],
        1,
    );
    for generation in 2..40u64 {
        let mut delta = Delta::default();
        for _ in 0..rng.usize(1..200) {
            let id = format!("t{}", rng.usize(0..4000));
            if rng.u8(0..6) == 0 {
                model.remove(&id);
                delta.tenants.push((id, None));
            } else {
                let version = model.get(&id).map_or(1, |t| t.version + 1);
                let r = random_record(&mut rng, id.clone(), version);
                model.insert(id.clone(), r.clone());
                delta.tenants.push((id, Some(r)));
            }
        }
        let before = sorted(&snap);
        let (next, stats) = snap.apply(&delta, &[], generation);
        assert_eq!(stats.regressions + stats.skipped, 0);
        let full = PlacementSnapshot::build(
            RegistryData::from_records(model.values().cloned(), cells.clone()),
            &[],
            generation,
        );
        assert_eq!(sorted(&next), sorted(&full), "generation {generation}");
        assert_eq!(next.tenant_count(), model.len());
        assert_eq!(next.dangling(), full.dangling());
        for iss in [
            "https://idp-0.test",
            "https://idp-1.test",
            "https://idp-2.test",
        ] {
            for id in ["t1", "t2", "t3", "t4", "t5"] {
                if let (Some(a), Some(b)) = (next.tenant(id), full.tenant(id)) {
                    assert_eq!(next.issuer_allowed(&a, iss), full.issuer_allowed(&b, iss));
                }
            }
        }
        for (id, r) in &model {
            let p = next.tenant(id).unwrap();
            assert_eq!(p.tenant_header(), id.as_str());
            assert_eq!(p.record(id), *r);
        }
        // The generation it was built from still answers as before.
        assert_eq!(sorted(&snap), before);
        snap = next;
    }
}

#[test]
fn a_cell_change_reaches_every_tenant_of_the_cell_and_only_them() {
    let data = RegistryData::from_records(
        (0..500).map(|i| {
            tenant(
                &format!("t{i}"),
                if i % 2 == 0 { "cell-a" } else { "cell-b" },
                TenantStatus::Active,
            )
        }),
        vec![
            cell("cell-a", &["http://127.0.0.1:1"]),
            cell("cell-b", &["http://127.0.0.1:2"]),
        ],
    );
    let snap = PlacementSnapshot::build(data, &[], 1);
    let delta = Delta {
        tenants: Vec::new(),
        cells: vec![(
            "cell-a".to_owned(),
            Some(cell("cell-a", &["http://127.0.0.1:3"])),
        )],
        skipped: 0,
        keys: Vec::new(),
    };
    let (next, _) = snap.apply(&delta, &[], 2);
    for i in 0..500 {
        let port = next
            .tenant(&format!("t{i}"))
            .unwrap()
            .cell()
            .unwrap()
            .targets[0]
            .port;
        assert_eq!(port, if i % 2 == 0 { 3 } else { 2 });
        let old = snap
            .tenant(&format!("t{i}"))
            .unwrap()
            .cell()
            .unwrap()
            .targets[0]
            .port;
        assert_eq!(old, if i % 2 == 0 { 1 } else { 2 });
    }
}

#[test]
fn dangling_cells_and_bound_issuers_follow_each_change() {
    let mut bound = tenant("bound", "cell-1", TenantStatus::Active);
    bound.issuers = vec!["https://own.idp".to_owned()];
    let data = RegistryData::from_records(
        [
            bound.clone(),
            tenant("other", "cell-1", TenantStatus::Active),
        ],
        vec![cell("cell-1", &["http://127.0.0.1:1"])],
    );
    let snap = PlacementSnapshot::build(data, &[], 1);
    let other = snap.tenant("other").unwrap();
    assert!(!snap.issuer_allowed(&other, "https://own.idp"));

    // `bound` moves to a cell nobody defines and drops its issuer.
    let mut moved = tenant("bound", "cell-9", TenantStatus::Active);
    moved.version = 2;
    let delta = Delta {
        tenants: vec![("bound".to_owned(), Some(moved))],
        cells: Vec::new(),
        skipped: 0,
        keys: Vec::new(),
    };
    let (next, _) = snap.apply(&delta, &[], 2);
    let other = next.tenant("other").unwrap();
    assert!(
        next.issuer_allowed(&other, "https://own.idp"),
        "no tenant binds it any more"
    );
    let dangling: Vec<(&str, u32)> = next
        .dangling()
        .into_iter()
        .map(|(c, n)| (&**c, n))
        .collect();
    assert_eq!(dangling, [("cell-9", 1)]);

    // Deleting the tenant leaves nothing dangling; the cell appearing would too.
    let delta = Delta {
        tenants: vec![("bound".to_owned(), None)],
        cells: Vec::new(),
        skipped: 0,
        keys: Vec::new(),
    };
    let (last, _) = next.apply(&delta, &[], 3);
    assert!(last.dangling().is_empty());
    assert_eq!(last.tenant_count(), 1);
    let counts: Vec<(&str, u32)> = last
        .cell_tenants()
        .into_iter()
        .map(|(c, n, _)| (&**c, n))
        .collect();
    assert_eq!(counts, [("cell-1", 1)]);
}

#[test]
fn a_large_map_keeps_every_tenant_through_inserts_and_removals() {
    let data = RegistryData::from_records(
        (0..70_000).map(|i| tenant(&format!("tenant-{i}"), "cell-1", TenantStatus::Active)),
        vec![cell("cell-1", &["http://127.0.0.1:1"])],
    );
    assert_eq!(data.tenant_count(), 70_000);
    let mut snap = PlacementSnapshot::build(data, &[], 1);
    let delta = Delta {
        tenants: (0..70_000)
            .step_by(2)
            .map(|i| (format!("tenant-{i}"), None))
            .collect(),
        keys: Vec::new(),
        cells: Vec::new(),
        skipped: 0,
    };
    snap = snap.apply(&delta, &[], 2).0;
    assert_eq!(snap.tenant_count(), 35_000);
    for i in 0..70_000 {
        assert_eq!(
            snap.tenant(&format!("tenant-{i}")).is_some(),
            i % 2 == 1,
            "tenant-{i}"
        );
    }
    assert_eq!(snap.cell_tenants()[0].1, 35_000);
}
