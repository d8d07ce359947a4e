//! Parsing and checking registry.toml: tenants, cells, groups, limits and waves.

use super::*;
use crate::placement::file::parse_registry;

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

#[test]
fn good_registry_parses_with_defaults() {
    let data = parse_registry(GOOD, "reg.toml").unwrap();
    assert_eq!(data.cells().len(), 2);
    assert_eq!(&*data.cells()[0].id, "cell-1");
    assert_eq!(data.cells()[0].state, CellState::Active);
    assert_eq!(data.cells()[0].targets.len(), 2);
    assert_eq!(data.cells()[1].state, CellState::Draining);
    let mut tenants: Vec<TenantRecord> = data.tenants().collect();
    tenants.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        tenants,
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
                entitlements: Vec::new(),
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
                entitlements: Vec::new(),
            },
        ]
    );
    assert!(parse_registry("", "reg.toml").unwrap().tenant_count() == 0);
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
fn tenant_status_round_trips() {
    for s in ["ACTIVE", "SUSPENDED", "MIGRATING", "OFFBOARDED"] {
        assert_eq!(TenantStatus::parse(s).unwrap().as_str(), s);
    }
    assert_eq!(TenantStatus::parse("active"), None);
}

#[test]
fn tenant_limit_overrides_parse_and_are_checked() {
    let text = "[[tenants]]\nid = \"acme\"\ncell = \"c1\"\nlimits = { rate = 50, burst = 20 }\n";
    let data = parse_registry(text, "reg.toml").unwrap();
    let l = data.tenants().next().unwrap().limits;
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
    let waves: Vec<_> = data.cells().iter().map(|c| (&*c.id, c.wave)).collect();
    assert_eq!(waves, [("c1", Some(2)), ("c2", None)]);
    // A snapshot carries it (for /admin/cells), cloned into later generations.
    let snap = PlacementSnapshot::build(data, &[], 1);
    let c1 = snap.cells().into_iter().find(|c| &*c.id == "c1").unwrap();
    assert_eq!(Cell::clone(c1).wave, Some(2));
    // Not a number: a parse error naming the field.
    let bad = "[[cells]]\nid = \"c1\"\nwave = \"one\"\nstate = \"DOWN\"\n";
    match parse_registry(bad, "reg.toml") {
        Err(RegistryError::Parse { message, .. }) => assert!(message.contains("wave"), "{message}"),
        other => panic!("expected a parse error, got {other:?}"),
    }
}
