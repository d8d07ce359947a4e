//! Verifier tests: the shared issuer fixture, token signing and verification helpers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::tenant::TenantId;

use super::testing::{KEYS, block, verifier_from};

mod bearer;
mod cache;
mod claims;
mod hostile;
mod jwks;
mod keys;
mod signatures;

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

fn reason_of(v: &Verifier, token: &str) -> Reason {
    match verify(v, token) {
        Err(AuthError::Invalid(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn acme() -> Option<TenantId> {
    Some(TenantId::parse("acme").unwrap())
}
