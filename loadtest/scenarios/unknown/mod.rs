//! Loadtest scenario `unknown`: a flood of requests for tenants nobody knows beside steady
//! traffic from known ones. Do the unknown get a fast, bounded no, and the known not notice?
//!
//! Starts three local echo cells in this process and the release `cellgate` binary as its own
//! process (pinned with `taskset` to `--proxy-cpu` when given). The registry is a DynamoDB table
//! on a local DynamoDB-API server (`--registry dynamodb`, the default: on-demand lookups of
//! missing tenants on, at most `--lookup-rate` registry reads per second, burst twice that,
//! negative cache 5 s) or a file (`--registry file`: no lookups, an unknown tenant is a 404 at
//! once). Ten known tenants send 50 req/s each (`?sleep_ms=20`, a slow cell, as in `noisy`);
//! the flood sends `--flood-rate` req/s for random subdomains: half of them fresh names never
//! seen before, half drawn from a pool of `--pool` names that repeat (so the negative cache and
//! coalescing have something to do). Open loop, as in `noisy`.
//!
//! Phases alternate, `--rounds` times: *baseline* (the known tenants alone) then *flood*,
//! `--phase-secs` each, after an unmeasured warm-up. Checks (exit 1 when one fails, 2 when the
//! scenario could not run): every known request answered 2xx in every phase; no unknown
//! request served by a cell, and each answered 404 `unknown_tenant` (with lookups: or 503
//! `registry_unavailable` when refused by the read cap, as docs/registry.md documents; the 503s
//! equal the proxy's `limited` + `registry_down` lookups); with lookups, registry reads (`found` +
//! `absent` + `error`) in each flood phase at most the bucket's burst plus `lookup_rate` x the
//! time between the scrapes around the phase; the median over rounds of the known tenants' p99
//! under flood within 10% of the median baseline p99. Bounded in time and count, 127.0.0.1 only.

mod load;

use std::path::Path;
use std::time::Duration;

use cellgate::demo::EchoTarget;
use cellgate::ops::{self, TenantCommand};
use http::Uri;

use self::load::{FloodStats, Lookups, Targets, phase};
use crate::common::{
    cell_toml, client, dynamodb_registry, file_registry, flag_pairs, host, median, ms, one, pct,
    tenant_toml, verdict,
};
use crate::frame::{Ready, run_proxied};
use crate::process::{ProxyArgs, driver_cpus};

const KNOWN: usize = 10;
const KNOWN_SEND: f64 = 50.0;
const SLEEP_MS: u64 = 20;
const P99_TOLERANCE: f64 = 0.10;
const LOOKUPS: &str = "cellgate_registry_lookups_total";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    File,
    Dynamo,
}

struct Args {
    source: Source,
    rounds: usize,
    phase: Duration,
    warmup: Duration,
    flood_rate: f64,
    pool: usize,
    lookup_rate: f64,
    proxy: ProxyArgs,
}

/// Whether these flags need a DynamoDB-API server (for `run.sh`).
pub fn needs_dynamodb(argv: &[String]) -> bool {
    !argv
        .windows(2)
        .any(|w| w[0] == "--registry" && w[1] == "file")
}

