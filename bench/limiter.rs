//! Criterion benchmarks of the admit stage (per-tenant rate limiting) and its memory.
//!
//! Decisions supported: whether per-tenant limiting can sit on every request (the cost of
//! `Limiter::admit` must stay far below the ~10 µs a proxied request costs end to end, with 1
//! tenant and with 1,000,000 tenants whose state is spread over memory far larger than the CPU
//! caches), and how big `limits.max_tenants` can be (the memory the store holds per tenant).
//!
//! - `admit/<tier>/1`: one tenant, every request admitted; `<tier>` is `rate` (a rate only) or
//!   `rate+concurrency` (a rate and an in-flight limit, as the demo's tiers have).
//! - `admit/<tier>/1000000`: the same over 1,000,000 tenants already in the store, visited in
//!   turn. The store keys slots by a hash of the name, so consecutive names land on unrelated
//!   shards, buckets and slots: each request touches cold state, as when many tenants share a
//!   node, while the name itself is hot (as it is in a request).
//! - `admit/refused/1`: one tenant over its rate (1/s, burst 1): the 429 path.
//!
//! Each iteration includes reading the real clock (`MonotonicClock`) and dropping the permit,
//! as a request does. The admitting tier's rate (1e9/s) is above what config accepts (1e6/s)
//! only so a single tenant hammered by the bench loop is never refused: the code path is the
//! one every admitted request takes.
//!
//! Memory: the crate forbids `unsafe_code` for every target (Cargo `[lints]`; `forbid` cannot
//! be allowed again in a file), so a counting `GlobalAlloc` cannot be written here. The bench
//! reads the process's resident set (`Rss` in /proc/self/smaps_rollup) before and after filling a
//! `LocalStore` with N tenants through `Limiter::admit`, after warming the allocator, and prints
//! (after - before) / N; each population is measured in a fresh process (the bench runs itself
//! again), and 10,000 as the average over 100 stores, since the resident set grows in 2 MiB
//! (huge page) steps. It uses mimalloc, the allocator of the `cellgate` binary, so the figure
//! includes that allocator's real overhead. In criterion's test mode (`cargo test
//! --all-targets`, `cargo bench -- --test`) the big population is 10,000 instead of 1,000,000
//! so the quick pass stays quick.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cellgate::config::{LimitsConfig, TierConfig};
use cellgate::metrics::{CellMetrics, Metrics};
use cellgate::ratelimit::{
    Ask, CellCap, LimitStore, Limited, Limiter, LocalStore, MonotonicClock, TenantLimits,
};
use criterion::{BenchmarkId, Criterion, criterion_group};
use http::Method;
use prometheus_client::metrics::counter::Counter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Names are `tenant-NNNNNNN`: fixed width, so the bench slices them out of one buffer.
const NAME_LEN: usize = 14;

/// Whether criterion runs its quick single pass (no `--bench`, or `--test`).
fn test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench")
}

fn tier(name: &str, rate: f64, burst: u32, concurrency: Option<u32>) -> TierConfig {
    TierConfig {
        name: name.to_owned(),
        rate: Some(rate),
        burst: Some(burst),
        concurrency,
    }
}

fn limits() -> LimitsConfig {
    LimitsConfig {
        tiers: vec![
            tier("rate", 1e9, 1_000_000, None),
            tier("rate+concurrency", 1e9, 1_000_000, Some(1_000)),
            tier("refused", 1.0, 1, None),
        ],
        ..LimitsConfig::default()
    }
}

struct Fixture {
    limiter: Limiter,
    store: Arc<LocalStore>,
    forced: Counter,
    idle: Counter,
}

/// A limiter over a fresh store sized like the default `limits.max_tenants` (2^20).
fn fixture() -> Fixture {
    let cfg = limits();
    let (idle, forced) = (Counter::default(), Counter::default());
    let store = Arc::new(LocalStore::with_counters(
        cfg.max_tenants,
        idle.clone(),
        forced.clone(),
    ));
    let limiter = Limiter::new(&cfg, store.clone(), Arc::new(MonotonicClock::new()));
    Fixture {
        limiter,
        store,
        forced,
        idle,
    }
}

/// The cell every request is admitted into: `cell-1`, with no cap of its own.
struct BenchCell(Arc<str>);

impl BenchCell {
    fn cap(&self) -> CellCap<'_> {
        CellCap {
            id: &self.0,
            max_in_flight: None,
        }
    }
}

fn cell() -> (BenchCell, Arc<CellMetrics>) {
    (
        BenchCell(Arc::from("cell-1")),
        Metrics::new().cell("cell-1"),
    )
}

fn ask<'a>(tenant: &'a str, tier: &'a str) -> Ask<'a> {
    Ask {
        tenant,
        tier,
        overrides: TenantLimits::default(),
        method: &Method::GET,
        path: "/orders/42",
    }
}

/// Resident memory of this process, in bytes: `Rss` of /proc/self/smaps_rollup, which the
/// kernel counts exactly (`VmRSS` in /proc/self/status may lag by many pages).
fn rss() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
    let kb: u64 = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse().unwrap())
        .expect("Rss in /proc/self/smaps_rollup");
    kb * 1024
}

