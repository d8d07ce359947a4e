//! Loadtest scenario `noisy`: one tenant floods at 10x its limit; do its neighbours notice?
//!
//! Starts three local echo cells in this process and the release `cellgate` binary as its own
//! process (pinned with `taskset` to `--proxy-cpu` when given; `loadtest/run.sh` pins this
//! driver to another core). Tenant `noisy` (tier `a`: 200/s, burst 20, in cell-1) sends 2000
//! req/s; ten tenants `quiet-01..10` (tier `b`: 100/s, burst 50, spread over cells 1-3) send
//! 50 req/s each. Every request asks its cell to wait `?sleep_ms=20` (a slow cell). Load is
//! open-loop: requests leave on a fixed schedule whatever the answers, over pooled keep-alive
//! connections (one pool for `noisy`, one for the quiet tenants).
//!
//! Phases alternate, `--rounds` times: *baseline* (the quiet tenants alone) then *flood* (the
//! same quiet load plus `noisy`), `--phase-secs` each, after an unmeasured warm-up. Checks:
//! `noisy`'s admitted rate in every flood phase is within 5% of its limit; the quiet tenants
//! get no 429, no 5xx (and no other failure) in any phase; the median over rounds of the quiet
//! tenants' p99 latency under flood is within 10% of the median baseline p99. Exits 1 when a
//! check fails, 2 when the scenario could not run. Bounded in time and count, 127.0.0.1 only.

use std::time::{Duration, Instant};

use http::Uri;

use crate::common::{
    HttpClient, Sample, cell_toml, client, file_registry, flag_pairs, host, median, ms, one,
    open_loop, pct, tenant_toml, verdict,
};
use crate::frame::{Ready, run_proxied};
use crate::process::{Cpu, CpuMark, ProxyArgs, driver_cpus};

const NOISY: &str = "noisy";
const NOISY_LIMIT: f64 = 200.0;
const NOISY_BURST: u32 = 20;
const NOISY_SEND: f64 = 10.0 * NOISY_LIMIT;
const QUIET: usize = 10;
const QUIET_LIMIT: f64 = 100.0;
const QUIET_BURST: u32 = 50;
const QUIET_SEND: f64 = 50.0;
const SLEEP_MS: u64 = 20;
/// Checks: admitted rate within 5% of the limit, p99 within 10% of the baseline.
const RATE_TOLERANCE: f64 = 0.05;
const P99_TOLERANCE: f64 = 0.10;

struct Args {
    rounds: usize,
    phase: Duration,
    warmup: Duration,
    proxy: ProxyArgs,
}

