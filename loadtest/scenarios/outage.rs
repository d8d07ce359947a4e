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

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};

use crate::common::{
    CpuMark, HttpClient, Proxy, ProxyArgs, REQUEST_TIMEOUT, Scrape, cell_toml, client, driver_cpus,
    free_port, host, ms, pct, tenant_toml, verdict, write_registry,
};

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
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(outage(a))
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

fn registry(cells: &[Vec<cellgate::demo::EchoTarget>], tenants: usize, moved: bool) -> String {
    let mut s: String = cells.iter().map(|c| cell_toml(c)).collect();
    for i in 0..tenants {
        let cell = format!("cell-{}", cell_of(i, moved) + 1);
        let version = if moved && i == MOVED { 100 } else { 1 };
        s.push_str(&tenant_toml(&tenant_name(i), &cell, None, version));
    }
    s
}

fn proxy_config(listen: SocketAddr, admin: SocketAddr) -> String {
    crate::common::proxy_config(listen, admin, &crate::common::file_registry(REGISTRY_POLL))
}

async fn outage(a: Args) -> i32 {
    if !a.proxy.bin.is_file() {
        eprintln!(
            "outage: no proxy binary at {} (cargo build --release --bin cellgate, or use loadtest/run.sh outage)",
            a.proxy.bin.display()
        );
        return 2;
    }
    let cells = cellgate::demo::spawn_cells(CELLS, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_port(), free_port());
    let path = dir.path().join("registry.toml");
    write_registry(&path, &registry(&cells, a.tenants, false)).unwrap();
    let config = dir.path().join("cellgate.toml");
    std::fs::write(&config, proxy_config(listen, admin)).unwrap();
    let log_path = dir.path().join("proxy.log");
    let bound = a.before + a.outage + a.after + Duration::from_secs(60);
    let mut proxy = match Proxy::spawn(&a.proxy, &config, &log_path, bound) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("outage: cannot start the proxy: {e}");
            return 2;
        }
    };
    let code = match drive(&a, &cells, &path, &mut proxy, listen, admin).await {
        Ok(pass) => i32::from(!pass),
        Err(e) => {
            eprintln!("outage: {e}");
            2
        }
    };
    if code != 0 {
        proxy.print_log_tail();
    }
    proxy.stop();
    code
}

/// One answer: when it was sent (since the start of the load), for which tenant, and which
/// cell answered (`Err`: what went wrong instead).
struct Seen {
    at: Duration,
    latency: Duration,
    tenant: usize,
    cell: Result<usize, String>,
}

#[derive(serde::Deserialize)]
struct Echo<'a> {
    #[serde(borrow)]
    cell: Cow<'a, str>,
}

/// One closed-loop client: the tenants in turn, one request at a time, until `stop`.
async fn client_loop(
    client: HttpClient,
    uri: Uri,
    hosts: Arc<Vec<HeaderValue>>,
    first: usize,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        let tenant = i % hosts.len();
        i += 1;
        let req = Request::get(uri.clone())
            .header(header::HOST, hosts[tenant].clone())
            .body(Empty::new())
            .unwrap();
        let at = start.elapsed();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let r = client.request(req).await.map_err(|e| e.to_string())?;
            let status = r.status();
            let body = r.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body.to_bytes()))
        })
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()));
        let latency = start.elapsed() - at;
        let cell = answer.and_then(|(status, body)| {
            if status != StatusCode::OK {
                let text = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
                return Err(format!("status {status}: {}", text.trim()));
            }
            let echo: Echo<'_> =
                serde_json::from_slice(&body).map_err(|_| "unreadable answer".to_owned())?;
            echo.cell
                .strip_prefix("cell-")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| (1..=CELLS).contains(n))
                .map(|n| n - 1)
                .ok_or_else(|| format!("answer from unknown cell {}", echo.cell))
        });
        out.push(Seen {
            at,
            latency,
            tenant,
            cell,
        });
    }
    out
}

/// One `/metrics` sample of the placement gauges.
#[derive(Clone, Copy)]
struct Gauges {
    at: Duration,
    age: f64,
    failures: f64,
    generation: f64,
}

