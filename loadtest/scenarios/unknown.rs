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
//! `registry_unavailable` when refused by the read cap, as the README documents; the 503s equal
//! the proxy's `limited` + `registry_down` lookups); with lookups, registry reads (`found` +
//! `absent` + `error`) in each flood phase at most the bucket's burst plus `lookup_rate` x the
//! time between the scrapes around the phase; the median over rounds of the known tenants' p99
//! under flood within 10% of the median baseline p99. Bounded in time and count, 127.0.0.1 only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cellgate::ops::{self, CellCommand, TableArgs, TenantCommand};
use http::{HeaderValue, Uri};

use crate::common::{
    Cpu, CpuMark, HttpClient, Proxy, ProxyArgs, Sample, Scrape, cell_toml, client, driver_cpus,
    free_port, host, median, ms, one, open_loop, pct, tenant_toml, verdict,
};

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
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(unknown(a))
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

fn proxy_config(listen: SocketAddr, admin: SocketAddr, registry: &str) -> String {
    crate::common::proxy_config(listen, admin, registry)
}

/// The `[registry]` section, after writing the registry itself (file or table).
async fn setup_registry(
    a: &Args,
    dir: &std::path::Path,
    cells: &[Vec<cellgate::demo::EchoTarget>],
) -> Result<String, String> {
    match a.source {
        Source::File => {
            let mut s: String = cells.iter().map(|c| cell_toml(c)).collect();
            for i in 0..KNOWN {
                s.push_str(&tenant_toml(&known_name(i), &cell_of(i), None, 1));
            }
            std::fs::write(dir.join("registry.toml"), s).map_err(|e| e.to_string())?;
            Ok("[registry]\nsource = \"file\"\npath = \"registry.toml\"\npoll_interval = \"250ms\"\n"
                .to_owned())
        }
        Source::Dynamo => {
            let endpoint = std::env::var("CELLGATE_TEST_DYNAMODB").map_err(|_| {
                "CELLGATE_TEST_DYNAMODB is not set: run through `bash loadtest/run.sh unknown` \
                 (or --registry file)"
                    .to_owned()
            })?;
            let table = format!("unknown-{}", fastrand::u32(..));
            let args = TableArgs {
                table: Some(table.clone()),
                region: Some("us-east-1".to_owned()),
                endpoint_url: Some(endpoint.clone()),
            };
            let reg = ops::registry(&args).await.map_err(|e| e.to_string())?;
            ops::registry_command(&reg, ops::RegistryCommand::Init { streams: false })
                .await
                .map_err(|e| e.to_string())?;
            for ts in cells {
                let cmd = CellCommand::Put {
                    cell: ts[0].cell.clone(),
                    targets: ts.iter().map(|t| format!("http://{}", t.addr)).collect(),
                    state: None,
                    region: None,
                    preserve_host: None,
                    max_in_flight: None,
                    wave: None,
                    clear_wave: false,
                };
                ops::cell_command(&reg, cmd)
                    .await
                    .map_err(|e| e.to_string())?;
            }
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

async fn unknown(a: Args) -> i32 {
    if !a.proxy.bin.is_file() {
        eprintln!(
            "unknown: no proxy binary at {} (cargo build --release --bin cellgate, or use loadtest/run.sh unknown)",
            a.proxy.bin.display()
        );
        return 2;
    }
    let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_port(), free_port());
    let registry = match setup_registry(&a, dir.path(), &cells).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("unknown: cannot set up the registry: {e}");
            return 2;
        }
    };
    let config = dir.path().join("cellgate.toml");
    std::fs::write(&config, proxy_config(listen, admin, &registry)).unwrap();
    let log_path = dir.path().join("proxy.log");
    let bound = a.warmup + (a.phase + Duration::from_secs(8)) * (2 * a.rounds as u32);
    let bound = bound + Duration::from_secs(60);
    let mut proxy = match Proxy::spawn(&a.proxy, &config, &log_path, bound) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("unknown: cannot start the proxy: {e}");
            return 2;
        }
    };
    let code = match drive(&a, &mut proxy, listen, admin).await {
        Ok(pass) => i32::from(!pass),
        Err(e) => {
            eprintln!("unknown: {e}");
            2
        }
    };
    if code != 0 {
        proxy.print_log_tail();
    }
    proxy.stop();
    code
}

/// What the flood's answers were.
#[derive(Default, Clone, Copy)]
struct FloodStats {
    n: u64,
    not_found: u64,
    unavailable: u64,
    /// Served by a cell: a leak.
    served: u64,
    other: u64,
    errors: u64,
}

