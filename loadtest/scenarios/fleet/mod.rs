//! Loadtest scenario `fleet`: three cellgate processes share one tenant's rate through Redis
//! (`[limits.fleet]`). Does the fleet hold the rate, survive Redis dying, notice a new node, and
//! what does it cost a request?
//!
//! Starts its own `redis-server` on a free 127.0.0.1 port (it kills and restarts it), three echo
//! cells in this process, a file registry, and three release `cellgate` processes sharing them
//! (each pinned with `taskset` to `--proxy-cpu` when given; `loadtest/run.sh` pins this driver,
//! and so the cells and Redis it starts, to another core). Tenants `noisy` and `quiet` are in
//! tier `fleet` (`--rate`/s, burst `--burst`, fleet-wide); the sync runs at the defaults
//! (`sync_interval` 20 ms, `heartbeat_interval` 1 s, `breaker_cooldown` 500 ms).
//!
//! One timeline under open-loop load (`noisy` at `--overload` x the rate, split `--split`
//! (70/20/10) over the three nodes; `quiet` at 0.3 x the rate, a third on each): the nodes first see each other (3 in
//! `cellgate_fleet_nodes`); *accuracy* (after a 2 s settle, `--accuracy-secs`); Redis SIGKILLed
//! for `--outage-secs`; restarted on the same port and *recovery* (`--recovery-secs`); a fourth
//! node started, watched for `--node4-secs`. Every node's `/metrics` is scraped every 50 ms
//! throughout. Then the nodes stop, and an A/B on one proxy at a time: `--ab-rate` req/s over
//! `--ab-tenants` tenants under every limit, fleet on (one node) against off (the same tiers,
//! per node), `--ab-rounds` interleaved rounds of `--ab-secs`, each on a quiet machine when it
//! comes within `--quiet-wait` (as `bench/ab.sh` waits).
//!
//! Checks (exit 1 when one fails, 2 when the scenario could not run): every node sees 3 nodes
//! before the load; `noisy`'s fleet-wide admitted rate within 10% of the rate over the accuracy
//! window and over the recovery window; `quiet` never anything but 200; `noisy` only 200 or 429,
//! no transport error; each node's breaker open within 1 s of the kill and closed within 2 s of
//! the restart; on the fallback each node admits `noisy` within 10% of its share (rate / 3, or
//! what it is sent when that is less), and the fleet within 10% of the sum of those (the rate,
//! with the default split); every node counts 4 nodes within 2 heartbeats of the fourth's start;
//! each node's `cellgate_ratelimit_rejections_total` equals the 429s it sent; the A/B: every
//! request 200, and the median p99 with the fleet on within max(20%, 1 ms) of off.

mod ab;
mod counters;
mod load;
mod report;
mod timeline;
mod world;

use std::time::Duration;

use crate::common::flag_pairs;
use crate::process::ProxyArgs;

/// The metrics poll, for the breaker and node-count times.
const POLL: Duration = Duration::from_millis(50);
/// The accuracy window starts this long after the load (the burst and the first flushes).
const SETTLE: Duration = Duration::from_secs(2);
/// Within this of the rate (fleet-wide) or of the share (per node on the fallback).
const RATE_TOLERANCE: f64 = 0.10;
/// `quiet` sends this share of the rate.
const QUIET_SHARE: f64 = 0.3;
/// The bounds the issue sets, at the default intervals.
const BREAKER_OPEN_WITHIN: Duration = Duration::from_secs(1);
const BREAKER_CLOSED_WITHIN: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The A/B: p99 with the fleet on may exceed off by this share or this much, whichever is more.
const AB_P99_SHARE: f64 = 0.20;
const AB_P99_FLOOR: Duration = Duration::from_millis(1);
/// The A/B measures on a quiet machine: other processes under this % of a core (as `bench/ab.sh`).
const QUIET_CPU: f64 = 10.0;

pub struct Args {
    pub rate: f64,
    pub burst: u32,
    pub overload: f64,
    /// How `noisy`'s load is split over nodes 1..3, in percent.
    pub split: [f64; 3],
    pub accuracy: Duration,
    pub outage: Duration,
    pub recovery: Duration,
    pub node4: Duration,
    pub ab_rounds: usize,
    pub ab_secs: Duration,
    pub ab_rate: f64,
    pub ab_tenants: usize,
    /// The most the A/B waits, in all, for a quiet machine.
    pub quiet_wait: Duration,
    pub redis_bin: String,
    pub proxy: ProxyArgs,
}

