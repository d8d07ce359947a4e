#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use super::file::{FileSource, parse_registry};
use crate::config::file::FileCell;
use crate::upstream::Scheme;

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

/// The (key, value) of an `Invalid` error; any other outcome fails the test.
fn invalid(text: &str) -> (String, String) {
    match parse_registry(text, "reg.toml") {
        Err(RegistryError::Invalid {
            file, key, value, ..
        }) => {
            assert_eq!(file, "reg.toml");
            (key, value)
        }
        other => panic!("expected RegistryError::Invalid, got {other:?}"),
    }
}

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
    };
    Cell::from_file(&fc, "cells[0]").unwrap()
}

#[test]
fn good_registry_parses_with_defaults() {
    let data = parse_registry(GOOD, "reg.toml").unwrap();
    assert_eq!(data.cells.len(), 2);
    assert_eq!(&*data.cells[0].id, "cell-1");
    assert_eq!(data.cells[0].state, CellState::Active);
    assert_eq!(data.cells[0].targets.len(), 2);
    assert_eq!(data.cells[1].state, CellState::Draining);
    assert_eq!(
        data.tenants,
        vec![
            TenantRecord {
                id: "acme".into(),
                cell: "cell-1".into(),
                status: TenantStatus::Active,
                tier: "enterprise".into(),
                version: 7,
                issuers: Vec::new(),
                limits: Default::default(),
                arm: None,
            },
            TenantRecord {
                id: "globex".into(),
                cell: "cell-2".into(),
                status: TenantStatus::Migrating,
                tier: "standard".into(),
                version: 0,
                issuers: Vec::new(),
                limits: Default::default(),
                arm: None,
            },
        ]
    );
    assert!(parse_registry("", "reg.toml").unwrap().tenants.is_empty());
}

#[test]
fn registry_errors_name_the_entry_and_field() {
    let dup =
        "[[tenants]]\nid = \"acme\"\ncell = \"c\"\n[[tenants]]\nid = \"acme\"\ncell = \"d\"\n";
    assert_eq!(invalid(dup), ("tenants[1].id".into(), "acme".into()));
    let status = "[[tenants]]\nid = \"acme\"\ncell = \"c\"\nstatus = \"PAUSED\"\n";
    assert_eq!(
        invalid(status),
        ("tenants[0].status".into(), "PAUSED".into())
    );
    let lower = "[[tenants]]\nid = \"acme\"\ncell = \"c\"\nstatus = \"active\"\n";
    assert_eq!(invalid(lower).0, "tenants[0].status");
    let bad_id =
        "[[tenants]]\nid = \"x\"\ncell = \"c\"\n[[tenants]]\nid = \"Acme\"\ncell = \"c\"\n";
    assert_eq!(invalid(bad_id), ("tenants[1].id".into(), "Acme".into()));
    let bad_cell = "[[tenants]]\nid = \"acme\"\ncell = \"cell 1\"\n";
    assert_eq!(invalid(bad_cell).0, "tenants[0].cell");
    // `none` is the metrics label of requests that reached no cell: no cell may take it.
    let none = "[[cells]]\nid = \"none\"\nstate = \"DOWN\"\n";
    assert_eq!(invalid(none), ("cells[0].id".into(), "none".into()));
    let to_none = "[[tenants]]\nid = \"acme\"\ncell = \"none\"\n";
    assert_eq!(invalid(to_none).0, "tenants[0].cell");
    let bad_tier = "[[tenants]]\nid = \"acme\"\ncell = \"c\"\ntier = \"gold plated\"\n";
    assert_eq!(invalid(bad_tier).0, "tenants[0].tier");
    let bad_arm = "[[tenants]]\nid = \"acme\"\ncell = \"c\"\narm = \"can ary\"\n";
    assert_eq!(
        invalid(bad_arm),
        ("tenants[0].arm".into(), "can ary".into())
    );
    let dup_cell =
        "[[cells]]\nid = \"c\"\nstate = \"DOWN\"\n[[cells]]\nid = \"c\"\nstate = \"DOWN\"\n";
    assert_eq!(invalid(dup_cell).0, "cells[1].id");
    let cell_state = "[[cells]]\nid = \"c\"\nstate = \"UP\"\n";
    assert_eq!(invalid(cell_state), ("cells[0].state".into(), "UP".into()));
}

