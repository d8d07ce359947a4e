//! API keys as a tenant source at the edge, end to end: a real proxy in-process
//! (`common::Harness`), real echo cells that say which cell answered and which headers reached
//! them, a file-backed registry holding only the hashes of keys minted here with
//! [`cellgate::apikey::generate`].
//!
//! Covered: each source combination (`api_key` alone, with `subdomain`, with `jwt`) and what
//! the cell sees (the key's id, never the key); every bad key answered with one and the same
//! 401, counted under its own reason; a revocation written to the registry file followed within
//! a bounded wait. A flood of random keys is `tests/apikey_flood.rs`, entitlements
//! `tests/entitlements.rs`; the harness they share is `tests/common/apikeys.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use cellgate::apikey::PREFIX;
use common::apikeys::{
    LOOKUPS, Tenant, call, from_cell, key_entry, key_rejections, new_key, refused, registry_text,
    saw_only_the_id, secret, start, with_key,
};
use common::limits::{metrics, sum};
use common::{cell_list, token, within};
use http::{Method, StatusCode};
use serde_json::json;

/// Longest wait for something the proxy does in the background (a registry change).
const WAIT: Duration = Duration::from_secs(5);

/// `acme` in cell-1 and `globex` in cell-2, no entitlements.
const TWO: &[Tenant<'static>] = &[("acme", "cell-1", &[]), ("globex", "cell-2", &[])];

fn now() -> u64 {
    common::jwks::now()
}

// ---------------------------------------------------------------------------------------------
// 1. Source combinations.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_alone_names_the_tenant_from_either_header_and_the_cell_sees_only_its_id() {
    within(async {
        let (a, g) = (new_key(), new_key());
        let keys = key_entry(&a, "acme", "version = 1") + &key_entry(&g, "globex", "version = 1");
        let h = start(r#"["api_key"]"#, "", "", TWO, &keys).await;

        // In x-api-key, with a forged x-api-key-id beside it.
        let r = call(
            &h,
            Method::GET,
            None,
            "/orders",
            &[("x-api-key", &a.key), ("x-api-key-id", "forgedforged")],
        )
        .await;
        let seen = from_cell(&r, "cell-1", "acme", "x-api-key");
        saw_only_the_id(&seen, &a, "x-api-key");

        // As Authorization: ApiKey (any case of the scheme), for the other tenant.
        for scheme in ["ApiKey", "apikey"] {
            let auth = format!("{scheme} {}", g.key);
            let r = call(
                &h,
                Method::GET,
                None,
                "/",
                &[("authorization", &auth), ("x-api-key-id", &a.id)],
            )
            .await;
            let seen = from_cell(&r, "cell-2", "globex", scheme);
            saw_only_the_id(&seen, &g, scheme);
            assert!(!seen.contains_key("authorization"), "{scheme}: {seen:?}");
        }

        // No key at all: the only source that could name the tenant asks for one.
        let r = call(&h, Method::GET, Some("acme.app.test"), "/", &[]).await;
        refused(&r, StatusCode::UNAUTHORIZED, "api_key_required", "no key");
        let www = r.headers["www-authenticate"].to_str().unwrap();
        assert!(www.starts_with("ApiKey"), "{www}");
        assert_eq!(key_rejections(&metrics(&h).await, "missing"), 1.0);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subdomain_and_api_key_must_agree() {
    within(async {
        let a = new_key();
        let keys = key_entry(&a, "acme", "version = 1");
        let h = start(r#"["subdomain", "api_key"]"#, "", "", TWO, &keys).await;

        let r = call(
            &h,
            Method::GET,
            Some("acme.app.test"),
            "/",
            &[("x-api-key", &a.key)],
        )
        .await;
        saw_only_the_id(&from_cell(&r, "cell-1", "acme", "agreeing"), &a, "agreeing");

        let r = call(
            &h,
            Method::GET,
            Some("globex.app.test"),
            "/",
            &[("x-api-key", &a.key)],
        )
        .await;
        refused(&r, StatusCode::FORBIDDEN, "tenant_mismatch", "disagreeing");

        // The subdomain alone still routes; a client's x-api-key-id never reaches the cell.
        let r = call(
            &h,
            Method::GET,
            Some("globex.app.test"),
            "/",
            &[("x-api-key-id", &a.id)],
        )
        .await;
        let seen = from_cell(&r, "cell-2", "globex", "subdomain only");
        assert!(!seen.contains_key("x-api-key-id"), "{seen:?}");
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_for_another_tenant_than_the_keys_is_403() {
    within(async {
        let a = new_key();
        let keys = key_entry(&a, "acme", "version = 1");
        let h = start(r#"["jwt", "api_key"]"#, "", "", TWO, &keys).await;

        let other = format!("Bearer {}", token("RS256", "globex"));
        let r = call(
            &h,
            Method::GET,
            None,
            "/",
            &[("authorization", &other), ("x-api-key", &a.key)],
        )
        .await;
        refused(
            &r,
            StatusCode::FORBIDDEN,
            "tenant_mismatch",
            "token for globex",
        );

        // The same key with a token for its own tenant: routed; the token goes on, the key not.
        let own = format!("Bearer {}", token("RS256", "acme"));
        let r = call(
            &h,
            Method::GET,
            None,
            "/",
            &[("authorization", &own), ("x-api-key", &a.key)],
        )
        .await;
        let seen = from_cell(&r, "cell-1", "acme", "token for acme");
        saw_only_the_id(&seen, &a, "token for acme");
        assert_eq!(seen.get("authorization"), Some(&json!(own)));
        h.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. Refusals.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_key_gets_the_same_401_and_is_counted_by_its_own_reason() {
    within(async {
        let (good, revoked, expired, stranger) = (new_key(), new_key(), new_key(), new_key());
        let keys = key_entry(&good, "acme", "version = 1")
            + &key_entry(&revoked, "acme", "status = \"REVOKED\"\nversion = 1")
            + &key_entry(&expired, "acme", &format!("expires_at = {}", now() - 60));
        let h = start(r#"["api_key"]"#, "", "", TWO, &keys).await;
        saw_only_the_id(
            &from_cell(
                &with_key(&h, "/", &good.key).await,
                "cell-1",
                "acme",
                "good",
            ),
            &good,
            "good",
        );

        let wrong_secret = format!("{PREFIX}{}_{}", good.id, secret(&stranger));
        let truncated = &good.key[..good.key.len() - 1];
        let upper = good.key.to_uppercase();
        let cases: [(&str, &str, &str); 7] = [
            ("malformed", "not-a-key", "junk"),
            ("malformed", truncated, "truncated"),
            ("malformed", &upper, "upper case"),
            ("unknown", &stranger.key, "unknown id"),
            ("wrong_secret", &wrong_secret, "wrong secret"),
            ("revoked", &revoked.key, "revoked"),
            ("expired", &expired.key, "expired"),
        ];
        let mut bodies = Vec::new();
        for (reason, key, what) in cases {
            let before = metrics(&h).await;
            let r = with_key(&h, "/", key).await;
            let mut v = refused(&r, StatusCode::UNAUTHORIZED, "invalid_api_key", what);
            let www = r.headers["www-authenticate"].to_str().unwrap();
            assert!(www.starts_with("ApiKey"), "{what}: {www}");
            assert!(!r.body.contains(key), "{what}: the key was echoed");
            let after = metrics(&h).await;
            for other in [
                "missing",
                "malformed",
                "unknown",
                "wrong_secret",
                "revoked",
                "expired",
            ] {
                let d = key_rejections(&after, other) - key_rejections(&before, other);
                let want = if other == reason { 1.0 } else { 0.0 };
                assert_eq!(d, want, "{what}: counted {d} under {other}");
            }
            v.as_object_mut().unwrap().remove("request_id");
            bodies.push((what, v));
        }
        // Nothing in the answer tells one refusal from another.
        for (what, v) in &bodies {
            assert_eq!(v, &json!({"error": "invalid_api_key"}), "{what}");
        }

        // Two keys in one request are malformed, whichever would have passed.
        let before = key_rejections(&metrics(&h).await, "malformed");
        let auth = format!("ApiKey {}", good.key);
        let r = call(
            &h,
            Method::GET,
            None,
            "/",
            &[("x-api-key", &good.key), ("authorization", &auth)],
        )
        .await;
        refused(&r, StatusCode::UNAUTHORIZED, "invalid_api_key", "two keys");
        assert_eq!(
            key_rejections(&metrics(&h).await, "malformed") - before,
            1.0
        );

        // A file registry does not look unknown ids up by default: no read was made.
        let text = metrics(&h).await;
        for result in ["found", "absent", "error", "limited"] {
            assert_eq!(sum(&text, LOOKUPS, &[("result", result)]), 0.0, "{result}");
        }
        assert_eq!(sum(&text, "cellgate_placement_api_keys", &[]), 3.0);
        h.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Revocation through the registry file.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_written_to_the_registry_file_is_followed() {
    within(async {
        let (a, kept) = (new_key(), new_key());
        let entry = |status: &str, version: u64| {
            key_entry(
                &a,
                "acme",
                &format!("status = \"{status}\"\nversion = {version}"),
            ) + &key_entry(&kept, "acme", "version = 1")
        };
        let h = start(r#"["api_key"]"#, "", "", TWO, &entry("ACTIVE", 1)).await;
        from_cell(&with_key(&h, "/", &a.key).await, "cell-1", "acme", "before");

        let cells = cell_list(&h.cells);
        let written = Instant::now();
        h.write_registry(&registry_text(&cells, TWO, &entry("REVOKED", 2)));
        loop {
            let r = with_key(&h, "/", &a.key).await;
            if r.status == StatusCode::UNAUTHORIZED {
                refused(&r, StatusCode::UNAUTHORIZED, "invalid_api_key", "after");
                break;
            }
            from_cell(&r, "cell-1", "acme", "not yet revoked");
            assert!(
                written.elapsed() < WAIT,
                "the revocation was not followed within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = written.elapsed();
        // It stays revoked, counted as such; the other key of the tenant is untouched.
        for _ in 0..5 {
            let r = with_key(&h, "/", &a.key).await;
            refused(
                &r,
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "still revoked",
            );
        }
        assert!(key_rejections(&metrics(&h).await, "revoked") >= 6.0);
        from_cell(
            &with_key(&h, "/", &kept.key).await,
            "cell-1",
            "acme",
            "kept",
        );
        eprintln!("revocation followed in {took:?}");
        h.shutdown().await;
    })
    .await;
}

// Property: with on-demand lookups on, an unknown key id costs one registry read; the same id
// again is answered from the negative cache (counted as a negative hit, no read), while a
// known key is served from the snapshot without any read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_id_is_read_once_then_answered_from_the_negative_cache() {
    within(async {
        let good = new_key();
        let lookup = "lookup_unknown = true";
        let keys = key_entry(&good, "globex", "version = 1");
        let h = start(r#"["api_key"]"#, lookup, "", TWO, &keys).await;
        let stranger = new_key();
        let reads = |m: &str, result: &str| sum(m, LOOKUPS, &[("result", result)]);
        let m0 = metrics(&h).await;
        for _ in 0..3 {
            let r = with_key(&h, "/", &stranger.key).await;
            refused(
                &r,
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "unknown id",
            );
        }
        let m1 = metrics(&h).await;
        assert_eq!(reads(&m1, "absent") - reads(&m0, "absent"), 1.0, "one read");
        assert_eq!(reads(&m1, "negative_hit") - reads(&m0, "negative_hit"), 2.0);
        assert_eq!(
            key_rejections(&m1, "unknown") - key_rejections(&m0, "unknown"),
            3.0
        );
        let r = with_key(&h, "/", &good.key).await;
        from_cell(&r, "cell-2", "globex", "a known key");
        let m2 = metrics(&h).await;
        for result in ["found", "absent", "negative_hit"] {
            assert_eq!(reads(&m2, result), reads(&m1, result), "{result}");
        }
    })
    .await;
}