fn args(argv: Vec<String>) -> Args {
    let mut a = Args {
        source: Source::Dynamo,
        rounds: 2,
        phase: Duration::from_secs(8),
        warmup: Duration::from_secs(2),
        flood_rate: 5000.0,
        pool: 100,
        lookup_rate: 20.0,
        proxy: ProxyArgs::default(),
    };
    for (flag, value) in flag_pairs(argv, usage) {
        let num = |v: &str| -> f64 { v.parse().unwrap_or_else(|_| usage(v)) };
        match flag.as_str() {
            "--registry" => {
                a.source = match value.as_str() {
                    "file" => Source::File,
                    "dynamodb" => Source::Dynamo,
                    other => usage(&format!("--registry {other}")),
                }
            }
            "--rounds" => a.rounds = num(&value) as usize,
            "--phase-secs" => a.phase = Duration::from_secs_f64(num(&value)),
            "--warmup-secs" => a.warmup = Duration::from_secs_f64(num(&value)),
            "--flood-rate" => a.flood_rate = num(&value),
            "--pool" => a.pool = num(&value) as usize,
            "--lookup-rate" => a.lookup_rate = num(&value),
            other if a.proxy.take(other, &value) => {}
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if !(1..=10).contains(&a.rounds)
        || a.phase < Duration::from_secs(2)
        || a.phase > Duration::from_secs(60)
        || a.warmup > Duration::from_secs(30)
        || !(10.0..=50_000.0).contains(&a.flood_rate)
        || !(1..=100_000).contains(&a.pool)
        || !(0.1..=10_000.0).contains(&a.lookup_rate)
    {
        usage(
            "--rounds is 1..10, --phase-secs 2..60, --warmup-secs 0..30, --flood-rate 10..50000, \
             --pool 1..100000, --lookup-rate 0.1..10000",
        );
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!(
        "unknown: {why}\nflags: --registry dynamodb|file (dynamodb) --rounds N (2) \
         --phase-secs S (8) --warmup-secs S (2) --flood-rate R (5000) --pool N (100) \
         --lookup-rate R (20) --proxy-bin PATH (target/release/cellgate) --proxy-cpu CPU \
         (no pinning)"
    );
    std::process::exit(2)
}

pub fn run(argv: Vec<String>) -> i32 {
    let a = args(argv);
    // The proxy ends by itself after this long even if the driver dies without stopping it.
    let bound = a.warmup + (a.phase + Duration::from_secs(8)) * (2 * a.rounds as u32);
    let bound = bound + Duration::from_secs(60);
    run_proxied(
        "unknown",
        &a.proxy,
        bound,
        async |dir, _| {
            let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
            let registry = setup_registry(&a, dir, &cells)
                .await
                .map_err(|e| format!("cannot set up the registry: {e}"))?;
            Ok((cells, registry))
        },
        async |_cells, ready| drive(&a, ready).await,
    )
}

fn known_name(i: usize) -> String {
    format!("known-{:02}", i + 1)
}

fn cell_of(i: usize) -> String {
    format!("cell-{}", i % 3 + 1)
}

/// A random tenant-shaped name no registry holds (`zz-` + 16 hex digits).
fn random_name(rng: &mut fastrand::Rng) -> String {
    format!("zz-{:016x}", rng.u64(..))
}

/// The `[registry]` section, after writing the registry itself (file or table).
async fn setup_registry(a: &Args, dir: &Path, cells: &[Vec<EchoTarget>]) -> Result<String, String> {
    match a.source {
        Source::File => {
            let mut s: String = cells.iter().map(|c| cell_toml(c)).collect();
            for i in 0..KNOWN {
                s.push_str(&tenant_toml(&known_name(i), &cell_of(i), None, 1));
            }
            std::fs::write(dir.join("registry.toml"), s).map_err(|e| e.to_string())?;
            Ok(file_registry("250ms"))
        }
        Source::Dynamo => {
            let endpoint = std::env::var("CELLGATE_TEST_DYNAMODB").map_err(|_| {
                "CELLGATE_TEST_DYNAMODB is not set: run through `bash loadtest/run.sh unknown` \
                 (or --registry file)"
                    .to_owned()
            })?;
            let (reg, table) = dynamodb_registry("unknown", &endpoint, cells).await?;
            for i in 0..KNOWN {
                ops::tenant_command(&reg, TenantCommand::place(&known_name(i), &cell_of(i)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(format!(
                "[registry]\nsource = \"dynamodb\"\ntable = \"{table}\"\nregion = \"us-east-1\"\n\
                 endpoint_url = \"{endpoint}\"\npoll_interval = \"250ms\"\nlookup_unknown = true\n\
                 lookup_rate = {}\n",
                a.lookup_rate
            ))
        }
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "setup, phases, then the checks in order"
)]
async fn drive(a: &Args, ready: Ready) -> Result<bool, String> {
    let Ready {
        listen,
        admin,
        pid,
        probe,
    } = ready;
    let known_uri: Uri = format!("http://{listen}/?sleep_ms={SLEEP_MS}")
        .parse()
        .unwrap();
    for i in 0..KNOWN {
        let s = one(
            &probe,
            &known_uri,
            &host(&known_name(i)),
            Duration::ZERO,
            false,
        )
        .await;
        if s.status != 200 {
            return Err(format!(
                "tenant {} is not served before the test (status {})",
                known_name(i),
                s.status
            ));
        }
    }
    let lookups = a.source == Source::Dynamo;
    let burst = a.lookup_rate * 2.0;
    println!(
        "scenario unknown: {KNOWN} known tenants ({} .. {}, cells 1-3) send {KNOWN_SEND}/s each, \
         every request ?sleep_ms={SLEEP_MS}; the flood sends {}/s for random unknown subdomains \
         (half fresh, half from a pool of {} names)",
        known_name(0),
        known_name(KNOWN - 1),
        a.flood_rate,
        a.pool
    );
    println!(
        "registry: {}; {} rounds x (baseline {} s, flood {} s) after a {} s warm-up; proxy: 1 \
         worker, {}; driver and cells: {}",
        if lookups {
            format!(
                "DynamoDB (local), lookups of missing tenants on: lookup_rate {}/s, burst {burst}, \
                 negative_ttl 5 s",
                a.lookup_rate
            )
        } else {
            "file (no lookups: a tenant missing from the snapshot is a 404 at once)".to_owned()
        },
        a.rounds,
        a.phase.as_secs_f64(),
        a.phase.as_secs_f64(),
        a.warmup.as_secs_f64(),
        a.proxy.pinning(),
        driver_cpus()
    );
    let targets = Targets {
        known: client(),
        flood: client(),
        known_uri,
        flood_uri: format!("http://{listen}/").parse().unwrap(),
    };
    // Warm-up: the pools open their connections; nothing is measured.
    if !a.warmup.is_zero() {
        let _ = phase(&targets, a, false, a.warmup, pid, &probe, admin, 1).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut baseline_p99 = Vec::new();
    let mut flood_p99 = Vec::new();
    let mut known_bad = 0u64;
    let mut known_n = 0u64;
    let mut all_flood = FloodStats::default();
    let mut all_lookups = Lookups::default();
    let mut unexplained_503 = 0f64;
    let mut reads_over = Vec::new();
    for round in 1..=a.rounds {
        for flood in [false, true] {
            let seed = 1000 * round as u64 + u64::from(flood);
            let p = phase(&targets, a, flood, a.phase, pid, &probe, admin, seed).await?;
            let mut lat: Vec<Duration> = p.known.iter().map(|x| x.latency).collect();
            lat.sort_unstable();
            let ok = p
                .known
                .iter()
                .filter(|x| (200..300).contains(&x.status))
                .count() as u64;
            known_bad += p.known.len() as u64 - ok;
            known_n += p.known.len() as u64;
            let p99 = pct(&lat, 0.99);
            let name = if flood { "flood   " } else { "baseline" };
            println!(
                "round {round} {name}: known {} req, 2xx {ok} ({:.2}%); p50 {}, p99 {}, max {}; \
                 cpu % of a core: proxy {:.1}, driver+cells {:.1}, other {:.1}",
                p.known.len(),
                ok as f64 * 100.0 / p.known.len().max(1) as f64,
                ms(pct(&lat, 0.50)),
                ms(p99),
                ms(lat.last().copied().unwrap_or_default()),
                p.cpu.proxy,
                p.cpu.driver,
                p.cpu.other,
            );
            if !flood {
                baseline_p99.push(p99);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            flood_p99.push(p99);
            let f = FloodStats::of(&p.flood);
            all_flood.add(&f);
            let mut flat: Vec<Duration> = p.flood.iter().map(|x| x.latency).collect();
            flat.sort_unstable();
            println!(
                "round {round} flood   : unknown {} req ({:.0}/s), 404 unknown_tenant {}, 503 \
                 registry_unavailable {}, served by a cell {}, other {}, errors {}; p50 {}, p99 {}",
                f.n,
                f.n as f64 / p.len.as_secs_f64(),
                f.not_found,
                f.unavailable,
                f.served,
                f.other,
                f.errors,
                ms(pct(&flat, 0.50)),
                ms(pct(&flat, 0.99)),
            );
            let l = p.lookups;
            let bound = burst + a.lookup_rate * p.window.as_secs_f64();
            if lookups {
                println!(
                    "round {round} flood   : {LOOKUPS} found {:.0}, absent {:.0}, error {:.0} \
                     (registry reads {:.0}, {:.1}/s; bound burst + rate x {:.2} s between \
                     scrapes = {bound:.0}), coalesced {:.0}, negative_hit {:.0}, limited {:.0}, \
                     registry_down {:.0}",
                    l.found,
                    l.absent,
                    l.error,
                    l.reads(),
                    l.reads() / p.len.as_secs_f64(),
                    p.window.as_secs_f64(),
                    l.coalesced,
                    l.negative_hit,
                    l.limited,
                    l.registry_down,
                );
            }
            unexplained_503 += (f.unavailable as f64 - (l.limited + l.registry_down)).abs();
            reads_over.push((l.reads(), bound));
            all_lookups = Lookups {
                found: all_lookups.found + l.found,
                absent: all_lookups.absent + l.absent,
                error: all_lookups.error + l.error,
                coalesced: all_lookups.coalesced + l.coalesced,
                negative_hit: all_lookups.negative_hit + l.negative_hit,
                limited: all_lookups.limited + l.limited,
                registry_down: all_lookups.registry_down + l.registry_down,
            };
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    let mut pass = true;
    let mut check = |what: String, ok: bool| {
        pass &= ok;
        println!("check {what} -> {}", verdict(ok));
    };
    check(
        format!(
            "known tenants answered 2xx (all phases): {} of {known_n} ({:.3}%)",
            known_n - known_bad,
            (known_n - known_bad) as f64 * 100.0 / known_n.max(1) as f64
        ),
        known_bad == 0,
    );
    let f = all_flood;
    if lookups {
        check(
            format!(
                "no unknown request served, each 404 unknown_tenant or (refused by the read cap) \
                 503 registry_unavailable: {} of {}; 404 {}, 503 {}, served {}, other {}, errors {}",
                f.not_found + f.unavailable,
                f.n,
                f.not_found,
                f.unavailable,
                f.served,
                f.other,
                f.errors
            ),
            f.served == 0 && f.other == 0 && f.errors == 0 && f.n > 0,
        );
        check(
            format!(
                "every 503 counted by the proxy as limited or registry_down: {unexplained_503:.0} \
                 unexplained"
            ),
            unexplained_503 == 0.0,
        );
        let worst = reads_over
            .iter()
            .map(|(r, b)| format!("{r:.0} <= {b:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        check(
            format!(
                "registry reads per flood phase within burst + lookup_rate x the scrape window: {worst} \
                 (coalesced {:.0}, negative_hit {:.0}, limited {:.0} over all flood phases)",
                all_lookups.coalesced, all_lookups.negative_hit, all_lookups.limited
            ),
            reads_over.iter().all(|(r, b)| r <= b),
        );
    } else {
        check(
            format!(
                "every unknown request answered 404 unknown_tenant: {} of {}; 503 {}, served {}, \
                 other {}, errors {}",
                f.not_found, f.n, f.unavailable, f.served, f.other, f.errors
            ),
            f.not_found == f.n && f.n > 0,
        );
    }
    let (base, under) = (median(&baseline_p99), median(&flood_p99));
    let change = under.as_secs_f64() / base.as_secs_f64() - 1.0;
    let list = |v: &[Duration]| v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ");
    check(
        format!(
            "known p99 under flood within {:.0}% of baseline (median of per-round p99): baseline \
             {} [{}], flood {} [{}] ({:+.1}%)",
            P99_TOLERANCE * 100.0,
            ms(base),
            list(&baseline_p99),
            ms(under),
            list(&flood_p99),
            change * 100.0,
        ),
        change <= P99_TOLERANCE,
    );
    println!("result: {}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}
