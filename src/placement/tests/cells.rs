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
