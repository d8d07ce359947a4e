//! Phase 6 of the fleet scenario: what fleet accounting adds to a request. Two proxies with the
//! same tiers, one with `[limits.fleet]` on (the only node under its key prefix) and one without
//! (per-node limits), both started once and pinned like the others; each round loads one of them
//! at a time, open loop, with every tenant under its limits, so both admit everything and the
//! difference is the fleet's bookkeeping: per request, a slot lookup and a few atomics; per flush
//! (every 20 ms), one pipelined round trip to Redis for every tenant seen since the last one.
//!
//! Rounds alternate the order (on/off, off/on, ...) so a drift of the machine falls on both arms.
//! As `bench/ab.sh` does, each round waits for a quiet machine (other processes under
//! `QUIET_CPU` of a core for a second), and an arm disturbed meanwhile is measured again after a
//! quiet moment, at most twice, within `--quiet-wait` in all; one still disturbed is kept, marked
//! `*`, and counted in the summary.
//! Per round: requests, statuses, p50/p99/max as the client saw them, the proxy's CPU (user +
//! system from /proc/PID/stat, `process::CpuMark`) per request. The check compares medians over
//! rounds: p99 on within max(20%, 1 ms) of off (see loadtest/README.md for why that bound).

use std::time::{Duration, Instant};

use http::{HeaderValue, Uri};

use super::counters::NodeMetrics;
use super::load::wait_gauges;
use super::world::{AB_TIER, AB_TIER_BURST, AB_TIER_RATE, Node, World, ab_tenant, config_body};
use super::{AB_P99_FLOOR, AB_P99_SHARE, Args, QUIET_CPU};
use crate::common::{HttpClient, client, host, ms, open_loop, pct, verdict};
use crate::process::CpuMark;

struct Round {
    fleet: bool,
    n: usize,
    ok: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// Proxy CPU per request, µs.
    cpu_us: f64,
    proxy_pct: f64,
    driver_pct: f64,
    redis_pct: f64,
    /// The rest of the machine: neither the driver, the two proxies nor Redis.
    other_pct: f64,
}

