//! Loadtest scenario `outage`: the file registry becomes unusable under load, then comes back
//! with a change. Does the last good snapshot keep serving, and does the proxy say it is stale?
//!
//! Starts three local echo cells in this process and the release `cellgate` binary as its own
//! process (file registry polled every 250 ms; pinned with `taskset` to `--proxy-cpu` when
//! given). `--clients` closed-loop keep-alive clients request `--tenants` tenants in turn for
//! the whole run; every answer names the cell that served it. After `--before-secs` the
//! registry file is broken for `--outage-secs` (`--break garbage`: replaced, by rename, by a
//! file that does not parse; `--break missing`: removed), then restored by rename with one
//! change: `tenant-01` moved from cell-1 to cell-2. A monitor scrapes `/metrics` every 250 ms.
//!
//! Checks (exit 1 when one fails, 2 when the scenario could not run): no error and no answer
//! from a cell other than the tenant's in any phase (during the outage every tenant, the moved
//! one included, is served from the last good snapshot); no new snapshot swapped in during the
//! outage; `cellgate_placement_snapshot_age_seconds` reached 80% of the outage's length;
//! `cellgate_placement_refresh_failures_total` grew during the outage; after the restore the
//! move was followed (first answer from cell-2) within 2 s and no answer came from cell-1 after
//! that; the snapshot age fell back under 1 s. Bounded in time and count, 127.0.0.1 only.

mod load;
mod report;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cellgate::demo::EchoTarget;
use http::Uri;

use self::load::{client_loop, monitor};
use self::report::Timeline;
use crate::common::{
    cell_toml, client, file_registry, flag_pairs, host, tenant_toml, write_registry,
};
use crate::frame::{Ready, run_proxied};
use crate::process::{CpuMark, ProxyArgs, driver_cpus};

const CELLS: usize = 3;
const REGISTRY_POLL: &str = "250ms";
/// The tenant moved at the restore, from cell-1 to cell-2 (index into the tenants).
const MOVED: usize = 0;
const MOVED_TO: usize = 1;
/// How long the move may take to be followed after the restore (the poll is 250 ms).
const FOLLOW_BOUND: Duration = Duration::from_secs(2);
/// The snapshot age must reach this share of the outage's length.
const AGE_SHARE: f64 = 0.8;
const SCRAPE_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Break {
    Garbage,
    Missing,
}

struct Args {
    tenants: usize,
    clients: usize,
    before: Duration,
    outage: Duration,
    after: Duration,
    how: Break,
    proxy: ProxyArgs,
}

