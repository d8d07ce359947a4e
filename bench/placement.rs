//! Criterion benchmarks of the placement snapshot at 1, 10k and 1M tenants.
//!
//! Decision supported: whether the snapshot structure lets a node follow a mass evacuation at a
//! million tenants: a lookup per request (≤ 50 ns), one change (≤ 20 µs), a 500-change batch,
//! one cell change (≤ 100 µs), and the memory a tenant costs (≤ 100 bytes, map included). The
//! lookup is measured on one hot key (as `hot_path` always did) and on keys drawn at random from
//! all N, where a million tenants no longer fit in the caches. Memory is printed before the
//! timings: bytes requested from the allocator per tenant (counted by this binary's allocator)
//! and the process's resident-set growth per tenant. API keys live in the same kind of map:
//! their memory and a lookup by id (with the constant-time check of the secret) at 1, 10k and
//! 1M keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use cellgate::apikey::KeyHash;
use cellgate::config::file::FileCell;
use cellgate::placement::{
    Cell, Delta, KeyRecord, KeyStatus, PlacementSnapshot, RegistryData, TenantRecord, TenantStatus,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// Counts live heap bytes, for the memory figures.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: delegates to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SIZES: [usize; 3] = [1, 10_000, 1_000_000];

fn record(i: usize, cell: usize, version: u64) -> TenantRecord {
    TenantRecord {
        id: format!("tenant-{i}"),
        cell: format!("cell-{}", cell % 3 + 1),
        status: TenantStatus::Active,
        tier: "standard".to_owned(),
        version,
        issuers: Vec::new(),
        limits: Default::default(),
        arm: None,
        entitlements: Vec::new(),
    }
}

fn cell(i: usize, port: u16) -> Cell {
    let fc = FileCell {
        id: format!("cell-{i}"),
        state: None,
        targets: vec![format!("http://127.0.0.1:{port}")],
        groups: Vec::new(),
        preserve_host: None,
        max_in_flight: None,
        wave: None,
        protocol: None,
    };
    Cell::from_file(&fc, "cells[0]").unwrap()
}

fn snapshot(n: usize) -> PlacementSnapshot {
    let cells = (1..=3).map(|i| cell(i, 9000)).collect();
    let data = RegistryData::from_records((0..n).map(|i| record(i, i, 1)), cells);
    PlacementSnapshot::build(data, &[], 1)
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn memory() {
    for n in SIZES {
        let (live, rss) = (LIVE.load(Ordering::Relaxed), rss_bytes());
        let snap = snapshot(n);
        let heap = LIVE.load(Ordering::Relaxed) - live;
        let grown = rss_bytes().saturating_sub(rss);
        println!(
            "memory/{n}: {:.1} bytes/tenant requested ({heap} bytes), {:.1} bytes/tenant RSS growth, {:.1} bytes/tenant in the tenant map",
            heap as f64 / n as f64,
            grown as f64 / n as f64,
            snap.tenant_map_bytes() as f64 / n as f64,
        );
        drop(snap);
    }
}

fn bench_lookup(c: &mut Criterion) {
    memory();
    let mut g = c.benchmark_group("placement_lookup");
    for n in SIZES {
        let snap = snapshot(n);
        let hot = format!("tenant-{}", n / 2);
        g.bench_with_input(BenchmarkId::new("hot", n), &n, |b, _| {
            b.iter(|| black_box(snap.tenant(black_box(&hot))).is_some())
        });
        let mut rng = fastrand::Rng::with_seed(7);
        let keys: Vec<String> = (0..4096)
            .map(|_| format!("tenant-{}", rng.usize(0..n)))
            .collect();
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("random", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(snap.tenant(black_box(&keys[i]))).is_some()
            })
        });
    }
    g.finish();
}

