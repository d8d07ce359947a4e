//! The choice as a pure function: eligibility and its refusal text, least-loaded with ties,
//! the fill limit, tier units, and the hash's stability when cells are added.
#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::placement::capacity::CellCapacity;

fn cell(id: &str, capacity: Option<u64>, load: u64) -> CellRecord {
    CellRecord {
        id: id.to_owned(),
        state: CellState::Active,
        region: None,
        groups: Vec::new(),
        preserve_host: None,
        max_in_flight: None,
        wave: None,
        protocol: None,
        place: CellCapacity {
            capacity,
            ..CellCapacity::default()
        },
        tenants: load,
        load,
        version: 1,
    }
}

fn ask<'a>(tenant: &'a str, strategy: Strategy, max_fill: &str) -> Ask<'a> {
    Ask {
        tenant,
        tier: "standard",
        region: None,
        require: &[],
        strategy,
        max_fill: MaxFill::parse(max_fill).unwrap(),
    }
}

#[test]
fn max_fill_is_a_fraction_in_basis_points() {
    assert_eq!(MaxFill::parse("0.7").unwrap().limit(10), 7);
    // 0.7 * 30 is 20.999... in floating point; the limit is exact.
    assert_eq!(MaxFill::parse("0.7").unwrap().limit(30), 21);
    assert_eq!(MaxFill::parse("1").unwrap().limit(10), 10);
    assert_eq!(MaxFill::parse("0.333").unwrap().limit(1000), 333);
    for bad in ["0", "-0.5", "1.01", "x", "NaN", "inf", "0.00001"] {
        assert!(MaxFill::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn least_loaded_takes_the_lowest_fill_and_ties_go_by_cell_id() {
    let cells = [
        cell("c-b", Some(10), 2),
        cell("c-a", Some(10), 2),
        cell("c-c", Some(100), 30),
    ];
    let c = choose(&cells, &ask("acme", Strategy::LeastLoaded, "0.7")).unwrap();
    assert_eq!(c.cell, "c-a");
    assert_eq!((c.load_before, c.capacity, c.units, c.limit), (2, 10, 1, 7));
    assert_eq!(c.why["fill_before"], 0.2);
    assert_eq!(c.why["fill_after"], 0.3);
    assert_eq!(c.why["strategy"], "least-loaded");
    // A bigger cell at a lower fill wins over a small, emptier-in-units one.
    let cells = [cell("small", Some(10), 3), cell("big", Some(100), 20)];
    let c = choose(&cells, &ask("acme", Strategy::LeastLoaded, "0.7")).unwrap();
    assert_eq!(c.cell, "big");
}

#[test]
fn a_cell_past_the_fill_limit_is_passed_over_and_all_full_is_refused_naming_each() {
    let cells = [cell("c-1", Some(10), 6), cell("c-2", Some(10), 7)];
    let c = choose(&cells, &ask("acme", Strategy::LeastLoaded, "0.7")).unwrap();
    assert_eq!(c.cell, "c-1", "6 + 1 fits under 7; 7 + 1 does not");
    let full = [cell("c-1", Some(10), 7), cell("c-2", Some(4), 3)];
    let e = choose(&full, &ask("acme", Strategy::LeastLoaded, "0.7")).unwrap_err();
    assert!(matches!(e, Refusal::Full { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "no room for tenant acme (tier standard, 1 unit) under --max-fill 0.7: every eligible \
         cell would pass it: c-1 at 7/10 units (70.0%), c-2 at 3/4 units (75.0%); add a cell, \
         raise a capacity (`cellgate cell put CELL --capacity N`), or pass a higher --max-fill"
    );
    // At 1.0 the same cells take exactly what is left of their capacity.
    let c = choose(&full, &ask("acme", Strategy::Hash, "1.0")).unwrap();
    assert!(c.cell == "c-1" || c.cell == "c-2");
    let at_capacity = [cell("c-1", Some(10), 10)];
    assert!(choose(&at_capacity, &ask("acme", Strategy::LeastLoaded, "1.0")).is_err());
}

#[test]
fn every_constraint_names_the_cells_it_excluded() {
    let mut draining = cell("c-drain", Some(10), 0);
    draining.state = CellState::Draining;
    let mut down = cell("c-down", Some(10), 0);
    down.state = CellState::Down;
    let mut us = cell("c-us", Some(10), 0);
    us.region = Some("us-east-1".to_owned());
    us.place.tags = vec!["pci".to_owned()];
    let mut eu = cell("c-eu", Some(10), 0);
    eu.place.tags = vec!["region=eu-west-1".to_owned()];
    let no_cap = cell("c-nocap", None, 0);
    let cells = [draining, down, us, eu, no_cap];
    let require = ["pci".to_owned(), "eu-only".to_owned()];
    let a = Ask {
        region: Some("eu-west-1"),
        require: &require,
        ..ask("acme", Strategy::LeastLoaded, "0.7")
    };
    let e = choose(&cells, &a).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no cell can take tenant acme: \
         c-down is DOWN, has no region (wanted eu-west-1), lacks pci, eu-only; \
         c-drain is DRAINING, has no region (wanted eu-west-1), lacks pci, eu-only; \
         c-eu lacks pci, eu-only; \
         c-nocap has no capacity (`cellgate cell put c-nocap --capacity N`), has no region \
         (wanted eu-west-1), lacks pci, eu-only; \
         c-us is in region us-east-1, not eu-west-1, lacks eu-only"
    );
    // The region alone: the cell whose `region` is it, or whose tag says it, qualifies.
    let a = Ask {
        region: Some("us-east-1"),
        ..ask("acme", Strategy::LeastLoaded, "0.7")
    };
    assert_eq!(choose(&cells, &a).unwrap().cell, "c-us");
    let a = Ask {
        region: Some("eu-west-1"),
        ..ask("acme", Strategy::LeastLoaded, "0.7")
    };
    let c = choose(&cells, &a).unwrap();
    assert_eq!(c.cell, "c-eu");
    assert_eq!(c.why["excluded"].as_array().unwrap().len(), 4);
    // DRAINING and DOWN cells are never chosen, even empty and alone.
    let e = choose(&cells[..2], &ask("acme", Strategy::Hash, "1")).unwrap_err();
    assert!(matches!(e, Refusal::NoEligible { .. }), "{e:?}");
    let none = choose(&[], &ask("acme", Strategy::Hash, "1")).unwrap_err();
    assert!(
        none.to_string().contains("the table has no cells"),
        "{none}"
    );
}

#[test]
fn tier_units_weigh_a_tenant_in_each_cell() {
    let mut a = cell("c-a", Some(10), 3);
    a.place.tier_units = [("enterprise".to_owned(), 5)].into();
    let b = cell("c-b", Some(10), 6);
    let big = Ask {
        tier: "enterprise",
        ..ask("acme", Strategy::LeastLoaded, "0.7")
    };
    // 3 + 5 > 7 in c-a; 6 + 1 fits in c-b, where enterprise weighs the default 1.
    let c = choose(&[a.clone(), b.clone()], &big).unwrap();
    assert_eq!((c.cell.as_str(), c.units), ("c-b", 1));
    let e = choose(&[a], &big).unwrap_err();
    assert!(e.to_string().contains("(tier enterprise, 5 units)"), "{e}");
}

#[test]
fn the_hash_is_stable_and_a_new_cell_takes_only_tenants_it_now_wins() {
    let four: Vec<CellRecord> = (1..=4)
        .map(|i| cell(&format!("c-{i}"), Some(1000), 0))
        .collect();
    let mut five = four.clone();
    five.push(cell("c-5", Some(1000), 0));
    let pick =
        |cells: &[CellRecord], t: &str| choose(cells, &ask(t, Strategy::Hash, "1")).unwrap().cell;
    let (mut moved, mut per_cell) = (0, std::collections::BTreeMap::new());
    for i in 0..2000 {
        let t = format!("tenant-{i}");
        let before = pick(&four, &t);
        assert_eq!(
            before,
            pick(&four, &t),
            "the same cells give the same answer"
        );
        let mut shuffled = four.clone();
        shuffled.reverse();
        assert_eq!(
            before,
            pick(&shuffled, &t),
            "the order of the cells does not matter"
        );
        let after = pick(&five, &t);
        if after != before {
            assert_eq!(after, "c-5", "{t} moved between old cells");
            moved += 1;
        }
        *per_cell.entry(after).or_insert(0) += 1;
    }
    // About a fifth move (400 expected), every one of them to the new cell.
    assert!((250..550).contains(&moved), "{moved} of 2000 moved");
    assert_eq!(per_cell.len(), 5, "{per_cell:?}");
    // A cell the hash prefers that is full passes the tenant to the next one.
    let first = pick(&four, "acme");
    let mut full = four.clone();
    for c in &mut full {
        if c.id == first {
            c.load = 1000;
        }
    }
    assert_ne!(pick(&full, "acme"), first);
}

#[test]
fn the_hash_follows_capacity() {
    let cells = [cell("small", Some(100), 0), cell("large", Some(300), 0)];
    let large = (0..4000)
        .filter(|i| {
            choose(&cells, &ask(&format!("t{i}"), Strategy::Hash, "1"))
                .unwrap()
                .cell
                == "large"
        })
        .count();
    // Three quarters expected (3000).
    assert!(
        (2800..3200).contains(&large),
        "{large} of 4000 on the larger cell"
    );
}
