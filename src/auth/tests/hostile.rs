//! Forged and malformed tokens: alg none, hostile kids, embedded keys, crit and typ headers.

use super::*;

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
