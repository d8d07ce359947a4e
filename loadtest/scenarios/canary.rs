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

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cellgate::config::file::{FileCell, FileGroup};
use cellgate::placement::Cell;
use cellgate::routing::canary;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};

use crate::common::{
    Cpu, CpuMark, HttpClient, Proxy, ProxyArgs, REQUEST_TIMEOUT, Scrape, client, driver_cpus,
    free_port, get, host, pct, verdict, write_registry,
};

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
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
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

/// What the driver knows about the setup: tenants, their cells, the echo targets.
struct World {
    tenants: Vec<String>,
    /// `Host` of each tenant's requests.
    hosts: Vec<HeaderValue>,
    /// Echo target name -> global target index (`cell * PER_CELL + position in the cell`).
    target_index: HashMap<String, usize>,
    /// `http://ADDR` of each target, by global index.
    target_urls: Vec<String>,
    /// `cell-1`.. by cell index.
    cell_names: Vec<String>,
    uri: Uri,
}

impl World {
    /// Tenants are spread over the cells in turn: tenant `i` lives in cell `i % CELLS`.
    fn cell_of_tenant(i: usize) -> usize {
        i % CELLS
    }

    fn cell_of_target(t: usize) -> usize {
        t / PER_CELL
    }

    fn arm_of_target(t: usize) -> usize {
        if t % PER_CELL < STABLE_TARGETS {
            STABLE
        } else {
            CANARY
        }
    }

    fn cell_name(c: usize) -> String {
        format!("cell-{}", c + 1)
    }

    fn tenants_of_cell(&self, c: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.tenants.len()).filter(move |&i| Self::cell_of_tenant(i) == c)
    }

    /// The registry's cells with canary weight `w`, as the file's `[[cells]]` records.
    fn file_cells(&self, w: u32) -> Vec<FileCell> {
        (0..CELLS)
            .map(|c| {
                let urls = &self.target_urls[c * PER_CELL..(c + 1) * PER_CELL];
                let group = |arm: usize, weight: u32, targets: &[String]| FileGroup {
                    name: ARMS[arm].0.to_owned(),
                    version: Some(ARMS[arm].1.to_owned()),
                    weight,
                    targets: targets.to_vec(),
                };
                FileCell {
                    id: Self::cell_name(c),
                    state: None,
                    targets: Vec::new(),
                    groups: vec![
                        group(STABLE, 100 - w, &urls[..STABLE_TARGETS]),
                        group(CANARY, w, &urls[STABLE_TARGETS..]),
                    ],
                    preserve_host: None,
                    max_in_flight: None,
                    wave: None,
                }
            })
            .collect()
    }

    fn registry(&self, w: u32) -> String {
        let mut s = format!("# canary loadtest: canary weight {w}, stable {}\n", 100 - w);
        for fc in self.file_cells(w) {
            s.push_str(&format!("\n[[cells]]\nid = \"{}\"\n", fc.id));
            for g in &fc.groups {
                let targets: Vec<String> = g.targets.iter().map(|t| format!("\"{t}\"")).collect();
                s.push_str(&format!(
                    "\n[[cells.groups]]\nname = \"{}\"\nversion = \"{}\"\nweight = {}\ntargets = [{}]\n",
                    g.name,
                    g.version.as_deref().unwrap_or(&g.name),
                    g.weight,
                    targets.join(", ")
                ));
            }
        }
        for (i, t) in self.tenants.iter().enumerate() {
            s.push_str(&format!(
                "\n[[tenants]]\nid = \"{t}\"\ncell = \"{}\"\nversion = {}\n",
                Self::cell_name(Self::cell_of_tenant(i)),
                i + 1
            ));
        }
        s
    }

    /// Each tenant's arm under canary weight `w` by the documented hash
    /// (`routing::canary::arm`), computed here without the proxy.
    fn predicted_arms(&self, w: u32) -> Vec<usize> {
        let cells: Vec<Cell> = self
            .file_cells(w)
            .iter()
            .enumerate()
            .map(|(c, fc)| Cell::from_file(fc, &format!("cells[{c}]")).unwrap())
            .collect();
        self.tenants
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let cell = &cells[Self::cell_of_tenant(i)];
                let g = canary::arm(&cell.groups, t).unwrap();
                ARMS.iter()
                    .position(|(name, _)| *name == &*cell.groups[g].name)
                    .unwrap()
            })
            .collect()
    }
}