/// Admits one request for each of `tenant-0000000..n` (no allocation but the store's own).
fn populate(f: &Fixture, cell: &BenchCell, cm: &Arc<CellMetrics>, n: usize) {
    let mut name = String::with_capacity(32);
    for i in 0..n {
        name.clear();
        write!(name, "tenant-{i:07}").unwrap();
        f.limiter
            .admit(&ask(&name, "rate"), &cell.cap(), cm)
            .unwrap();
    }
    assert_eq!(f.store.tracked(), n, "every tenant holds state");
    assert_eq!(f.forced.get() + f.idle.get(), 0, "nothing was evicted");
}

/// Set in a child process of this bench: `<tenants>x<stores>`, measure memory and exit.
const MEMORY_ENV: &str = "CELLGATE_BENCH_LIMITER_MEMORY";

/// Fills `stores` fresh stores with `n` tenants each and prints the resident memory they added
/// per tenant. Runs in a fresh process (see [`measure_memory`]). Several stores average out the
/// allocator's granularity: mimalloc asks for transparent huge pages, so the resident set
/// grows 2 MiB at a time.
fn memory_child(spec: &str) {
    let (n, stores) = spec.split_once('x').expect("<tenants>x<stores>");
    let (n, stores): (usize, usize) = (n.parse().unwrap(), stores.parse().unwrap());
    let (cell, cm) = cell();
    // Warm the allocator (its first pages and size classes) with a store kept to the end.
    let warm = fixture();
    populate(&warm, &cell, &cm, 1_000);
    // Empty stores first: their fixed part (the debt table, sized by `limits.max_tenants`, about
    // 1 MiB at the default) is per node, not per tenant.
    let empty = rss();
    let filled: Vec<Fixture> = (0..stores).map(|_| fixture()).collect();
    let before = rss();
    let fixed = before.saturating_sub(empty) / stores as u64;
    let start = Instant::now();
    for f in &filled {
        populate(f, &cell, &cm, n);
    }
    let took = start.elapsed();
    let added = rss().saturating_sub(before);
    eprintln!(
        "limiter memory: {:.1} KiB fixed per store (debt table for max_tenants = {})",
        fixed as f64 / 1024.0,
        limits().max_tenants,
    );
    let each = if stores == 1 {
        String::new()
    } else {
        format!(" (average of {stores} stores)")
    };
    eprintln!(
        "limiter memory: {:.1} bytes per tenant at {n} tenants{each}: {:.1} MiB resident added, \
         filled in {took:.2?} (resident set method, mimalloc)",
        added as f64 / (n * stores) as f64,
        added as f64 / f64::from(1 << 20),
    );
    drop((filled, warm));
}

/// Runs [`memory_child`] in a fresh process of this binary, so that no measurement reuses
/// memory freed earlier (a store's hash tables leave their smaller copies behind as they grow).
fn measure_memory(n: usize, stores: usize) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env(MEMORY_ENV, format!("{n}x{stores}"))
        .status()
        .unwrap();
    assert!(status.success(), "the memory measurement failed: {status}");
}

fn bench_admit(c: &mut Criterion) {
    let (cell, cm) = cell();
    let (big, small, small_stores) = if test_mode() {
        (10_000, 1_000, 10)
    } else {
        (1_000_000, 10_000, 100)
    };

    measure_memory(big, 1);
    measure_memory(small, small_stores);
    if test_mode() {
        eprintln!("limiter memory: test mode, populations too small to read in 2 MiB steps");
    }
    let many = fixture();
    populate(&many, &cell, &cm, big);
    let names: String = (0..big).map(|i| format!("tenant-{i:07}")).collect();
    assert_eq!(names.len(), big * NAME_LEN);

    let mut g = c.benchmark_group("admit");
    for tier in ["rate", "rate+concurrency"] {
        let one = fixture();
        let mut refused = 0u64;
        g.bench_function(BenchmarkId::new(tier, 1), |b| {
            b.iter(|| {
                let r =
                    one.limiter
                        .admit(&ask(black_box("tenant-0000000"), tier), &cell.cap(), &cm);
                refused += u64::from(r.is_err());
                r
            })
        });
        assert_eq!(refused, 0, "{tier}/1 measured refusals");

        let mut i = 0;
        g.bench_function(BenchmarkId::new(tier, big), |b| {
            b.iter(|| {
                let name = &names[i * NAME_LEN..(i + 1) * NAME_LEN];
                i += 1;
                if i == big {
                    i = 0;
                }
                let r = many
                    .limiter
                    .admit(&ask(black_box(name), tier), &cell.cap(), &cm);
                refused += u64::from(r.is_err());
                r
            })
        });
        assert_eq!(refused, 0, "{tier}/{big} measured refusals");
        assert_eq!(
            many.store.tracked(),
            big,
            "{tier}/{big} added or lost tenants"
        );
    }

    let over = fixture();
    let _ = over
        .limiter
        .admit(&ask("tenant-0000000", "refused"), &cell.cap(), &cm);
    let mut admitted = 0u64;
    g.bench_function(BenchmarkId::new("refused", 1), |b| {
        b.iter(|| {
            let r = over.limiter.admit(
                &ask(black_box("tenant-0000000"), "refused"),
                &cell.cap(),
                &cm,
            );
            admitted += u64::from(!matches!(r, Err(Limited::Rate { .. })));
            r
        })
    });
    // At 1/s, a run of a few seconds may earn a request or two back; the rest are refusals.
    assert!(admitted <= 10, "refused/1 measured {admitted} admissions");
    g.finish();
    assert_eq!(cm.in_flight.get(), 0, "every permit was given back");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench_admit
}

fn main() {
    if let Ok(spec) = std::env::var(MEMORY_ENV) {
        memory_child(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