#[test]
fn group_errors_name_the_group_and_field() {
    let g = |body: &str| format!("[[cells]]\nid = \"c\"\n{body}");
    let group = |name: &str, weight: u32, targets: &str| {
        format!("[[cells.groups]]\nname = \"{name}\"\nweight = {weight}\ntargets = [{targets}]\n")
    };
    let t = "\"http://10.0.0.1:80\"";
    let both = g(&format!("targets = [{t}]\n{}", group("canary", 5, t)));
    assert_eq!(invalid(&both), ("cells[0].groups".into(), "1".into()));
    let dup = g(&format!("{}{}", group("a", 1, t), group("a", 1, t)));
    assert_eq!(
        invalid(&dup),
        ("cells[0].groups[1].name".into(), "a".into())
    );
    let heavy = g(&group("a", 10_001, t));
    assert_eq!(
        invalid(&heavy),
        ("cells[0].groups[0].weight".into(), "10001".into())
    );
    let empty = g(&format!("{}{}", group("a", 1, t), group("b", 1, "")));
    assert_eq!(
        invalid(&empty),
        ("cells[0].groups[1].targets".into(), "[]".into())
    );
    let bad_name = g(&group("can ary", 1, t));
    assert_eq!(invalid(&bad_name).0, "cells[0].groups[0].name");
    let bad_target = g(&group("a", 1, "\"ftp://x\""));
    assert_eq!(invalid(&bad_target).0, "cells[0].groups[0].targets[0]");
    // Every group at weight 0: no arm can take a tenant, so the cell must be DOWN.
    let dark = g(&group("a", 0, t));
    assert_eq!(invalid(&dark).0, "cells[0].targets");
    // A dark group (weight 0, ready to take weight) next to a weighted one is fine.
    let ok = g(&format!("{}{}", group("a", 1, t), group("b", 0, t)));
    assert!(parse_registry(&ok, "reg.toml").is_ok());
}

#[test]
fn unknown_key_is_a_parse_error_naming_it() {
    let text = "[[tenants]]\nid = \"acme\"\ncell = \"c\"\ncolour = \"red\"\n";
    match parse_registry(text, "reg.toml") {
        Err(RegistryError::Parse { file, message }) => {
            assert_eq!(file, "reg.toml");
            // toml names the line and the field, not `tenants[0]`.
            assert!(
                message.contains("colour") && message.contains("line 4"),
                "{message}"
            );
        }
        other => panic!("expected RegistryError::Parse, got {other:?}"),
    }
    let err = parse_registry("[[tenants]]\nid = \"acme\"\n", "reg.toml").unwrap_err();
    assert!(
        matches!(err, RegistryError::Parse { .. }),
        "missing `cell`: {err:?}"
    );
}

#[test]
fn cells_from_file() {
    let c = cell("cell-1", &["http://10.0.0.1:8080"]);
    assert_eq!(c.state, CellState::Active);
    assert!(c.preserve_host, "plain-http targets keep the client's Host");
    assert_eq!(c.id_header, "cell-1");
    let tls = cell("cell-2", &["https://alb.example.com"]);
    assert_eq!(tls.targets[0].scheme, Scheme::Https);
    assert!(!tls.preserve_host, "https targets get their own name");

    let from = |id: &str, state: Option<&str>, targets: &[&str]| {
        let fc = FileCell {
            id: id.to_owned(),
            state: state.map(str::to_owned),
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            groups: Vec::new(),
            preserve_host: None,
            max_in_flight: None,
            wave: None,
        };
        Cell::from_file(&fc, "cells[4]")
    };
    assert!(from("down", Some("DOWN"), &[]).is_ok());
    assert_eq!(from("c", None, &[]).unwrap_err().key, "cells[4].targets");
    assert_eq!(
        from("c", None, &["ftp://x"]).unwrap_err().key,
        "cells[4].targets[0]"
    );
    assert_eq!(
        from("bad id", None, &["http://x:1"]).unwrap_err().key,
        "cells[4].id"
    );
    assert_eq!(
        from(&"c".repeat(64), Some("DOWN"), &[]).unwrap_err().key,
        "cells[4].id"
    );
}

#[test]
fn next_target_round_robins_from_a_random_start() {
    let c = cell(
        "c",
        &[
            "http://10.0.0.1:1",
            "http://10.0.0.2:1",
            "http://10.0.0.3:1",
        ],
    );
    // Round robin from a random start: every target once per cycle, in order.
    let g = &c.groups[0];
    assert_eq!(
        (&*g.name, g.weight, g.targets.clone()),
        ("stable", 100, 0..3)
    );
    let picks: Vec<usize> = (0..6).map(|_| g.next_target()).collect();
    for w in picks.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % 3, "{picks:?}");
    }
    assert!(c.clone().groups[0].next_target() < 3);
    let fc = FileCell {
        id: "down".to_owned(),
        state: Some("DOWN".to_owned()),
        targets: vec![],
        groups: Vec::new(),
        preserve_host: None,
        max_in_flight: None,
        wave: None,
    };
    let down = Cell::from_file(&fc, "cells[0]").unwrap();
    assert!(
        down.groups.is_empty(),
        "a DOWN cell without targets has no arm"
    );
}

