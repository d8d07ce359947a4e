//! The verified-token cache and the per-connection memo.

use super::*;
use crate::config::file::FileAuth;

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
            scopes: None,
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
