//! Loadtest scenario `noisy`: one tenant floods at 10x its limit; do its neighbours notice?
//!
//! Starts three local echo cells in this process and the release `cellgate` binary as its own
//! process (pinned with `taskset` to `--proxy-cpu` when given; `loadtest/noisy.sh` pins this
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
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const NOISY: &str = "noisy";
const NOISY_LIMIT: f64 = 200.0;
const NOISY_BURST: u32 = 20;
const NOISY_SEND: f64 = 10.0 * NOISY_LIMIT;
const QUIET: usize = 10;
const QUIET_LIMIT: f64 = 100.0;
const QUIET_BURST: u32 = 50;
const QUIET_SEND: f64 = 50.0;
const SLEEP_MS: u64 = 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Checks: admitted rate within 5% of the limit, p99 within 10% of the baseline.
const RATE_TOLERANCE: f64 = 0.05;
const P99_TOLERANCE: f64 = 0.10;
/// Linux reports process CPU time in ticks of 1/100 s (USER_HZ).
const TICKS_PER_SEC: f64 = 100.0;

struct Args {
    rounds: usize,
    phase: Duration,
    warmup: Duration,
    proxy_bin: PathBuf,
    proxy_cpu: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        rounds: 3,
        phase: Duration::from_secs(10),
        warmup: Duration::from_secs(3),
        proxy_bin: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/cellgate"),
        proxy_cpu: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let secs = |v: &str| Duration::from_secs(v.parse().unwrap_or_else(|_| usage(v)));
        match flag.as_str() {
            "--rounds" => a.rounds = value.parse().unwrap_or_else(|_| usage(&value)),
            "--phase-secs" => a.phase = secs(&value),
            "--warmup-secs" => a.warmup = secs(&value),
            "--proxy-bin" => a.proxy_bin = PathBuf::from(value),
            "--proxy-cpu" => a.proxy_cpu = Some(value),
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

/// The proxy's pid (its `timeout` wrapper's, when there is one), for the panic hook: the
/// release profile aborts on panic, so nothing else would stop it.
static PROXY_PID: OnceLock<u32> = OnceLock::new();

fn stop_proxy(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn main() {
    let a = args();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(&pid) = PROXY_PID.get() {
            stop_proxy(pid);
        }
        hook(info);
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let code = rt.block_on(run(a));
    std::process::exit(code);
}

/// One request's outcome.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// The status, or 0 when no response came (connection error, timeout).
    status: u16,
    /// From handing the request to the client to the end of the response body.
    latency: Duration,
    /// How late the request left against its schedule (the generator's own delay).
    lag: Duration,
}

#[derive(Default)]
struct Phase {
    quiet: Vec<Sample>,
    noisy: Vec<Sample>,
    /// CPU used over the phase, in % of one core: the proxy, this driver, everything else.
    cpu: Cpu,
}

#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    proxy: f64,
    driver: f64,
    other: f64,
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(300))
        .build(c)
}