fn args(argv: Vec<String>) -> Args {
    let mut a = Args {
        rounds: 3,
        phase: Duration::from_secs(10),
        warmup: Duration::from_secs(3),
        proxy: ProxyArgs::default(),
    };
    for (flag, value) in flag_pairs(argv, usage) {
        let secs = |v: &str| Duration::from_secs(v.parse().unwrap_or_else(|_| usage(v)));
        match flag.as_str() {
            "--rounds" => a.rounds = value.parse().unwrap_or_else(|_| usage(&value)),
            "--phase-secs" => a.phase = secs(&value),
            "--warmup-secs" => a.warmup = secs(&value),
            other if a.proxy.take(other, &value) => {}
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if a.rounds == 0 || a.rounds > 20 || a.phase.is_zero() || a.phase > Duration::from_secs(120) {
        usage("--rounds is 1..20, --phase-secs 1..120");
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!(
        "noisy: {why}\nflags: --rounds N (3) --phase-secs S (10) --warmup-secs S (3) \
         --proxy-bin PATH (target/release/cellgate) --proxy-cpu CPU (no pinning)"
    );
    std::process::exit(2)
}

#[derive(Default)]
struct Phase {
    quiet: Vec<Sample>,
    noisy: Vec<Sample>,
    /// CPU used over the phase, in % of one core: the proxy, this driver, everything else.
    cpu: Cpu,
}

pub fn run(argv: Vec<String>) -> i32 {
    let a = args(argv);
    // The proxy ends by itself after this long even if the driver dies without stopping it.
    let bound = a.warmup + (a.phase + Duration::from_secs(8)) * (2 * a.rounds as u32);
    let bound = bound + Duration::from_secs(60);
    run_proxied(
        "noisy",
        &a.proxy,
        bound,
        async |dir, _| {
            let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
            std::fs::write(dir.join("registry.toml"), registry(&cells)).unwrap();
            Ok((cells, config_body()))
        },
        async |_cells, ready| drive(&a, ready).await,
    )
}

fn quiet_name(i: usize) -> String {
    format!("quiet-{:02}", i + 1)
}

fn registry(cells: &[Vec<cellgate::demo::EchoTarget>]) -> String {
    let mut s: String = cells.iter().map(|c| cell_toml(c)).collect();
    s.push_str(&tenant_toml(NOISY, "cell-1", Some("a"), 1));
    for i in 0..QUIET {
        let cell = format!("cell-{}", i % 3 + 1);
        s.push_str(&tenant_toml(&quiet_name(i), &cell, Some("b"), i as u64 + 2));
    }
    s
}

/// The config's `[registry]` and `[limits]` tables.
fn config_body() -> String {
    let limits = format!(
        r#"
[limits]
default_tier = "b"

[limits.tiers.a]
rate = {NOISY_LIMIT}
burst = {NOISY_BURST}

[limits.tiers.b]
rate = {QUIET_LIMIT}
burst = {QUIET_BURST}
"#
    );
    file_registry("1s") + &limits
}

async fn drive(a: &Args, ready: Ready) -> Result<bool, String> {
    let Ready {
        listen, pid, probe, ..
    } = ready;
    let uri: Uri = format!("http://{listen}/?sleep_ms={SLEEP_MS}")
        .parse()
        .unwrap();
    let quiet_client = client();
    let noisy_client = client();
    for name in std::iter::once(NOISY.to_owned()).chain((0..QUIET).map(quiet_name)) {
        let s = one(&probe, &uri, &host(&name), Duration::ZERO, false).await;
        if s.status != 200 {
            return Err(format!(
                "tenant {name} is not served before the test (status {})",
                s.status
            ));
        }
    }

    println!(
        "scenario noisy: tenant {NOISY} (tier a: {NOISY_LIMIT}/s, burst {NOISY_BURST}, cell-1) \
         sends {NOISY_SEND}/s; {} .. {} (tier b: {QUIET_LIMIT}/s, burst {QUIET_BURST}, cells 1-3) \
         send {QUIET_SEND}/s each; every request ?sleep_ms={SLEEP_MS}",
        quiet_name(0),
        quiet_name(QUIET - 1)
    );
    println!(
        "{} rounds x (baseline {} s, flood {} s) after a {} s warm-up; proxy: 1 worker, {}; \
         driver and cells: {}",
        a.rounds,
        a.phase.as_secs(),
        a.phase.as_secs(),
        a.warmup.as_secs(),
        a.proxy.pinning(),
        driver_cpus()
    );

    let targets = Targets {
        quiet: quiet_client,
        noisy: noisy_client,
        uri,
    };
    // Warm-up: both pools open their connections; nothing is measured.
    let _ = phase(&targets, true, a.warmup, pid).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut baseline_p99 = Vec::new();
    let mut flood_p99 = Vec::new();
    let mut admitted_rates = Vec::new();
    let mut quiet_failures = Failures::default();
    for round in 1..=a.rounds {
        for flood in [false, true] {
            let p = phase(&targets, flood, a.phase, pid).await;
            let q = QuietStats::of(&p.quiet);
            quiet_failures.add(&q);
            let name = if flood { "flood   " } else { "baseline" };
            println!(
                "round {round} {name}: quiet {} req, 2xx {}, 429 {}, 5xx {}, other {}, errors {}; \
                 p50 {}, p99 {}, max {}; send lag p99 {}; cpu % of a core: proxy {:.1}, \
                 driver+cells {:.1}, other {:.1}",
                q.n,
                q.ok,
                q.too_many,
                q.server_errors,
                q.other,
                q.errors,
                ms(q.p50),
                ms(q.p99),
                ms(q.max),
                ms(q.lag_p99),
                p.cpu.proxy,
                p.cpu.driver,
                p.cpu.other,
            );
            if flood {
                let n = NoisyStats::of(&p.noisy);
                let rate = n.admitted as f64 / a.phase.as_secs_f64();
                admitted_rates.push(rate);
                println!(
                    "round {round} flood   : {NOISY} {} req ({:.0}/s), admitted {} ({rate:.1}/s), \
                     429 {}, other {}",
                    p.noisy.len(),
                    p.noisy.len() as f64 / a.phase.as_secs_f64(),
                    n.admitted,
                    n.refused,
                    n.other
                );
                flood_p99.push(q.p99);
            } else {
                baseline_p99.push(q.p99);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    let mut pass = true;
    let (lo, hi) = (
        admitted_rates.iter().copied().fold(f64::INFINITY, f64::min),
        admitted_rates.iter().copied().fold(0.0, f64::max),
    );
    let worst = admitted_rates
        .iter()
        .map(|r| (r - NOISY_LIMIT).abs() / NOISY_LIMIT)
        .fold(0.0, f64::max);
    let ok = worst <= RATE_TOLERANCE;
    pass &= ok;
    println!(
        "check {NOISY} admitted rate within {:.0}% of {NOISY_LIMIT}/s in every flood phase: \
         {lo:.1} .. {hi:.1}/s (worst {:+.1}%) -> {}",
        RATE_TOLERANCE * 100.0,
        worst * 100.0,
        verdict(ok)
    );
    let f = &quiet_failures;
    let ok = f.too_many == 0 && f.server_errors == 0 && f.other == 0 && f.errors == 0;
    pass &= ok;
    println!(
        "check quiet tenants never refused or failed (all phases): 429 {}, 5xx {}, other {}, \
         errors {} -> {}",
        f.too_many,
        f.server_errors,
        f.other,
        f.errors,
        verdict(ok)
    );
    let (base, under) = (median(&baseline_p99), median(&flood_p99));
    let change = under.as_secs_f64() / base.as_secs_f64() - 1.0;
    let ok = change <= P99_TOLERANCE;
    pass &= ok;
    println!(
        "check quiet p99 under flood within {:.0}% of baseline (median of per-round p99): \
         baseline {} [{}], flood {} [{}] ({:+.1}%) -> {}",
        P99_TOLERANCE * 100.0,
        ms(base),
        list(&baseline_p99),
        ms(under),
        list(&flood_p99),
        change * 100.0,
        verdict(ok)
    );
    println!("result: {}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}

struct Targets {
    quiet: HttpClient,
    noisy: HttpClient,
    uri: Uri,
}

/// One phase: the quiet tenants (and `noisy` when `flood`) on schedule for `len`, then waits
/// for every answer.
async fn phase(t: &Targets, flood: bool, len: Duration, proxy: u32) -> Phase {
    let mark = CpuMark::now(proxy);
    let start = Instant::now() + Duration::from_millis(20);
    let quiet: Vec<_> = (0..QUIET)
        .map(|i| {
            // Each tenant's schedule is offset by a fraction of its period so the ten do not
            // send in lockstep.
            let offset = i as f64 / QUIET as f64;
            tokio::spawn(open_loop(
                t.quiet.clone(),
                t.uri.clone(),
                {
                    let h = host(&quiet_name(i));
                    move || h.clone()
                },
                QUIET_SEND,
                start,
                offset,
                len,
                false,
            ))
        })
        .collect();
    let noisy = flood.then(|| {
        tokio::spawn(open_loop(
            t.noisy.clone(),
            t.uri.clone(),
            {
                let h = host(NOISY);
                move || h.clone()
            },
            NOISY_SEND,
            start,
            0.0,
            len,
            false,
        ))
    });
    let mut p = Phase::default();
    for q in quiet {
        p.quiet.extend(q.await.unwrap());
    }
    if let Some(n) = noisy {
        p.noisy = n.await.unwrap();
    }
    p.cpu = mark.since(proxy);
    p
}

#[derive(Default)]
struct QuietStats {
    n: usize,
    ok: usize,
    too_many: usize,
    server_errors: usize,
    other: usize,
    errors: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    lag_p99: Duration,
}

impl QuietStats {
    fn of(s: &[Sample]) -> Self {
        let mut lat: Vec<Duration> = s.iter().map(|x| x.latency).collect();
        lat.sort_unstable();
        let mut lag: Vec<Duration> = s.iter().map(|x| x.lag).collect();
        lag.sort_unstable();
        let count = |f: &dyn Fn(u16) -> bool| s.iter().filter(|x| f(x.status)).count();
        Self {
            n: s.len(),
            ok: count(&|c| (200..300).contains(&c)),
            too_many: count(&|c| c == 429),
            server_errors: count(&|c| (500..600).contains(&c)),
            other: count(&|c| c != 0 && c != 429 && !(200..300).contains(&c) && c < 500),
            errors: count(&|c| c == 0),
            p50: pct(&lat, 0.50),
            p99: pct(&lat, 0.99),
            max: lat.last().copied().unwrap_or_default(),
            lag_p99: pct(&lag, 0.99),
        }
    }
}

#[derive(Default)]
struct Failures {
    too_many: usize,
    server_errors: usize,
    other: usize,
    errors: usize,
}

impl Failures {
    fn add(&mut self, q: &QuietStats) {
        self.too_many += q.too_many;
        self.server_errors += q.server_errors;
        self.other += q.other;
        self.errors += q.errors;
    }
}

struct NoisyStats {
    admitted: usize,
    refused: usize,
    other: usize,
}

impl NoisyStats {
    fn of(s: &[Sample]) -> Self {
        let admitted = s.iter().filter(|x| (200..300).contains(&x.status)).count();
        let refused = s.iter().filter(|x| x.status == 429).count();
        Self {
            admitted,
            refused,
            other: s.len() - admitted - refused,
        }
    }
}

fn list(v: &[Duration]) -> String {
    v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
}
