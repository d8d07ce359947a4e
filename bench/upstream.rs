//! Criterion micro-benchmarks of the forward stage's per-request bookkeeping.
//!
//! Decision supported: whether picking an address in rotation (health flags, DNS-resolved
//! address sets behind an `ArcSwap`), paying into the cell's retry budget, and keeping a
//! replayable copy of a bodiless idempotent request's head (so it can be retried after a reset
//! or a 502/503/504) are cheap enough to do on every request, against the ~16 µs a proxied
//! request costs end to end here. The head copy is the one allocation the retry feature adds;
//! `upstream.retry.idempotent = false` removes it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Instant;

use cellgate::config::file::FileCell;
use cellgate::config::{OutlierConfig, RetryConfig};
use cellgate::metrics::upstream::UpstreamMetrics;
use cellgate::placement::Cell;
use cellgate::upstream::{Pick, RetryBudget, Tried, Upstreams, select};
use criterion::{Criterion, criterion_group, criterion_main};

fn cell() -> Cell {
    let fc: FileCell = toml::from_str(
        r#"
id = "cell-1"
targets = ["http://10.0.0.1:8080", "http://10.0.0.2:8080", "http://10.0.0.3:8080"]
"#,
    )
    .unwrap();
    Cell::from_file(&fc, "cells[0]").unwrap()
}

fn bench_select(c: &mut Criterion) {
    let cell = cell();
    let up = Upstreams::new(
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection: std::time::Duration::from_secs(10),
            max_ejection: std::time::Duration::from_secs(300),
            max_ejection_percent: 50,
        },
        UpstreamMetrics::default(),
    );
    let group = &cell.groups[0];
    let arm = group.arm(&cell);
    let tried = Tried::default();
    c.bench_function("select_endpoint_3_targets", |b| {
        b.iter(|| {
            let first = group.next_target();
            match select(&arm, black_box(first), &up, &tried) {
                Pick::Endpoint(i, ep) => black_box((i, ep)),
                _ => panic!("no endpoint"),
            }
        })
    });
    let budget = RetryBudget::default();
    c.bench_function("retry_budget_deposit", |b| {
        b.iter(|| budget.deposit(black_box(Instant::now())))
    });
    let cfg = RetryConfig {
        max_attempts: 3,
        idempotent: true,
        budget_ratio: 0.2,
        budget_min_per_second: 10,
    };
    c.bench_function("retry_budget_withdraw_refused", |b| {
        let empty = RetryBudget::default();
        let none = RetryConfig {
            budget_min_per_second: 0,
            ..cfg
        };
        b.iter(|| empty.withdraw(&none, black_box(Instant::now())))
    });
}

fn bench_replay_head(c: &mut Criterion) {
    // A typical browser/API request head after the rewrite stage (11 headers).
    let req = http::Request::get("/api/v1/orders/42?expand=items")
        .header("host", "acme.app.example.com")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench")
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, br")
        .header("accept-language", "en-GB,en;q=0.9")
        .header("cookie", "session=0123456789abcdef0123456789abcdef")
        .header("x-tenant-id", "acme")
        .header("x-cell-id", "cell-1")
        .header("x-request-id", "0123456789abcdef0123456789abcdef")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .body(())
        .unwrap();
    c.bench_function("replay_head_copy", |b| {
        b.iter(|| {
            let r = black_box(&req);
            black_box((
                r.method().clone(),
                r.uri().clone(),
                r.version(),
                r.headers().clone(),
            ))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench_select, bench_replay_head
}
criterion_main!(benches);