#[test]
fn registry_cells_override_config_cells_with_the_same_id() {
    let config = [
        cell("cell-1", &["http://10.0.0.1:9001"]),
        cell("cfg-only", &["http://10.0.0.9:1"]),
    ];
    let data = RegistryData {
        tenants: vec![tenant("acme", "cell-1", TenantStatus::Active)],
        cells: vec![cell("cell-1", &["http://10.0.0.2:9100"])],
    };
    let snap = PlacementSnapshot::build(&data, &config, 3);
    assert_eq!(snap.generation, 3);
    assert_eq!(snap.cell_count(), 2);
    assert_eq!(snap.cell("cell-1").unwrap().targets[0].port, 9100);
    assert!(snap.cell("cfg-only").is_some());
    let placed = snap.tenant("acme").unwrap();
    assert_eq!(placed.cell.as_ref().unwrap().targets[0].port, 9100);
    assert_eq!(placed.tenant_header, "acme");
    let ids: Vec<&str> = snap.cells().iter().map(|c| &*c.id).collect();
    assert_eq!(ids, ["cell-1", "cfg-only"]);
    assert!(snap.dangling.is_empty());
}

#[test]
fn tenants_naming_a_missing_cell_are_dangling() {
    let data = RegistryData {
        tenants: vec![
            tenant("acme", "cell-1", TenantStatus::Active),
            tenant("globex", "cell-9", TenantStatus::Suspended),
        ],
        cells: vec![cell("cell-1", &["http://10.0.0.1:1"])],
    };
    let snap = PlacementSnapshot::build(&data, &[], 1);
    assert_eq!(
        snap.dangling,
        vec![("globex".to_owned(), "cell-9".to_owned())]
    );
    let g = snap.tenant("globex").unwrap();
    assert!(g.cell.is_none());
    assert_eq!(&*g.cell_id, "cell-9");
    assert_eq!(g.status, TenantStatus::Suspended);
    assert_eq!(snap.tenant_count(), 2);
    assert!(snap.tenant("initech").is_none());
}

#[test]
fn snapshot_handle_is_ready_only_after_a_store() {
    let handle = SnapshotHandle::new();
    assert!(!handle.ready());
    assert_eq!(handle.load().generation, 0);
    assert_eq!(handle.load().tenant_count(), 0);
    let data = RegistryData {
        tenants: vec![tenant("acme", "cell-1", TenantStatus::Active)],
        cells: vec![cell("cell-1", &["http://10.0.0.1:1"])],
    };
    let held = handle.load();
    handle.store(PlacementSnapshot::build(&data, &[], 1));
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
fn tenant_status_round_trips() {
    for s in ["ACTIVE", "SUSPENDED", "MIGRATING", "OFFBOARDED"] {
        assert_eq!(TenantStatus::parse(s).unwrap().as_str(), s);
    }
    assert_eq!(TenantStatus::parse("active"), None);
}

#[tokio::test]
async fn file_source_notices_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(&path, GOOD).unwrap();
    let src = FileSource::new(&path);
    assert_eq!(src.path(), path);
    assert!(src.describe().starts_with("file:"));
    assert!(
        src.changed().await.unwrap(),
        "never loaded counts as changed"
    );

    let data = src.load().await.unwrap();
    assert_eq!(data.tenants.len(), 2);
    assert!(!src.changed().await.unwrap());
    assert!(
        !src.changed().await.unwrap(),
        "polling alone changes nothing"
    );

    std::fs::write(&path, "[[tenants]]\nid = \"acme\"\ncell = \"cell-1\"\n").unwrap();
    assert!(src.changed().await.unwrap());
    let data = src.load().await.unwrap();
    assert_eq!(data.tenants.len(), 1);
    assert!(!src.changed().await.unwrap());
}

#[tokio::test]
async fn broken_or_missing_file_is_reported_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    let src = FileSource::new(&path);
    assert!(matches!(
        src.changed().await,
        Err(RegistryError::Read { .. })
    ));
    assert!(matches!(src.load().await, Err(RegistryError::Read { .. })));

    std::fs::write(&path, "[[tenants]\nbroken").unwrap();
    assert!(matches!(src.load().await, Err(RegistryError::Parse { .. })));
    // The failed attempt is remembered: no retry until the file changes again.
    assert!(!src.changed().await.unwrap());
}

