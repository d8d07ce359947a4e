//! Criterion micro-benchmarks of JWT verification on the request path.
//!
//! Decisions supported: whether the verified-token cache is worth having on the request path
//! (`cold/<alg>`, a full verification: header decode, issuer peek, signature, claim checks,
//! against `warm/<alg>`, a cache hit, for RS256, ES256 and EdDSA), and whether a warm hit is
//! cheap enough to run on every request (it must stay far below the ~10 µs a proxied request
//! costs end to end). `memo/<alg>` is the same token again on the same client connection
//! (`Verifier::verify_for` with the connection's `TokenMemo`): the decision that a keep-alive
//! client's repeat is answered by a byte comparison instead of a SHA-256 and a shared-cache
//! lookup. `token_key` isolates the SHA-256 a warm hit pays for (on the same RS256
//! token as `warm/RS256`), and `bearer_token` the extraction from the request headers that
//! precedes every verification. Also: the ring signature backend (`auth::crypto`) against the
//! pure-Rust one it replaced (RS256 141 µs, ES256 181 µs, EdDSA 36 µs cold on this machine).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use cellgate::auth::{AuthError, TokenMemo, VerifiedToken, Verifier, bearer_token, token_key};
use cellgate::config::build_auth;
use cellgate::config::file::FileAuth;
use cellgate::metrics::Metrics;
use cellgate::tenant::TenantId;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");
const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "cellgate";

/// One issuer with an RS256 (kid rsa-1), an ES256 (ec-1) and an EdDSA (ed-1) key.
const ISSUERS: &str = r#"
[[issuers]]
name = "bench"
issuer = "https://issuer.bench"
audiences = ["cellgate"]
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

/// (algorithm, kid, private key fixture)
const ALGS: [(Algorithm, &str, &str); 3] = [
    (Algorithm::RS256, "rsa-1", "rsa.pem"),
    (Algorithm::ES256, "ec-1", "ec.pem"),
    (Algorithm::EdDSA, "ed-1", "ed25519.pem"),
];

/// A verifier for [`ISSUERS`]; `cache_max_entries = 0` turns the verified-token cache off.
/// The metrics are returned so a benchmark can check afterwards what its loop did.
fn verifier(cache_max_entries: u64) -> (Verifier, Metrics) {
    let file: FileAuth = toml::from_str(&format!(
        "cache_max_entries = {cache_max_entries}\n{ISSUERS}"
    ))
    .unwrap();
    let cfg = build_auth(&file, Path::new(KEYS)).unwrap();
    let metrics = Metrics::new();
    let verifier = Verifier::new(&cfg, &metrics).unwrap();
    (verifier, metrics)
}

/// A valid token for tenant `acme`, signed with fixture key `private`, valid for an hour.
fn sign(alg: Algorithm, kid: &str, private: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "tenant": "acme",
        "iat": now, "exp": now + 3600,
    });
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    let pem = std::fs::read(format!("{KEYS}/{private}")).unwrap();
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        other => panic!("no fixture key for {other:?}"),
    }
    .unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// Polls a future that never waits (static keys, known kid) to completion, without a runtime.
fn ready<F: Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the verification waited"),
    }
}

/// Verifies once and checks the result, so a broken setup fails instead of timing an error.
fn verify_ok(v: &Verifier, token: &str) -> std::sync::Arc<VerifiedToken> {
    let got: Result<_, AuthError> = ready(v.verify(token));
    let got = got.unwrap_or_else(|e| panic!("the bench token was refused: {e}"));
    assert_eq!(got.tenant, Some(TenantId::parse("acme").unwrap()));
    got
}

fn bench_verify(c: &mut Criterion) {
    // Signatures are checked by ring, as in the proxy (installed before any token is minted).
    cellgate::auth::crypto::install();
    let mut g = c.benchmark_group("jwt_verify");
    let (cold, cold_metrics) = verifier(0);
    let (warm, warm_metrics) = verifier(100_000);
    let mut rs256_token = String::new();

    for (alg, kid, private) in ALGS {
        let token = sign(alg, kid, private);
        let name = format!("{alg:?}");

        // Cache off: every iteration is a full verification.
        verify_ok(&cold, &token);
        let before = cold_metrics.auth.verified.get();
        g.bench_with_input(BenchmarkId::new("cold", &name), &token, |b, t| {
            b.iter(|| ready(cold.verify(black_box(t))).unwrap())
        });
        assert!(
            cold_metrics.auth.verified.get() > before,
            "cold/{name} verified nothing"
        );
        assert_eq!(
            cold_metrics.auth.cache_hits.get(),
            0,
            "cold/{name} hit a cache"
        );

        // Cache on, primed: every iteration must be a hit returning the primed Arc.
        let primed = verify_ok(&warm, &token);
        let verified = warm_metrics.auth.verified.get();
        assert!(std::sync::Arc::ptr_eq(&primed, &verify_ok(&warm, &token)));
        g.bench_with_input(BenchmarkId::new("warm", &name), &token, |b, t| {
            b.iter(|| ready(warm.verify(black_box(t))).unwrap())
        });
        assert_eq!(
            warm_metrics.auth.verified.get(),
            verified,
            "warm/{name} verified a token instead of hitting the cache"
        );

        // The same token again on one connection: answered by the connection's memo.
        let memo = TokenMemo::default();
        let first = ready(warm.verify_for(&token, &memo)).unwrap();
        let hits = warm_metrics.auth.cache_hits.get();
        g.bench_with_input(BenchmarkId::new("memo", &name), &token, |b, t| {
            b.iter(|| ready(warm.verify_for(black_box(t), &memo)).unwrap())
        });
        assert!(std::sync::Arc::ptr_eq(
            &first,
            &ready(warm.verify_for(&token, &memo)).unwrap()
        ));
        assert!(warm_metrics.auth.cache_hits.get() > hits);
        assert_eq!(
            warm_metrics.auth.verified.get(),
            verified,
            "memo/{name} verified a token"
        );

        if alg == Algorithm::RS256 {
            rs256_token = token;
        }
    }
    assert_eq!(cold_metrics.auth.rejected.get(), 0);
    assert_eq!(warm_metrics.auth.rejected.get(), 0);

    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("acme.app.example.com"));
    headers.insert("user-agent", HeaderValue::from_static("bench"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {rs256_token}")).unwrap(),
    );
    assert_eq!(
        bearer_token(&headers, 8192).unwrap(),
        Some(rs256_token.as_str())
    );
    g.bench_function("bearer_token", |b| {
        b.iter(|| bearer_token(black_box(&headers), 8192).unwrap())
    });

    // Last in the group: the throughput (the token's length) applies to what follows.
    g.throughput(Throughput::Bytes(rs256_token.len() as u64));
    g.bench_function("token_key", |b| {
        b.iter(|| token_key(black_box(&rs256_token)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench_verify
}
criterion_main!(benches);