pub fn run(argv: Vec<String>) -> i32 {
    let a = args(argv);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(canary_run(a))
}

async fn canary_run(a: Args) -> i32 {
    if !a.proxy.bin.is_file() {
        eprintln!(
            "canary: no proxy binary at {} (cargo build --release --bin cellgate, or use loadtest/run.sh canary)",
            a.proxy.bin.display()
        );
        return 2;
    }
    let mut targets = Vec::with_capacity(CELLS * PER_CELL);
    for c in 0..CELLS {
        let cell = World::cell_name(c);
        for (arm, n) in [(STABLE, STABLE_TARGETS), (CANARY, CANARY_TARGETS)] {
            for k in 1..=n {
                let name = format!("{cell}-{}-{k}", ARMS[arm].0);
                targets.push(
                    cellgate::demo::spawn_echo_target(&cell, &name)
                        .await
                        .unwrap(),
                );
            }
        }
    }
    let tenants: Vec<String> = (1..=a.tenants).map(|i| format!("tenant-{i:05}")).collect();
    let (listen, admin) = (free_port(), free_port());
    let world = Arc::new(World {
        hosts: tenants.iter().map(|t| host(t)).collect(),
        tenants,
        target_index: targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect(),
        target_urls: targets
            .iter()
            .map(|t| format!("http://{}", t.addr))
            .collect(),
        cell_names: (0..CELLS).map(World::cell_name).collect(),
        uri: format!("http://{listen}/").parse().unwrap(),
    });

    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.toml");
    write_registry(&registry, &world.registry(a.weights[0])).unwrap();
    let config = dir.path().join("cellgate.toml");
    std::fs::write(&config, proxy_config(listen, admin)).unwrap();
    let log_path = dir.path().join("proxy.log");

    // The proxy ends by itself after this long even if the driver dies without stopping it.
    let per_phase = a.phase + RELOAD_TIMEOUT + Duration::from_secs(5);
    let bound = a.warmup + per_phase * a.weights.len() as u32 + Duration::from_secs(30);
    let mut proxy = match Proxy::spawn(&a.proxy, &config, &log_path, bound) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("canary: cannot start the proxy: {e}");
            return 2;
        }
    };
    let code = match drive(&a, &world, &registry, &mut proxy, admin).await {
        Ok(pass) => i32::from(!pass),
        Err(e) => {
            eprintln!("canary: {e}");
            2
        }
    };
    if code != 0 {
        proxy.print_log_tail();
    }
    proxy.stop();
    code
}

fn proxy_config(listen: SocketAddr, admin: SocketAddr) -> String {
    crate::common::proxy_config(listen, admin, &crate::common::file_registry(REGISTRY_POLL))
}

