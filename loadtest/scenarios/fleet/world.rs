//! What the fleet scenario runs around its load: its own `redis-server` (started, SIGKILLed and
//! restarted on the same port), the echo cells and the file registry, and the cellgate nodes
//! (each a release `cellgate serve` under `timeout`, as `process::Proxy` starts them), with the
//! frame that starts three, runs the phases and stops everything it started.
//!
//! `process::install_panic_hook` stops only the first proxy when the driver panics; the others
//! and Redis end by themselves at the scenario's bound (each runs under `timeout`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cellgate::demo::EchoTarget;

use super::{Args, ab, timeline};
use crate::common::{HttpClient, cell_toml, client, file_registry, free_port, proxy_config};
use crate::process::{Proxy, ProxyArgs};

/// The tier of `noisy` and `quiet`, fleet-wide.
pub const FLEET_TIER: &str = "fleet";
/// The tier of the A/B tenants: far above what each is sent.
pub const AB_TIER: &str = "ab";
pub const AB_TIER_RATE: f64 = 100.0;
pub const AB_TIER_BURST: u32 = 50;
pub const NOISY: &str = "noisy";
pub const QUIET: &str = "quiet";

pub fn ab_tenant(i: usize) -> String {
    format!("ab-{:04}", i + 1)
}

/// Whether `timeout` runs here (it bounds Redis's life as `process::Proxy` bounds the proxy's).
fn have_timeout() -> bool {
    Command::new("timeout")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The child of `wrapper` (`timeout`'s command) named `comm`, if it has started.
fn child_named(wrapper: u32, comm: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
        .ok()?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A private `redis-server` on a fixed 127.0.0.1 port, no persistence.
pub struct Redis {
    bin: String,
    pub port: u16,
    dir: PathBuf,
    bound: Duration,
    /// Whether to run it under `timeout`.
    timeout: bool,
    child: Option<Child>,
    starts: usize,
}

impl Redis {
    pub fn new(bin: &str, dir: &Path, bound: Duration) -> Self {
        Self {
            bin: bin.to_owned(),
            port: free_port().port(),
            dir: dir.to_owned(),
            bound,
            timeout: have_timeout(),
            child: None,
            starts: 0,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port; returns once it accepts connections (how long that took).
    /// Waits with the runtime's timer: the echo cells and the load run on the same thread.
    pub async fn start(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("redis-{}.log", self.starts)))
            .map_err(|e| e.to_string())?;
        let mut argv: Vec<String> = Vec::new();
        if self.timeout {
            argv.extend(["timeout", "-s", "KILL"].map(str::to_owned));
            argv.push(self.bound.as_secs().to_string());
        }
        argv.push(self.bin.clone());
        let port = self.port.to_string();
        let dir = self.dir.display().to_string();
        argv.extend(
            [
                "--bind",
                "127.0.0.1",
                "--port",
                port.as_str(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
                "--dir",
                dir.as_str(),
            ]
            .map(str::to_owned),
        );
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin))?;
        self.child = Some(child);
        let deadline = started + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("redis-server exited at start ({status})"));
            }
            if Instant::now() > deadline {
                return Err("redis-server did not accept connections within 5 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(started.elapsed())
    }

    /// The redis-server process (not its `timeout` wrapper), while it runs.
    pub fn server_pid(&self) -> Option<u32> {
        let wrapper = self.child.as_ref()?.id();
        child_named(wrapper, "redis-server").or(Some(wrapper))
    }

    /// SIGKILL: a crash, not a shutdown. Returns when the signal was sent, once the process
    /// is gone (its `timeout` wrapper reaped).
    pub async fn kill(&mut self) -> Instant {
        if let Some(pid) = self.server_pid() {
            signal(pid, "-KILL");
        }
        let sent = Instant::now();
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        sent
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "-TERM");
            let deadline = Instant::now() + Duration::from_secs(3);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One running cellgate node.
pub struct Node {
    pub name: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub pid: u32,
    proxy: Proxy,
}

impl Node {
    /// Writes `NAME.toml` in `dir` (the registry is `registry.toml` there) and starts
    /// `cellgate serve` on it; returns once it is ready.
    pub async fn start(
        dir: &Path,
        name: &str,
        proxy: &ProxyArgs,
        bound: Duration,
        body: &str,
        probe: &HttpClient,
    ) -> Result<Self, String> {
        let (listen, admin) = (free_port(), free_port());
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, proxy_config(listen, admin, body)).map_err(|e| e.to_string())?;
        let log = dir.join(format!("{name}.log"));
        let mut p = Proxy::spawn(proxy, &config, &log, bound)
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        if let Err(e) = p.wait_ready(probe, admin).await {
            p.print_log_tail();
            p.stop();
            return Err(format!("{name}: {e}"));
        }
        Ok(Self {
            name: name.to_owned(),
            listen,
            admin,
            pid: p.pid(),
            proxy: p,
        })
    }

    pub fn print_log_tail(&self) {
        eprintln!("{}:", self.name);
        self.proxy.print_log_tail();
    }

    /// Stops every node at once (SIGTERM; each leaves the membership set on the way out).
    pub fn stop_all(nodes: Vec<Self>) {
        std::thread::scope(|s| {
            for n in nodes {
                s.spawn(move || n.proxy.stop());
            }
        });
    }
}

/// The registry: three cells; `noisy` and `quiet` in tier `fleet`; the A/B tenants in `ab`.
fn registry(cells: &[Vec<EchoTarget>], ab_tenants: usize) -> String {
    let mut s: String = cells.iter().map(|c| cell_toml(c)).collect();
    let tenant = |id: &str, cell: usize, tier: &str| {
        format!(
            "[[tenants]]\nid = \"{id}\"\ncell = \"cell-{cell}\"\ntier = \"{tier}\"\nversion = 1\n\n"
        )
    };
    s.push_str(&tenant(NOISY, 1, FLEET_TIER));
    s.push_str(&tenant(QUIET, 2, FLEET_TIER));
    for i in 0..ab_tenants {
        s.push_str(&tenant(&ab_tenant(i), i % 3 + 1, AB_TIER));
    }
    s
}

/// The config's `[registry]` and `[limits]` tables, with `[limits.fleet]` on Redis at `url`
/// under `prefix` when given (the intervals at their defaults).
pub fn config_body(a: &Args, fleet: Option<(&str, &str)>) -> String {
    let mut s = file_registry("1s");
    s.push_str(&format!(
        "\n[limits]\ndefault_tier = \"{AB_TIER}\"\n\n[limits.tiers.{FLEET_TIER}]\nrate = {}\nburst = {}\n\n\
         [limits.tiers.{AB_TIER}]\nrate = {AB_TIER_RATE}\nburst = {AB_TIER_BURST}\n\n",
        a.rate, a.burst
    ));
    if let Some((url, prefix)) = fleet {
        s.push_str(&format!(
            "[limits.fleet]\nredis_url = \"{url}\"\nkey_prefix = \"{prefix}\"\n\n"
        ));
    }
    s
}

/// What the phases get: the directory (configs, logs), Redis, the nodes, a probe client.
pub struct World {
    pub dir: PathBuf,
    pub redis: Redis,
    pub nodes: Vec<Node>,
    pub probe: HttpClient,
    pub bound: Duration,
}

/// Starts Redis, the cells and three nodes, runs the phases, stops everything; the exit code.
pub fn run_fleet(a: &Args) -> i32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if !a.proxy.bin.is_file() {
            eprintln!(
                "fleet: no proxy binary at {} (cargo build --release --bin cellgate, or use loadtest/run.sh fleet)",
                a.proxy.bin.display()
            );
            return 2;
        }
        let dir = tempfile::tempdir().unwrap();
        let bound = a.bound();
        let mut redis = Redis::new(&a.redis_bin, dir.path(), bound);
        if let Err(e) = redis.start().await {
            eprintln!(
                "fleet: {e} (Debian: apt-get install redis-server; `source tests/redis.sh; install_redis`)"
            );
            return 2;
        }
        let cells = cellgate::demo::spawn_cells(3, 1).await.unwrap();
        std::fs::write(dir.path().join("registry.toml"), registry(&cells, a.ab_tenants)).unwrap();
        let probe = client();
        let url = redis.url();
        let body = config_body(a, Some((url.as_str(), "loadtest:")));
        let mut nodes = Vec::new();
        for i in 1..=3 {
            match Node::start(dir.path(), &format!("node-{i}"), &a.proxy, bound, &body, &probe).await
            {
                Ok(n) => nodes.push(n),
                Err(e) => {
                    eprintln!("fleet: {e}");
                    Node::stop_all(nodes);
                    redis.stop();
                    return 2;
                }
            }
        }
        let mut w = World {
            dir: dir.path().to_owned(),
            redis,
            nodes,
            probe,
            bound,
        };
        let fleet = timeline::run(a, &mut w).await;
        if !matches!(fleet, Ok(true)) {
            for n in &w.nodes {
                n.print_log_tail();
            }
        }
        Node::stop_all(std::mem::take(&mut w.nodes));
        let ab = match fleet {
            Ok(_) => ab::run(a, &w).await,
            Err(_) => Ok(false),
        };
        w.redis.stop();
        drop(cells);
        match (fleet, ab) {
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("fleet: {e}");
                2
            }
            (Ok(x), Ok(y)) => {
                println!("result: {}", if x && y { "PASS" } else { "FAIL" });
                i32::from(!(x && y))
            }
        }
    })
}
