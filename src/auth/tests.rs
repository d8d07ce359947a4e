#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use crate::demo::{TokenSpec, mint};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "cellgate";

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}/{name}")).unwrap()
}

fn file_key(kid: Option<&str>, algorithm: &str, file: &str) -> FileKey {
    FileKey {
        kid: kid.map(str::to_owned),
        algorithm: algorithm.to_owned(),
        public_key_file: Some(file.to_owned()),
        public_key_pem: None,
        secret_env: None,
    }
}

fn key(kid: Option<&str>, algorithm: &str, file: &str) -> VerificationKey {
    let k = file_key(kid, algorithm, file);
    load_key(&k, Path::new(KEYS), "auth.keys[0]").unwrap()
}

fn verifier_with(keys: Vec<VerificationKey>) -> Verifier {
    Verifier::new(&AuthConfig {
        required: false,
        tenant_claim: "tenant".to_owned(),
        issuers: vec![ISSUER.to_owned()],
        audiences: vec![AUDIENCE.to_owned()],
        leeway: Duration::from_secs(30),
        max_token_bytes: 8192,
        keys,
    })
}

/// RS256 (kid rsa-1), ES256 (kid ec-1) and EdDSA (kid ed-1).
fn verifier() -> Verifier {
    verifier_with(vec![
        key(Some("rsa-1"), "RS256", "rsa.pub.pem"),
        key(Some("ec-1"), "ES256", "ec.pub.pem"),
        key(Some("ed-1"), "EdDSA", "ed25519.pub.pem"),
    ])
}

fn spec(algorithm: Algorithm, kid: Option<&str>, private: &str) -> TokenSpec {
    TokenSpec {
        tenant: "acme".to_owned(),
        subject: "user-1".to_owned(),
        ttl: Duration::from_secs(600),
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        kid: kid.map(str::to_owned),
        algorithm,
        key_pem: read(private),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An RS256 token (kid rsa-1) with valid claims for `acme`; each edit sets a claim, or removes
/// it when the value is `None`.
fn rsa_token(edits: &[(&str, Option<Value>)]) -> String {
    let Value::Object(mut claims) = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "tenant": "acme",
        "iat": now(), "exp": now() + 600,
    }) else {
        unreachable!()
    };
    for (claim, value) in edits {
        match value {
            Some(v) => claims.insert((*claim).to_owned(), v.clone()),
            None => claims.remove(*claim),
        };
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    let key = EncodingKey::from_rsa_pem(&read("rsa.pem")).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
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

fn assert_invalid(v: &Verifier, token: &str) {
    match v.verify(token) {
        Err(AuthError::Invalid(_)) => {}
        other => panic!("expected AuthError::Invalid, got {other:?}"),
    }
}

fn acme() -> Option<TenantId> {
    Some(TenantId::parse("acme").unwrap())
}

#[test]
fn rs256_es256_and_eddsa_tokens_verify() {
    let v = verifier();
    for (alg, kid, private) in [
        (Algorithm::RS256, "rsa-1", "rsa.pem"),
        (Algorithm::ES256, "ec-1", "ec.pem"),
        (Algorithm::EdDSA, "ed-1", "ed25519.pem"),
    ] {
        for kid in [Some(kid), None] {
            let token = mint(&spec(alg, kid, private)).unwrap();
            let got = v.verify(&token).unwrap();
            assert_eq!(got.tenant, acme(), "{alg:?} kid {kid:?}");
            assert_eq!(got.subject.as_deref(), Some("user-1"));
        }
    }
}

#[test]
fn kid_selects_the_key() {
    // Two EdDSA keys: the demo key first, the fixture key second under kid ed-2.
    let demo = VerificationKey {
        kid: Some("demo".to_owned()),
        algorithm: Algorithm::EdDSA,
        key: DecodingKey::from_ed_pem(crate::demo::DEMO_PUBLIC_KEY.as_bytes()).unwrap(),
    };
    let v = verifier_with(vec![demo, key(Some("ed-2"), "EdDSA", "ed25519.pub.pem")]);
    let signed = |kid: Option<&str>| mint(&spec(Algorithm::EdDSA, kid, "ed25519.pem")).unwrap();
    assert_eq!(v.verify(&signed(Some("ed-2"))).unwrap().tenant, acme());
    // No kid: every key of the alg is tried, and the second one verifies.
    assert_eq!(v.verify(&signed(None)).unwrap().tenant, acme());
    // A kid pins the key: the demo key does not verify it, and no other key is tried.
    assert_invalid(&v, &signed(Some("demo")));
    // A kid no key has.
    assert_invalid(&v, &signed(Some("unknown")));
}

#[test]
fn claim_checks_refuse_bad_tokens() {
    let v = verifier();
    assert!(v.verify(&rsa_token(&[])).is_ok());
    let (missing, not_string) = (
        "a required claim is missing",
        "tenant claim is not a string",
    );
    #[rustfmt::skip]
    let cases = [
        ("token expired", "exp", Some(json!(now() - 3600))),
        (missing, "exp", None),
        ("token not yet valid (nbf)", "nbf", Some(json!(now() + 3600))),
        ("issuer not accepted", "iss", Some(json!("https://evil.test"))),
        (missing, "iss", None),
        ("audience not accepted", "aud", Some(json!("someone-else"))),
        (missing, "aud", None),
        (not_string, "tenant", Some(json!(42))),
        (not_string, "tenant", Some(json!(["acme"]))),
        ("tenant claim is not a valid tenant id", "tenant", Some(json!("Acme!"))),
    ];
    for (reason, claim, value) in cases {
        let token = rsa_token(&[(claim, value)]);
        assert_eq!(v.verify(&token), Err(AuthError::Invalid(reason)), "{claim}");
    }
}

#[test]
fn expiry_within_leeway_is_accepted() {
    let token = rsa_token(&[("exp", Some(json!(now() - 5)))]);
    assert_eq!(verifier().verify(&token).unwrap().tenant, acme());
}

#[test]
fn missing_or_null_tenant_claim_verifies_without_a_tenant() {
    // Not a refusal here: the identify stage decides what a token without a tenant means.
    for value in [None, Some(Value::Null)] {
        let got = verifier().verify(&rsa_token(&[("tenant", value)])).unwrap();
        assert_eq!(got.tenant, None);
        assert_eq!(got.subject.as_deref(), Some("user-1"));
    }
}

#[test]
fn rsa_public_key_used_as_hmac_secret_is_refused() {
    let v = verifier_with(vec![key(Some("rsa-1"), "RS256", "rsa.pub.pem")]);
    for kid in [Some("rsa-1"), None] {
        let mut forged = spec(Algorithm::HS256, kid, "rsa.pub.pem");
        forged.key_pem = read("rsa.pub.pem");
        assert_invalid(&v, &mint(&forged).unwrap());
    }
}

#[test]
fn alg_none_and_malformed_tokens_are_refused() {
    assert_eq!([b64url(b"Man"), b64url(b"\xfb\xff")], ["TWFu", "-_8"]);
    let v = verifier();
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "tenant": "acme", "exp": now() + 600});
    let payload = b64url(claims.to_string().as_bytes());
    let none_headers = [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"none","kid":"rsa-1"}"#,
    ];
    for header in none_headers {
        let h = b64url(header.as_bytes());
        assert_invalid(&v, &format!("{h}.{payload}."));
        assert_invalid(&v, &format!("{h}.{payload}"));
    }
    for junk in ["", "abc", "a.b.c", "not a token at all"] {
        assert_invalid(&v, junk);
    }
    // A valid token with its payload swapped: the signature no longer matches.
    let good = rsa_token(&[]);
    let parts: Vec<&str> = good.split('.').collect();
    let evil = b64url(claims.to_string().replace("acme", "evil").as_bytes());
    assert_invalid(&v, &format!("{}.{evil}.{}", parts[0], parts[2]));
}

