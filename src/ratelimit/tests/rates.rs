//! Tenant rates and bursts: exact arithmetic, tiers, registry overrides and the policy header.

use super::*;

#[test]
fn rate_and_burst_are_exact() {
    let r = rig();
    let a = ask("acme", "standard", &Method::GET, "/");
    assert_eq!(r.drain(&a), 20, "the burst");
    match r.admit(&a) {
        Err(Limited::Rate {
            tier,
            kind,
            policy,
            wait,
        }) => {
            assert_eq!(&*tier.name, "standard");
            assert_eq!(kind, LimitKind::Rate);
            assert_eq!(wait, 20_000_000, "one interval at 50/s");
            assert_eq!(policy.policy_header(), "\"standard\";q=50;w=1");
            assert_eq!(policy.state_header(wait), "\"standard\";r=0;t=1");
        }
        other => panic!("expected a rate refusal, got {other:?}"),
    }
    r.clock.advance(19 * MS);
    assert!(r.admit(&a).is_err(), "19 ms earn nothing");
    r.clock.advance(MS);
    assert!(r.admit(&a).is_ok(), "20 ms earn exactly one");
    assert!(r.admit(&a).is_err());
    // One second earns 50 and no more.
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(r.drain(&a), 20, "a full bucket again, capped at the burst");
    r.clock.advance(Duration::from_secs(1));
    let mut n = 0;
    for _ in 0..1000 {
        r.clock.advance(MS);
        n += usize::from(r.admit(&a).is_ok());
    }
    assert_eq!(
        n,
        50 + 20 - 1,
        "burst + 50/s over one more second (first ms included)"
    );
}

#[test]
fn tenants_are_independent() {
    let r = rig();
    let acme = ask("acme", "standard", &Method::GET, "/");
    let globex = ask("globex", "standard", &Method::GET, "/");
    assert_eq!(r.drain(&acme), 20);
    assert_eq!(r.drain(&globex), 20, "acme's flood costs globex nothing");
}

#[test]
fn registry_override_beats_tier() {
    let r = rig();
    let mut a = ask("acme", "standard", &Method::GET, "/");
    a.overrides = TenantLimits {
        rate: Some(2.0),
        burst: Some(3),
        concurrency: None,
    };
    assert_eq!(r.drain(&a), 3);
    r.clock.advance(500 * MS);
    assert_eq!(r.drain(&a), 1, "2/s: one per 500 ms");

    // A burst override alone keeps the tier's rate.
    let mut b = ask("initech", "standard", &Method::GET, "/");
    b.overrides.burst = Some(100);
    assert_eq!(r.drain(&b), 100);
    r.clock.advance(20 * MS);
    assert_eq!(r.drain(&b), 1, "still 50/s");

    // A rate override alone keeps the tier's burst.
    let mut c = ask("umbrella", "free", &Method::GET, "/");
    c.overrides.rate = Some(1000.0);
    assert_eq!(r.drain(&c), 5);

    // Concurrency override on a tier with none.
    let mut d = ask("hooli", "standard", &Method::GET, "/");
    d.overrides.concurrency = Some(1);
    let held = r.admit(&d).unwrap();
    assert!(matches!(r.admit(&d), Err(Limited::Concurrency { .. })));
    drop(held);
    assert!(r.admit(&d).is_ok());
}

#[test]
fn unknown_tier_gets_the_default_tier() {
    let r = rig();
    let a = ask("acme", "platinum", &Method::GET, "/");
    assert_eq!(r.drain(&a), 20, "standard's burst");
    match r.admit(&a) {
        Err(Limited::Rate { tier, .. }) => assert_eq!((tier.index, &*tier.name), (2, "standard")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn policy_header_says_the_rate_exactly_where_a_window_can() {
    let p = |rate: f64| {
        Policy {
            name: Arc::from("t"),
            rate: Gcra::new(rate, 1),
        }
        .policy_header()
    };
    assert_eq!(p(50.0), "\"t\";q=50;w=1");
    assert_eq!(p(1.5), "\"t\";q=3;w=2");
    assert_eq!(p(50.5), "\"t\";q=101;w=2");
    assert_eq!(
        p(3.0),
        "\"t\";q=3;w=1",
        "a 333333333 ns interval still reads as 3/s"
    );
    assert_eq!(p(0.1), "\"t\";q=1;w=10");
    assert_eq!(p(0.3), "\"t\";q=3;w=10");
    assert_eq!(p(1_000_000.0), "\"t\";q=1000000;w=1");
}

#[test]
fn raising_a_tenants_limits_never_lengthens_its_wait() {
    let r = rig();
    let mut a = ask("acme", "standard", &Method::GET, "/");
    a.overrides = TenantLimits {
        rate: Some(0.1),
        burst: Some(2),
        concurrency: None,
    };
    assert_eq!(r.drain(&a), 2);
    a.overrides = TenantLimits {
        rate: Some(10.0),
        burst: Some(20),
        concurrency: None,
    };
    match r.admit(&a) {
        Err(Limited::Rate { wait, .. }) => assert_eq!(wait, 100_000_000, "one new interval"),
        other => panic!("{other:?}"),
    }
    r.clock.advance(Duration::from_secs(2));
    assert_eq!(r.drain(&a), 20);
}