/// The weights `/admin/cells` shows, by cell and arm (`None`: no such group).
async fn admin_weights(client: &HttpClient, admin: SocketAddr) -> Option<Vec<[Option<u32>; 2]>> {
    let (status, body) = get(client, format!("http://{admin}/admin/cells"))
        .await
        .ok()?;
    if status != StatusCode::OK {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let mut out = vec![[None, None]; CELLS];
    for cell in v["cells"].as_array()? {
        let Some(c) = (0..CELLS).find(|&c| cell["cell"] == World::cell_name(c).as_str()) else {
            continue;
        };
        for g in cell["groups"].as_array()? {
            if let Some(arm) = ARMS.iter().position(|(name, _)| g["name"] == *name) {
                out[c][arm] = g["weight"].as_u64().and_then(|w| u32::try_from(w).ok());
            }
        }
    }
    Some(out)
}

/// Waits until `/admin/cells` shows canary weight `w` (and stable 100 - w) in every cell.
async fn wait_for_weight(client: &HttpClient, admin: SocketAddr, w: u32) -> Option<Duration> {
    let start = Instant::now();
    let want = [Some(100 - w), Some(w)];
    while start.elapsed() < RELOAD_TIMEOUT {
        if admin_weights(client, admin)
            .await
            .is_some_and(|cells| cells.iter().all(|c| *c == want))
        {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// (cell, group, version, status_class): the labels of `cellgate_group_requests_total`.
type CounterKey = (String, String, String, String);
type GroupCounters = HashMap<CounterKey, u64>;

async fn group_counters(client: &HttpClient, admin: SocketAddr) -> Result<GroupCounters, String> {
    let scrape = Scrape::get(client, admin).await?;
    let mut out = GroupCounters::new();
    for (l, value) in scrape.series("cellgate_group_requests_total") {
        let key = |k: &str| l.get(k).cloned().unwrap_or_default();
        out.insert(
            (
                key("cell"),
                key("group"),
                key("version"),
                key("status_class"),
            ),
            value as u64,
        );
    }
    Ok(out)
}

/// The echo's answer, as far as this scenario reads it.
#[derive(serde::Deserialize)]
struct Echo<'a> {
    #[serde(borrow)]
    cell: Cow<'a, str>,
    #[serde(borrow)]
    target: Cow<'a, str>,
    /// The `x-tenant-id` the target received.
    #[serde(borrow)]
    tenant: Option<Cow<'a, str>>,
}

/// What the clients saw in one phase.
struct Tally {
    /// Per tenant, a bit per arm that answered it from its own cell (bit `STABLE`, `CANARY`).
    arms: Vec<u8>,
    /// Answers per global target index (own cell or not).
    per_target: Vec<u64>,
    requests: u64,
    /// Answers with a status other than 200.
    bad_status: u64,
    /// No answer: connection error or timeout.
    transport: u64,
    /// A 200 whose body does not name a known cell and target.
    bad_body: u64,
    /// Answered by a cell other than the tenant's.
    leaks: u64,
    /// The target received another tenant's `x-tenant-id` (or none).
    wrong_tenant: u64,
    /// Microseconds from sending each request to the end of its answer.
    latency_us: Vec<u32>,
    /// A few examples of what went wrong, for the report.
    examples: Vec<String>,
    /// When the last answer arrived.
    done: Option<Instant>,
}

impl Tally {
    fn new(tenants: usize) -> Self {
        Self {
            arms: vec![0; tenants],
            per_target: vec![0; CELLS * PER_CELL],
            requests: 0,
            bad_status: 0,
            transport: 0,
            bad_body: 0,
            leaks: 0,
            wrong_tenant: 0,
            latency_us: Vec::new(),
            examples: Vec::new(),
            done: None,
        }
    }

    fn errors(&self) -> u64 {
        self.bad_status + self.transport + self.bad_body
    }

    fn example(&mut self, what: String) {
        if self.examples.len() < 5 && !self.examples.contains(&what) {
            self.examples.push(what);
        }
    }

    fn record(&mut self, w: &World, tenant: usize, answer: Result<(StatusCode, Bytes), String>) {
        self.requests += 1;
        let name = &w.tenants[tenant];
        let (status, body) = match answer {
            Ok(a) => a,
            Err(e) => {
                self.transport += 1;
                self.example(format!("{name}: {e}"));
                return;
            }
        };
        if status != StatusCode::OK {
            self.bad_status += 1;
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            self.example(format!("{name}: status {status}: {}", text.trim()));
            return;
        }
        let Some((echo, t)) = serde_json::from_slice::<Echo<'_>>(&body)
            .ok()
            .and_then(|e| Some((w.target_index.get(e.target.as_ref()).copied()?, e)))
            .map(|(t, e)| (e, t))
        else {
            self.bad_body += 1;
            self.example(format!("{name}: unreadable answer"));
            return;
        };
        self.per_target[t] += 1;
        if echo.tenant.as_deref() != Some(name.as_str()) {
            self.wrong_tenant += 1;
            self.example(format!(
                "{name}: target {} received x-tenant-id {:?}",
                echo.target, echo.tenant
            ));
        }
        let home = World::cell_of_tenant(tenant);
        if World::cell_of_target(t) != home || echo.cell != w.cell_names[home] {
            self.leaks += 1;
            self.example(format!(
                "{name} (of {}): answered by {} / {}",
                World::cell_name(home),
                echo.cell,
                echo.target
            ));
            return;
        }
        self.arms[tenant] |= 1 << World::arm_of_target(t);
    }

    fn merge(&mut self, o: &Tally) {
        for (a, b) in self.arms.iter_mut().zip(&o.arms) {
            *a |= b;
        }
        for (a, b) in self.per_target.iter_mut().zip(&o.per_target) {
            *a += b;
        }
        self.requests += o.requests;
        self.bad_status += o.bad_status;
        self.transport += o.transport;
        self.bad_body += o.bad_body;
        self.leaks += o.leaks;
        self.wrong_tenant += o.wrong_tenant;
        self.latency_us.extend_from_slice(&o.latency_us);
        for e in &o.examples {
            self.example(e.clone());
        }
        self.done = self.done.max(o.done);
    }

    /// Answers from one arm of one cell.
    fn arm_requests(&self, cell: usize, arm: usize) -> u64 {
        (cell * PER_CELL..(cell + 1) * PER_CELL)
            .filter(|&t| World::arm_of_target(t) == arm)
            .map(|t| self.per_target[t])
            .sum()
    }
}

/// One closed-loop client: random tenants, one request at a time over its keep-alive
/// connection, until `end`.
async fn client_loop(w: Arc<World>, client: HttpClient, seed: u64, end: Instant) -> Tally {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tally = Tally::new(w.tenants.len());
    while Instant::now() < end {
        let tenant = rng.usize(..w.tenants.len());
        let req = Request::get(w.uri.clone())
            .header(header::HOST, w.hosts[tenant].clone())
            .body(Empty::new())
            .unwrap();
        let sent = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let r = client.request(req).await.map_err(|e| e.to_string())?;
            let status = r.status();
            let body = r.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body.to_bytes()))
        })
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()));
        let us = sent.elapsed().as_micros();
        tally.latency_us.push(u32::try_from(us).unwrap_or(u32::MAX));
        tally.record(&w, tenant, answer);
    }
    tally.done = Some(Instant::now());
    tally
}

