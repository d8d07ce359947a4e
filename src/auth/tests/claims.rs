//! Claim checks: registered claims and leeway, the tenant claim, per-issuer policy, forwarded claims.

use super::*;

fn invalid(r: Reason) -> Result<Arc<VerifiedToken>, AuthError> {
    Err(AuthError::Invalid(r))
}

#[test]
fn claim_checks_refuse_bad_tokens_with_their_reason() {
    let v = verifier();
    assert!(verify(&v, &rsa_token(&[])).is_ok());
    #[rustfmt::skip]
    let cases = [
        (Reason::Expired, "exp", Some(json!(now() - 3600))),
        (Reason::ClaimMissing, "exp", None),
        // A non-numeric exp does not count as present (jsonwebtoken >= 10.3 never skips it).
        (Reason::ClaimMissing, "exp", Some(json!("tomorrow"))),
        (Reason::NotYetValid, "nbf", Some(json!(now() + 3600))),
        (Reason::ClaimFormat, "nbf", Some(json!("soon"))),
        (Reason::IssuedInFuture, "iat", Some(json!(now() + 3600))),
        (Reason::UnknownIssuer, "iss", Some(json!("https://evil.test"))),
        (Reason::ClaimMissing, "iss", None),
        (Reason::Malformed, "iss", Some(json!([ISSUER]))),
        (Reason::Audience, "aud", Some(json!("someone-else"))),
        (Reason::Audience, "aud", None),
        (Reason::ClaimMissing, "sub", None),
        (Reason::TenantClaimMissing, "tenant", None),
        (Reason::TenantClaimMissing, "tenant", Some(Value::Null)),
        (Reason::TenantClaimType, "tenant", Some(json!(42))),
        (Reason::TenantClaimType, "tenant", Some(json!(["acme"]))),
        (Reason::TenantClaimInvalid, "tenant", Some(json!("Acme!"))),
    ];
    for (reason, claim, value) in cases {
        let token = rsa_token(&[(claim, value.clone())]);
        assert_eq!(verify(&v, &token), invalid(reason), "{claim} = {value:?}");
    }
    // An audience list is accepted when one of its entries is ours.
    assert!(verify(&v, &rsa_token(&[("aud", Some(json!(["x", AUDIENCE])))])).is_ok());
}

#[test]
fn leeway_applies_to_exp_nbf_and_iat() {
    let v = verifier(); // default leeway: 60 s
    for (claim, at) in [
        ("exp", now() - 30),
        ("nbf", now() + 30),
        ("iat", now() + 30),
    ] {
        assert!(
            verify(&v, &rsa_token(&[(claim, Some(json!(at)))])).is_ok(),
            "{claim}"
        );
    }
    for (claim, at, reason) in [
        ("exp", now() - 90, Reason::Expired),
        ("nbf", now() + 90, Reason::NotYetValid),
    ] {
        assert_eq!(
            reason_of(&v, &rsa_token(&[(claim, Some(json!(at)))])),
            reason
        );
    }
}

#[test]
fn tenant_claim_can_be_optional_namespaced_or_nested() {
    let v = verifier_from(
        r#"
[[issuers]]
issuer = "https://issuer.test"
audiences = ["cellgate"]
tenant_claim_required = false
[[issuers.keys]]
kid = "rsa-1"
algorithm = "RS256"
public_key_file = "rsa.pub.pem"
"#,
    );
    let got = verify(&v, &rsa_token(&[("tenant", None)])).unwrap();
    assert_eq!((got.tenant, got.subject.as_deref()), (None, Some("user-1")));

    for (claim_cfg, name, value) in [
        (
            "https://example.com/tenant",
            "https://example.com/tenant",
            json!("acme"),
        ),
        ("/org/id", "org", json!({"id": "acme"})),
    ] {
        let v = verifier_from(&format!(
            r#"
[[issuers]]
issuer = "https://issuer.test"
audiences = ["cellgate"]
tenant_claim = "{claim_cfg}"
[[issuers.keys]]
kid = "rsa-1"
algorithm = "RS256"
public_key_file = "rsa.pub.pem"
"#
        ));
        let token = rsa_token(&[("tenant", None), (name, Some(value))]);
        assert_eq!(verify(&v, &token).unwrap().tenant, acme(), "{claim_cfg}");
        // The plain `tenant` claim is not what this issuer's tokens are read by.
        assert_eq!(reason_of(&v, &rsa_token(&[])), Reason::TenantClaimMissing);
    }
}

#[test]
fn each_issuer_checks_its_own_keys_audiences_and_algorithms() {
    let v = verifier_from(
        r#"
[[issuers]]
name = "a"
issuer = "https://a.test"
audiences = ["aud-a"]
[[issuers.keys]]
kid = "k"
algorithm = "RS256"
public_key_file = "rsa.pub.pem"

[[issuers]]
name = "b"
issuer = "https://b.test"
audiences = ["aud-b"]
tenants = ["globex"]
[[issuers.keys]]
kid = "k"
algorithm = "EdDSA"
public_key_file = "ed25519.pub.pem"
"#,
    );
    let token = |alg, private: &str, iss: &str, aud: &str| {
        let mut c = claims();
        c["iss"] = json!(iss);
        c["aud"] = json!(aud);
        sign(alg, Some("k"), private, &c)
    };
    let a = verify(
        &v,
        &token(Algorithm::RS256, "rsa.pem", "https://a.test", "aud-a"),
    )
    .unwrap();
    assert_eq!(&*a.issuer.name, "a");
    assert!(a.issuer.allows(&TenantId::parse("acme").unwrap()));
    let b = verify(
        &v,
        &token(Algorithm::EdDSA, "ed25519.pem", "https://b.test", "aud-b"),
    )
    .unwrap();
    assert!(!b.issuer.allows(&TenantId::parse("acme").unwrap()));
    assert!(b.issuer.allows(&TenantId::parse("globex").unwrap()));
    // Issuer a's audience at issuer b; issuer a's algorithm (and key) at issuer b.
    let cross_aud = token(Algorithm::EdDSA, "ed25519.pem", "https://b.test", "aud-a");
    assert_eq!(reason_of(&v, &cross_aud), Reason::Audience);
    let cross_key = token(Algorithm::RS256, "rsa.pem", "https://b.test", "aud-b");
    assert_eq!(reason_of(&v, &cross_key), Reason::Algorithm);
}

#[test]
fn forwarded_claims_are_prepared_at_verification() {
    let v = verifier_from(&format!(
        r#"
[[forward_claims]]
claim = "sub"
header = "X-User"
[[forward_claims]]
claim = "roles"
header = "x-roles"
{ONE_ISSUER}"#
    ));
    assert_eq!(v.forward_headers().count(), 2);
    let token = rsa_token(&[("roles", Some(json!(["admin", "billing"])))]);
    let got = verify(&v, &token).unwrap();
    let fwd: Vec<(&str, &str)> = got
        .forward
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(fwd, [("x-user", "user-1"), ("x-roles", "admin,billing")]);
}
