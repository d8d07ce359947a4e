//! Criterion micro-benchmarks of the request path's pure stages.
//!
//! Decision supported: whether tenant extraction, identification and the snapshot lookup +
//! route decision are cheap enough to run on every request without a cache in front of them
//! (they must stay far below the ~10 µs a proxied request costs end to end), and whether the
//! lookup stays flat as the snapshot grows from 1 to 1,000,000 tenants (a hash trie, not a scan;
//! `bench/placement.rs` measures the snapshot itself).
//! `rewrite_request/plain` against `rewrite_request/hop_by_hop` supports skipping the 16+
//! header removals after one pass over the names present when none of them is there (the
//! common case), instead of looking each name up on every request. `metering_record` is what
//! usage metering adds to every answer (a clock read and the worker's meter), against the
//! budget of at most 3% of a request's CPU.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;

use cellgate::config::file::FileCell;
use cellgate::config::{Config, Overrides};
use cellgate::identify::identify;
use cellgate::placement::{Cell, PlacementSnapshot, RegistryData, TenantRecord, TenantStatus};
use cellgate::routing::route;
use cellgate::tenant::{TenantId, tenant_from_host};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::Method;

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

fn snapshot(tenants: usize) -> PlacementSnapshot {
    let cells: Vec<Cell> = (1..=3)
        .map(|i| {
            let fc = FileCell {
                id: format!("cell-{i}"),
                state: None,
                targets: vec![
                    format!("http://127.0.0.1:{}", 9000 + i),
                    format!("http://127.0.0.1:{}", 9100 + i),
                ],
                groups: Vec::new(),
                preserve_host: None,
                max_in_flight: None,
                wave: None,
                protocol: None,
            };
            Cell::from_file(&fc, "cells[0]").unwrap()
        })
        .collect();
    let records = (0..tenants).map(|i| record(i, i, 1));
    PlacementSnapshot::build(RegistryData::from_records(records, cells), &[], 1)
}

/// Polls a future that never waits (no token, or a cached one) to completion, without a runtime.
fn ready<F: Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the benchmarked stage waited"),
    }
}

fn bench_extraction(c: &mut Criterion) {
    let domains = vec!["app.example.com".to_owned(), "example.com".to_owned()];
    // Runs on every request with subdomain routing: must not allocate.
    c.bench_function("tenant_from_host", |b| {
        b.iter(|| {
            tenant_from_host(
                black_box(b"acme-corp.app.example.com:443"),
                black_box(&domains),
            )
            .unwrap()
        })
    });

    let cfg = Config::from_toml(
        r#"
[[listeners]]
address = "127.0.0.1:0"
[tenant]
sources = ["subdomain"]
base_domains = ["app.example.com"]
[registry]
source = "file"
"#,
        Path::new("bench.toml"),
        &Overrides::default(),
    )
    .unwrap();
    let metrics = cellgate::metrics::Metrics::new();
    let verifier = cellgate::auth::Verifier::new(&cfg.auth, &metrics).unwrap();
    let (parts, ()) = http::Request::get("/orders/42?x=1")
        .header("host", "acme-corp.app.example.com")
        .header("user-agent", "bench")
        .header("accept", "*/*")
        .body(())
        .unwrap()
        .into_parts();
    let peer = "10.0.0.1".parse().unwrap();
    let memo = cellgate::auth::TokenMemo::default();
    // The whole identify stage without a token: sources in order, agreement check.
    c.bench_function("identify_subdomain", |b| {
        b.iter(|| {
            ready(identify(
                black_box(&parts),
                peer,
                &cfg.tenant,
                &verifier,
                &memo,
                &cellgate::identify::NoKeys,
            ))
            .unwrap()
        })
    });
}

fn bench_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot_route");
    for n in [1usize, 10_000, 1_000_000] {
        let snap = snapshot(n);
        let tenant = TenantId::parse(&format!("tenant-{}", n / 2)).unwrap();
        // Flat from 1 to 1M tenants, or the snapshot needs another structure.
        g.bench_with_input(BenchmarkId::new("lookup", n), &n, |b, _| {
            b.iter(|| black_box(snap.tenant(black_box(tenant.as_str()))).is_some())
        });
        // The routing decision (status, cell state, arm) on one snapshot generation.
        g.bench_with_input(BenchmarkId::new("route", n), &n, |b, _| {
            b.iter(|| route(black_box(&tenant), &Method::GET, None, &snap).unwrap())
        });
    }
    g.finish();
}

fn bench_rewrite(c: &mut Criterion) {
    use cellgate::proxy::rewrite::{ip_header, rewrite_request};
    use http::{HeaderMap, HeaderValue};
    let request = |extra: Option<(&'static str, &'static str)>| {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("acme.app.example.com"));
        h.insert("user-agent", HeaderValue::from_static("bench"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.insert("accept-encoding", HeaderValue::from_static("gzip"));
        if let Some((k, v)) = extra {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    };
    let v = HeaderValue::from_static("acme");
    let xff = ip_header("10.0.0.1".parse().unwrap());
    let mut g = c.benchmark_group("rewrite_request");
    for (name, extra) in [
        ("plain", None),
        ("hop_by_hop", Some(("connection", "keep-alive"))),
    ] {
        let h = request(extra);
        g.bench_function(name, |b| {
            b.iter_batched(
                || h.clone(),
                |mut h| {
                    rewrite_request(&mut h, &[], &v, &v, &v, &xff, false, None, None);
                    h
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn bench_metering(c: &mut Criterion) {
    use cellgate::metering::answer::unix_secs;
    use cellgate::metering::{Meter, Sample};
    let cell: std::sync::Arc<str> = std::sync::Arc::from("cell-1");
    let tenants: Vec<TenantId> = (0..1_000)
        .map(|i| TenantId::parse(&format!("tenant-{i}")).unwrap())
        .collect();
    let meter = Meter::new(std::time::Duration::from_secs(60), 100_000, unix_secs());
    let mut i = 0usize;
    c.bench_function("metering_record", |b| {
        b.iter(|| {
            i = (i + 1) % tenants.len();
            let s = Sample {
                tenant: tenants[i],
                cell: Some(&cell),
                route: None,
                status: 200,
                bytes_in: 0,
                bytes_out: 27,
                upstream: Some(std::time::Duration::from_micros(250)),
            };
            meter.record(black_box(&s), unix_secs());
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench_extraction, bench_lookup, bench_rewrite, bench_metering
}
criterion_main!(benches);
