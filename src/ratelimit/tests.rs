//! Limiter behaviour under a clock the tests drive: exact rates and bursts, overrides, route
//! classes, in-flight limits and caps, and eviction that never hands out an unearned burst.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::*;
use crate::config::{LimitsConfig, RouteClassConfig, TierConfig};
use crate::metrics::{CellMetrics, Metrics};

const MS: Duration = Duration::from_millis(1);

fn tier(name: &str, rate: Option<f64>, burst: Option<u32>, concurrency: Option<u32>) -> TierConfig {
    TierConfig {
        name: name.to_owned(),
        rate,
        burst,
        concurrency,
    }
}

/// free: 10/s burst 5, 2 in flight; standard: 50/s burst 20; (default) ; ops: concurrency only.
fn config() -> LimitsConfig {
    LimitsConfig {
        tiers: vec![
            tier("free", Some(10.0), Some(5), Some(2)),
            tier("ops", None, None, Some(3)),
            tier("standard", Some(50.0), Some(20), None),
        ],
        default_tier: 2,
        ..LimitsConfig::default()
    }
}

struct Rig {
    clock: Arc<ManualClock>,
    store: Arc<LocalStore>,
    limiter: Limiter,
    cell_id: Arc<str>,
    cell_cap: Option<u32>,
    cm: Arc<CellMetrics>,
    metrics: Metrics,
}

fn rig_with(config: &LimitsConfig, max_keys: usize, cell_cap: Option<u32>) -> Rig {
    let clock = Arc::new(ManualClock::at(1_000_000_000_000));
    let metrics = Metrics::new();
    let store = Arc::new(LocalStore::with_counters(
        max_keys,
        metrics.ratelimit_idle_evictions.clone(),
        metrics.ratelimit_forced_evictions.clone(),
    ));
    let limiter = Limiter::new(config, store.clone(), clock.clone());
    let cm = metrics.cell("cell-1");
    Rig {
        clock,
        store,
        limiter,
        cell_id: Arc::from("cell-1"),
        cell_cap,
        cm,
        metrics,
    }
}

fn rig() -> Rig {
    rig_with(&config(), 1 << 16, None)
}

fn ask<'a>(tenant: &'a str, tier: &'a str, method: &'a Method, path: &'a str) -> Ask<'a> {
    Ask {
        tenant,
        tier,
        overrides: TenantLimits::default(),
        method,
        path,
    }
}

impl Rig {
    fn admit(&self, a: &Ask<'_>) -> Result<Permit, Limited> {
        let cell = CellCap {
            id: &self.cell_id,
            max_in_flight: self.cell_cap,
        };
        self.limiter.admit(a, &cell, &self.cm)
    }

    /// Admits `a` until refused (dropping each permit); returns how many got in.
    fn drain(&self, a: &Ask<'_>) -> usize {
        let mut n = 0;
        while self.admit(a).is_ok() {
            n += 1;
            assert!(n < 10_000, "never refused");
        }
        n
    }
}

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
fn route_class_is_stricter_and_refunds_the_tenant_charge() {
    let mut cfg = config();
    cfg.routes = vec![RouteClassConfig {
        name: "writes".to_owned(),
        methods: vec![Method::POST, Method::DELETE],
        path_prefix: None,
        rate: 1.0,
        burst: 1,
        tiers: vec![],
    }];
    let r = rig_with(&cfg, 1 << 16, None);
    let post = ask("acme", "standard", &Method::POST, "/orders");
    let get = ask("acme", "standard", &Method::GET, "/orders");
    assert!(r.admit(&post).is_ok());
    match r.admit(&post) {
        Err(Limited::Rate {
            kind, policy, wait, ..
        }) => {
            assert_eq!(kind, LimitKind::Route);
            assert_eq!(&*policy.name, "writes");
            assert_eq!(wait, 1_000_000_000);
            assert_eq!(policy.policy_header(), "\"writes\";q=1;w=1");
        }
        other => panic!("{other:?}"),
    }
    // 1 POST admitted and 1 refused (refunded) of standard's 20: 19 left for reads.
    assert_eq!(r.drain(&get), 19);
}

#[test]
fn route_class_by_prefix_and_tier() {
    let mut cfg = config();
    cfg.routes = vec![RouteClassConfig {
        name: "export".to_owned(),
        methods: vec![],
        path_prefix: Some("/export".to_owned()),
        rate: 0.1,
        burst: 2,
        tiers: vec![0], // free only
    }];
    let r = rig_with(&cfg, 1 << 16, None);
    let free = ask("initech", "free", &Method::GET, "/export/all");
    assert_eq!(r.drain(&free), 2);
    match r.admit(&free) {
        Err(Limited::Rate { policy, wait, .. }) => {
            assert_eq!(policy.policy_header(), "\"export\";q=1;w=10");
            assert_eq!(policy.state_header(wait), "\"export\";r=0;t=10");
        }
        other => panic!("{other:?}"),
    }
    // Whole path segments: `/export` covers `/export` and `/export/...`, not `/exports`.
    for path in ["/exports", "/exportx/1", "/"] {
        assert!(
            r.admit(&ask("initech", "free", &Method::GET, path)).is_ok(),
            "{path}"
        );
    }
    assert!(
        r.admit(&ask("initech", "free", &Method::GET, "/export"))
            .is_err()
    );
    let standard = ask("acme", "standard", &Method::GET, "/export/all");
    assert_eq!(
        r.drain(&standard),
        20,
        "the class is for the free tier only"
    );
}

