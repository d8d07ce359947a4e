//! Which keys and algorithms verify a token: kid pinning, kid-less tries, HS256, algorithm confusion.

use super::*;

#[test]
fn rs256_es256_and_eddsa_tokens_verify_with_and_without_kid() {
    let v = verifier();
    for (alg, kid, private) in [
        (Algorithm::RS256, "rsa-1", "rsa.pem"),
        (Algorithm::ES256, "ec-1", "ec.pem"),
        (Algorithm::EdDSA, "ed-1", "ed25519.pem"),
    ] {
        for kid in [Some(kid), None] {
            let token = sign(alg, kid, private, &claims());
            let got = verify(&v, &token).unwrap();
            assert_eq!(got.tenant, acme(), "{alg:?} kid {kid:?}");
            assert_eq!(got.subject.as_deref(), Some("user-1"));
            assert_eq!(&*got.issuer.iss, ISSUER);
        }
    }
}

#[test]
fn kid_pins_the_key_and_no_kid_tries_each_key_of_the_alg() {
    // Two EdDSA keys: the demo key first, the fixture key second under kid ed-2.
    let v = verifier_from(&format!(
        r#"
[[issuers]]
issuer = "https://issuer.test"
audiences = ["cellgate"]
[[issuers.keys]]
kid = "demo"
algorithm = "EdDSA"
public_key_pem = """
{}"""
[[issuers.keys]]
kid = "ed-2"
algorithm = "EdDSA"
public_key_file = "ed25519.pub.pem"
"#,
        crate::demo::DEMO_PUBLIC_KEY
    ));
    let signed = |kid: Option<&str>| sign(Algorithm::EdDSA, kid, "ed25519.pem", &claims());
    assert_eq!(verify(&v, &signed(Some("ed-2"))).unwrap().tenant, acme());
    assert_eq!(verify(&v, &signed(None)).unwrap().tenant, acme());
    assert_eq!(reason_of(&v, &signed(Some("demo"))), Reason::Signature);
    assert_eq!(reason_of(&v, &signed(Some("unknown"))), Reason::UnknownKid);
}

#[test]
fn rsa_public_key_used_as_hmac_secret_is_refused() {
    let v = verifier();
    for kid in [Some("rsa-1"), None] {
        let forged = sign(Algorithm::HS256, kid, "rsa.pub.pem", &claims());
        assert_eq!(reason_of(&v, &forged), Reason::Algorithm, "kid {kid:?}");
    }
}

#[test]
fn key_of_another_algorithm_under_the_same_kid_is_refused() {
    let token = sign(Algorithm::ES256, Some("rsa-1"), "ec.pem", &claims());
    assert_eq!(reason_of(&verifier(), &token), Reason::Algorithm);
}

#[test]
fn hs256_tokens_verify_with_a_secret_file_and_nothing_else() {
    let v = verifier_from(
        r#"
[[issuers]]
issuer = "https://issuer.test"
audiences = ["cellgate"]
[[issuers.keys]]
kid = "hs"
algorithm = "HS256"
secret_file = "hmac.secret"
"#,
    );
    let token = sign(Algorithm::HS256, Some("hs"), "hmac.secret", &claims());
    assert_eq!(verify(&v, &token).unwrap().tenant, acme());
    let wrong = sign(Algorithm::HS256, Some("hs"), "rsa.pub.pem", &claims());
    assert_eq!(reason_of(&v, &wrong), Reason::Signature);
    let rs = sign(Algorithm::RS256, Some("hs"), "rsa.pem", &claims());
    assert_eq!(reason_of(&v, &rs), Reason::Algorithm);
}

#[test]
fn a_token_without_kid_is_not_tried_against_many_keys() {
    let key = |kid: &str| {
        format!(
            "[[issuers.keys]]\nkid = \"{kid}\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"ed25519.pub.pem\"\n"
        )
    };
    let head = "[[issuers]]\nissuer = \"https://issuer.test\"\naudiences = [\"cellgate\"]\n";
    let many: String = (0..=MAX_KIDLESS_KEYS)
        .map(|i| key(&format!("k{i}")))
        .collect();
    let v = verifier_from(&format!("{head}{many}"));
    let token = sign(Algorithm::EdDSA, None, "ed25519.pem", &claims());
    assert_eq!(reason_of(&v, &token), Reason::UnknownKid);
    let few: String = (0..MAX_KIDLESS_KEYS)
        .map(|i| key(&format!("k{i}")))
        .collect();
    assert!(verify(&verifier_from(&format!("{head}{few}")), &token).is_ok());
}
