#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use crate::config::file::FileCell;
use crate::placement::{RegistryData, TenantRecord};

fn cell(id: &str, state: &str, targets: &[&str]) -> Cell {
    let fc = FileCell {
        id: id.to_owned(),
        state: Some(state.to_owned()),
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        groups: Vec::new(),
        preserve_host: None,
        max_in_flight: None,
        wave: None,
    };
    Cell::from_file(&fc, "cells[0]").unwrap()
}

fn record(id: &str, cell: &str, status: TenantStatus, version: u64) -> TenantRecord {
    TenantRecord {
        id: id.to_owned(),
        cell: cell.to_owned(),
        status,
        tier: "standard".to_owned(),
        version,
        issuers: Vec::new(),
        limits: Default::default(),
        arm: None,
    }
}

/// Generation 1: cell-1 (two targets), cell-2 (draining), cell-down (DOWN) and one tenant per
/// interesting status; `lost` names a cell nobody defines.
fn snapshot() -> PlacementSnapshot {
    let data = RegistryData {
        tenants: vec![
            record("acme", "cell-1", TenantStatus::Active, 7),
            record("globex", "cell-2", TenantStatus::Active, 1),
            record("sus", "cell-1", TenantStatus::Suspended, 1),
            record("gone", "cell-1", TenantStatus::Offboarded, 1),
            record("moving", "cell-1", TenantStatus::Migrating, 1),
            record("downy", "cell-down", TenantStatus::Active, 1),
            record("lost", "cell-nowhere", TenantStatus::Active, 1),
            record("lost-sus", "cell-nowhere", TenantStatus::Suspended, 1),
        ],
        cells: vec![
            cell(
                "cell-1",
                "ACTIVE",
                &["http://10.0.0.1:8080", "http://10.0.0.2:8080"],
            ),
            cell("cell-2", "DRAINING", &["http://10.0.1.1:8080"]),
            cell("cell-down", "DOWN", &["http://10.0.2.1:8080"]),
        ],
    };
    PlacementSnapshot::build(&data, &[], 1)
}

fn t(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

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
    let data = RegistryData {
        tenants: vec![record("acme", "cell-1", TenantStatus::Active, 1)],
        cells: vec![cell("cell-1", "ACTIVE", &["http://10.0.0.1:8080"])],
    };
    let snap = PlacementSnapshot::build(&data, &[], 0);
    assert_eq!(
        route(&t("acme"), &Method::GET, None, &snap).unwrap_err(),
        RouteError::NotReady
    );
}

#[test]
fn round_robin_alternates_targets() {
    let snap = snapshot();
    let picks: Vec<usize> = (0..6)
        .map(|_| route(&t("acme"), &Method::GET, None, &snap).unwrap().target)
        .collect();
    for w in picks.windows(2) {
        assert_ne!(w[0], w[1], "{picks:?}");
    }
    // Tenants sharing a cell share its rotation.
    let a = route(&t("acme"), &Method::GET, None, &snap).unwrap().target;
    let b = route(&t("moving"), &Method::GET, None, &snap)
        .unwrap()
        .target;
    assert_ne!(a, b);
}

#[test]
fn chosen_cell_never_changes_for_a_tenant() {
    let snap = snapshot();
    let first = route(&t("acme"), &Method::GET, None, &snap).unwrap();
    for _ in 0..1000 {
        let d = route(&t("acme"), &Method::GET, None, &snap).unwrap();
        assert!(Arc::ptr_eq(&d.cell, &first.cell));
        assert_eq!(d.tenant_header, first.tenant_header);
    }
    // The same holds across rebuilt generations of the same data.
    for _ in 0..10 {
        assert_eq!(
            &*route(&t("globex"), &Method::GET, None, &snapshot())
                .unwrap()
                .cell
                .id,
            "cell-2"
        );
    }
}

#[test]
fn a_tenant_bound_to_its_own_idp_refuses_tokens_from_other_issuers() {
    let mut initech = record("initech", "cell-1", TenantStatus::Active, 1);
    initech.issuers = vec!["https://initech.idp".to_owned()];
    let data = RegistryData {
        tenants: vec![initech, record("acme", "cell-1", TenantStatus::Active, 1)],
        cells: vec![cell("cell-1", "ACTIVE", &["http://10.0.0.1:8080"])],
    };
    let snap = PlacementSnapshot::build(&data, &[], 1);
    let get = Method::GET;
    assert!(route(&t("initech"), &get, Some("https://initech.idp"), &snap).is_ok());
    assert_eq!(
        route(&t("initech"), &get, Some("https://shared.idp"), &snap).unwrap_err(),
        RouteError::IssuerNotAllowed
    );
    // No token: the binding speaks about tokens only (auth.required decides the rest).
    assert!(route(&t("initech"), &get, None, &snap).is_ok());
    // An unbound tenant takes any configured issuer, except another tenant's own IdP.
    assert!(route(&t("acme"), &get, Some("https://shared.idp"), &snap).is_ok());
    assert_eq!(
        route(&t("acme"), &get, Some("https://initech.idp"), &snap).unwrap_err(),
        RouteError::IssuerNotAllowed
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
            route_with(&t("moving"), &m, None, &snap, all, ArmHint::default()).unwrap_err(),
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
            ArmHint::default()
        )
        .is_ok()
    );
}

