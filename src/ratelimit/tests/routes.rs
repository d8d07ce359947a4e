//! Route classes: matching by method, prefix and tier, and refunds to the tenant.

use super::*;
use crate::config::RouteClassConfig;

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
