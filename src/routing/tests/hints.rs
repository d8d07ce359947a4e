//! The arm hint: hashing by sub, and the forced-arm header gated by a token claim.

use super::*;

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
        scopes: None,
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