/// CPU of the rest of the machine (% of a core) over one second, and of what this phase runs.
async fn other_now(on: &Node, off: &Node, redis: Option<u32>) -> f64 {
    let m = CpuMark::now(on.pid);
    let idle = CpuMark::now(off.pid);
    let r = redis.map(|p| (p, CpuMark::now(p)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = r.map_or(0.0, |(p, m)| m.since(p).proxy);
    (m.since(on.pid).other - idle.since(off.pid).proxy - r).max(0.0)
}

/// Waits (a second at a time, out of `budget`) until the rest of the machine is quiet.
async fn wait_quiet(on: &Node, off: &Node, redis: Option<u32>, budget: &mut Duration) {
    while !budget.is_zero() {
        let other = other_now(on, off, redis).await;
        *budget = budget.saturating_sub(Duration::from_secs(1));
        if other < QUIET_CPU {
            return;
        }
    }
}

/// One arm under load for `len`: the round's figures.
#[expect(clippy::too_many_arguments, reason = "one round, spelled out")]
async fn round(
    c: &HttpClient,
    node: &Node,
    idle: &Node,
    redis: Option<u32>,
    hosts: &[HeaderValue],
    rate: f64,
    len: Duration,
    fleet: bool,
) -> Round {
    let uri: Uri = format!("http://{}/", node.listen).parse().unwrap();
    let hosts = hosts.to_vec();
    let mut i = 0usize;
    let next = move || {
        i += 1;
        hosts[i % hosts.len()].clone()
    };
    let t0 = Instant::now();
    let mark = CpuMark::now(node.pid);
    let idle_mark = CpuMark::now(idle.pid);
    let redis_mark = redis.map(|p| (p, CpuMark::now(p)));
    let start = Instant::now() + Duration::from_millis(10);
    let samples = open_loop(c.clone(), uri, next, rate, start, 0.0, len, false).await;
    let cpu = mark.since(node.pid);
    let redis_pct = redis_mark.map_or(0.0, |(p, m)| m.since(p).proxy);
    let idle_pct = idle_mark.since(idle.pid).proxy;
    let secs = t0.elapsed().as_secs_f64();
    let mut lat: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    lat.sort_unstable();
    let n = samples.len();
    Round {
        fleet,
        n,
        ok: samples.iter().filter(|s| s.status == 200).count(),
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        max: lat.last().copied().unwrap_or_default(),
        cpu_us: cpu.proxy / 100.0 * secs * 1e6 / n.max(1) as f64,
        proxy_pct: cpu.proxy,
        driver_pct: cpu.driver,
        redis_pct,
        other_pct: (cpu.other - redis_pct - idle_pct).max(0.0),
    }
}

fn median_f(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    pct(v, 0.5)
}

/// Runs the A/B; whether its checks passed.
pub async fn run(a: &Args, w: &World) -> Result<bool, String> {
    let url = w.redis.url();
    let on_body = config_body(a, Some((url.as_str(), "ab:")));
    let off_body = config_body(a, None);
    let on = Node::start(&w.dir, "ab-on", &a.proxy, w.bound, &on_body, &w.probe).await?;
    let off = match Node::start(&w.dir, "ab-off", &a.proxy, w.bound, &off_body, &w.probe).await {
        Ok(n) => n,
        Err(e) => {
            Node::stop_all(vec![on]);
            return Err(e);
        }
    };
    let result = rounds(a, w, &on, &off).await;
    if !matches!(result, Ok(true)) {
        on.print_log_tail();
        off.print_log_tail();
    }
    Node::stop_all(vec![on, off]);
    result
}

async fn rounds(a: &Args, w: &World, on: &Node, off: &Node) -> Result<bool, String> {
    if wait_gauges(&w.probe, &[on.admin], Duration::from_secs(5), |g| {
        g.nodes == 1.0 && g.breaker == 0.0
    })
    .await
    .is_err()
    {
        return Err(
            "ab-on never counted itself as the one node with its breaker closed".to_owned(),
        );
    }
    let hosts: Vec<HeaderValue> = (0..a.ab_tenants).map(|i| host(&ab_tenant(i))).collect();
    let each = a.ab_rate / a.ab_tenants as f64;
    println!(
        "phase 6 A/B: one proxy at a time, {:.0} req/s open loop over {} tenants in turn (tier \
         {AB_TIER}: {AB_TIER_RATE}/s, burst {AB_TIER_BURST}; each sent {each:.1}/s); fleet on \
         (own key prefix: the only node) against off (the same tiers, per node); a 1 s warm-up \
         each, then {} rounds x {:.0} s per arm, order alternating, each after the machine is \
         quiet (other processes under {QUIET_CPU}% of a core; at most {} s of waiting in all)",
        a.ab_rate,
        a.ab_tenants,
        a.ab_rounds,
        a.ab_secs.as_secs_f64(),
        a.quiet_wait.as_secs()
    );
    let (c_on, c_off) = (client(), client());
    let warm = Duration::from_secs(1);
    let redis = w.redis.server_pid();
    let warm_on = round(&c_on, on, off, redis, &hosts, a.ab_rate, warm, true).await;
    let _ = round(&c_off, off, on, redis, &hosts, a.ab_rate, warm, false).await;
    let mut rounds = Vec::new();
    let mut budget = a.quiet_wait;
    let mut remeasured = 0;
    let mut disturbed = 0;
    for r in 0..a.ab_rounds {
        let order = if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        wait_quiet(on, off, redis, &mut budget).await;
        for fleet in order {
            let (c, n, idle) = if fleet {
                (&c_on, on, off)
            } else {
                (&c_off, off, on)
            };
            let mut attempt = 0;
            let x = loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let x = round(c, n, idle, redis, &hosts, a.ab_rate, a.ab_secs, fleet).await;
                attempt += 1;
                if x.other_pct < QUIET_CPU || attempt > 2 || budget.is_zero() {
                    break x;
                }
                println!(
                    "round {} fleet {:<3}: disturbed (other processes {:.1}% of a core, p99 {}); \
                     measured again after a quiet moment",
                    r + 1,
                    if fleet { "on" } else { "off" },
                    x.other_pct,
                    ms(x.p99)
                );
                remeasured += 1;
                wait_quiet(on, off, redis, &mut budget).await;
            };
            let mark = if x.other_pct < QUIET_CPU {
                ""
            } else {
                disturbed += 1;
                " *"
            };
            println!(
                "round {} fleet {:<3}: {} req, 200 {}; p50 {}, p99 {}, max {}; proxy cpu {:.1}% \
                 of a core = {:.1} µs/req; driver+cells {:.1}%, redis-server {:.1}%, other \
                 {:.1}%{mark}",
                r + 1,
                if fleet { "on" } else { "off" },
                x.n,
                x.ok,
                ms(x.p50),
                ms(x.p99),
                ms(x.max),
                x.proxy_pct,
                x.cpu_us,
                x.driver_pct,
                x.redis_pct,
                x.other_pct
            );
            rounds.push(x);
        }
    }
    let arm = |fleet: bool| rounds.iter().filter(move |x| x.fleet == fleet);
    // Median, min and max over one arm's rounds.
    let stat = |fleet: bool, f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = arm(fleet).map(f).collect();
        let m = median_f(&mut v);
        (m, v[0], v[v.len() - 1])
    };
    let ms3 = |(m, lo, hi): (f64, f64, f64)| {
        format!("{:.2} ms [{:.2}-{:.2}]", m * 1e3, lo * 1e3, hi * 1e3)
    };
    let us3 = |(m, lo, hi): (f64, f64, f64)| format!("{m:.1} µs/req [{lo:.1}-{hi:.1}]");
    let (on_p50, off_p50) = (
        stat(true, |x| x.p50.as_secs_f64()),
        stat(false, |x| x.p50.as_secs_f64()),
    );
    let (on_p99, off_p99) = (
        stat(true, |x| x.p99.as_secs_f64()),
        stat(false, |x| x.p99.as_secs_f64()),
    );
    let (on_c, off_c) = (stat(true, |x| x.cpu_us), stat(false, |x| x.cpu_us));
    println!(
        "A/B: {remeasured} arms measured again, {disturbed} kept though disturbed (*: other \
         processes >= {QUIET_CPU}% of a core), {:.0} s spent waiting for a quiet machine",
        (a.quiet_wait - budget).as_secs_f64()
    );
    println!(
        "A/B medians [min-max] over {} rounds: off p50 {}, p99 {}, cpu {}; on p50 {}, p99 {}, cpu \
         {}; on/off: p50 x{:.2}, p99 x{:.2} ({:+.3} ms), cpu/req x{:.2} ({:+.1} µs)",
        a.ab_rounds,
        ms3(off_p50),
        ms3(off_p99),
        us3(off_c),
        ms3(on_p50),
        ms3(on_p99),
        us3(on_c),
        on_p50.0 / off_p50.0,
        on_p99.0 / off_p99.0,
        (on_p99.0 - off_p99.0) * 1e3,
        on_c.0 / off_c.0,
        on_c.0 - off_c.0
    );
    let (on_p99, off_p99, on_cpu, off_cpu) = (on_p99.0, off_p99.0, on_c.0, off_c.0);
    let d = Duration::from_secs_f64;
    // The fleet arm's own account: it must have reconciled through Redis, not run on the
    // fallback (which would make it per-node limits under another name).
    let m = NodeMetrics::scrape(&w.probe, on.admin).await?;
    let on_requests = warm_on.n + arm(true).map(|x| x.n).sum::<usize>();
    let keys_per_req = m.keys() / on_requests.max(1) as f64;
    println!(
        "ab-on over its warm-up and rounds: {on_requests} requests; {}; flushed keys per request \
         {keys_per_req:.2}, so the added cpu is {:.1} µs per flushed key",
        m.sync_line(),
        (on_cpu - off_cpu) / keys_per_req.max(1e-9)
    );
    let fleet_ok = m.fallback() < 1.0 && m.keys() > 0.0;
    println!(
        "check the fleet arm reconciled through Redis (keys flushed, under 1 s on the fallback): \
         {:.0} keys, fallback {:.2} s -> {}",
        m.keys(),
        m.fallback(),
        verdict(fleet_ok)
    );
    let (n, ok) = rounds
        .iter()
        .fold((0, 0), |(n, ok), x| (n + x.n, ok + x.ok));
    let all_ok = n == ok;
    println!(
        "check every A/B request answered 200 (under every limit): {ok} of {n} -> {}",
        verdict(all_ok)
    );
    let allowed = (off_p99 * AB_P99_SHARE).max(AB_P99_FLOOR.as_secs_f64());
    let p99_ok = on_p99 <= off_p99 + allowed;
    println!(
        "check p99 with the fleet on within max({:.0}%, {}) of off (medians over rounds): on {} \
         <= off {} + {} -> {}",
        AB_P99_SHARE * 100.0,
        ms(AB_P99_FLOOR),
        ms(d(on_p99)),
        ms(d(off_p99)),
        ms(d(allowed)),
        verdict(p99_ok)
    );
    Ok(fleet_ok && all_ok && p99_ok)
}