#[test]
fn key_of_another_algorithm_under_the_same_kid_is_refused() {
    // ES256 token claiming the RSA key's kid.
    let token = mint(&spec(Algorithm::ES256, Some("rsa-1"), "ec.pem")).unwrap();
    assert_invalid(&verifier(), &token);
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
    assert_eq!(bearer_token(&h("Basic dXNlcjpwdw=="), 8192), Ok(None));
    assert_eq!(bearer_token(&h("Bearer "), 8192), Err(AuthError::Missing));
    assert_eq!(
        bearer_token(&h("Bearer    "), 8192),
        Err(AuthError::Missing)
    );
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

#[test]
fn load_key_errors_name_the_field() {
    let err = |k: FileKey| load_key(&k, Path::new(KEYS), "auth.keys[3]").unwrap_err();
    let e = err(file_key(None, "PS999", "rsa.pub.pem"));
    assert_eq!(
        (e.key, e.value),
        ("auth.keys[3].algorithm".into(), "PS999".into())
    );
    let file_field = "auth.keys[3].public_key_file";
    assert_eq!(err(file_key(None, "RS256", "nope.pem")).key, file_field);
    // An EC key where an RSA key is expected.
    assert_eq!(err(file_key(None, "RS256", "ec.pub.pem")).key, file_field);
    let mut both = file_key(None, "RS256", "rsa.pub.pem");
    both.public_key_pem = Some(String::from_utf8(read("rsa.pub.pem")).unwrap());
    assert_eq!(err(both).key, file_field);
    let mut secret = file_key(None, "RS256", "rsa.pub.pem");
    secret.secret_env = Some("PATH".to_owned());
    assert_eq!(err(secret).key, "auth.keys[3].secret_env");
    let mut bad_inline = file_key(None, "ES256", "x");
    (bad_inline.public_key_file, bad_inline.public_key_pem) = (None, Some("junk".to_owned()));
    let e = err(bad_inline);
    let want = ("auth.keys[3].public_key_pem".into(), "(inline PEM)".into());
    assert_eq!((e.key, e.value), want);
}

#[test]
fn inline_pem_keys_load_and_debug_hides_key_material() {
    let mut k = file_key(Some("inline"), "ES256", "x");
    (k.public_key_file, k.public_key_pem) =
        (None, Some(String::from_utf8(read("ec.pub.pem")).unwrap()));
    let loaded = load_key(&k, Path::new("/nonexistent"), "auth.keys[0]").unwrap();
    assert_eq!(loaded.algorithm, Algorithm::ES256);
    let shown = format!("{loaded:?}");
    assert!(
        shown.contains("inline") && !shown.contains("BEGIN"),
        "{shown}"
    );
    let token = mint(&spec(Algorithm::ES256, Some("inline"), "ec.pem")).unwrap();
    let v = verifier_with(vec![loaded]);
    assert_eq!(v.verify(&token).unwrap().tenant, acme());
}

#[test]
fn a_bare_bearer_scheme_is_a_missing_token_not_another_scheme() {
    let h = |v: &'static str| {
        let mut m = HeaderMap::new();
        m.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static(v),
        );
        m
    };
    assert_eq!(bearer_token(&h("Bearer"), 8192), Err(AuthError::Missing));
    assert_eq!(bearer_token(&h("Negotiate"), 8192), Ok(None));
}
