//! The proxy as a child process and what it costs: `--proxy-bin`/`--proxy-cpu`, `cellgate serve`
//! under `timeout` (its own time bound) and `taskset` (pinned when asked), stopped on exit and on
//! panic, and CPU accounting from /proc for the proxy, this driver and the rest of the machine.
//!
//! The scenarios reach this through `frame::run_proxied`, which starts and stops the proxy; they
//! use `ProxyArgs` for their flags and `CpuMark` around their phases.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::common::{HttpClient, get};

/// Linux reports process CPU time in ticks of 1/100 s (USER_HZ).
const TICKS_PER_SEC: f64 = 100.0;

/// `--proxy-bin` and `--proxy-cpu`, which every scenario that runs the release binary takes.
pub struct ProxyArgs {
    pub bin: PathBuf,
    pub cpu: Option<String>,
    /// Extra environment for the proxy (a local DynamoDB-API server's test credentials).
    pub env: Vec<(String, String)>,
    /// How long the proxy may take to turn ready (a first scan of a million items takes a while).
    pub ready_within: Duration,
}

impl Default for ProxyArgs {
    fn default() -> Self {
        Self {
            bin: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/cellgate"),
            cpu: None,
            env: Vec::new(),
            ready_within: Duration::from_secs(15),
        }
    }
}

impl ProxyArgs {
    /// Takes `flag value` when it is one of ours; false otherwise.
    pub fn take(&mut self, flag: &str, value: &str) -> bool {
        match flag {
            "--proxy-bin" => self.bin = PathBuf::from(value),
            "--proxy-cpu" => self.cpu = Some(value.to_owned()),
            _ => return false,
        }
        true
    }

    /// `cpu N` or `not pinned`, for the setup line.
    pub fn pinning(&self) -> String {
        self.cpu
            .as_deref()
            .map_or("not pinned".to_owned(), |c| format!("cpu {c}"))
    }
}

/// The cores this driver may run on (`cpus 1`), for the setup line.
pub fn driver_cpus() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| format!("cpus {}", v.trim()))
        })
        .unwrap_or_else(|| "not pinned".to_owned())
}

/// The proxy's pid (its `timeout` wrapper's, when there is one), for the panic hook: the
/// release profile aborts on panic, so nothing else would stop it.
static PROXY_PID: OnceLock<u32> = OnceLock::new();

/// Stops the proxy if the driver panics (installed once, by `main`).
pub fn install_panic_hook() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(&pid) = PROXY_PID.get() {
            stop_pid(pid);
        }
        hook(info);
    }));
}

fn stop_pid(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A running `cellgate serve` child.
pub struct Proxy {
    child: Child,
    log: PathBuf,
    ready_within: Duration,
}

impl Proxy {
    /// `timeout` (the proxy's own time bound: it ends by itself even if the driver dies) ->
    /// `taskset -c CPU` (when asked) -> `cellgate serve --config CONFIG`, output to `log`.
    pub fn spawn(
        a: &ProxyArgs,
        config: &Path,
        log: &Path,
        bound: Duration,
    ) -> std::io::Result<Self> {
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
        if let Some(cpu) = &a.cpu {
            argv.extend(["taskset".to_owned(), "-c".to_owned(), cpu.clone()]);
        }
        argv.push(a.bin.display().to_string());
        argv.extend(["serve".to_owned(), "--config".to_owned()]);
        argv.push(config.display().to_string());
        let out = std::fs::File::create(log)?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(a.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let _ = PROXY_PID.set(child.id());
        Ok(Self {
            child,
            log: log.to_owned(),
            ready_within: a.ready_within,
        })
    }

    /// The proxy process itself: the `timeout` wrapper's child when there is one (`taskset`
    /// execs the proxy, so it keeps the pid).
    pub fn pid(&self) -> u32 {
        let wrapper = self.child.id();
        std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse().ok())
            .filter(|pid: &u32| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "cellgate")
            })
            .unwrap_or(wrapper)
    }

    /// Waits (`ProxyArgs::ready_within`, 15 s by default, at most) until `/readyz` answers 200.
    pub async fn wait_ready(
        &mut self,
        probe: &HttpClient,
        admin: SocketAddr,
    ) -> Result<(), String> {
        let ready_by = Instant::now() + self.ready_within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the proxy exited at start-up ({status})"));
            }
            if get(probe, format!("http://{admin}/readyz"))
                .await
                .is_ok_and(|(s, _)| s == StatusCode::OK)
            {
                return Ok(());
            }
            if Instant::now() > ready_by {
                return Err("the proxy never became ready".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the proxy's output, on stderr.
    pub fn print_log_tail(&self) {
        let Ok(log) = std::fs::read_to_string(&self.log) else {
            return;
        };
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        if !tail.is_empty() {
            eprintln!("proxy log (last lines):");
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(mut self) {
        stop_pid(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting.

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

/// CPU used over an interval, in % of one core.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu {
    pub proxy: f64,
    /// This driver, with the echo cells it runs.
    pub driver: f64,
    /// Everything else on the machine (a disturbance shows there).
    pub other: f64,
}

pub struct CpuMark {
    at: Instant,
    proxy: u64,
    driver: u64,
    machine: u64,
}

impl CpuMark {
    pub fn now(proxy: u32) -> Self {
        Self {
            at: Instant::now(),
            proxy: process_ticks(&proxy.to_string()),
            driver: process_ticks("self"),
            machine: machine_busy_ticks(),
        }
    }

    pub fn since(&self, proxy: u32) -> Cpu {
        let now = Self::now(proxy);
        let secs = now.at.duration_since(self.at).as_secs_f64();
        let pct = |ticks: u64| ticks as f64 / TICKS_PER_SEC / secs * 100.0;
        let (p, d) = (now.proxy - self.proxy, now.driver - self.driver);
        Cpu {
            proxy: pct(p),
            driver: pct(d),
            other: pct((now.machine - self.machine).saturating_sub(p + d)),
        }
    }
}

/// CPU ticks of a process split by thread name: its request workers (`cellgate-worker-N`,
/// shown as `cellgate-worke` in the 15-character `comm`) and everything else, its control
/// plane (the runtime `Server::run` is called on: registry refresh, admin, lookups, and its
/// blocking pool, where snapshots are built). The rest is the process total (which keeps the
/// time of threads that have exited) less the workers (which live as long as the process).
#[derive(Debug, Clone, Copy)]
pub struct ThreadMark {
    at: Instant,
    total: u64,
    workers: u64,
}

/// CPU over an interval, in % of one core.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadCpu {
    pub control: f64,
    pub workers: f64,
}

impl ThreadMark {
    pub fn now(pid: u32) -> Self {
        let mut workers = 0;
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in dir.flatten() {
                let tid = t.file_name().to_string_lossy().into_owned();
                let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                    .unwrap_or_default();
                if comm.starts_with("cellgate-worke") {
                    workers += process_ticks(&format!("{pid}/task/{tid}"));
                }
            }
        }
        Self {
            at: Instant::now(),
            total: process_ticks(&pid.to_string()),
            workers,
        }
    }

    pub fn since(&self, pid: u32) -> ThreadCpu {
        let now = Self::now(pid);
        let secs = now.at.duration_since(self.at).as_secs_f64();
        let pct = |ticks: u64| ticks as f64 / TICKS_PER_SEC / secs * 100.0;
        let workers = now.workers.saturating_sub(self.workers);
        ThreadCpu {
            control: pct((now.total.saturating_sub(self.total)).saturating_sub(workers)),
            workers: pct(workers),
        }
    }
}