#[test]
fn a_delta_updates_deletes_and_never_goes_back_a_version() {
    let data = RegistryData {
        tenants: vec![
            TenantRecord {
                version: 5,
                ..tenant("acme", "cell-1", TenantStatus::Active)
            },
            tenant("globex", "cell-2", TenantStatus::Active),
            tenant("gone", "cell-1", TenantStatus::Active),
        ],
        cells: vec![
            cell("cell-1", &["http://127.0.0.1:9001"]),
            cell("cell-2", &["http://127.0.0.1:9002"]),
        ],
    };
    let config_cells = [cell("cell-2", &["http://127.0.0.1:7777"])];
    let snap = PlacementSnapshot::build(&data, &config_cells, 1);
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
    };
    let (next, stats) = snap.apply(&delta, &config_cells, 2);
    assert_eq!(
        stats,
        ApplyStats {
            applied: 3,
            regressions: 1
        }
    );
    assert_eq!(next.generation, 2);
    let acme = next.tenant("acme").unwrap();
    assert_eq!((&*acme.cell_id, acme.version), ("cell-1", 5));
    // Tenants hold the new cell-1, not the old one.
    assert_eq!(
        &*acme.cell.as_ref().unwrap().targets[0].url,
        "http://127.0.0.1:9011"
    );
    let globex = next.tenant("globex").unwrap();
    assert_eq!(
        (&*globex.cell_id, globex.status),
        ("cell-1", TenantStatus::Suspended)
    );
    assert!(next.tenant("gone").is_none());
    let new = next.tenant("new").unwrap();
    assert_eq!(
        &*new.cell.as_ref().unwrap().targets[0].url,
        "http://127.0.0.1:7777"
    );
    // The old generation is untouched.
    assert_eq!(&*snap.tenant("globex").unwrap().cell_id, "cell-2");
    assert!(snap.tenant("gone").is_some());
}

#[test]
fn tenant_limit_overrides_parse_and_are_checked() {
    let text = "[[tenants]]\nid = \"acme\"\ncell = \"c1\"\nlimits = { rate = 50, burst = 20 }\n";
    let data = parse_registry(text, "reg.toml").unwrap();
    let l = data.tenants[0].limits;
    assert_eq!(
        (l.rate, l.burst, l.concurrency),
        (Some(50.0), Some(20), None)
    );
    let bad = "[[tenants]]\nid = \"acme\"\ncell = \"c1\"\nlimits = { rate = -1 }\n";
    assert_eq!(
        invalid(bad),
        ("tenants[0].limits.rate".to_owned(), "-1".to_owned())
    );
    // Too slow to express would mean "unlimited" to the limiter: refused like the config does.
    let bad = "[[tenants]]\nid = \"acme\"\ncell = \"c1\"\nlimits = { rate = 1e-12 }\n";
    assert_eq!(
        invalid(bad),
        (
            "tenants[0].limits.rate".to_owned(),
            "0.000000000001".to_owned()
        )
    );
    let bad = "[[tenants]]\nid = \"acme\"\ncell = \"c1\"\nlimits = { concurrency = 0 }\n";
    assert_eq!(invalid(bad).0, "tenants[0].limits.concurrency");
}

#[test]
fn a_cell_may_carry_a_canary_wave() {
    let text = "[[cells]]\nid = \"c1\"\nwave = 2\ntargets = [\"http://10.0.0.1:80\"]\n\
                [[cells]]\nid = \"c2\"\ntargets = [\"http://10.0.0.2:80\"]\n";
    let data = parse_registry(text, "reg.toml").unwrap();
    let waves: Vec<_> = data.cells.iter().map(|c| (&*c.id, c.wave)).collect();
    assert_eq!(waves, [("c1", Some(2)), ("c2", None)]);
    // A snapshot carries it (for /admin/cells), cloned into later generations.
    let snap = PlacementSnapshot::build(&data, &[], 1);
    let c1 = snap.cells().into_iter().find(|c| &*c.id == "c1").unwrap();
    assert_eq!(Cell::clone(c1).wave, Some(2));
    // Not a number: a parse error naming the field.
    let bad = "[[cells]]\nid = \"c1\"\nwave = \"one\"\nstate = \"DOWN\"\n";
    match parse_registry(bad, "reg.toml") {
        Err(RegistryError::Parse { message, .. }) => assert!(message.contains("wave"), "{message}"),
        other => panic!("expected a parse error, got {other:?}"),
    }
}