fn bench_apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("placement_apply");
    g.sample_size(20);
    for n in SIZES {
        let snap = snapshot(n);
        let mut rng = fastrand::Rng::with_seed(11);
        let one = Delta {
            tenants: vec![(
                format!("tenant-{}", n / 2),
                Some(record(n / 2, n / 2 + 1, 2)),
            )],
            cells: Vec::new(),
            skipped: 0,
            keys: Vec::new(),
        };
        g.bench_with_input(BenchmarkId::new("one_change", n), &n, |b, _| {
            b.iter(|| snap.apply(black_box(&one), &[], 2))
        });
        let batch = Delta {
            tenants: (0..500)
                .map(|_| {
                    let k = rng.usize(0..n);
                    (format!("tenant-{k}"), Some(record(k, k + 1, 2)))
                })
                .collect(),
            cells: Vec::new(),
            keys: Vec::new(),
            skipped: 0,
        };
        g.bench_with_input(BenchmarkId::new("batch_500", n), &n, |b, _| {
            b.iter(|| snap.apply(black_box(&batch), &[], 2))
        });
        let cell_change = Delta {
            tenants: Vec::new(),
            cells: vec![("cell-2".to_owned(), Some(cell(2, 9100)))],
            skipped: 0,
            keys: Vec::new(),
        };
        g.bench_with_input(BenchmarkId::new("one_cell_change", n), &n, |b, _| {
            b.iter(|| snap.apply(black_box(&cell_change), &[], 2))
        });
    }
    g.finish();
}

/// A key id for `i`: 12 base32 characters, distinct for each `i` below 2^60.
fn key_id(i: usize) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..12)
        .map(|d| char::from(ALPHABET[(i >> (5 * d)) & 31]))
        .collect()
}

/// The presented key of key `i` (its secret is fixed per `i`, so the bench can present it).
fn key_text(i: usize) -> String {
    format!(
        "cgk_{}_{}",
        key_id(i),
        key_id(i + 7).repeat(3).get(..26).unwrap_or_default()
    )
}

fn key_snapshot(n: usize) -> PlacementSnapshot {
    let mut data = RegistryData::new();
    for i in 0..n {
        let text = key_text(i);
        let parsed = cellgate::apikey::parse(&text).unwrap();
        let secret = &text[4 + 12 + 1..];
        data.push_key(KeyRecord {
            id: parsed.id.to_owned(),
            tenant: format!("tenant-{}", i % 100_000),
            hash: KeyHash::of(parsed.id, secret),
            status: KeyStatus::Active,
            expires_at: None,
            scopes: if i % 4 == 0 {
                vec!["billing".to_owned()]
            } else {
                Vec::new()
            },
            created_at: 1_700_000_000,
            version: 1,
        });
    }
    PlacementSnapshot::build(data, &[], 1)
}

/// API keys: what one costs in memory, and a lookup by id with and without the constant-time
/// check of its secret, on ids drawn at random from all N (1M keys do not fit in the caches).
fn bench_keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("api_key");
    for n in SIZES {
        let live = LIVE.load(Ordering::Relaxed);
        let snap = key_snapshot(n);
        println!(
            "memory/keys/{n}: {:.1} bytes/key requested, {:.1} bytes/key in the key map",
            (LIVE.load(Ordering::Relaxed) - live) as f64 / n as f64,
            snap.key_map_bytes() as f64 / n as f64,
        );
        let mut rng = fastrand::Rng::with_seed(11);
        let keys: Vec<String> = (0..4096).map(|_| key_text(rng.usize(0..n))).collect();
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("lookup", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 4095;
                let parsed = cellgate::apikey::parse(black_box(&keys[i])).unwrap();
                black_box(snap.api_key(parsed.id)).is_some()
            })
        });
        g.bench_with_input(BenchmarkId::new("lookup_and_check", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 4095;
                let parsed = cellgate::apikey::parse(black_box(&keys[i])).unwrap();
                snap.api_key(parsed.id).unwrap().check(&parsed, 0).is_ok()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_lookup, bench_apply, bench_keys);
criterion_main!(benches);
