//! JWKS documents: parsing into algorithm-bound keys, and keys withdrawn between fetches.

use super::*;
use crate::auth::jwks;

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