fn args(argv: Vec<String>) -> Args {
    let mut a = Args {
        rate: 200.0,
        burst: 20,
        overload: 5.0,
        split: [70.0, 20.0, 10.0],
        accuracy: Duration::from_secs(10),
        outage: Duration::from_secs(8),
        recovery: Duration::from_secs(8),
        node4: Duration::from_secs(4),
        ab_rounds: 5,
        ab_secs: Duration::from_secs(6),
        ab_rate: 2000.0,
        ab_tenants: 100,
        quiet_wait: Duration::from_secs(60),
        redis_bin: "redis-server".to_owned(),
        proxy: ProxyArgs::default(),
    };
    for (flag, value) in flag_pairs(argv, usage) {
        let num = |v: &str| -> f64 {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .unwrap_or_else(|| usage(v))
        };
        let secs = |v: &str| Duration::from_secs_f64(num(v));
        match flag.as_str() {
            "--rate" => a.rate = num(&value),
            "--burst" => a.burst = num(&value) as u32,
            "--overload" => a.overload = num(&value),
            "--split" => a.split = split(&value).unwrap_or_else(|| usage(&value)),
            "--accuracy-secs" => a.accuracy = secs(&value),
            "--outage-secs" => a.outage = secs(&value),
            "--recovery-secs" => a.recovery = secs(&value),
            "--node4-secs" => a.node4 = secs(&value),
            "--ab-rounds" => a.ab_rounds = num(&value) as usize,
            "--ab-secs" => a.ab_secs = secs(&value),
            "--ab-rate" => a.ab_rate = num(&value),
            "--ab-tenants" => a.ab_tenants = num(&value) as usize,
            "--quiet-wait" => {
                a.quiet_wait = Duration::from_secs(value.parse().unwrap_or_else(|_| usage(&value)));
            }
            "--redis-bin" => a.redis_bin = value,
            other if a.proxy.take(other, &value) => {}
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let s = |d: Duration| d.as_secs_f64();
    if !(10.0..=2000.0).contains(&a.rate)
        || a.burst == 0
        || !(1.5..=20.0).contains(&a.overload)
        || !(2.0..=60.0).contains(&s(a.accuracy))
        || !(3.0..=60.0).contains(&s(a.outage))
        || !(2.0..=60.0).contains(&s(a.recovery))
        || !(3.0..=30.0).contains(&s(a.node4))
        || !(1..=10).contains(&a.ab_rounds)
        || !(1.0..=60.0).contains(&s(a.ab_secs))
        || !(100.0..=20000.0).contains(&a.ab_rate)
        || !(1..=10_000).contains(&a.ab_tenants)
        || a.quiet_wait > Duration::from_secs(600)
    {
        usage(
            "--rate is 10..2000, --burst >= 1, --overload 1.5..20, --split three percentages \
             summing to 100, --accuracy-secs 2..60, \
             --outage-secs 3..60, --recovery-secs 2..60, --node4-secs 3..30, --ab-rounds 1..10, \
             --ab-secs 1..60, --ab-rate 100..20000, --ab-tenants 1..10000, --quiet-wait 0..600",
        );
    }
    a
}

/// `A,B,C`: three shares in percent, summing to 100.
fn split(v: &str) -> Option<[f64; 3]> {
    let p: Vec<f64> = v
        .split(',')
        .map(|x| x.trim().parse().ok())
        .collect::<Option<_>>()?;
    let p: [f64; 3] = p.try_into().ok()?;
    (p.iter().all(|x| *x >= 0.0) && (p.iter().sum::<f64>() - 100.0).abs() < 1e-6).then_some(p)
}

fn usage(why: &str) -> ! {
    eprintln!(
        "fleet: {why}\nflags: --rate R (200) --burst B (20) --overload X (5) --split A,B,C (70,20,10) \
         --accuracy-secs S (10) \
         --outage-secs S (8) --recovery-secs S (8) --node4-secs S (4) --ab-rounds N (5) \
         --ab-secs S (6) --ab-rate R (2000) --ab-tenants N (100) --quiet-wait S (60) --redis-bin PATH (redis-server) \
         --proxy-bin PATH (target/release/cellgate) --proxy-cpu CPU (no pinning)"
    );
    std::process::exit(2)
}

impl Args {
    /// The load timeline's length: settle and accuracy, the outage, the restart's 2 s bound and
    /// the recovery, the fourth node.
    fn load_len(&self) -> Duration {
        SETTLE + self.accuracy + self.outage + BREAKER_CLOSED_WITHIN + self.recovery + self.node4
    }

    /// How long any process this scenario starts may live: the whole run and a margin.
    fn bound(&self) -> Duration {
        let ab = (self.ab_secs + Duration::from_secs(1)) * (2 * self.ab_rounds as u32 + 2);
        self.load_len() + ab + self.quiet_wait + Duration::from_secs(90)
    }
}

pub fn run(argv: Vec<String>) -> i32 {
    let a = args(argv);
    world::run_fleet(&a)
}
