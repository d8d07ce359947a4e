//! The canary section: hashing and the forced-arm header with its claim.

use super::*;

#[test]
fn canary_defaults_and_a_forced_arm_header_with_its_claim() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.canary.hash_by, HashBy::Tenant);
    assert!(cfg.canary.force.is_none() && cfg.auth.arm_claim.is_none());
    let key = format!(
        "[[auth.issuers.keys]]\nkid = \"k\"\nalgorithm = \"RS256\"\npublic_key_file = \"{KEYS}/rsa.pub.pem\"\n"
    );
    let canary = "[canary]\nhash_by = \"sub\"\nforce_header = \"X-Cellgate-Arm\"\n\
                  force_claim = \"canary_tester\"\n";
    let cfg = parse(&with_auth(&format!("{ISSUER_HEAD}{key}{canary}"))).unwrap();
    assert_eq!(cfg.canary.hash_by, HashBy::Sub);
    let force = cfg.canary.force.unwrap();
    assert_eq!(force.header.as_str(), "x-cellgate-arm");
    assert_eq!(force.claim.as_str(), "canary_tester");
    // The verifier gets the claim to capture with each token.
    assert_eq!(cfg.auth.arm_claim, Some(force.claim));
}

#[test]
fn canary_errors_name_the_key_and_value() {
    let key = format!(
        "[[auth.issuers.keys]]\nkid = \"k\"\nalgorithm = \"RS256\"\npublic_key_file = \"{KEYS}/rsa.pub.pem\"\n"
    );
    let issuer = format!("{ISSUER_HEAD}{key}");
    let claims = "[[auth.forward_claims]]\nclaim = \"sub\"\nheader = \"x-user\"\n";
    let force = |header: &str, claim: &str| {
        format!("[canary]\nforce_header = \"{header}\"\nforce_claim = \"{claim}\"\n")
    };
    #[rustfmt::skip]
    let cases = [
        (format!("{issuer}[canary]\nhash_by = \"user\"\n"), ("canary.hash_by", "user")),
        (format!("{issuer}[canary]\nforce_header = \"x-arm\"\n"), ("canary.force_claim", "(missing)")),
        (format!("{issuer}[canary]\nforce_claim = \"tester\"\n"), ("canary.force_header", "(missing)")),
        (format!("{issuer}{}", force("bad header", "tester")), ("canary.force_header", "bad header")),
        (format!("{issuer}{}", force("X-Tenant-Id", "tester")), ("canary.force_header", "X-Tenant-Id")),
        (format!("{issuer}{}", force("authorization", "tester")), ("canary.force_header", "authorization")),
        (format!("{issuer}{}", force("connection", "tester")), ("canary.force_header", "connection")),
        (format!("{claims}{issuer}{}", force("X-User", "tester")), ("canary.force_header", "X-User")),
        (format!("{issuer}{}", force("x-arm", "")), ("canary.force_claim", "")),
        (format!("{issuer}{}", force("x-arm", "/")), ("canary.force_claim", "/")),
    ];
    for (auth, want) in cases {
        assert_eq!(kv(&invalid(&with_auth(&auth))), want, "{auth}");
    }
    // A claim needs verified tokens.
    let f = invalid(&minimal_plus(&force("x-arm", "tester")));
    assert_eq!(kv(&f), ("canary.force_claim", "tester"));
    // Nor may the header be the trusted tenant header.
    let base = MINIMAL.replace(
        "sources = [\"subdomain\"]",
        "sources = [\"jwt\", \"header\"]",
    );
    let text = format!(
        "{base}\n[tenant.header]\nname = \"X-Org\"\ntrusted_sources = [\"10.0.0.0/8\"]\n\
         {issuer}{}",
        force("x-org", "tester")
    );
    assert_eq!(kv(&invalid(&text)), ("canary.force_header", "x-org"));
    // Unknown keys are parse errors.
    let err = parse(&minimal_plus("[canary]\nhash = \"sub\"\n")).unwrap_err();
    assert!(err.to_string().contains("hash"), "{err}");
}
