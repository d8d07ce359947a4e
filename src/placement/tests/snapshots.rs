//! Snapshots: config and registry cells, dangling tenants, the handle, deltas.

use super::*;

#[test]
fn registry_cells_override_config_cells_with_the_same_id() {
    let config = [
        cell("cell-1", &["http://10.0.0.1:9001"]),
        cell("cfg-only", &["http://10.0.0.9:1"]),
    ];
    let data = RegistryData::from_records(
        vec![tenant("acme", "cell-1", TenantStatus::Active)],
        vec![cell("cell-1", &["http://10.0.0.2:9100"])],
    );
    let snap = PlacementSnapshot::build(data, &config, 3);
    assert_eq!(snap.generation, 3);
    assert_eq!(snap.cell_count(), 2);
    assert_eq!(snap.cell("cell-1").unwrap().targets[0].port, 9100);
    assert!(snap.cell("cfg-only").is_some());
    let placed = snap.tenant("acme").unwrap();
    assert_eq!(placed.cell().unwrap().targets[0].port, 9100);
    assert_eq!(placed.tenant_header(), "acme");
    let ids: Vec<&str> = snap.cells().iter().map(|c| &*c.id).collect();
    assert_eq!(ids, ["cell-1", "cfg-only"]);
    assert!(snap.dangling().is_empty());
    assert_eq!(snap.dangling_tenants(), 0);
}

#[test]
fn tenants_naming_a_missing_cell_are_dangling() {
    let data = RegistryData::from_records(
        vec![
            tenant("acme", "cell-1", TenantStatus::Active),
            tenant("globex", "cell-9", TenantStatus::Suspended),
        ],
        vec![cell("cell-1", &["http://10.0.0.1:1"])],
    );
    let snap = PlacementSnapshot::build(data, &[], 1);
    let dangling: Vec<(&str, u32)> = snap
        .dangling()
        .into_iter()
        .map(|(c, n)| (&**c, n))
        .collect();
    assert_eq!(dangling, [("cell-9", 1)]);
    assert_eq!(snap.dangling_tenants(), 1);
    let g = snap.tenant("globex").unwrap();
    assert!(g.cell().is_none());
    assert_eq!(&**g.cell_id(), "cell-9");
    assert_eq!(g.status(), TenantStatus::Suspended);
    assert_eq!(snap.tenant_count(), 2);
    assert!(snap.tenant("initech").is_none());
}

#[test]
fn snapshot_handle_is_ready_only_after_a_store() {
    let handle = SnapshotHandle::new();
    assert!(!handle.ready());
    assert_eq!(handle.load().generation, 0);
    assert_eq!(handle.load().tenant_count(), 0);
    let data = RegistryData::from_records(
        vec![tenant("acme", "cell-1", TenantStatus::Active)],
        vec![cell("cell-1", &["http://10.0.0.1:1"])],
    );
    let held = handle.load();
    handle.store(PlacementSnapshot::build(data, &[], 1));
    assert!(handle.ready());
    assert_eq!(handle.load().generation, 1);
    assert!(handle.load().tenant("acme").is_some());
    // A reader holding the old generation keeps seeing it whole.
    assert_eq!(held.generation, 0);
    assert!(held.tenant("acme").is_none());
    assert!(handle.age() < std::time::Duration::from_secs(5));
    assert!(!SnapshotHandle::default().ready());
}

#[test]
fn a_delta_updates_deletes_and_never_goes_back_a_version() {
    let data = RegistryData::from_records(
        vec![
            TenantRecord {
                version: 5,
                ..tenant("acme", "cell-1", TenantStatus::Active)
            },
            tenant("globex", "cell-2", TenantStatus::Active),
            tenant("gone", "cell-1", TenantStatus::Active),
        ],
        vec![
            cell("cell-1", &["http://127.0.0.1:9001"]),
            cell("cell-2", &["http://127.0.0.1:9002"]),
        ],
    );
    let config_cells = [cell("cell-2", &["http://127.0.0.1:7777"])];
    let snap = PlacementSnapshot::build(data, &config_cells, 1);
    let delta = Delta {
        tenants: vec![
            // Older than the held version 5: a late read, ignored.
            (
                "acme".to_owned(),
                Some(TenantRecord {
                    version: 4,
                    ..tenant("acme", "cell-2", TenantStatus::Active)
                }),
            ),
            (
                "globex".to_owned(),
                Some(TenantRecord {
                    version: 2,
                    ..tenant("globex", "cell-1", TenantStatus::Suspended)
                }),
            ),
            ("gone".to_owned(), None),
            (
                "new".to_owned(),
                Some(tenant("new", "cell-2", TenantStatus::Active)),
            ),
        ],
        // cell-1 gets a new target; the registry's cell-2 is deleted: the config one takes over.
        cells: vec![
            (
                "cell-1".to_owned(),
                Some(cell("cell-1", &["http://127.0.0.1:9011"])),
            ),
            ("cell-2".to_owned(), None),
        ],
        keys: Vec::new(),
        skipped: 0,
    };
    let (next, stats) = snap.apply(&delta, &config_cells, 2);
    assert_eq!(
        stats,
        ApplyStats {
            applied: 3,
            regressions: 1,
            skipped: 0,
            keys: 0,
        }
    );
    assert_eq!(next.generation, 2);
    let acme = next.tenant("acme").unwrap();
    assert_eq!((&**acme.cell_id(), acme.version()), ("cell-1", 5));
    // Tenants hold the new cell-1, not the old one.
    assert_eq!(
        &*acme.cell().unwrap().targets[0].url,
        "http://127.0.0.1:9011"
    );
    let globex = next.tenant("globex").unwrap();
    assert_eq!(
        (&**globex.cell_id(), globex.status()),
        ("cell-1", TenantStatus::Suspended)
    );
    assert!(next.tenant("gone").is_none());
    let new = next.tenant("new").unwrap();
    assert_eq!(
        &*new.cell().unwrap().targets[0].url,
        "http://127.0.0.1:7777"
    );
    // The old generation is untouched.
    assert_eq!(&**snap.tenant("globex").unwrap().cell_id(), "cell-2");
    assert!(snap.tenant("gone").is_some());
}
