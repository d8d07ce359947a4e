//! Loadtest scenario `canary`: canary weights changed under load; do tenants stay on their arm?
//!
//! Starts three local echo cells in this process, each with a `stable` target group (version
//! `v1`, two targets) and a `canary` group (`v2`, one target), writes a file registry of
//! `--tenants` tenants spread evenly over the cells, and runs the release `cellgate` binary on it
//! as its own process (pinned with `taskset` to `--proxy-cpu` when given; `loadtest/run.sh`
//! pins this driver to another core). `--clients` closed-loop keep-alive clients request random
//! tenants (by subdomain) for the whole run; every answer names the cell and target that served
//! it and the `x-tenant-id` it received, so each answer gives the tenant's arm.
//!
//! One phase per canary weight in `--weights` (default 5, 10, 50; stable gets 100 - w),
//! `--phase-secs` each after an unmeasured warm-up. Between phases the load stops, the registry
//! file is rewritten (by rename) with the next weights and the driver waits until
//! `/admin/cells` shows them before it measures again. Per phase it prints requests/s, errors,
//! the canary share of tenants and of requests per cell against the weight, stickiness
//! violations (a tenant answered by both arms within a phase), cross-cell leaks (an answer from
//! a cell other than the tenant's), the tenants that changed arm since the previous phase
//! against the minimum, and the proxy's own `cellgate_group_requests_total` against the
//! client's counts.
//!
//! Checks (exit 1 when one fails, 2 when the scenario could not run): no error, no leak, no
//! tenant answered as another tenant, no stickiness violation, no move against the weight
//! change (canary -> stable while the canary grows); the canary share of each cell's tenants
//! within 3 standard deviations of a binomial (n = the cell's tenants seen, p = the weight) of
//! the weight; every tenant's arm is the one `routing::canary::arm` gives (the documented hash,
//! fixed across builds); the proxy's group counters equal the client's counts; every weight
//! change shows in `/admin/cells` within 10 s. Errors and leaks in the warm-up count too.
//! Bounded in time and count, 127.0.0.1 only.

mod admin;
mod check;
mod load;
mod world;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use self::admin::{group_counters, wait_for_weight};
use self::check::{PhaseArms, Verdicts, checks, cross_check, moves, shares};
use self::load::{Tally, load};
use self::world::World;
use crate::common::{HttpClient, client, file_registry, flag_pairs, pct, write_registry};
use crate::frame::{Ready, run_proxied};
use crate::process::{Cpu, CpuMark, ProxyArgs, driver_cpus};

const CELLS: usize = 3;
/// Targets of each cell, in group order: `STABLE_TARGETS` of `stable`, then the canary's.
const STABLE_TARGETS: usize = 2;
const CANARY_TARGETS: usize = 1;
const PER_CELL: usize = STABLE_TARGETS + CANARY_TARGETS;
/// Group name and version label of each arm; an arm's index is its bit in a tenant's mask.
const ARMS: [(&str, &str); 2] = [("stable", "v1"), ("canary", "v2")];
const STABLE: usize = 0;
const CANARY: usize = 1;
/// How long a registry change may take to show in `/admin/cells` (the poll is 250 ms).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
const REGISTRY_POLL: &str = "250ms";
/// The share check's tolerance, in standard deviations of the binomial share.
const SIGMAS: f64 = 3.0;

struct Args {
    tenants: usize,
    clients: usize,
    phase: Duration,
    warmup: Duration,
    /// Canary weight of each phase (stable: 100 - w).
    weights: Vec<u32>,
    seed: u64,
    proxy: ProxyArgs,
}

