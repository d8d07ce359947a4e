//! The fleet store's request path without Redis: every tenant is held to this node's share of
//! its rate, in a bucket a flush seeds with this node's part of the fleet's credit; what is
//! reported, what a fallback leaves for the next report, and what shadow mode counts. A flush is
//! stood in for by seeding a slot as the sync task does.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::slots::Slots;
use super::sync::seeded_tat;
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

/// What a successful flush does for `tenant`: the fleet has `requests` of credit left.
fn flushed(s: &FleetStore, tenant: &str, rate: &Gcra, requests: i64, now: u64) {
    let nodes = s.inner.nodes();
    s.inner.slots.with(tenant, now, |slot| {
        let credit = requests * i64::try_from(rate.interval).unwrap();
        slot.tat
            .store(seeded_tat(rate, credit, nodes, now), Ordering::Release);
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
fn before_any_flush_a_tenant_gets_this_nodes_share_and_it_is_remembered_as_fallback() {
    let (s, m) = store(FleetMode::Enforce, 2);
    let rate = Gcra::new(10.0, 10);
    assert_eq!(
        admitted(&s, "acme", &rate, 20, T0),
        5,
        "half the burst on one of two nodes"
    );
    assert_eq!(
        slot_counts(&s, "acme"),
        (0, true),
        "not current: a floor, not a count"
    );
    assert_eq!(m.tier("standard").refused.get(), 0, "not a fleet refusal");
}

#[test]
fn a_flush_gives_this_node_its_part_of_the_fleet_credit_and_admissions_are_reported() {
    let (s, m) = store(FleetMode::Enforce, 2);
    let rate = Gcra::new(10.0, 10);
    flushed(&s, "acme", &rate, 6, T0);
    assert_eq!(
        admitted(&s, "acme", &rate, 10, T0),
        3,
        "6 left in the fleet, 2 nodes"
    );
    assert_eq!(slot_counts(&s, "acme"), (3, false));
    assert_eq!(m.tier("standard").refused.get(), 7);
    // Between flushes the share refills at rate / nodes: one request per 200 ms here.
    assert_eq!(admitted(&s, "acme", &rate, 5, T0 + 199 * MS), 0);
    match s.acquire(key("acme"), Some(&rate), None, T0 + 199 * MS) {
        Err(StoreRefusal::Rate { wait }) => assert_eq!(wait, MS),
        other => panic!("{other:?}"),
    }
    assert_eq!(admitted(&s, "acme", &rate, 5, T0 + 200 * MS), 1);
}

#[test]
fn a_fleet_over_its_limit_leaves_the_share_empty_for_as_long_as_it_is_over() {
    let (s, _) = store(FleetMode::Enforce, 2);
    let rate = Gcra::new(10.0, 10);
    flushed(&s, "acme", &rate, -3, T0);
    assert_eq!(admitted(&s, "acme", &rate, 5, T0), 0);
    // 3 fleet requests over (300 ms) plus one share interval (200 ms).
    assert_eq!(admitted(&s, "acme", &rate, 5, T0 + 499 * MS), 0);
    assert_eq!(admitted(&s, "acme", &rate, 5, T0 + 500 * MS), 1);
}

#[test]
fn when_fleet_accounting_stops_the_share_goes_on_from_where_the_fleet_stood() {
    let (s, _) = store(FleetMode::Enforce, 2);
    let rate = Gcra::new(10.0, 10);
    flushed(&s, "acme", &rate, 2, T0);
    // No flush for a second: stale, so a fallback; the share refilled 5 (capped at its burst 5).
    let later = T0 + 1_000 * MS;
    assert_eq!(admitted(&s, "acme", &rate, 20, later), 5);
    assert_eq!(slot_counts(&s, "acme"), (0, true));
}

#[test]
fn shadow_mode_admits_by_the_share_and_counts_what_the_fleet_would_refuse() {
    let (s, m) = store(FleetMode::Shadow, 2);
    let rate = Gcra::new(10.0, 10);
    flushed(&s, "acme", &rate, 2, T0);
    assert_eq!(
        admitted(&s, "acme", &rate, 20, T0),
        5,
        "the unseeded share decides"
    );
    let c = m.tier("standard");
    assert_eq!(
        (c.would_refuse.get(), c.refused.get()),
        (4, 0),
        "the fleet had 1 for us"
    );
    assert_eq!(
        slot_counts(&s, "acme"),
        (5, false),
        "every admitted request is reported"
    );
}

#[test]
fn a_refund_gives_the_request_back() {
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
