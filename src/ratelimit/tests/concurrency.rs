//! In-flight limits: tenant concurrency, cell caps, and what each refusal costs.

use super::*;

#[test]
fn concurrency_limit_releases_when_the_permit_goes() {
    let r = rig();
    let a = ask("acme", "ops", &Method::GET, "/");
    let held: Vec<_> = (0..3).map(|_| r.admit(&a).unwrap()).collect();
    assert_eq!(r.cm.in_flight.get(), 3);
    assert!(matches!(
        r.admit(&a),
        Err(Limited::Concurrency { tier }) if &*tier.name == "ops"
    ));
    assert_eq!(r.cm.in_flight.get(), 3, "a refusal holds nothing");
    drop(held);
    assert_eq!(r.cm.in_flight.get(), 0);
    let again: Vec<_> = (0..3).map(|_| r.admit(&a).unwrap()).collect();
    assert_eq!(again.len(), 3, "every place came back");
}

#[test]
fn concurrency_refusal_costs_no_rate_and_rate_refusal_holds_no_place() {
    let r = rig();
    let a = ask("acme", "free", &Method::GET, "/");
    let p1 = r.admit(&a).unwrap();
    let p2 = r.admit(&a).unwrap();
    for _ in 0..10 {
        assert!(matches!(r.admit(&a), Err(Limited::Concurrency { .. })));
    }
    drop((p1, p2));
    // 2 of the 5-request burst were used; the 10 refusals used none.
    assert_eq!(r.drain(&a), 3);
    // Over the rate now: the refused requests must not leak in-flight places.
    assert!(matches!(r.admit(&a), Err(Limited::Rate { .. })));
    r.clock.advance(Duration::from_secs(10));
    let _p1 = r.admit(&a).unwrap();
    let _p2 = r.admit(&a).unwrap();
}

#[test]
fn cell_cap_sheds_and_costs_the_tenant_nothing() {
    let r = rig_with(&config(), 1 << 16, Some(2));
    let a = ask("acme", "standard", &Method::GET, "/");
    let p1 = r.admit(&a).unwrap();
    let p2 = r.admit(&a).unwrap();
    for _ in 0..50 {
        assert_eq!(
            r.admit(&a).unwrap_err(),
            Limited::CellOverloaded(Arc::from("cell-1"))
        );
    }
    drop(p1);
    let _p3 = r.admit(&a).unwrap();
    drop(p2);
    // 3 admitted of the burst of 20; 50 sheds charged nothing.
    assert_eq!(r.drain(&a), 17);
}

#[test]
fn config_default_cell_cap_applies_and_a_cell_cap_wins() {
    let mut cfg = config();
    cfg.cell_max_in_flight = Some(1);
    let r = rig_with(&cfg, 1 << 16, None);
    let a = ask("acme", "standard", &Method::GET, "/");
    let _p = r.admit(&a).unwrap();
    assert!(matches!(r.admit(&a), Err(Limited::CellOverloaded(_))));
    let r = rig_with(&cfg, 1 << 16, Some(3));
    let held: Vec<_> = (0..3).map(|_| r.admit(&a).unwrap()).collect();
    assert_eq!(held.len(), 3);
    assert!(matches!(r.admit(&a), Err(Limited::CellOverloaded(_))));
}

#[test]
fn no_tiers_means_no_tenant_limits_but_cell_caps_still_count() {
    let r = rig_with(&LimitsConfig::default(), 64, Some(5));
    let a = ask("acme", "standard", &Method::GET, "/");
    let held: Vec<_> = (0..5).map(|_| r.admit(&a).unwrap()).collect();
    assert!(matches!(r.admit(&a), Err(Limited::CellOverloaded(_))));
    drop(held);
    for _ in 0..1_000 {
        assert!(r.admit(&a).is_ok(), "no tier: no tenant rate");
    }
    assert_eq!(r.store.tracked(), 0, "and no tenant state");
}

#[test]
fn a_tenant_held_at_its_limits_never_takes_a_place_under_the_cell_cap() {
    let r = rig_with(&config(), 1 << 16, Some(2));
    let flooder = ask("acme", "free", &Method::GET, "/");
    let quiet = ask("globex", "standard", &Method::GET, "/");
    let held = r.admit(&quiet).unwrap();
    // acme spends its burst of 5 (dropping each permit), then is refused by its own rate.
    assert_eq!(r.drain(&flooder), 5);
    for _ in 0..100 {
        assert!(matches!(r.admit(&flooder), Err(Limited::Rate { .. })));
        assert_eq!(r.cm.in_flight.get(), 1, "a refused request took no place");
    }
    // The one place left is globex's.
    let second = r.admit(&quiet).unwrap();
    assert!(matches!(r.admit(&quiet), Err(Limited::CellOverloaded(_))));
    drop((held, second));
    // And a request shed by the cell cap cost its tenant nothing: globex's burst of 20 has
    // paid for 2 admitted requests only.
    assert_eq!(r.drain(&quiet), 18);
}