async fn run(a: Args) -> i32 {
    if !a.proxy_bin.is_file() {
        eprintln!(
            "noisy: no proxy binary at {} (cargo build --release --bin cellgate, or use loadtest/noisy.sh)",
            a.proxy_bin.display()
        );
        return 2;
    }
    let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_port(), free_port());
    std::fs::write(dir.path().join("registry.toml"), registry(&cells)).unwrap();
    let config = dir.path().join("cellgate.toml");
    std::fs::write(&config, proxy_config(listen, admin)).unwrap();
    let log_path = dir.path().join("proxy.log");

    // The proxy ends by itself after this long even if the driver dies without stopping it.
    let bound = a.warmup + (a.phase + Duration::from_secs(8)) * (2 * a.rounds as u32);
    let bound = bound + Duration::from_secs(60);
    let mut proxy = match spawn_proxy(&a, &config, &log_path, bound) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("noisy: cannot start the proxy: {e}");
            return 2;
        }
    };
    let _ = PROXY_PID.set(proxy.id());
    let code = match drive(&a, &mut proxy, listen, admin).await {
        Ok(pass) => i32::from(!pass),
        Err(e) => {
            eprintln!("noisy: {e}");
            if let Ok(log) = std::fs::read_to_string(&log_path) {
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                eprintln!("proxy log (last lines):");
                for l in tail.iter().rev() {
                    eprintln!("  {l}");
                }
            }
            2
        }
    };
    stop_proxy(proxy.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = proxy.kill();
            let _ = proxy.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    code
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn quiet_name(i: usize) -> String {
    format!("quiet-{:02}", i + 1)
}

fn registry(cells: &[Vec<cellgate::demo::EchoTarget>]) -> String {
    let mut s = String::new();
    for c in cells {
        s.push_str(&format!(
            "[[cells]]\nid = \"{}\"\ntargets = [\"http://{}\"]\n\n",
            c[0].cell, c[0].addr
        ));
    }
    s.push_str(&format!(
        "[[tenants]]\nid = \"{NOISY}\"\ncell = \"cell-1\"\ntier = \"a\"\nversion = 1\n\n"
    ));
    for i in 0..QUIET {
        s.push_str(&format!(
            "[[tenants]]\nid = \"{}\"\ncell = \"cell-{}\"\ntier = \"b\"\nversion = {}\n\n",
            quiet_name(i),
            i % 3 + 1,
            i + 2
        ));
    }
    s
}

fn proxy_config(listen: SocketAddr, admin: SocketAddr) -> String {
    format!(
        r#"[server]
workers = 1
shutdown_grace = "2s"

[[listeners]]
address = "{listen}"

[admin]
address = "{admin}"

[tenant]
sources = ["subdomain"]
base_domains = ["app.test"]

[registry]
source = "file"
path = "registry.toml"
poll_interval = "1s"

[limits]
default_tier = "b"

[limits.tiers.a]
rate = {NOISY_LIMIT}
burst = {NOISY_BURST}

[limits.tiers.b]
rate = {QUIET_LIMIT}
burst = {QUIET_BURST}

[access_log]
enabled = false

[log]
level = "warn"
"#
    )
}

/// `timeout` (the proxy's own time bound) -> `taskset -c CPU` (when asked) -> `cellgate serve`.
fn spawn_proxy(a: &Args, config: &Path, log: &Path, bound: Duration) -> std::io::Result<Child> {
    let mut argv: Vec<String> = Vec::new();
    if Command::new("timeout")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        argv.extend(["timeout", "-s", "TERM", "-k", "5"].map(str::to_owned));
        argv.push(bound.as_secs().to_string());
    }
    if let Some(cpu) = &a.proxy_cpu {
        argv.extend(["taskset".to_owned(), "-c".to_owned(), cpu.clone()]);
    }
    argv.push(a.proxy_bin.display().to_string());
    argv.extend(["serve".to_owned(), "--config".to_owned()]);
    argv.push(config.display().to_string());
    let out = std::fs::File::create(log)?;
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
}

/// The proxy process itself: the `timeout` wrapper's child when there is one (`taskset`
/// execs the proxy, so it keeps the pid).
fn proxy_pid(wrapper: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "cellgate")
        })
        .unwrap_or(wrapper)
}

/// CPU ticks used so far by a process (user + system), from /proc/PID/stat.
fn process_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces), which ends with ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// Busy ticks of the whole machine (all cores), from /proc/stat.
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    v.iter().take(8).sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}

struct CpuMark {
    at: Instant,
    proxy: u64,
    driver: u64,
    machine: u64,
}

fn cpu_mark(proxy: u32) -> CpuMark {
    CpuMark {
        at: Instant::now(),
        proxy: process_ticks(&proxy.to_string()),
        driver: process_ticks("self"),
        machine: machine_busy_ticks(),
    }
}

fn cpu_since(m: &CpuMark, proxy: u32) -> Cpu {
    let now = cpu_mark(proxy);
    let secs = now.at.duration_since(m.at).as_secs_f64();
    let pct = |ticks: u64| ticks as f64 / TICKS_PER_SEC / secs * 100.0;
    let (p, d) = (now.proxy - m.proxy, now.driver - m.driver);
    Cpu {
        proxy: pct(p),
        driver: pct(d),
        other: pct((now.machine - m.machine).saturating_sub(p + d)),
    }
}

