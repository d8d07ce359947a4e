//! Loadtest scenario `evacuate`: a mass evacuation through the DynamoDB registry at a million
//! tenants. Does every node follow 1,000 moves a second within one poll, at a small control
//! plane cost, and never send a moved tenant back to its old cell?
//!
//! Starts three local echo cells and a dynamo-lite server (in this driver, on its own thread)
//! seeded with `--tenants` tenants (tenant `i` in cell `i mod 3`), then the release `cellgate`
//! as its own process (pinned with `taskset` to `--proxy-cpu`), which reads the table with its
//! real DynamoDB code: start-up scan, epoch polls every `--poll-interval`, deltas. After a
//! baseline of traffic alone (`--baseline-secs`), `--moves` random tenants are moved to the next
//! cell over `--move-secs`, through `Registry::commit_batch` (`--batch` records per
//! transaction, one epoch bump each), while open-loop traffic (`--rate` req/s, half for moved
//! tenants, half for unmoved ones) flows.
//!
//! Propagation per move: from the write's acknowledgement to the first answer for that tenant
//! from the new cell (timed at that request's send). Probing: one tenant per batch every
//! `--rep-every-ms` (2) until its new cell answers, then every other tenant of the batch every
//! `--member-every-ms` (5) until each does, at most `--probe-concurrency` probes in flight. The
//! members start after the representative because a batch is one epoch, and a delta applies
//! whole epochs in one snapshot swap; a member that still answers from the old cell is simply
//! probed again, so the assumption only saves requests and never hides a late move. Each
//! move's resolution (its first new answer received - the last old answer sent, for it or its
//! representative) is reported. Control-plane CPU: the proxy's CPU less its `cellgate-worker-N`
//! threads, from /proc/PID/stat and /proc/PID/task/*/stat, over the baseline and over the moves
//! (first write -> last move seen or the deadline).
//!
//! Checks (exit 1 when one fails, 2 when it could not run): every batch written, at 90% of the
//! asked rate or better; every move seen on its new cell before the deadline; propagation p99
//! at most the poll interval + 50 ms; control-plane CPU during the moves at most 10% of a core;
//! no answer from an old cell sent after the tenant's first new-cell answer came back; no
//! answer from a cell the tenant never had; no failed request. Bounded in time, 127.0.0.1 only.

mod load;
mod report;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cellgate::ops::Registry;
use http::Uri;
use tokio::sync::Semaphore;

use self::load::{CELLS, Log, Probing, ask, old_cell, traffic, write_moves};
use crate::common::{client, flag_pairs, ms, pct, verdict};
use crate::dynamo_lite::{self, CHILD_ENV, cell_record, store};
use crate::frame::{Ready, run_proxied};
use crate::process::{CpuMark, ProxyArgs, ThreadMark, driver_cpus};

const TABLE: &str = "cellgate";
/// The control plane's budget during the moves, % of one core.
const CPU_TARGET: f64 = 10.0;
/// Propagation p99 may exceed the poll interval by this much.
const SLACK: Duration = Duration::from_millis(50);

struct Args {
    tenants: usize,
    moves: usize,
    move_secs: f64,
    batch: usize,
    rate: f64,
    poll: Duration,
    baseline: Duration,
    settle: Duration,
    rep_every: Duration,
    member_every: Duration,
    concurrency: usize,
    seed: u64,
    proxy: ProxyArgs,
}

fn usage(why: &str) -> ! {
    eprintln!(
        "evacuate: {why}\nflags: --tenants N (1000000) --moves N (10000) --move-secs S (10) \
         --batch N (98) --rate R (1000) --poll-interval D (250ms) --baseline-secs S (5) \
         --settle-secs S (15) --rep-every-ms MS (2) --member-every-ms MS (5) \
         --probe-concurrency N (256) --seed N --proxy-bin PATH --proxy-cpu CPU"
    );
    std::process::exit(2)
}

