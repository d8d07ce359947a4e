#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use super::testing::{KEYS, block, verifier_from};
use crate::config::file::FileAuth;

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "cellgate";

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}/{name}")).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One issuer with RS256 (kid rsa-1), ES256 (ec-1) and EdDSA (ed-1) keys.
const ONE_ISSUER: &str = r#"
[[issuers]]
name = "test"
issuer = "https://issuer.test"
audiences = ["cellgate"]
required_claims = ["sub"]
[[issuers.keys]]
kid = "rsa-1"
algorithm = "RS256"
public_key_file = "rsa.pub.pem"
[[issuers.keys]]
kid = "ec-1"
algorithm = "ES256"
public_key_file = "ec.pub.pem"
[[issuers.keys]]
kid = "ed-1"
algorithm = "EdDSA"
public_key_file = "ed25519.pub.pem"
"#;

fn verifier() -> Verifier {
    verifier_from(ONE_ISSUER)
}

fn verify(v: &Verifier, token: &str) -> Result<Arc<VerifiedToken>, AuthError> {
    block(v.verify(token))
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "tenant": "acme",
        "iat": now(), "exp": now() + 600,
    })
}

/// Signs `claims` with fixture key `private` under `alg`, with header `kid`.
fn sign(alg: Algorithm, kid: Option<&str>, private: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let pem = read(private);
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::HS256 => Ok(EncodingKey::from_secret(&pem)),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// An RS256 token (kid rsa-1); each edit sets a claim, or removes it when the value is `None`.
fn rsa_token(edits: &[(&str, Option<Value>)]) -> String {
    let mut c = claims();
    for (claim, value) in edits {
        let map = c.as_object_mut().unwrap();
        match value {
            Some(v) => map.insert((*claim).to_owned(), v.clone()),
            None => map.remove(*claim),
        };
    }
    sign(Algorithm::RS256, Some("rsa-1"), "rsa.pem", &c)
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A token with a hand-written header, the standard claims and `signature`.
fn raw_token(header: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64url(header.to_string().as_bytes()),
        b64url(claims().to_string().as_bytes())
    )
}

fn invalid(r: Reason) -> Result<Arc<VerifiedToken>, AuthError> {
    Err(AuthError::Invalid(r))
}

fn reason_of(v: &Verifier, token: &str) -> Reason {
    match verify(v, token) {
        Err(AuthError::Invalid(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn acme() -> Option<TenantId> {
    Some(TenantId::parse("acme").unwrap())
}

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
fn a_second_verification_of_the_same_token_is_a_cache_hit() {
    let metrics = Metrics::new();
    let file: FileAuth = toml::from_str(ONE_ISSUER).unwrap();
    let cfg = crate::config::build_auth(&file, Path::new(KEYS)).unwrap();
    let v = Verifier::new(&cfg, &metrics).unwrap();
    let token = rsa_token(&[]);
    let first = verify(&v, &token).unwrap();
    let second = verify(&v, &token).unwrap();
    assert!(Arc::ptr_eq(&first, &second), "the cached Arc is returned");
    assert_eq!(metrics.auth.verified.get(), 1);
    assert_eq!(metrics.auth.cache_hits.get(), 1);
    // A refused token is not cached: it is checked (and refused) again.
    let bad = rsa_token(&[("aud", Some(json!("other")))]);
    assert!(verify(&v, &bad).is_err() && verify(&v, &bad).is_err());
    assert_eq!(metrics.auth.rejected.get(), 2);
}

#[test]
fn the_cache_never_serves_a_token_past_its_exp() {
    let cache = TokenCache::new(100, std::time::Duration::from_secs(300));
    let policy = Arc::new(IssuerPolicy {
        name: Arc::from("t"),
        iss: Arc::from("t"),
        tenants: None,
    });
    let token = |exp| {
        Arc::new(VerifiedToken {
            issuer: Arc::clone(&policy),
            tenant: None,
            subject: None,
            expires_at: exp,
            forward: Box::new([]),
            arms: ForcedArms::None,
        })
    };
    let (k1, k2) = (token_key("a"), token_key("b"));
    let exp = now() + 100;
    let g = cache.generation();
    cache.insert(k1, token(exp), now(), g);
    assert!(cache.get(&k1, exp - 1).is_some());
    assert!(cache.get(&k1, exp).is_none(), "at exp the hit is refused");
    // Already expired when verified (inside the leeway): never cached.
    cache.insert(k2, token(now() - 1), now(), g);
    assert!(cache.get(&k2, 0).is_none());
    // A key was withdrawn while k2 was being verified: its result is not cached.
    cache.invalidate_all();
    assert!(
        cache.get(&k1, 0).is_none(),
        "invalidation empties the cache"
    );
    cache.insert(k2, token(exp), now(), g);
    assert!(
        cache.get(&k2, 0).is_none(),
        "verified across an invalidation"
    );
    cache.insert(k2, token(exp), now(), cache.generation());
    assert!(cache.get(&k2, 0).is_some());
    // Disabled cache.
    let off = TokenCache::new(0, std::time::Duration::from_secs(300));
    off.insert(k1, token(u64::MAX), 0, 0);
    assert!(off.get(&k1, 0).is_none());
}

#[test]
fn a_connection_memo_answers_only_its_exact_token_under_the_cache_rules() {
    let metrics = Metrics::new();
    let file: FileAuth = toml::from_str(ONE_ISSUER).unwrap();
    let cfg = crate::config::build_auth(&file, Path::new(KEYS)).unwrap();
    let v = Verifier::new(&cfg, &metrics).unwrap();
    let memo = TokenMemo::default();
    let (a, b) = (rsa_token(&[]), rsa_token(&[("sub", Some(json!("user-2")))]));
    let first = block(v.verify_for(&a, &memo)).unwrap();
    let again = block(v.verify_for(&a, &memo)).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert!(memo.get(&a, &v.cache, now()).is_some());
    // Another token (even one differing in the last byte) is never answered by the memo.
    let mut tampered = a.clone();
    let last = if tampered.ends_with('A') { "B" } else { "A" };
    tampered.replace_range(tampered.len() - 1.., last);
    assert!(memo.get(&tampered, &v.cache, now()).is_none());
    let other = block(v.verify_for(&b, &memo)).unwrap();
    assert_eq!(other.subject.as_deref(), Some("user-2"));
    assert!(
        memo.get(&a, &v.cache, now()).is_none(),
        "the memo holds one token"
    );
    // Past exp, and after an invalidation (a key withdrawn), the memo answers nothing.
    assert!(memo.get(&b, &v.cache, other.expires_at).is_none());
    v.cache.invalidate_all();
    assert!(memo.get(&b, &v.cache, now()).is_none());
    assert_eq!(metrics.auth.verified.get(), 2);
    assert_eq!(metrics.auth.cache_hits.get(), 1);
    // With the cache off, nothing is remembered.
    let off = TokenCache::new(0, std::time::Duration::from_secs(300));
    let memo = TokenMemo::default();
    memo.set(&a, &first, off.generation());
    assert!(memo.get(&a, &off, now()).is_none());
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
fn rsa_public_key_used_as_hmac_secret_is_refused() {
    let v = verifier();
    for kid in [Some("rsa-1"), None] {
        let forged = sign(Algorithm::HS256, kid, "rsa.pub.pem", &claims());
        assert_eq!(reason_of(&v, &forged), Reason::Algorithm, "kid {kid:?}");
    }
}

#[test]
fn alg_none_in_any_casing_and_malformed_tokens_are_refused() {
    assert_eq!([b64url(b"Man"), b64url(b"\xfb\xff")], ["TWFu", "-_8"]);
    let v = verifier();
    for alg in ["none", "None", "NONE", "nOnE"] {
        for kid in [None, Some("rsa-1")] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
            for sig in ["", "AAAA"] {
                assert_eq!(reason_of(&v, &raw_token(&header, sig)), Reason::Malformed);
            }
        }
    }
    for junk in [
        "",
        "abc",
        "a.b.c",
        "a.b",
        "not a token at all",
        "a.b.c.d",
        "é.b.c",
    ] {
        assert_eq!(reason_of(&v, junk), Reason::Malformed, "{junk:?}");
    }
    // A valid token with its payload swapped: the signature no longer matches.
    let good = rsa_token(&[]);
    let parts: Vec<&str> = good.split('.').collect();
    let evil = b64url(claims().to_string().replace("acme", "evil").as_bytes());
    let forged = format!("{}.{evil}.{}", parts[0], parts[2]);
    assert_eq!(reason_of(&v, &forged), Reason::Signature);
}

#[test]
fn key_of_another_algorithm_under_the_same_kid_is_refused() {
    let token = sign(Algorithm::ES256, Some("rsa-1"), "ec.pem", &claims());
    assert_eq!(reason_of(&verifier(), &token), Reason::Algorithm);
}

#[test]
fn hostile_kids_are_refused_before_any_lookup() {
    let v = verifier();
    for kid in [
        "../../etc/passwd",
        "/etc/passwd",
        "' OR '1'='1",
        "rsa-1; DROP TABLE keys",
        "a\\b",
        "%2e%2e",
        "",
        &"k".repeat(129),
    ] {
        let token = sign(Algorithm::RS256, Some(kid), "rsa.pem", &claims());
        assert_eq!(reason_of(&v, &token), Reason::BadKid, "{kid:?}");
    }
    for kid in ["rsa-1", "abc_DEF-123", "a/b+c==", "urn:key:1", "x.y"] {
        assert!(valid_kid(kid), "{kid}");
    }
}

#[test]
fn keys_embedded_in_the_token_header_are_ignored() {
    // The attacker signs with their own key and offers it (or a URL to it) in the header.
    let v = verifier();
    let mut c = claims();
    c["tenant"] = json!("globex");
    let jwk: Value = serde_json::from_slice(&read("jwk/rsa2.json")).unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.jwk = Some(serde_json::from_value(jwk).unwrap());
    header.jku = Some("http://127.0.0.1:9/jwks.json".to_owned());
    header.x5u = Some("http://127.0.0.1:9/cert.pem".to_owned());
    let key = EncodingKey::from_rsa_pem(&read("rsa2.pem")).unwrap();
    let token = jsonwebtoken::encode(&header, &c, &key).unwrap();
    assert_eq!(reason_of(&v, &token), Reason::Signature);
    header.kid = Some("attacker".to_owned());
    let token = jsonwebtoken::encode(&header, &c, &key).unwrap();
    assert_eq!(reason_of(&v, &token), Reason::UnknownKid);
}

#[test]
fn critical_headers_and_unexpected_typ_are_refused() {
    let v = verifier();
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    header.crit = Some(vec!["exp".to_owned()]);
    let key = EncodingKey::from_rsa_pem(&read("rsa.pem")).unwrap();
    let token = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
    assert_eq!(reason_of(&v, &token), Reason::CriticalHeader);

    let strict = verifier_from(
        r#"
[[issuers]]
issuer = "https://issuer.test"
audiences = ["cellgate"]
typ = "at+jwt"
[[issuers.keys]]
kid = "rsa-1"
algorithm = "RS256"
public_key_file = "rsa.pub.pem"
"#,
    );
    let with_typ = |typ: Option<&str>| {
        let mut h = jsonwebtoken::Header::new(Algorithm::RS256);
        h.kid = Some("rsa-1".to_owned());
        h.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&h, &claims(), &key).unwrap()
    };
    assert!(verify(&strict, &with_typ(Some("at+jwt"))).is_ok());
    assert!(verify(&strict, &with_typ(Some("application/AT+JWT"))).is_ok());
    assert_eq!(reason_of(&strict, &with_typ(Some("JWT"))), Reason::Typ);
    assert_eq!(reason_of(&strict, &with_typ(None)), Reason::Typ);
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

#[test]
fn jwks_documents_parse_into_algorithm_bound_keys() {
    let jwk = |name: &str, extra: Value| {
        let mut v: Value = serde_json::from_slice(&read(&format!("jwk/{name}.json"))).unwrap();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let doc = json!({"keys": [
        jwk("rsa", json!({"kid": "r1", "alg": "RS256", "use": "sig"})),
        jwk("rsa2", json!({"kid": "r2"})),
        jwk("ec", json!({"kid": "e1"})),
        jwk("ed25519", json!({"kid": "d1"})),
        jwk("rsa", json!({"kid": "enc", "use": "enc"})),
        {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
        jwk("rsa", json!({"kid": "../etc"})),
    ]});
    let body = doc.to_string();
    let (set, skipped) = jwks::parse_jwks(body.as_bytes(), AlgSet::ASYMMETRIC, 64, "u").unwrap();
    assert_eq!(set.kids(), ["d1", "e1", "r1", "r2"]);
    assert_eq!(
        skipped.len(),
        1,
        "only the broken kid is reported: {skipped:?}"
    );
    assert_eq!(
        set.get("r1").unwrap().algorithms,
        AlgSet::one(Algorithm::RS256)
    );
    assert_eq!(set.get("r2").unwrap().algorithms, AlgSet::RSA);
    assert_eq!(set.get("e1").unwrap().algorithms, AlgSet::ES256);
    assert_eq!(set.get("d1").unwrap().algorithms, AlgSet::EDDSA);
    // The allow-list narrows each key; nothing usable is an error, as is a set over max_keys.
    let (set, _) = jwks::parse_jwks(body.as_bytes(), AlgSet::ES256, 64, "u").unwrap();
    assert_eq!(set.kids(), ["e1"]);
    let (empty, _) = jwks::parse_jwks(br#"{"keys": []}"#, AlgSet::ASYMMETRIC, 64, "u").unwrap();
    assert!(
        empty.is_empty(),
        "an empty set is an authoritative withdrawal"
    );
    let only_enc = json!({"keys": [jwk("rsa", json!({"kid": "e", "use": "enc"}))]}).to_string();
    assert!(jwks::parse_jwks(only_enc.as_bytes(), AlgSet::ASYMMETRIC, 64, "u").is_err());
    assert!(jwks::parse_jwks(body.as_bytes(), AlgSet::ASYMMETRIC, 3, "u").is_err());
    assert!(jwks::parse_jwks(b"<html>", AlgSet::ASYMMETRIC, 64, "u").is_err());
}

fn headers(auth: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_bytes(auth).unwrap(),
    );
    h
}

#[test]
fn bearer_token_extraction() {
    assert_eq!(bearer_token(&HeaderMap::new(), 8192), Ok(None));
    let h = |v: &str| headers(v.as_bytes());
    assert_eq!(
        bearer_token(&h("Bearer abc.def"), 8192),
        Ok(Some("abc.def"))
    );
    assert_eq!(bearer_token(&h("bearer  abc "), 8192), Ok(Some("abc")));
    assert_eq!(bearer_token(&h("Bearer\tabc"), 8192), Ok(Some("abc")));
    assert_eq!(bearer_token(&h("Basic dXNlcjpwdw=="), 8192), Ok(None));
    assert_eq!(bearer_token(&h("Bearer "), 8192), Err(AuthError::Missing));
    assert_eq!(
        bearer_token(&h("Bearer    "), 8192),
        Err(AuthError::Missing)
    );
    assert_eq!(bearer_token(&h("Bearer"), 8192), Err(AuthError::Missing));
    assert_eq!(bearer_token(&h("Negotiate"), 8192), Ok(None));
    let mut two = h("Bearer a.b.c");
    two.append(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer d.e.f"),
    );
    assert_eq!(bearer_token(&two, 8192), Err(AuthError::Duplicate));
}

#[test]
fn oversized_authorization_is_too_large() {
    let h = |v: String| headers(v.as_bytes());
    let at_limit = h(format!("Bearer {}", "a".repeat(256 - 7)));
    assert_eq!(
        bearer_token(&at_limit, 256).unwrap().map(str::len),
        Some(249)
    );
    let over = h(format!("Bearer {}", "a".repeat(256 - 6)));
    assert_eq!(bearer_token(&over, 256), Err(AuthError::TooLarge(256)));
    // Size is checked before the scheme.
    let basic = h(format!("Basic {}", "a".repeat(300)));
    assert_eq!(bearer_token(&basic, 256), Err(AuthError::TooLarge(256)));
}

fn file_key(kid: Option<&str>, algorithm: &str, file: &str) -> FileKey {
    FileKey {
        kid: kid.map(str::to_owned),
        algorithm: algorithm.to_owned(),
        public_key_file: Some(file.to_owned()),
        public_key_pem: None,
        secret_env: None,
        secret_file: None,
    }
}

#[test]
fn load_key_errors_name_the_field() {
    let err = |k: FileKey| load_key(&k, Path::new(KEYS), "k[3]").unwrap_err();
    let e = err(file_key(None, "PS999", "rsa.pub.pem"));
    assert_eq!((e.key, e.value), ("k[3].algorithm".into(), "PS999".into()));
    assert_eq!(
        err(file_key(None, "none", "rsa.pub.pem")).reason,
        "\"none\" is never accepted"
    );
    assert_eq!(
        err(file_key(Some("../x"), "RS256", "rsa.pub.pem")).key,
        "k[3].kid"
    );
    let file_field = "k[3].public_key_file";
    assert_eq!(err(file_key(None, "RS256", "nope.pem")).key, file_field);
    // An EC key where an RSA key is expected.
    assert_eq!(err(file_key(None, "RS256", "ec.pub.pem")).key, file_field);
    let mut both = file_key(None, "RS256", "rsa.pub.pem");
    both.public_key_pem = Some(String::from_utf8(read("rsa.pub.pem")).unwrap());
    assert_eq!(err(both).key, file_field);
    let mut secret = file_key(None, "RS256", "rsa.pub.pem");
    secret.secret_env = Some("PATH".to_owned());
    assert_eq!(err(secret).key, "k[3].secret_env");
    let mut bad_inline = file_key(None, "ES256", "x");
    (bad_inline.public_key_file, bad_inline.public_key_pem) = (None, Some("junk".to_owned()));
    let e = err(bad_inline);
    assert_eq!(
        (e.key, e.value),
        ("k[3].public_key_pem".into(), "(inline PEM)".into())
    );
    let mut hmac = file_key(None, "HS256", "x");
    (hmac.public_key_file, hmac.secret_env) = (None, Some("CELLGATE_TEST_UNSET_SECRET".to_owned()));
    assert_eq!(err(hmac).key, "k[3].secret_env");
    let mut short = file_key(None, "HS256", "x");
    (short.public_key_file, short.secret_file) = (None, Some("ec.pub.pem".to_owned()));
    assert!(
        load_key(&short, Path::new(KEYS), "k").is_ok(),
        "a long file is a secret"
    );
    short.secret_file = Some("missing.secret".to_owned());
    assert_eq!(err(short).key, "k[3].secret_file");
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
fn debug_output_hides_key_material() {
    let mut k = file_key(Some("inline"), "ES256", "x");
    (k.public_key_file, k.public_key_pem) =
        (None, Some(String::from_utf8(read("ec.pub.pem")).unwrap()));
    let loaded = load_key(&k, Path::new("/nonexistent"), "k[0]").unwrap();
    assert_eq!(loaded.algorithms, AlgSet::ES256);
    let shown = format!("{loaded:?}");
    assert!(
        shown.contains("inline") && !shown.contains("BEGIN"),
        "{shown}"
    );
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

#[test]
fn a_key_replaced_under_the_same_kid_counts_as_withdrawn() {
    let set = |file: &str, kid: Option<&str>| {
        let mut v: Value = serde_json::from_slice(&read(&format!("jwk/{file}.json"))).unwrap();
        if let Some(k) = kid {
            v["kid"] = json!(k);
        }
        let body = json!({"keys": [v]}).to_string();
        jwks::parse_jwks(body.as_bytes(), AlgSet::ASYMMETRIC, 8, "u")
            .unwrap()
            .0
    };
    let a = set("rsa", Some("k"));
    assert!(!a.loses_keys_in(&set("rsa", Some("k"))));
    assert!(
        a.loses_keys_in(&set("rsa2", Some("k"))),
        "same kid, new material"
    );
    assert!(a.loses_keys_in(&set("rsa", Some("other"))));
    // Keys without a kid are matched by their material.
    assert!(!set("rsa", None).loses_keys_in(&set("rsa", None)));
    assert!(set("rsa", None).loses_keys_in(&set("rsa2", None)));
}