async fn monitor(
    probe: HttpClient,
    admin: SocketAddr,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Gauges> {
    let mut out = Vec::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(s) = Scrape::get(&probe, admin).await {
            out.push(Gauges {
                at: start.elapsed(),
                age: s.sum("cellgate_placement_snapshot_age_seconds", "", ""),
                failures: s.sum("cellgate_placement_refresh_failures_total", "", ""),
                generation: s.sum("cellgate_placement_snapshot_generation", "", ""),
            });
        }
        next += SCRAPE_EVERY;
        tokio::time::sleep_until(next.into()).await;
    }
    out
}

/// What a phase saw.
#[derive(Default)]
struct PhaseStats {
    requests: u64,
    errors: u64,
    /// Answers from a cell other than the tenant's (before the move was followed, the old one).
    wrong_cell: u64,
    examples: Vec<String>,
    latency: Vec<Duration>,
}

async fn drive(
    a: &Args,
    cells: &[Vec<cellgate::demo::EchoTarget>],
    path: &Path,
    proxy: &mut Proxy,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Result<bool, String> {
    let probe = client();
    proxy.wait_ready(&probe, admin).await?;
    let pid = proxy.pid();
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

    // When the move was first followed: the first answer from the new cell after the restore.
    let followed = seen
        .iter()
        .find(|s| s.tenant == MOVED && s.at >= restored_at && s.cell == Ok(MOVED_TO))
        .map(|s| s.at);
    let mut phases: [PhaseStats; 3] = Default::default();
    let mut stale_after_follow = 0u64;
    for s in &seen {
        let p = if s.at < broke_at {
            0
        } else if s.at < restored_at {
            1
        } else {
            2
        };
        let st = &mut phases[p];
        st.requests += 1;
        st.latency.push(s.latency);
        match &s.cell {
            Err(e) => {
                st.errors += 1;
                if st.examples.len() < 5 {
                    st.examples.push(format!("{}: {e}", names[s.tenant]));
                }
            }
            Ok(c) => {
                let moved = followed.is_some_and(|f| s.at >= f);
                let ok = *c == cell_of(s.tenant, moved)
                    // Between the restore and the first answer from the new cell, either.
                    || (p == 2 && !moved && s.tenant == MOVED && *c == MOVED_TO);
                if !ok {
                    st.wrong_cell += 1;
                    if moved && s.tenant == MOVED {
                        stale_after_follow += 1;
                    }
                    if st.examples.len() < 5 {
                        st.examples.push(format!(
                            "{}: answered by cell-{}",
                            names[s.tenant],
                            c + 1
                        ));
                    }
                }
            }
        }
    }

    let in_phase = |g: &Gauges, from: Duration, to: Duration| g.at >= from && g.at < to;
    let before: Vec<&Gauges> = gauges
        .iter()
        .filter(|g| in_phase(g, Duration::ZERO, broke_at))
        .collect();
    let during: Vec<&Gauges> = gauges
        .iter()
        .filter(|g| in_phase(g, broke_at, restored_at))
        .collect();
    let after: Vec<&Gauges> = gauges.iter().filter(|g| g.at >= restored_at).collect();
    let (Some(last_before), Some(last_during), Some(last_after)) =
        (before.last(), during.last(), after.last())
    else {
        return Err("too few /metrics samples".to_owned());
    };
    let max_age_before = before.iter().map(|g| g.age).fold(0.0, f64::max);
    let max_age_during = during.iter().map(|g| g.age).fold(0.0, f64::max);
    let failures_during = last_during.failures - last_before.failures;
    let generations_during = last_during.generation - last_before.generation;
    // When the age fell back under 1 s after the restore.
    let fresh_again = after.iter().find(|g| g.age < 1.0).map(|g| g.at);

    let names_of = ["before", "outage", "after"];
    let bounds = [
        (Duration::ZERO, broke_at),
        (broke_at, restored_at),
        (restored_at, took),
    ];
    for (k, st) in phases.iter_mut().enumerate() {
        st.latency.sort_unstable();
        let secs = (bounds[k].1 - bounds[k].0).as_secs_f64();
        println!(
            "phase {:<6} ({:>4.1} s .. {:>4.1} s): {} req ({:.0} req/s), errors {}, answers from \
             another cell {}; latency p50 {}, p99 {}, max {}",
            names_of[k],
            bounds[k].0.as_secs_f64(),
            bounds[k].1.as_secs_f64(),
            st.requests,
            st.requests as f64 / secs,
            st.errors,
            st.wrong_cell,
            ms(pct(&st.latency, 0.50)),
            ms(pct(&st.latency, 0.99)),
            ms(st.latency.last().copied().unwrap_or_default()),
        );
        for e in &st.examples {
            println!("    e.g. {e}");
        }
    }
    println!(
        "cpu % of a core over the run: proxy {:.1}, driver+cells {:.1}, other {:.1}",
        cpu.proxy, cpu.driver, cpu.other
    );
    let line: Vec<String> = gauges
        .iter()
        .filter(|g| {
            // One sample per second, enough to see the age climb and fall.
            let ms = g.at.as_millis();
            ms % 1000 < SCRAPE_EVERY.as_millis()
        })
        .map(|g| {
            format!(
                "{:.0}s {:.1}/{:.0}/{:.0}",
                g.at.as_secs_f64(),
                g.age,
                g.failures,
                g.generation
            )
        })
        .collect();
    println!(
        "gauges each second (time: snapshot age s / refresh failures / generation): {}",
        line.join(", ")
    );
    println!(
        "snapshot age: max {max_age_before:.2} s before the outage, max {max_age_during:.2} s \
         during it ({} s), {:.2} s at the end; refresh failures {:.0} -> {:.0} during the outage \
         (+{failures_during:.0}), {:.0} at the end; generation {:.0} -> {:.0} during the outage, \
         {:.0} at the end",
        a.outage.as_secs(),
        last_after.age,
        last_before.failures,
        last_during.failures,
        last_after.failures,
        last_before.generation,
        last_during.generation,
        last_after.generation,
    );
    let follow = followed.map(|f| f - restored_at);
    println!(
        "after the restore: {} first answered by cell-2 after {}; answers from cell-1 after \
         that {stale_after_follow}; snapshot age under 1 s again after {}",
        names[MOVED],
        follow.map_or("never".to_owned(), ms),
        fresh_again.map_or("never".to_owned(), |t| ms(t.saturating_sub(restored_at)))
    );

    let mut pass = true;
    let mut check = |what: String, ok: bool| {
        pass &= ok;
        println!("check {what} -> {}", verdict(ok));
    };
    let errors: u64 = phases.iter().map(|p| p.errors).sum();
    let requests: u64 = phases.iter().map(|p| p.requests).sum();
    check(
        format!(
            "no errors (before, during, after the outage): {errors} of {requests} (during: {} of {})",
            phases[1].errors, phases[1].requests
        ),
        errors == 0,
    );
    let wrong: u64 = phases.iter().map(|p| p.wrong_cell).sum();
    check(
        format!(
            "every answer from the tenant's cell in the snapshot then in force (the last good one \
             during the outage): {wrong} from another cell"
        ),
        wrong == 0,
    );
    check(
        format!("no snapshot swapped in during the outage: generation +{generations_during:.0}"),
        generations_during == 0.0,
    );
    let want_age = a.outage.as_secs_f64() * AGE_SHARE;
    check(
        format!(
            "cellgate_placement_snapshot_age_seconds grew during the outage to >= {want_age:.1} s \
             ({:.0}% of it): {max_age_during:.2} s",
            AGE_SHARE * 100.0
        ),
        max_age_during >= want_age,
    );
    check(
        format!(
            "cellgate_placement_refresh_failures_total grew during the outage: +{failures_during:.0}"
        ),
        failures_during >= 1.0,
    );
    check(
        format!(
            "the change was followed within {} s of the restore: {}",
            FOLLOW_BOUND.as_secs(),
            follow.map_or("never".to_owned(), ms)
        ),
        follow.is_some_and(|f| f <= FOLLOW_BOUND) && stale_after_follow == 0,
    );
    check(
        format!(
            "snapshot age under 1 s again after the restore: {:.2} s at the end",
            last_after.age
        ),
        fresh_again.is_some() && last_after.age < 1.0,
    );
    println!("result: {}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}