#[test]
fn a_pinned_tenant_gets_its_arm_whatever_the_weights() {
    use crate::config::file::{FileCell, FileGroup};
    let group = |name: &str, weight: u32, ip: u8| FileGroup {
        name: name.to_owned(),
        version: None,
        weight,
        targets: vec![format!("http://10.9.0.{ip}:80")],
    };
    let fc = FileCell {
        id: "cell-c".to_owned(),
        state: None,
        targets: Vec::new(),
        groups: vec![group("stable", 100, 1), group("canary", 0, 2)],
        preserve_host: None,
        max_in_flight: None,
        wave: None,
    };
    let mut tenants: Vec<TenantRecord> = (0..200)
        .map(|i| record(&format!("t{i}"), "cell-c", TenantStatus::Active, 1))
        .collect();
    tenants[7].arm = Some("canary".to_owned());
    tenants[8].arm = Some("no-such-group".to_owned());
    let data = RegistryData {
        tenants,
        cells: vec![Cell::from_file(&fc, "cells[0]").unwrap()],
    };
    let snap = PlacementSnapshot::build(&data, &[], 1);
    for i in 0..200 {
        let d = route(&t(&format!("t{i}")), &Method::GET, None, &snap).unwrap();
        let want = if i == 7 { 1 } else { 0 };
        assert_eq!(d.group, want, "t{i}");
        assert!(d.cell.groups[want].targets.contains(&d.target));
    }
}

/// A snapshot of one cell `cell-c` with the groups `(name, weight, has targets)` and the
/// tenants `(id, pinned arm)`.
fn canary_snapshot(
    groups: &[(&str, u32, bool)],
    tenants: &[(&str, Option<&str>)],
) -> PlacementSnapshot {
    use crate::config::file::FileGroup;
    let fc = FileCell {
        id: "cell-c".to_owned(),
        state: None,
        targets: Vec::new(),
        groups: groups
            .iter()
            .enumerate()
            .map(|(i, (name, weight, has_targets))| FileGroup {
                name: (*name).to_owned(),
                version: None,
                weight: *weight,
                targets: if *has_targets {
                    vec![format!("http://10.9.1.{}:80", i + 1)]
                } else {
                    Vec::new()
                },
            })
            .collect(),
        preserve_host: None,
        max_in_flight: None,
        wave: None,
    };
    let data = RegistryData {
        tenants: tenants
            .iter()
            .map(|(id, arm)| {
                let mut r = record(id, "cell-c", TenantStatus::Active, 1);
                r.arm = arm.map(str::to_owned);
                r
            })
            .collect(),
        cells: vec![Cell::from_file(&fc, "cells[0]").unwrap()],
    };
    PlacementSnapshot::build(&data, &[], 1)
}

/// The name of the arm `tenant` gets under `hint`.
fn arm_of(snap: &PlacementSnapshot, tenant: &str, hint: ArmHint<'_>) -> String {
    let d = route_with(
        &t(tenant),
        &Method::GET,
        None,
        snap,
        RoutePolicy::default(),
        hint,
    )
    .unwrap();
    assert!(d.cell.groups[d.group].targets.contains(&d.target));
    d.cell.groups[d.group].name.to_string()
}

fn forced(arm: &str) -> ArmHint<'_> {
    ArmHint {
        key: None,
        forced: Some(arm),
    }
}

#[test]
fn a_forced_arm_wins_over_the_pin_which_wins_over_the_weights() {
    let snap = canary_snapshot(
        &[
            ("stable", 100, true),
            ("canary", 0, true),
            ("beta", 0, true),
        ],
        &[("pinned", Some("canary")), ("free", None)],
    );
    let none = ArmHint::default();
    assert_eq!(arm_of(&snap, "free", none), "stable");
    assert_eq!(arm_of(&snap, "pinned", none), "canary");
    // Forced beats pinned, and reaches a dark group (weight 0) too.
    assert_eq!(arm_of(&snap, "pinned", forced("beta")), "beta");
    assert_eq!(arm_of(&snap, "free", forced("canary")), "canary");
    assert_eq!(arm_of(&snap, "free", forced("stable")), "stable");
}

#[test]
fn a_forced_or_pinned_arm_the_cell_cannot_serve_is_passed_over() {
    let snap = canary_snapshot(
        &[
            ("stable", 100, true),
            ("canary", 0, true),
            ("empty", 0, false),
        ],
        &[
            ("pinned", Some("canary")),
            ("free", None),
            ("lost", Some("empty")),
        ],
    );
    // Unknown or target-less forced arm: the pin decides, else the weights.
    for arm in ["nope", "empty", "", "STABLE"] {
        assert_eq!(arm_of(&snap, "pinned", forced(arm)), "canary", "{arm:?}");
        assert_eq!(arm_of(&snap, "free", forced(arm)), "stable", "{arm:?}");
    }
    // A pin to a group without targets falls through to the weights as well.
    assert_eq!(arm_of(&snap, "lost", ArmHint::default()), "stable");
    assert_eq!(arm_of(&snap, "lost", forced("empty")), "stable");
}