impl FloodStats {
    fn of(s: &[Sample]) -> Self {
        let mut f = Self::default();
        for x in s {
            f.n += 1;
            let body = x.body.as_deref().unwrap_or_default();
            let has = |code: &str| body.windows(code.len()).any(|w| w == code.as_bytes());
            match x.status {
                0 => f.errors += 1,
                200..=299 => f.served += 1,
                404 if has("\"unknown_tenant\"") => f.not_found += 1,
                503 if has("\"registry_unavailable\"") => f.unavailable += 1,
                _ => f.other += 1,
            }
        }
        f
    }

    fn add(&mut self, o: &Self) {
        self.n += o.n;
        self.not_found += o.not_found;
        self.unavailable += o.unavailable;
        self.served += o.served;
        self.other += o.other;
        self.errors += o.errors;
    }
}

/// `cellgate_registry_lookups_total` by result over a phase.
#[derive(Default, Clone, Copy)]
struct Lookups {
    found: f64,
    absent: f64,
    error: f64,
    coalesced: f64,
    negative_hit: f64,
    limited: f64,
    registry_down: f64,
}

impl Lookups {
    fn of(s: &Scrape) -> Self {
        let r = |v: &str| s.sum(LOOKUPS, "result", v);
        Self {
            found: r("found"),
            absent: r("absent"),
            error: r("error"),
            coalesced: r("coalesced"),
            negative_hit: r("negative_hit"),
            limited: r("limited"),
            registry_down: r("registry_down"),
        }
    }

    fn minus(&self, b: &Self) -> Self {
        Self {
            found: self.found - b.found,
            absent: self.absent - b.absent,
            error: self.error - b.error,
            coalesced: self.coalesced - b.coalesced,
            negative_hit: self.negative_hit - b.negative_hit,
            limited: self.limited - b.limited,
            registry_down: self.registry_down - b.registry_down,
        }
    }

    /// Lookups that cost a registry read.
    fn reads(&self) -> f64 {
        self.found + self.absent + self.error
    }
}

struct Phase {
    known: Vec<Sample>,
    flood: Vec<Sample>,
    cpu: Cpu,
    lookups: Lookups,
    len: Duration,
    /// From the scrape before the phase to the one after it: the window the lookup counts cover.
    window: Duration,
}

struct Targets {
    known: HttpClient,
    flood: HttpClient,
    known_uri: Uri,
    flood_uri: Uri,
}

#[expect(clippy::too_many_arguments, reason = "one phase, spelled out")]
async fn phase(
    t: &Targets,
    a: &Args,
    flood: bool,
    len: Duration,
    pid: u32,
    probe: &HttpClient,
    admin: SocketAddr,
    seed: u64,
) -> Result<Phase, String> {
    let before = Lookups::of(&Scrape::get(probe, admin).await?);
    let scraped = Instant::now();
    let mark = CpuMark::now(pid);
    let start = Instant::now() + Duration::from_millis(20);
    let known: Vec<_> = (0..KNOWN)
        .map(|i| {
            let h = host(&known_name(i));
            tokio::spawn(open_loop(
                t.known.clone(),
                t.known_uri.clone(),
                move || h.clone(),
                KNOWN_SEND,
                start,
                i as f64 / KNOWN as f64,
                len,
                false,
            ))
        })
        .collect();
    let flood = flood.then(|| {
        let mut rng = fastrand::Rng::with_seed(seed);
        // The pool is the same in every phase (so its names stay in the negative cache across
        // phases only if the cache outlives the pause; it does not at 5 s).
        let mut pool_rng = fastrand::Rng::with_seed(0x9001);
        let pool: Vec<HeaderValue> = (0..a.pool)
            .map(|_| host(&random_name(&mut pool_rng)))
            .collect();
        tokio::spawn(open_loop(
            t.flood.clone(),
            t.flood_uri.clone(),
            move || {
                if rng.bool() {
                    pool[rng.usize(..pool.len())].clone()
                } else {
                    host(&random_name(&mut rng))
                }
            },
            a.flood_rate,
            start,
            0.0,
            len,
            true,
        ))
    });
    let mut known_samples = Vec::new();
    for k in known {
        known_samples.extend(k.await.unwrap());
    }
    let flood = match flood {
        Some(f) => f.await.unwrap(),
        None => Vec::new(),
    };
    let cpu = mark.since(pid);
    let after = Lookups::of(&Scrape::get(probe, admin).await?);
    let window = scraped.elapsed();
    Ok(Phase {
        known: known_samples,
        flood,
        cpu,
        lookups: after.minus(&before),
        len,
        window,
    })
}

#[expect(
    clippy::too_many_lines,
    reason = "setup, phases, then the checks in order"
)]
async fn drive(
    a: &Args,
    proxy: &mut Proxy,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Result<bool, String> {
    let probe = client();
    proxy.wait_ready(&probe, admin).await?;
    let pid = proxy.pid();
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
