//! How the tenant's status and its cell's state decide a route, and the migrating policy.

use super::*;

#[test]
fn active_tenant_routes_to_its_cell() {
    let snap = snapshot();
    let d = route(&t("acme"), &Method::GET, None, &snap).unwrap();
    assert_eq!(&*d.cell.id, "cell-1");
    assert!(d.target < d.cell.targets.len());
    assert_eq!(d.tenant_header, "acme");
    assert_eq!(d.version, 7);
    assert!(route(&t("acme"), &Method::POST, None, &snap).is_ok());
}

#[test]
fn draining_cell_still_serves_its_tenants() {
    let d = route(&t("globex"), &Method::DELETE, None, &snapshot()).unwrap();
    assert_eq!(&*d.cell.id, "cell-2");
    assert_eq!(d.cell.state, CellState::Draining);
}

#[test]
fn suspended_tenant_is_refused() {
    let snap = snapshot();
    for m in [Method::GET, Method::POST] {
        assert_eq!(
            route(&t("sus"), &m, None, &snap).unwrap_err(),
            RouteError::Suspended
        );
    }
    // Status is judged before the cell: a suspended tenant on a missing cell is suspended.
    assert_eq!(
        route(&t("lost-sus"), &Method::GET, None, &snap).unwrap_err(),
        RouteError::Suspended
    );
}

#[test]
fn offboarded_tenant_looks_unknown() {
    let snap = snapshot();
    assert_eq!(
        route(&t("gone"), &Method::GET, None, &snap).unwrap_err(),
        RouteError::UnknownTenant
    );
    assert_eq!(
        route(&t("nobody"), &Method::GET, None, &snap).unwrap_err(),
        RouteError::UnknownTenant
    );
    assert_eq!(RouteError::UnknownTenant.cell(), None);
}

#[test]
fn migrating_tenant_reads_pass_and_writes_pause() {
    let snap = snapshot();
    for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
        let d = route(&t("moving"), &m, None, &snap).unwrap();
        assert_eq!(&*d.cell.id, "cell-1", "{m}");
    }
    for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        assert_eq!(
            route(&t("moving"), &m, None, &snap).unwrap_err(),
            RouteError::Migrating,
            "{m}"
        );
    }
}

#[test]
fn down_cell_is_refused_with_its_id() {
    let err = route(&t("downy"), &Method::GET, None, &snapshot()).unwrap_err();
    assert_eq!(err, RouteError::CellDown(Arc::from("cell-down")));
    assert_eq!(err.cell().map(|c| &**c), Some("cell-down"));
    assert_eq!(err.to_string(), "cell cell-down is down");
}

#[test]
fn missing_cell_is_refused_with_its_id() {
    let err = route(&t("lost"), &Method::GET, None, &snapshot()).unwrap_err();
    assert_eq!(err, RouteError::CellMissing(Arc::from("cell-nowhere")));
    assert_eq!(err.cell().map(|c| &**c), Some("cell-nowhere"));
}

#[test]
fn generation_zero_is_not_ready() {
    assert_eq!(
        route(&t("acme"), &Method::GET, None, &PlacementSnapshot::empty()).unwrap_err(),
        RouteError::NotReady
    );
    // Even with data in it, a generation-0 snapshot is never used.
    let data = RegistryData::from_records(
        vec![record("acme", "cell-1", TenantStatus::Active, 1)],
        vec![cell("cell-1", "ACTIVE", &["http://10.0.0.1:8080"])],
    );
    let snap = PlacementSnapshot::build(data, &[], 0);
    assert_eq!(
        route(&t("acme"), &Method::GET, None, &snap).unwrap_err(),
        RouteError::NotReady
    );
}

#[test]
fn a_policy_can_refuse_every_request_of_a_migrating_tenant() {
    let all = RoutePolicy {
        migrating_refuses_all: true,
    };
    let snap = snapshot();
    for m in [Method::GET, Method::HEAD, Method::POST] {
        assert_eq!(
            route_with(&t("moving"), &m, None, &snap, all, ArmHint::default(), None).unwrap_err(),
            RouteError::Migrating,
            "{m}"
        );
    }
    assert!(
        route_with(
            &t("acme"),
            &Method::GET,
            None,
            &snap,
            all,
            ArmHint::default(),
            None
        )
        .is_ok()
    );
}

#[test]
fn a_route_needing_an_entitlement_the_record_lacks_is_refused_naming_it() {
    let mut acme = record("acme", "cell-1", TenantStatus::Active, 1);
    acme.entitlements = vec!["billing".to_owned()];
    let data = RegistryData::from_records(
        [acme, record("globex", "cell-1", TenantStatus::Active, 1)],
        vec![cell("cell-1", "ACTIVE", &["http://127.0.0.1:9001"])],
    );
    let snap = PlacementSnapshot::build(data, &[], 1);
    let at = |tenant: &str, need: &str| {
        let need: Arc<str> = Arc::from(need);
        let policy = RoutePolicy::default();
        route_with(
            &t(tenant),
            &Method::GET,
            None,
            &snap,
            policy,
            ArmHint::default(),
            Some(&need),
        )
    };
    assert!(at("acme", "billing").is_ok());
    let refused = |e: RouteError| match e {
        RouteError::NotEntitled(n) => (n.entitlement.to_string(), n.by),
        other => panic!("expected NotEntitled, got {other:?}"),
    };
    assert_eq!(
        refused(at("acme", "reports").unwrap_err()),
        ("reports".to_owned(), crate::entitle::Holder::Tenant)
    );
    // A tenant with no list is entitled to nothing a route requires.
    assert!(matches!(
        at("globex", "billing"),
        Err(RouteError::NotEntitled(_))
    ));
    // Unknown tenants stay unknown: nothing is said about entitlements.
    assert_eq!(
        at("nobody", "billing").unwrap_err(),
        RouteError::UnknownTenant
    );
}
