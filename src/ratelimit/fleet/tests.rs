//! The fleet store's request path without Redis: which bucket judges a request (fleet credit
//! when current, this node's share otherwise), what is reported, and what shadow mode counts.
//! A flush is stood in for by setting a slot's credit and epoch as the sync task would.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::slots::Slots;
use super::{FleetStore, Inner};
use crate::config::FleetMode;
use crate::metrics::FleetMetrics;
use crate::ratelimit::gcra::Gcra;
use crate::ratelimit::store::{Key, LimitStore, LocalStore, StoreRefusal};

const MS: u64 = 1_000_000;
const T0: u64 = 1_000 * MS;

fn store(mode: FleetMode, nodes: u32) -> (FleetStore, FleetMetrics) {
    let metrics = FleetMetrics::default();
    let inner = Arc::new(Inner {
        mode,
        local: LocalStore::new(1024),
        slots: Slots::new(),
        epoch: AtomicU64::new(1),
        fresh_until: AtomicU64::new(0),
        nodes: AtomicU32::new(nodes),
        sync_interval: 20 * MS,
    });
    let tiers = vec![metrics.tier("standard")].into_boxed_slice();
    (FleetStore { inner, tiers }, metrics)
}

fn key(tenant: &str) -> Key<'_> {
    Key {
        tenant,
        class: 0,
        tier: 0,
    }
}

/// What a successful flush does for `tenant`: `requests` whole requests of credit, current.
fn flushed(s: &FleetStore, tenant: &str, rate: &Gcra, requests: i64, now: u64) {
    let epoch = s.inner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
    s.inner.slots.with(tenant, now, |slot| {
        slot.credit.store(
            requests * i64::try_from(rate.interval).unwrap(),
            Ordering::Release,
        );
        slot.synced.store(epoch, Ordering::Release);
    });
    s.inner.fresh_until.store(now + 100 * MS, Ordering::Release);
}

fn admitted(s: &FleetStore, tenant: &str, rate: &Gcra, n: usize, now: u64) -> usize {
    (0..n)
        .filter(|_| s.acquire(key(tenant), Some(rate), None, now).is_ok())
        .count()
}

fn slot_counts(s: &FleetStore, tenant: &str) -> (u64, bool) {
    s.inner.slots.with(tenant, T0, |slot| {
        (
            slot.admitted.load(Ordering::Relaxed),
            slot.fell_back.load(Ordering::Relaxed),
        )
    })
}

#[test]
fn without_current_credit_a_tenant_gets_this_nodes_share_and_it_is_remembered_as_fallback() {
    let (s, _) = store(FleetMode::Enforce, 2);
    let rate = Gcra::new(10.0, 10);
    assert_eq!(
        admitted(&s, "acme", &rate, 20, T0),
        5,
        "half the burst on one of two nodes"
    );
    assert_eq!(
        slot_counts(&s, "acme"),
        (0, true),
        "not fresh: a floor, not a count"
    );
    assert!(s.inner.local.debt(key("acme"), T0) > 0);
}

#[test]
fn current_credit_decides_and_what_it_admits_is_reported() {
    let (s, m) = store(FleetMode::Enforce, 2);
    let rate = Gcra::new(10.0, 10);
    flushed(&s, "acme", &rate, 3, T0);
    assert_eq!(
        admitted(&s, "acme", &rate, 10, T0),
        3,
        "the credit, not the local share"
    );
    assert_eq!(slot_counts(&s, "acme"), (3, false));
    assert_eq!(m.tier("standard").refused.get(), 7);
    match s.acquire(key("acme"), Some(&rate), None, T0) {
        Err(StoreRefusal::Rate { wait }) => assert!(wait >= 20 * MS, "at least one flush: {wait}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tenant_not_in_the_latest_flush_is_judged_locally_and_counted_for_the_next() {
    let (s, _) = store(FleetMode::Enforce, 2);
    let rate = Gcra::new(10.0, 10);
    flushed(&s, "acme", &rate, 0, T0);
    // Another flush without acme: its zero credit is no longer current.
    flushed(&s, "globex", &rate, 5, T0);
    assert_eq!(admitted(&s, "acme", &rate, 20, T0), 5);
    assert_eq!(
        slot_counts(&s, "acme"),
        (5, false),
        "fresh: counted, reported next"
    );
}

#[test]
fn stale_credit_is_not_used_once_the_flushes_stop() {
    let (s, _) = store(FleetMode::Enforce, 1);
    let rate = Gcra::new(10.0, 10);
    flushed(&s, "acme", &rate, 0, T0);
    assert_eq!(admitted(&s, "acme", &rate, 1, T0), 0, "no credit");
    let later = T0 + 200 * MS;
    assert_eq!(
        admitted(&s, "acme", &rate, 20, later),
        10,
        "stale: the local share, full"
    );
}

#[test]
fn shadow_mode_admits_by_the_share_and_counts_what_the_fleet_would_refuse() {
    let (s, m) = store(FleetMode::Shadow, 2);
    let rate = Gcra::new(10.0, 10);
    flushed(&s, "acme", &rate, 1, T0);
    assert_eq!(admitted(&s, "acme", &rate, 20, T0), 5, "the share decides");
    let c = m.tier("standard");
    assert_eq!((c.would_refuse.get(), c.refused.get()), (4, 0));
    assert_eq!(
        slot_counts(&s, "acme"),
        (5, false),
        "every admitted request is reported"
    );
}

#[test]
fn a_refund_gives_the_credit_back() {
    let (s, _) = store(FleetMode::Enforce, 1);
    let rate = Gcra::new(10.0, 10);
    flushed(&s, "acme", &rate, 1, T0);
    assert_eq!(admitted(&s, "acme", &rate, 1, T0), 1);
    s.refund(key("acme"), &rate, T0);
    assert_eq!(slot_counts(&s, "acme"), (0, false));
    assert_eq!(
        admitted(&s, "acme", &rate, 5, T0),
        1,
        "the refunded request only"
    );
}

#[test]
fn route_classes_and_in_flight_limits_stay_per_node() {
    let (s, _) = store(FleetMode::Enforce, 4);
    let rate = Gcra::new(10.0, 10);
    let class = Key {
        tenant: "acme",
        class: 1,
        tier: 0,
    };
    let n = (0..20)
        .filter(|_| s.acquire(class, Some(&rate), None, T0).is_ok())
        .count();
    assert_eq!(
        n, 10,
        "a route class's whole rate on this node, not a share"
    );
    flushed(&s, "acme", &rate, 100, T0);
    let h1 = s.acquire(key("acme"), Some(&rate), Some(1), T0).unwrap();
    assert_eq!(
        s.acquire(key("acme"), Some(&rate), Some(1), T0)
            .unwrap_err(),
        StoreRefusal::InFlight
    );
    drop(h1);
    assert!(s.acquire(key("acme"), Some(&rate), Some(1), T0).is_ok());
}