#[test]
fn idle_state_is_swept_and_only_idle_state() {
    let r = rig();
    let busy = ask("acme", "standard", &Method::GET, "/");
    let holding = ask("globex", "ops", &Method::GET, "/");
    let light = ask("initech", "standard", &Method::GET, "/");
    assert_eq!(r.drain(&busy), 20);
    let _held = r.admit(&holding).unwrap();
    r.admit(&light).unwrap();
    assert_eq!(r.store.tracked(), 3);
    // After 20 ms initech's one request is paid off: its state equals a fresh one.
    r.clock.advance(20 * MS);
    assert_eq!(r.limiter.sweep(), 1);
    assert_eq!(
        r.store.tracked(),
        2,
        "acme still owes, globex has a request in flight"
    );
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(
        r.limiter.sweep(),
        1,
        "acme paid off; globex still in flight"
    );
    assert_eq!(r.metrics.ratelimit_idle_evictions.get(), 2);
    // A swept tenant gets exactly the burst it earned by waiting.
    assert_eq!(r.drain(&busy), 20);
}

#[test]
fn eviction_from_a_full_store_grants_no_burst() {
    // 64 keys at most: one per shard, so any other tenant landing in acme's shard evicts it.
    let r = rig_with(&config(), 64, None);
    let acme = ask("acme", "standard", &Method::GET, "/");
    assert_eq!(r.drain(&acme), 20);
    let mut i = 0;
    while r.metrics.ratelimit_forced_evictions.get() == 0 || r.store.tracked() >= 64 {
        let t = format!("t{i}");
        // Everyone else owes too, so nothing is idle and the store must force evictions.
        r.admit(&ask(&t, "standard", &Method::GET, "/")).unwrap();
        i += 1;
        assert!(i < 100_000);
    }
    // Keep inserting until another tenant lands in acme's shard and evicts it.
    let acme_key = Key {
        tenant: "acme",
        class: 0,
    };
    let mut j = 0;
    while r.store.holds(acme_key) {
        let t = format!("u{j}");
        let _ = r.admit(&ask(&t, "standard", &Method::GET, "/"));
        j += 1;
        assert!(j < 100_000);
    }
    assert!(r.store.tracked() <= 64, "bounded: {}", r.store.tracked());
    assert!(r.metrics.ratelimit_forced_evictions.get() > 0);
    // Same instant: acme comes back owing what it owed, not with a fresh burst of 20.
    assert!(
        r.admit(&acme).is_err(),
        "an evicted tenant must not get a fresh burst"
    );
    // And after its debt is paid it gets the burst it earned.
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(r.drain(&acme), 20);
}

#[test]
fn forced_eviction_never_drops_a_slot_with_requests_in_flight() {
    let r = rig_with(&config(), 64, None);
    let held = ask("globex", "ops", &Method::GET, "/");
    let permits: Vec<_> = (0..3).map(|_| r.admit(&held).unwrap()).collect();
    for j in 0..2_000 {
        let t = format!("u{j}");
        let _ = r.admit(&ask(&t, "standard", &Method::GET, "/"));
    }
    assert!(
        matches!(r.admit(&held), Err(Limited::Concurrency { .. })),
        "globex's in-flight count survived the evictions"
    );
    drop(permits);
    assert!(r.admit(&held).is_ok());
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

#[test]
fn a_request_pays_every_route_class_it_matches() {
    let mut cfg = config();
    let class = |name: &str, methods: Vec<Method>, prefix: Option<&str>, burst| RouteClassConfig {
        name: name.to_owned(),
        methods,
        path_prefix: prefix.map(str::to_owned),
        rate: 0.01,
        burst,
        tiers: vec![],
    };
    cfg.routes = vec![
        class("writes", vec![Method::POST], None, 5),
        class("export", vec![], Some("/export"), 2),
    ];
    let r = rig_with(&cfg, 1 << 16, None);
    let export_post = ask("acme", "standard", &Method::POST, "/export/run");
    assert_eq!(
        r.drain(&export_post),
        2,
        "the stricter class binds though it comes second"
    );
    // The refused ones were refunded to `writes`: 3 of its 5 are left for other writes.
    assert_eq!(
        r.drain(&ask("acme", "standard", &Method::POST, "/items")),
        3
    );
}