fn args(argv: Vec<String>) -> Args {
    let mut a = Args {
        tenants: 1_000_000,
        moves: 10_000,
        move_secs: 10.0,
        batch: cellgate::placement::dynamo::write::MAX_BATCH,
        rate: 1000.0,
        poll: Duration::from_millis(250),
        baseline: Duration::from_secs(5),
        settle: Duration::from_secs(15),
        rep_every: Duration::from_millis(2),
        member_every: Duration::from_millis(5),
        concurrency: 256,
        seed: fastrand::u64(..),
        proxy: ProxyArgs::default(),
    };
    for (flag, value) in flag_pairs(argv, usage) {
        let num = |v: &str| -> f64 { v.parse().unwrap_or_else(|_| usage(v)) };
        let msecs = |v: &str| Duration::from_secs_f64(num(v) / 1e3);
        match flag.as_str() {
            "--tenants" => a.tenants = num(&value) as usize,
            "--moves" => a.moves = num(&value) as usize,
            "--move-secs" => a.move_secs = num(&value),
            "--batch" => a.batch = num(&value) as usize,
            "--rate" => a.rate = num(&value),
            "--poll-interval" => {
                a.poll = humantime::parse_duration(&value).unwrap_or_else(|_| usage(&value));
            }
            "--baseline-secs" => a.baseline = Duration::from_secs_f64(num(&value)),
            "--settle-secs" => a.settle = Duration::from_secs_f64(num(&value)),
            "--rep-every-ms" => a.rep_every = msecs(&value),
            "--member-every-ms" => a.member_every = msecs(&value),
            "--probe-concurrency" => a.concurrency = num(&value) as usize,
            "--seed" => a.seed = num(&value) as u64,
            other if a.proxy.take(other, &value) => {}
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let max_batch = cellgate::placement::dynamo::write::MAX_BATCH;
    if !(1_000..=5_000_000).contains(&a.tenants)
        || !(1..=100_000).contains(&a.moves)
        || a.moves > a.tenants / 2
        || !(1..=max_batch).contains(&a.batch)
        || !(0.5..=120.0).contains(&a.move_secs)
        || !(10.0..=20_000.0).contains(&a.rate)
        || a.poll < Duration::from_millis(10)
        || a.poll > Duration::from_secs(10)
        || a.baseline < Duration::from_secs(1)
        || a.baseline > Duration::from_secs(60)
        || a.settle > Duration::from_secs(120)
        || a.rep_every < Duration::from_millis(1)
        || a.member_every < Duration::from_millis(1)
        || !(1..=4096).contains(&a.concurrency)
    {
        usage(&format!(
            "--tenants is 1000..5000000, --moves 1..100000 and at most half the tenants, --batch \
             1..{max_batch}, --move-secs 0.5..120, --rate 10..20000, --poll-interval 10ms..10s, \
             --baseline-secs 1..60, --settle-secs 0..120, --rep-every-ms and --member-every-ms \
             at least 1, --probe-concurrency 1..4096"
        ));
    }
    a.proxy.env = CHILD_ENV
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    // The first scan of a few million items takes a while on a small machine.
    a.proxy.ready_within = Duration::from_secs(300);
    a
}

/// What setup hands the body.
struct World {
    _cells: Vec<Vec<cellgate::demo::EchoTarget>>,
    endpoint: String,
    seeded_in: Duration,
    proxy_started: Instant,
}

pub fn run(argv: Vec<String>) -> i32 {
    let a = args(argv);
    let bound = a.proxy.ready_within
        + a.baseline
        + Duration::from_secs_f64(a.move_secs)
        + a.settle
        + Duration::from_secs(60);
    run_proxied(
        "evacuate",
        &a.proxy,
        bound,
        async |_, _| {
            let cells = cellgate::demo::spawn_cells(CELLS, 1)
                .await
                .map_err(|e| format!("cannot start the echo cells: {e}"))?;
            let records: Vec<_> = cells
                .iter()
                .map(|c| cell_record(&c[0].cell, vec![format!("http://{}", c[0].addr)]))
                .collect();
            let began = Instant::now();
            let mut s = store::Store::default();
            store::seed(&mut s, TABLE, a.tenants, CELLS, &records);
            let seeded_in = began.elapsed();
            let addr = dynamo_lite::spawn_thread(Arc::new(Mutex::new(s)), 0)
                .map_err(|e| format!("cannot start dynamo-lite: {e}"))?;
            let endpoint = format!("http://{addr}");
            let registry = format!(
                "[registry]\nsource = \"dynamodb\"\ntable = \"{TABLE}\"\nregion = \"us-east-1\"\n\
                 endpoint_url = \"{endpoint}\"\npoll_interval = \"{}\"\n",
                humantime::format_duration(a.poll)
            );
            let world = World {
                _cells: cells,
                endpoint,
                seeded_in,
                proxy_started: Instant::now(),
            };
            Ok((world, registry))
        },
        async |world, ready| drive(&a, world, ready).await,
    )
}

/// `moves` distinct random tenants, in batches of `batch`.
fn pick(a: &Args) -> (Vec<usize>, Vec<bool>) {
    let mut rng = fastrand::Rng::with_seed(a.seed);
    let mut is_moved = vec![false; a.tenants];
    let mut moved = Vec::with_capacity(a.moves);
    while moved.len() < a.moves {
        let i = rng.usize(..a.tenants);
        if !is_moved[i] {
            is_moved[i] = true;
            moved.push(i);
        }
    }
    (moved, is_moved)
}

#[expect(
    clippy::too_many_lines,
    reason = "setup, phases, then the checks in order"
)]
async fn drive(a: &Args, world: World, ready: Ready) -> Result<bool, String> {
    let ready_after = world.proxy_started.elapsed();
    let Ready { listen, pid, .. } = ready;
    let uri: Uri = format!("http://{listen}/").parse().unwrap();
    let http = client();
    for i in [0, 1, 2, a.tenants - 1] {
        let o = ask(&http, &uri, i, false).await;
        if o.cell != old_cell(i) {
            return Err(format!(
                "{} is not served by its seeded cell before the test (cell index {})",
                store::tenant_name(i),
                o.cell
            ));
        }
    }
    let reg = Registry::new(dynamo_lite::sdk_client(&world.endpoint).await, TABLE);
    let (moved, is_moved) = pick(a);
    let batches: Vec<Vec<usize>> = moved.chunks(a.batch).map(<[usize]>::to_vec).collect();
    let period = Duration::from_secs_f64(a.move_secs / batches.len() as f64);
    let target_rate = a.moves as f64 / a.move_secs;
    println!(
        "scenario evacuate: {} tenants over {CELLS} cells in dynamo-lite (seeded in {:.1} s; the \
         proxy was ready {:.1} s after start, its first scan included); {} moves to the next \
         cell over {} s ({target_rate:.0}/s) in {} transactions of up to {} (one every {}), \
         traffic {}/s (half moved tenants, half unmoved); poll {}",
        a.tenants,
        world.seeded_in.as_secs_f64(),
        ready_after.as_secs_f64(),
        a.moves,
        a.move_secs,
        batches.len(),
        a.batch,
        ms(period),
        a.rate,
        humantime::format_duration(a.poll),
    );
    println!(
        "probing: per batch one tenant every {} until the new cell answers, then the others every \
         {}, at most {} in flight; proxy: 1 worker, {}; driver, cells and dynamo-lite: {}; seed {}",
        ms(a.rep_every),
        ms(a.member_every),
        a.concurrency,
        a.proxy.pinning(),
        driver_cpus(),
        a.seed
    );
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let (moved, is_moved) = (Arc::new(moved), Arc::new(is_moved));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(traffic(
        http.clone(),
        uri.clone(),
        Arc::clone(&moved),
        Arc::clone(&is_moved),
        a.rate,
        Arc::clone(&stop),
        Arc::clone(&log),
        a.seed,
    ));
    // Warm-up, then the baseline: traffic alone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (t0, c0) = (ThreadMark::now(pid), CpuMark::now(pid));
    tokio::time::sleep(a.baseline).await;
    let (base_threads, base_cpu) = (t0.since(pid), c0.since(pid));
    println!(
        "baseline ({:.0} s, traffic only): cpu % of a core: proxy control plane {:.1}, proxy \
         workers {:.1}; driver+cells+dynamo-lite {:.1}, other {:.1}",
        a.baseline.as_secs_f64(),
        base_threads.control,
        base_threads.workers,
        base_cpu.driver,
        base_cpu.other
    );

    let start = Instant::now() + Duration::from_millis(50);
    let deadline = start + Duration::from_secs_f64(a.move_secs) + a.settle;
    let (t1, c1) = (ThreadMark::now(pid), CpuMark::now(pid));
    let written = write_moves(
        reg,
        batches,
        start,
        period,
        Probing {
            rep_every: a.rep_every,
            member_every: a.member_every,
            deadline,
        },
        http.clone(),
        uri.clone(),
        Arc::clone(&log),
        Arc::new(Semaphore::new(a.concurrency)),
    )
    .await;
    let window = t1.since(pid);
    let cpu = c1.since(pid);
    let moves_window = start.elapsed();
    // A little more traffic: an old cell answering after the switch would show here.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.map_err(|e| format!("traffic task: {e}"))?;

    let obs = std::mem::take(&mut *log.lock().unwrap_or_else(PoisonError::into_inner));
    let r = report::analyse(&obs, &written, a.tenants);
    let failed_writes: Vec<&str> = written.iter().filter_map(|b| b.error.as_deref()).collect();
    let write_span = match (written.first(), written.last().and_then(|b| b.acked)) {
        (Some(f), Some(l)) => l.duration_since(f.started),
        _ => Duration::ZERO,
    };
    let mut write_lat: Vec<Duration> = written
        .iter()
        .filter_map(|b| b.acked.map(|t| t - b.started))
        .collect();
    write_lat.sort_unstable();
    let acked: usize = written
        .iter()
        .filter(|b| b.acked.is_some())
        .map(|b| b.tenants.len())
        .sum();
    let achieved = acked as f64 / write_span.as_secs_f64().max(1e-3);
    println!(
        "writes: {} transactions ({} failed), {acked} moves acknowledged over {:.2} s = \
         {achieved:.0} moves/s; transaction latency p50 {}, p99 {}",
        written.len(),
        failed_writes.len(),
        write_span.as_secs_f64(),
        ms(pct(&write_lat, 0.5)),
        ms(pct(&write_lat, 0.99)),
    );
    let p = &r.propagation;
    println!(
        "propagation (write acknowledged -> first answer from the new cell), {} moves: p50 {}, \
         p90 {}, p99 {}, max {}; not seen by the deadline {}; resolution p50 {}, p99 {}",
        p.len(),
        ms(pct(p, 0.5)),
        ms(pct(p, 0.9)),
        ms(pct(p, 0.99)),
        ms(p.last().copied().unwrap_or_default()),
        r.unpropagated,
        ms(pct(&r.resolution, 0.5)),
        ms(pct(&r.resolution, 0.99)),
    );
    println!(
        "moves window ({:.2} s, first write -> last move seen): cpu % of a core: proxy control \
         plane {:.1} (baseline {:.1}), proxy workers {:.1}; driver+cells+dynamo-lite {:.1}, \
         other {:.1}",
        moves_window.as_secs_f64(),
        window.control,
        base_threads.control,
        window.workers,
        cpu.driver,
        cpu.other,
    );
    println!(
        "answers: {} probes, {} traffic; failed {} probes, {} traffic; old cell after the new \
         one had answered {}; a cell the tenant never had {}; new cell before the write returned {}",
        r.probes, r.traffic, r.failed_probe, r.failed_traffic, r.stale, r.wrong_cell, r.before_ack
    );
    if !r.failed_by_status.is_empty() {
        let by: Vec<String> = r
            .failed_by_status
            .iter()
            .map(|(s, n)| match s {
                0 => format!("no answer {n}"),
                s => format!("status {s} {n}"),
            })
            .collect();
        println!(
            "failed requests: {}; slowest answer {}, slowest failed {}",
            by.join(", "),
            ms(r.slowest),
            ms(r.slowest_failed)
        );
    }
    if let Some(e) = failed_writes.first() {
        println!("first failed write: {e}");
    }

    let mut pass = true;
    let mut check = |what: String, ok: bool| {
        pass &= ok;
        println!("check {what} -> {}", verdict(ok));
    };
    check(
        format!(
            "every batch written at >= 90% of {target_rate:.0} moves/s: {} failed, {achieved:.0}/s",
            failed_writes.len()
        ),
        failed_writes.is_empty() && achieved >= 0.9 * target_rate,
    );
    check(
        format!(
            "every move seen on its new cell by the deadline: {} of {acked}",
            p.len()
        ),
        r.unpropagated == 0 && p.len() == acked,
    );
    let p99 = pct(p, 0.99);
    check(
        format!(
            "propagation p99 <= poll interval + {}: {} <= {}",
            ms(SLACK),
            ms(p99),
            ms(a.poll + SLACK)
        ),
        !p.is_empty() && p99 <= a.poll + SLACK,
    );
    check(
        format!(
            "control-plane cpu during the moves <= {CPU_TARGET:.0}% of a core at {achieved:.0} \
             changes/s: {:.1}%",
            window.control
        ),
        window.control <= CPU_TARGET,
    );
    check(
        format!(
            "no answer from an old cell after the new one had answered: {}",
            r.stale
        ),
        r.stale == 0,
    );
    check(
        format!(
            "no answer from a cell the tenant never had: {}",
            r.wrong_cell
        ),
        r.wrong_cell == 0,
    );
    check(
        format!(
            "no failed request: {} probes, {} traffic",
            r.failed_probe, r.failed_traffic
        ),
        r.failed_probe + r.failed_traffic == 0,
    );
    println!("result: {}", if pass { "PASS" } else { "FAIL" });
    Ok(pass)
}