#[test]
fn hashing_by_sub_is_sticky_per_sub_independent_across_tenants_and_falls_back_to_the_tenant() {
    let tenants: Vec<String> = (0..50).map(|i| format!("t{i:02}")).collect();
    let list: Vec<(&str, Option<&str>)> = tenants.iter().map(|t| (t.as_str(), None)).collect();
    let snap = canary_snapshot(&[("stable", 50, true), ("canary", 50, true)], &list);
    let subs: Vec<String> = (0..2_000).map(|i| format!("user-{i}")).collect();
    let by_sub = |tenant: &str| -> Vec<String> {
        subs.iter()
            .map(|s| {
                arm_of(
                    &snap,
                    tenant,
                    ArmHint {
                        key: Some(s),
                        forced: None,
                    },
                )
            })
            .collect()
    };
    let a = by_sub("t00");
    // Sticky: the same sub gets the same arm on every request.
    assert_eq!(a, by_sub("t00"));
    // Split by weight over the subs of one tenant.
    let on_canary = a.iter().filter(|x| *x == "canary").count();
    assert!(
        (800..=1_200).contains(&on_canary),
        "{on_canary} of 2000 subs"
    );
    // One sub in two tenants: independent choices (agreeing about half the time).
    let b = by_sub("t01");
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!((800..=1_200).contains(&same), "{same} of 2000 agree");
    // No sub (anonymous, or a token without one): the tenant's own arm, as with no hint.
    for t in &tenants {
        assert_eq!(
            arm_of(&snap, t, ArmHint::default()),
            arm_of(
                &snap,
                t,
                ArmHint {
                    key: None,
                    forced: None
                }
            )
        );
        let d = route(&TenantId::parse(t).unwrap(), &Method::GET, None, &snap).unwrap();
        let want = canary::arm(&d.cell.groups, t).unwrap();
        assert_eq!(d.group, want);
    }
    // The pin still wins over the sub hash.
    let pinned = canary_snapshot(
        &[("stable", 100, true), ("canary", 0, true)],
        &[("p", Some("canary"))],
    );
    for s in &subs[..50] {
        let hint = ArmHint {
            key: Some(s),
            forced: None,
        };
        assert_eq!(arm_of(&pinned, "p", hint), "canary");
    }
}

#[test]
fn the_hint_honours_the_header_only_for_tokens_whose_claim_permits_the_arm() {
    use crate::auth::ClaimPath;
    use crate::auth::{ForcedArms, IssuerPolicy, VerifiedToken};
    use crate::config::{CanaryConfig, ForceArm, HashBy};
    let token = |sub: Option<&str>, arms: ForcedArms| VerifiedToken {
        issuer: Arc::new(IssuerPolicy {
            name: Arc::from("idp"),
            iss: Arc::from("https://idp.test"),
            tenants: None,
        }),
        tenant: None,
        subject: sub.map(Box::from),
        expires_at: u64::MAX,
        forward: Box::new([]),
        arms,
    };
    let cfg = CanaryConfig {
        hash_by: HashBy::Sub,
        force: Some(ForceArm {
            header: http::HeaderName::from_static("x-arm"),
            claim: ClaimPath::parse("canary_tester").unwrap(),
        }),
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-arm", HeaderValue::from_static("canary"));
    let names = ForcedArms::Names(Box::new([Box::from("canary")]));
    let (plain, tester, any) = (
        token(Some("u1"), ForcedArms::None),
        token(Some("u1"), names),
        token(None, ForcedArms::Any),
    );
    // Anonymous: no hint at all, whatever the header says.
    assert_eq!(arm_hint(&cfg, &headers, None), ArmHint::default());
    // A token without the claim: its sub, and the header ignored.
    let want = ArmHint {
        key: Some("u1"),
        forced: None,
    };
    assert_eq!(arm_hint(&cfg, &headers, Some(&plain)), want);
    // The claim names the arm, or permits any.
    assert_eq!(
        arm_hint(&cfg, &headers, Some(&tester)).forced,
        Some("canary")
    );
    assert_eq!(arm_hint(&cfg, &headers, Some(&any)), forced("canary"));
    headers.insert("x-arm", HeaderValue::from_static("beta"));
    assert_eq!(arm_hint(&cfg, &headers, Some(&tester)).forced, None);
    assert_eq!(arm_hint(&cfg, &headers, Some(&any)).forced, Some("beta"));
    // No header: nothing forced; an empty sub is no key.
    let empty_sub = token(Some(""), ForcedArms::Any);
    assert_eq!(
        arm_hint(&cfg, &HeaderMap::new(), Some(&empty_sub)),
        ArmHint::default()
    );
    // hash_by = "tenant": never a key; no force_header: the header means nothing.
    let tenant_only = CanaryConfig::default();
    assert_eq!(
        arm_hint(&tenant_only, &headers, Some(&any)),
        ArmHint::default()
    );
}
