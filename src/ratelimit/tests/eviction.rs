//! Sweeping idle state and forced eviction from a full store.

use super::*;

#[test]
fn idle_state_is_swept_and_only_idle_state() {
    let r = rig();
    let busy = ask("acme", "standard", &Method::GET, "/");
    let holding = ask("globex", "ops", &Method::GET, "/");
    let light = ask("initech", "standard", &Method::GET, "/");
    assert_eq!(r.drain(&busy), 20);
    let _held = r.admit(&holding).unwrap();
    r.admit(&light).unwrap();
    assert_eq!(r.store.tracked(), 3);
    // After 20 ms initech's one request is paid off: its state equals a fresh one.
    r.clock.advance(20 * MS);
    assert_eq!(r.limiter.sweep(), 1);
    assert_eq!(
        r.store.tracked(),
        2,
        "acme still owes, globex has a request in flight"
    );
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(
        r.limiter.sweep(),
        1,
        "acme paid off; globex still in flight"
    );
    assert_eq!(r.metrics.ratelimit_idle_evictions.get(), 2);
    // A swept tenant gets exactly the burst it earned by waiting.
    assert_eq!(r.drain(&busy), 20);
}

#[test]
fn eviction_from_a_full_store_grants_no_burst() {
    // 64 keys at most: one per shard, so any other tenant landing in acme's shard evicts it.
    let r = rig_with(&config(), 64, None);
    let acme = ask("acme", "standard", &Method::GET, "/");
    assert_eq!(r.drain(&acme), 20);
    let mut i = 0;
    while r.metrics.ratelimit_forced_evictions.get() == 0 || r.store.tracked() >= 64 {
        let t = format!("t{i}");
        // Everyone else owes too, so nothing is idle and the store must force evictions.
        r.admit(&ask(&t, "standard", &Method::GET, "/")).unwrap();
        i += 1;
        assert!(i < 100_000);
    }
    // Keep inserting until another tenant lands in acme's shard and evicts it.
    let acme_key = Key {
        tenant: "acme",
        class: 0,
        tier: 0,
    };
    let mut j = 0;
    while r.store.holds(acme_key) {
        let t = format!("u{j}");
        let _ = r.admit(&ask(&t, "standard", &Method::GET, "/"));
        j += 1;
        assert!(j < 100_000);
    }
    assert!(r.store.tracked() <= 64, "bounded: {}", r.store.tracked());
    assert!(r.metrics.ratelimit_forced_evictions.get() > 0);
    // Same instant: acme comes back owing what it owed, not with a fresh burst of 20.
    assert!(
        r.admit(&acme).is_err(),
        "an evicted tenant must not get a fresh burst"
    );
    // And after its debt is paid it gets the burst it earned.
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(r.drain(&acme), 20);
}

#[test]
fn forced_eviction_never_drops_a_slot_with_requests_in_flight() {
    let r = rig_with(&config(), 64, None);
    let held = ask("globex", "ops", &Method::GET, "/");
    let permits: Vec<_> = (0..3).map(|_| r.admit(&held).unwrap()).collect();
    for j in 0..2_000 {
        let t = format!("u{j}");
        let _ = r.admit(&ask(&t, "standard", &Method::GET, "/"));
    }
    assert!(
        matches!(r.admit(&held), Err(Limited::Concurrency { .. })),
        "globex's in-flight count survived the evictions"
    );
    drop(permits);
    assert!(r.admit(&held).is_ok());
}