fn args(argv: Vec<String>) -> Args {
    let mut a = Args {
        tenants: 3000,
        clients: 16,
        phase: Duration::from_secs(8),
        warmup: Duration::from_secs(1),
        weights: vec![5, 10, 50],
        seed: fastrand::u64(..),
        proxy: ProxyArgs::default(),
    };
    for (flag, value) in flag_pairs(argv, usage) {
        let num = |v: &str| -> u64 { v.parse().unwrap_or_else(|_| usage(v)) };
        match flag.as_str() {
            "--tenants" => a.tenants = num(&value) as usize,
            "--clients" => a.clients = num(&value) as usize,
            "--phase-secs" => a.phase = Duration::from_secs(num(&value)),
            "--warmup-secs" => a.warmup = Duration::from_secs(num(&value)),
            "--weights" => {
                a.weights = value
                    .split(',')
                    .map(|w| u32::try_from(num(w.trim())).unwrap_or(u32::MAX))
                    .collect();
            }
            "--seed" => a.seed = num(&value),
            other if a.proxy.take(other, &value) => {}
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if !(CELLS..=30_000).contains(&a.tenants)
        || !(1..=256).contains(&a.clients)
        || a.phase.is_zero()
        || a.phase > Duration::from_secs(60)
        || a.warmup > Duration::from_secs(30)
        || a.weights.is_empty()
        || a.weights.len() > 10
        || a.weights.iter().any(|&w| w > 100)
    {
        usage(
            "--tenants is 3..30000, --clients 1..256, --phase-secs 1..60, --warmup-secs 0..30, \
             --weights 1 to 10 canary weights of 0..100",
        );
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!(
        "canary: {why}\nflags: --tenants N (3000) --clients N (16) --phase-secs S (8) \
         --warmup-secs S (1) --weights W,W,.. (5,10,50: canary weight per phase, stable 100 - w) \
         --seed N (random) --proxy-bin PATH (target/release/cellgate) --proxy-cpu CPU (no pinning)"
    );
    std::process::exit(2)
}

pub fn run(argv: Vec<String>) -> i32 {
    let a = args(argv);
    // The proxy ends by itself after this long even if the driver dies without stopping it.
    let per_phase = a.phase + RELOAD_TIMEOUT + Duration::from_secs(5);
    let bound = a.warmup + per_phase * a.weights.len() as u32 + Duration::from_secs(30);
    run_proxied(
        "canary",
        &a.proxy,
        bound,
        async |dir, ports| {
            let world = Arc::new(World::start(a.tenants, ports.listen).await);
            let registry = dir.join("registry.toml");
            write_registry(&registry, &world.registry(a.weights[0])).unwrap();
            Ok(((world, registry), file_registry(REGISTRY_POLL)))
        },
        async |(world, registry), ready| drive(&a, &world, &registry, ready).await,
    )
}

fn print_setup(a: &Args) {
    println!(
        "scenario canary: {CELLS} cells x (stable {}: {STABLE_TARGETS} targets, canary {}: \
         {CANARY_TARGETS} target), {} tenants (~{} per cell), {} keep-alive clients requesting \
         random tenants by subdomain (seed {})",
        ARMS[STABLE].1,
        ARMS[CANARY].1,
        a.tenants,
        a.tenants / CELLS,
        a.clients,
        a.seed
    );
    println!(
        "{} phases x {} s after a {} s warm-up, canary weight {} (stable 100 - w), set by \
         rewriting the file registry; proxy: 1 worker, {}; driver and cells: {}",
        a.weights.len(),
        a.phase.as_secs(),
        a.warmup.as_secs(),
        a.weights
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" -> "),
        a.proxy.pinning(),
        driver_cpus()
    );
}

async fn drive(a: &Args, w: &Arc<World>, registry: &Path, ready: Ready) -> Result<bool, String> {
    let Ready {
        admin, pid, probe, ..
    } = ready;
    if wait_for_weight(&probe, admin, a.weights[0]).await.is_none() {
        return Err("/admin/cells does not show the initial weights".to_owned());
    }
    print_setup(a);

    let mut v = Verdicts::default();
    let clients: Vec<HttpClient> = (0..a.clients).map(|_| client()).collect();
    // Warm-up: the clients open their connections, the proxy its upstream pool. Its shares
    // are not measured, but an error or a leak in it still counts.
    if !a.warmup.is_zero() {
        let (t, took) = load(w, &clients, a.seed ^ 0x5eed, a.warmup).await;
        println!(
            "warm-up (canary {}): {} req in {:.2} s, errors {}, cross-cell leaks {}",
            a.weights[0],
            t.requests,
            took.as_secs_f64(),
            t.errors(),
            t.leaks
        );
        v.add(&t);
    }

    let mut prev: Option<PhaseArms> = None;
    for (k, &weight) in a.weights.iter().enumerate() {
        let phase = k + 1;
        if let Some(p) = &prev {
            write_registry(registry, &w.registry(weight)).map_err(|e| e.to_string())?;
            let Some(t) = wait_for_weight(&probe, admin, weight).await else {
                println!(
                    "weight change {} -> {weight}: /admin/cells did not show the new weights \
                     within {} s",
                    p.weight,
                    RELOAD_TIMEOUT.as_secs()
                );
                v.reloads_missed += 1;
                break;
            };
            println!(
                "weight change {} -> {weight}: registry file rewritten; /admin/cells showed the \
                 new weights after {} ms",
                p.weight,
                t.as_millis()
            );
        }
        let before = group_counters(&probe, admin).await?;
        let mark = CpuMark::now(pid);
        let seed = a.seed.wrapping_add(1000 * phase as u64);
        let (tally, took) = load(w, &clients, seed, a.phase).await;
        let cpu = mark.since(pid);
        let after = group_counters(&probe, admin).await?;

        print_phase(phase, weight, &tally, took, cpu);
        let arms = PhaseArms {
            weight,
            arm: tally.arms.iter().map(|&m| single_arm(m)).collect(),
        };
        shares(w, phase, &tally, &arms, &mut v);
        let sticky: Vec<&str> = (0..w.tenants.len())
            .filter(|&i| tally.arms[i] == (1 << STABLE | 1 << CANARY))
            .map(|i| w.tenants[i].as_str())
            .collect();
        // The documented hash, computed here, against what the proxy did.
        let predicted = w.predicted_arms(weight);
        let unpredicted = (0..w.tenants.len())
            .filter(|&i| arms.arm[i].is_some_and(|x| x != predicted[i]))
            .count() as u64;
        println!(
            "  stickiness violations {} (tenants answered by both arms){}; cross-cell leaks {}; \
             answers carrying another tenant's id {}; arms other than routing::canary::arm {}",
            sticky.len(),
            if sticky.is_empty() {
                String::new()
            } else {
                format!(": {}", sticky[..sticky.len().min(5)].join(", "))
            },
            tally.leaks,
            tally.wrong_tenant,
            unpredicted,
        );
        for e in &tally.examples {
            println!("    e.g. {e}");
        }
        v.counter_mismatches += cross_check(&tally, &before, &after);
        if let Some(p) = &prev {
            v.reverse += moves(w, phase, p, &arms);
        }
        v.add(&tally);
        v.sticky += sticky.len() as u64;
        v.unpredicted += unpredicted;
        prev = Some(arms);
    }
    Ok(checks(&v))
}

/// The arm of a tenant's answers in a phase: `None` when unseen or answered by both arms.
fn single_arm(mask: u8) -> Option<usize> {
    [STABLE, CANARY].into_iter().find(|&a| mask == 1 << a)
}

fn print_phase(phase: usize, weight: u32, t: &Tally, took: Duration, cpu: Cpu) {
    let mut lat = t.latency_us.clone();
    lat.sort_unstable();
    println!(
        "phase {phase} (stable {} / canary {weight}): {} req in {:.2} s ({:.0} req/s), errors {} \
         (status {}, transport {}, body {}); latency p50 {}, p99 {}, max {}; cpu % of a core: \
         proxy {:.1}, driver+cells {:.1}, other {:.1}",
        100 - weight,
        t.requests,
        took.as_secs_f64(),
        t.requests as f64 / took.as_secs_f64(),
        t.errors(),
        t.bad_status,
        t.transport,
        t.bad_body,
        ms(pct(&lat, 0.50)),
        ms(pct(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or(0)),
        cpu.proxy,
        cpu.driver,
        cpu.other,
    );
}

fn ms(us: u32) -> String {
    crate::common::ms(Duration::from_micros(u64::from(us)))
}
