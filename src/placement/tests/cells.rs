//! Cells built from their file form, and target rotation within a group.

use super::*;
use crate::upstream::Scheme;

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
            protocol: None,
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
        protocol: None,
    };
    let down = Cell::from_file(&fc, "cells[0]").unwrap();
    assert!(
        down.groups.is_empty(),
        "a DOWN cell without targets has no arm"
    );
}

#[test]
fn placement_attributes_are_read_and_checked_in_both_file_formats() {
    use crate::placement::file::jsonl::{parse_jsonl, write_line};
    use crate::placement::file::parse_registry;
    use crate::placement::file::shape::{Line, RegistryCell};

    let toml = r#"
[[cells]]
id = "cell-1"
targets = ["http://127.0.0.1:9001"]
region = "eu-west-1"
capacity = 100
tier_units = { enterprise = 5 }
tags = ["pci", "region=eu-west-1"]
"#;
    let data = parse_registry(toml, "reg.toml").unwrap();
    assert_eq!(data.cells().len(), 1);
    let line = r#"{"cell": {"id": "cell-1", "targets": ["http://127.0.0.1:9001"], "region": "eu-west-1", "capacity": 100, "tier_units": {"enterprise": 5}, "tags": ["pci"]}}"#;
    assert_eq!(parse_jsonl(line, "reg.jsonl").unwrap().cells().len(), 1);
    // Written back (as `registry export` writes it), the same fields come out.
    let Line::Cell(cell) = serde_json::from_str::<Line>(line).unwrap() else {
        panic!("a cell line");
    };
    let mut out = Vec::new();
    write_line(&mut out, &Line::Cell(cell.clone())).unwrap();
    let back: Line = serde_json::from_slice(&out).unwrap();
    let Line::Cell(back) = back else {
        panic!("a cell line");
    };
    assert_eq!(back.place(), cell.place());
    assert_eq!(back.region.as_deref(), Some("eu-west-1"));
    let _: &RegistryCell = &back;
    // Bad values are named like any other field.
    let bad = |text: &str| match parse_registry(text, "reg.toml") {
        Err(RegistryError::Invalid { key, .. }) => key,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let base = "[[cells]]\nid = \"c\"\ntargets = [\"http://127.0.0.1:1\"]\n";
    assert_eq!(bad(&format!("{base}tags = [\"PCI\"]")), "cells[0].tags[0]");
    assert_eq!(bad(&format!("{base}capacity = 0")), "cells[0].capacity");
    assert_eq!(
        bad(&format!("{base}tier_units = {{ gold = 0 }}")),
        "cells[0].tier_units.gold"
    );
    assert_eq!(
        bad(&format!(
            "{base}region = \"us-east-1\"\ntags = [\"region=eu-west-1\"]"
        )),
        "cells[0].tags[0]"
    );
    let e = parse_jsonl(
        r#"{"cell": {"id": "c", "targets": ["http://127.0.0.1:1"], "tags": ["ok", "ok"]}}"#,
        "reg.jsonl",
    );
    assert!(
        matches!(&e, Err(RegistryError::Invalid { key, .. }) if key == "line 1: cell.tags[1]"),
        "{e:?}"
    );
}