/// Every client for `len`; returns the merged tally and the time from start to last answer.
async fn load(
    w: &Arc<World>,
    clients: &[HttpClient],
    seed: u64,
    len: Duration,
) -> (Tally, Duration) {
    let start = Instant::now();
    let end = start + len;
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            tokio::spawn(client_loop(
                Arc::clone(w),
                c.clone(),
                seed.wrapping_add(i as u64),
                end,
            ))
        })
        .collect();
    let mut all = Tally::new(w.tenants.len());
    for t in tasks {
        all.merge(&t.await.unwrap());
    }
    let took = all.done.map_or(len, |d| d.duration_since(start));
    (all, took)
}

/// One measured phase: its weight and each tenant's arm.
struct PhaseArms {
    weight: u32,
    /// Per tenant: `Some(arm)` when answered by exactly one arm of its own cell.
    arm: Vec<Option<usize>>,
}

/// Totals over the run, for the checks.
#[derive(Default)]
struct Verdicts {
    requests: u64,
    errors: u64,
    leaks: u64,
    wrong_tenant: u64,
    sticky: u64,
    reverse: u64,
    /// (cell, phase) pairs whose canary share of tenants is outside the tolerance.
    share_failures: u64,
    shares_checked: u64,
    /// Worst |deviation| / tolerance of a cell's canary share of tenants, and where.
    worst_share: (f64, String),
    unpredicted: u64,
    counter_mismatches: u64,
    reloads_missed: u64,
}