async fn drive(
    a: &Args,
    proxy: &mut Child,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Result<bool, String> {
    let probe = client();
    let ready_by = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = proxy.try_wait() {
            return Err(format!("the proxy exited at start-up ({status})"));
        }
        let req = Request::get(format!("http://{admin}/readyz"))
            .body(Empty::new())
            .unwrap();
        if let Ok(r) = probe.request(req).await
            && r.status() == StatusCode::OK
        {
            break;
        }
        if Instant::now() > ready_by {
            return Err("the proxy never became ready".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = proxy_pid(proxy.id());
    let uri: Uri = format!("http://{listen}/?sleep_ms={SLEEP_MS}")
        .parse()
        .unwrap();
    let quiet_client = client();
    let noisy_client = client();
    for name in std::iter::once(NOISY.to_owned()).chain((0..QUIET).map(quiet_name)) {
        let s = one(&probe, &uri, &host(&name), Duration::ZERO).await;
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
        a.proxy_cpu
            .as_deref()
            .map_or("not pinned".to_owned(), |c| format!("cpu {c}")),
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(|v| format!("cpus {}", v.trim()))
            })
            .unwrap_or_else(|| "not pinned".to_owned())
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

fn host(tenant: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{tenant}.app.test")).unwrap()
}

/// One phase: the quiet tenants (and `noisy` when `flood`) on schedule for `len`, then waits
/// for every answer.
async fn phase(t: &Targets, flood: bool, len: Duration, proxy: u32) -> Phase {
    let mark = cpu_mark(proxy);
    let start = Instant::now() + Duration::from_millis(20);
    let quiet: Vec<_> = (0..QUIET)
        .map(|i| {
            // Each tenant's schedule is offset by a fraction of its period so the ten do not
            // send in lockstep.
            let offset = i as f64 / QUIET as f64;
            tokio::spawn(open_loop(
                t.quiet.clone(),
                t.uri.clone(),
                host(&quiet_name(i)),
                QUIET_SEND,
                start,
                offset,
                len,
            ))
        })
        .collect();
    let noisy = flood.then(|| {
        tokio::spawn(open_loop(
            t.noisy.clone(),
            t.uri.clone(),
            host(NOISY),
            NOISY_SEND,
            start,
            0.0,
            len,
        ))
    });
    let mut p = Phase::default();
    for q in quiet {
        p.quiet.extend(q.await.unwrap());
    }
    if let Some(n) = noisy {
        p.noisy = n.await.unwrap();
    }
    p.cpu = cpu_since(&mark, proxy);
    p
}

/// Sends at `rate` per second from `start + offset periods` until `start + len`, whatever the
/// answers (open loop); returns every request's outcome once all have answered.
async fn open_loop(
    client: HttpClient,
    uri: Uri,
    host: HeaderValue,
    rate: f64,
    start: Instant,
    offset: f64,
    len: Duration,
) -> Vec<Sample> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let end = start + len;
    let mut due = start + period.mul_f64(offset);
    let mut sent = Vec::with_capacity((rate * len.as_secs_f64()) as usize + 1);
    while due < end {
        tokio::time::sleep_until(due.into()).await;
        let lag = due.elapsed();
        let (client, uri, host) = (client.clone(), uri.clone(), host.clone());
        sent.push(tokio::spawn(
            async move { one(&client, &uri, &host, lag).await },
        ));
        due += period;
    }
    let mut out = Vec::with_capacity(sent.len());
    for s in sent {
        out.push(s.await.unwrap());
    }
    out
}

async fn one(client: &HttpClient, uri: &Uri, host: &HeaderValue, lag: Duration) -> Sample {
    let req = Request::get(uri.clone())
        .header(header::HOST, host.clone())
        .body(Empty::new())
        .unwrap();
    let sent = Instant::now();
    let status = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let resp = client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.ok()?;
        Some(status)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(0);
    Sample {
        status,
        latency: sent.elapsed(),
        lag,
    }
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

/// The nearest-rank percentile of sorted values.
fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort_unstable();
    pct(&s, 0.5)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn list(v: &[Duration]) -> String {
    v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAILED" }
}