fn args(argv: Vec<String>) -> Args {
    let mut a = Args {
        tenants: 6,
        clients: 8,
        before: Duration::from_secs(4),
        outage: Duration::from_secs(10),
        after: Duration::from_secs(5),
        how: Break::Garbage,
        proxy: ProxyArgs::default(),
    };
    for (flag, value) in flag_pairs(argv, usage) {
        let num = |v: &str| -> u64 { v.parse().unwrap_or_else(|_| usage(v)) };
        match flag.as_str() {
            "--tenants" => a.tenants = num(&value) as usize,
            "--clients" => a.clients = num(&value) as usize,
            "--before-secs" => a.before = Duration::from_secs(num(&value)),
            "--outage-secs" => a.outage = Duration::from_secs(num(&value)),
            "--after-secs" => a.after = Duration::from_secs(num(&value)),
            "--break" => {
                a.how = match value.as_str() {
                    "garbage" => Break::Garbage,
                    "missing" => Break::Missing,
                    other => usage(&format!("--break {other}")),
                }
            }
            other if a.proxy.take(other, &value) => {}
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if !(2..=100).contains(&a.tenants)
        || !(1..=64).contains(&a.clients)
        || !(1..=30).contains(&a.before.as_secs())
        || !(2..=60).contains(&a.outage.as_secs())
        || !(3..=30).contains(&a.after.as_secs())
    {
        usage(
            "--tenants is 2..100, --clients 1..64, --before-secs 1..30, --outage-secs 2..60, \
             --after-secs 3..30",
        );
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!(
        "outage: {why}\nflags: --tenants N (6) --clients N (8) --before-secs S (4) \
         --outage-secs S (10) --after-secs S (5) --break garbage|missing (garbage) \
         --proxy-bin PATH (target/release/cellgate) --proxy-cpu CPU (no pinning)"
    );
    std::process::exit(2)
}

pub fn run(argv: Vec<String>) -> i32 {
    let a = args(argv);
    // The proxy ends by itself after this long even if the driver dies without stopping it.
    let bound = a.before + a.outage + a.after + Duration::from_secs(60);
    run_proxied(
        "outage",
        &a.proxy,
        bound,
        async |dir, _| {
            let cells = cellgate::demo::spawn_cells(CELLS, 1).await.unwrap();
            let path = dir.join("registry.toml");
            write_registry(&path, &registry(&cells, a.tenants, false)).unwrap();
            Ok(((cells, path), file_registry(REGISTRY_POLL)))
        },
        async |(cells, path), ready| drive(&a, &cells, &path, ready).await,
    )
}

fn tenant_name(i: usize) -> String {
    format!("tenant-{:02}", i + 1)
}

/// Tenant `i` lives in cell `i % CELLS` (0-based), the moved one in `MOVED_TO` once `moved`.
fn cell_of(i: usize, moved: bool) -> usize {
    if moved && i == MOVED {
        MOVED_TO
    } else {
        i % CELLS
    }
}

fn registry(cells: &[Vec<EchoTarget>], tenants: usize, moved: bool) -> String {
    let mut s: String = cells.iter().map(|c| cell_toml(c)).collect();
    for i in 0..tenants {
        let cell = format!("cell-{}", cell_of(i, moved) + 1);
        let version = if moved && i == MOVED { 100 } else { 1 };
        s.push_str(&tenant_toml(&tenant_name(i), &cell, None, version));
    }
    s
}

/// The timeline under load: steady, the registry broken, restored with the move; then the
/// report.
async fn drive(
    a: &Args,
    cells: &[Vec<EchoTarget>],
    path: &Path,
    ready: Ready,
) -> Result<bool, String> {
    let Ready {
        listen, admin, pid, ..
    } = ready;
    let names: Vec<String> = (0..a.tenants).map(tenant_name).collect();
    let hosts = Arc::new(names.iter().map(|t| host(t)).collect::<Vec<_>>());
    let uri: Uri = format!("http://{listen}/").parse().unwrap();
    println!(
        "scenario outage: {} tenants over {CELLS} cells, {} keep-alive clients requesting them in \
         turn; file registry polled every {REGISTRY_POLL}; proxy: 1 worker, {}; driver and cells: {}",
        a.tenants,
        a.clients,
        a.proxy.pinning(),
        driver_cpus()
    );
    println!(
        "{} s steady, then the registry file {} for {} s, then restored by rename with {} moved \
         cell-1 -> cell-2; then {} s",
        a.before.as_secs(),
        match a.how {
            Break::Garbage => "replaced (by rename) with one that does not parse",
            Break::Missing => "removed",
        },
        a.outage.as_secs(),
        names[MOVED],
        a.after.as_secs()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mon = tokio::spawn(monitor(client(), admin, start, Arc::clone(&stop)));
    let load: Vec<_> = (0..a.clients)
        .map(|c| {
            tokio::spawn(client_loop(
                client(),
                uri.clone(),
                Arc::clone(&hosts),
                c,
                start,
                Arc::clone(&stop),
            ))
        })
        .collect();
    let mark = CpuMark::now(pid);

    tokio::time::sleep_until((start + a.before).into()).await;
    let broke_at = start.elapsed();
    match a.how {
        Break::Garbage => write_registry(path, "[[tenants]\nthis is not a registry = \n")
            .map_err(|e| e.to_string())?,
        Break::Missing => std::fs::remove_file(path).map_err(|e| e.to_string())?,
    }
    tokio::time::sleep_until((start + a.before + a.outage).into()).await;
    let restored_at = start.elapsed();
    write_registry(path, &registry(cells, a.tenants, true)).map_err(|e| e.to_string())?;
    tokio::time::sleep_until((start + a.before + a.outage + a.after).into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for l in load {
        seen.extend(l.await.unwrap());
    }
    let cpu = mark.since(pid);
    let gauges = mon.await.unwrap();
    let took = start.elapsed();
    seen.sort_by_key(|s| s.at);
    report::report(
        a,
        &names,
        Timeline {
            seen,
            gauges,
            broke_at,
            restored_at,
            took,
            cpu,
        },
    )
}