impl Verdicts {
    fn add(&mut self, t: &Tally) {
        self.requests += t.requests;
        self.errors += t.errors();
        self.leaks += t.leaks;
        self.wrong_tenant += t.wrong_tenant;
    }
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

async fn drive(
    a: &Args,
    w: &Arc<World>,
    registry: &Path,
    proxy: &mut Proxy,
    admin: SocketAddr,
) -> Result<bool, String> {
    let probe = client();
    proxy.wait_ready(&probe, admin).await?;
    if wait_for_weight(&probe, admin, a.weights[0]).await.is_none() {
        return Err("/admin/cells does not show the initial weights".to_owned());
    }
    let pid = proxy.pid();
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

/// Per cell: the canary share of tenants against the weight (checked: within `SIGMAS`
/// standard deviations of a binomial share, n = the cell's tenants with one arm, p = the
/// weight), and the share of requests (shown: it adds the noise of which tenants the clients
/// happened to pick).
fn shares(w: &World, phase: usize, t: &Tally, arms: &PhaseArms, v: &mut Verdicts) {
    let weight = arms.weight;
    let p = f64::from(weight) / 100.0;
    for c in 0..CELLS {
        let all = w.tenants_of_cell(c).count();
        let seen = w.tenants_of_cell(c).filter(|&i| t.arms[i] != 0).count();
        let single = w
            .tenants_of_cell(c)
            .filter(|&i| arms.arm[i].is_some())
            .count();
        let on_canary = w
            .tenants_of_cell(c)
            .filter(|&i| arms.arm[i] == Some(CANARY))
            .count();
        let n = single.max(1) as f64;
        let share = on_canary as f64 / n;
        let dev = (share - p) * 100.0;
        let tol = SIGMAS * (p * (1.0 - p) / n).sqrt() * 100.0;
        // A weight of 0 or 100 has no spread: the share must then be exact.
        let ok = single > 0 && dev.abs() <= tol + 1e-9;
        v.shares_checked += 1;
        v.share_failures += u64::from(!ok);
        let ratio = if tol > 0.0 { dev.abs() / tol } else { 0.0 };
        if ratio >= v.worst_share.0 {
            v.worst_share = (
                ratio,
                format!(
                    "phase {phase} {}: {dev:+.2} pp of ±{tol:.2}",
                    w.cell_names[c]
                ),
            );
        }
        let (stable_req, canary_req) = (t.arm_requests(c, STABLE), t.arm_requests(c, CANARY));
        let req = stable_req + canary_req;
        let req_share = canary_req as f64 / req.max(1) as f64;
        let stable_split: Vec<String> = (0..STABLE_TARGETS)
            .map(|j| t.per_target[c * PER_CELL + j].to_string())
            .collect();
        println!(
            "  {}: tenants seen {seen}/{all}, on canary {on_canary} = {:.2}% (weight {weight}%: \
             {dev:+.2} pp, {SIGMAS:.0} sd = ±{tol:.2} pp) {}; requests {req}, to canary \
             {canary_req} = {:.2}% ({:+.2} pp); stable targets {}",
            w.cell_names[c],
            share * 100.0,
            verdict(ok),
            req_share * 100.0,
            (req_share - p) * 100.0,
            stable_split.join(" / "),
        );
    }
}

/// The proxy's `cellgate_group_requests_total` over the phase against the clients' answers
/// per cell and arm; returns the number of (cell, arm) pairs that differ.
fn cross_check(t: &Tally, before: &GroupCounters, after: &GroupCounters) -> u64 {
    let delta = |key: &CounterKey| {
        let b = before.get(key).copied().unwrap_or(0);
        after.get(key).copied().unwrap_or(0).saturating_sub(b)
    };
    let key = |c: usize, arm: usize| -> CounterKey {
        (
            World::cell_name(c),
            ARMS[arm].0.to_owned(),
            ARMS[arm].1.to_owned(),
            "2xx".to_owned(),
        )
    };
    let mut mismatches = 0;
    let mut parts = Vec::new();
    for c in 0..CELLS {
        let mut cell = Vec::new();
        for arm in [STABLE, CANARY] {
            let (proxy_n, client_n) = (delta(&key(c, arm)), t.arm_requests(c, arm));
            mismatches += u64::from(proxy_n != client_n);
            cell.push(format!("{} {proxy_n}/{client_n}", ARMS[arm].0));
        }
        parts.push(format!("{} {}", World::cell_name(c), cell.join(", ")));
    }
    // Any other series that moved: another status class, group or version. The clients'
    // non-200 answers, if any, already fail the error check; these are shown, not compared.
    let expected: Vec<CounterKey> = (0..CELLS)
        .flat_map(|c| [key(c, STABLE), key(c, CANARY)])
        .collect();
    let mut other = 0;
    for k in after.keys().filter(|k| !expected.contains(k)) {
        let d = delta(k);
        if d > 0 {
            other += d;
            println!(
                "    proxy counted {d} on {{cell={}, group={}, version={}, status_class={}}}",
                k.0, k.1, k.2, k.3
            );
        }
    }
    println!(
        "  proxy cellgate_group_requests_total over the phase / client answers (2xx): {}; \
         other series {other} -> {}",
        parts.join("; "),
        if mismatches == 0 {
            "equal"
        } else {
            "DIFFERENT"
        }
    );
    mismatches
}

/// Tenants whose arm changed since the previous phase (over those with one arm in both),
/// against the minimum (the change in the number on the canary) and what the weights
/// predict; returns the moves against the weight change (canary -> stable while the canary
/// grows, the other way while it shrinks, any move when it stays).
fn moves(w: &World, phase: usize, prev: &PhaseArms, now: &PhaseArms) -> u64 {
    let mut reverse_total = 0;
    let mut line = Vec::new();
    for c in 0..CELLS {
        let both: Vec<(usize, usize)> = w
            .tenants_of_cell(c)
            .filter_map(|i| Some((prev.arm[i]?, now.arm[i]?)))
            .collect();
        let count = |f: &dyn Fn(&(usize, usize)) -> bool| both.iter().filter(|x| f(x)).count();
        let up = count(&|&(x, y)| (x, y) == (STABLE, CANARY));
        let down = count(&|&(x, y)| (x, y) == (CANARY, STABLE));
        let minimum = count(&|&(_, y)| y == CANARY).abs_diff(count(&|&(x, _)| x == CANARY));
        let by_weight = f64::from(now.weight.abs_diff(prev.weight)) / 100.0 * both.len() as f64;
        let reverse = match now.weight.cmp(&prev.weight) {
            std::cmp::Ordering::Greater => down,
            std::cmp::Ordering::Less => up,
            std::cmp::Ordering::Equal => up + down,
        };
        reverse_total += reverse as u64;
        line.push(format!(
            "{} moved {} of {} (stable->canary {up}, canary->stable {down}; minimum {minimum}, \
             weights predict {by_weight:.1})",
            w.cell_names[c],
            up + down,
            both.len(),
        ));
    }
    println!(
        "  arm changes since phase {} ({} -> {}): {}",
        phase - 1,
        prev.weight,
        now.weight,
        line.join("; ")
    );
    reverse_total
}

/// Prints every check; true when all pass.
fn checks(v: &Verdicts) -> bool {
    let mut pass = true;
    let mut check = |what: String, ok: bool| {
        pass &= ok;
        println!("check {what} -> {}", verdict(ok));
    };
    if v.reloads_missed > 0 {
        check(
            format!(
                "every weight change shown by /admin/cells within {} s: {} missed",
                RELOAD_TIMEOUT.as_secs(),
                v.reloads_missed
            ),
            false,
        );
    }
    check(
        format!("no errors: {} of {} requests", v.errors, v.requests),
        v.errors == 0,
    );
    check(format!("no cross-cell leaks: {}", v.leaks), v.leaks == 0);
    check(
        format!(
            "every target got its tenant's x-tenant-id: {} wrong",
            v.wrong_tenant
        ),
        v.wrong_tenant == 0,
    );
    check(
        format!(
            "no stickiness violations (one arm per tenant per phase): {}",
            v.sticky
        ),
        v.sticky == 0,
    );
    check(
        format!(
            "no moves against the weight change (canary->stable while the canary grows): {}",
            v.reverse
        ),
        v.reverse == 0,
    );
    check(
        format!(
            "canary share of each cell's tenants within {SIGMAS:.0} sd of the weight \
             (binomial, n = the cell's tenants): {} of {} outside; worst {:.2} of the tolerance \
             ({})",
            v.share_failures, v.shares_checked, v.worst_share.0, v.worst_share.1
        ),
        v.share_failures == 0,
    );
    check(
        format!(
            "every tenant on the arm routing::canary::arm gives: {} differ",
            v.unpredicted
        ),
        v.unpredicted == 0,
    );
    check(
        format!(
            "cellgate_group_requests_total equals the client's counts: {} differences",
            v.counter_mismatches
        ),
        v.counter_mismatches == 0,
    );
    println!("result: {}", if pass { "PASS" } else { "FAIL" });
    pass
}

fn ms(us: u32) -> String {
    crate::common::ms(Duration::from_micros(u64::from(us)))
}
