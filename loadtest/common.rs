//! What the scenarios share: the proxy as a child process (bounded by `timeout`, pinned with
//! `taskset`, stopped on exit and on panic), CPU accounting from /proc, HTTP clients, the
//! open-loop generator, percentiles, metric scraping and registry files written by rename.
//!
//! Each scenario builds its own runtime and keeps its own checks; nothing here decides a verdict.

use std::collections::HashMap;
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

pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Linux reports process CPU time in ticks of 1/100 s (USER_HZ).
const TICKS_PER_SEC: f64 = 100.0;

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A keep-alive pool (no Nagle, idle connections kept for the whole run).
pub fn client() -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(300))
        .build(c)
}

/// A free 127.0.0.1 port, for a child process that binds it itself.
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `GET url` with the request timeout: status and body.
pub async fn get(client: &HttpClient, url: String) -> Result<(StatusCode, Bytes), String> {
    let req = Request::get(url.as_str()).body(Empty::new()).unwrap();
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let r = client.request(req).await.map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, body.to_bytes()))
    })
    .await
    .map_err(|_| format!("GET {url}: timed out"))?;
    resp.map_err(|e| format!("GET {url}: {e}"))
}

/// `Host` of a tenant's requests (subdomain tenants under `app.test`).
pub fn host(tenant: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{tenant}.app.test")).unwrap()
}

/// Writes by rename, as the README asks, so the proxy never reads half a file.
/// A one-worker proxy config on `listen`/`admin` (tenant from the subdomain of `app.test`,
/// access log off) with `body`: the scenario's `[registry]` table and anything else it needs.
pub fn proxy_config(listen: SocketAddr, admin: SocketAddr, body: &str) -> String {
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

{body}
[access_log]
enabled = false

[log]
level = "warn"
"#
    )
}

/// The `[registry]` table of a file registry at `registry.toml`, polled every `poll`.
pub fn file_registry(poll: &str) -> String {
    format!("[registry]\nsource = \"file\"\npath = \"registry.toml\"\npoll_interval = \"{poll}\"\n")
}

pub fn write_registry(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// A registry file's `[[cells]]` record with one target group (the cell's first echo target).
pub fn cell_toml(targets: &[cellgate::demo::EchoTarget]) -> String {
    format!(
        "[[cells]]\nid = \"{}\"\ntargets = [\"http://{}\"]\n\n",
        targets[0].cell, targets[0].addr
    )
}

/// A registry file's `[[tenants]]` record.
pub fn tenant_toml(id: &str, cell: &str, tier: Option<&str>, version: u64) -> String {
    let tier = tier.map_or(String::new(), |t| format!("tier = \"{t}\"\n"));
    format!("[[tenants]]\nid = \"{id}\"\ncell = \"{cell}\"\n{tier}version = {version}\n\n")
}

// ---------------------------------------------------------------------------------------------
// The proxy as a child process.

/// `--proxy-bin` and `--proxy-cpu`, which every scenario that runs the release binary takes.
pub struct ProxyArgs {
    pub bin: PathBuf,
    pub cpu: Option<String>,
}

impl Default for ProxyArgs {
    fn default() -> Self {
        Self {
            bin: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/cellgate"),
            cpu: None,
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
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let _ = PROXY_PID.set(child.id());
        Ok(Self {
            child,
            log: log.to_owned(),
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

    /// Waits (15 s at most) until `/readyz` answers 200.
    pub async fn wait_ready(
        &mut self,
        probe: &HttpClient,
        admin: SocketAddr,
    ) -> Result<(), String> {
        let ready_by = Instant::now() + Duration::from_secs(15);
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

// ---------------------------------------------------------------------------------------------
// Open-loop load.

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The status, or 0 when no response came (connection error, timeout).
    pub status: u16,
    /// From handing the request to the client to the end of the response body.
    pub latency: Duration,
    /// How late the request left against its schedule (the generator's own delay).
    pub lag: Duration,
    /// The body, when the caller asked to keep it.
    pub body: Option<Bytes>,
}

/// Sends at `rate` per second from `start + offset periods` until `start + len`, whatever the
/// answers (open loop), each request with the `Host` `hosts` gives; returns every request's
/// outcome once all have answered. `keep_body` keeps each answer's body.
#[expect(clippy::too_many_arguments, reason = "one schedule, spelled out")]
pub async fn open_loop(
    client: HttpClient,
    uri: Uri,
    mut hosts: impl FnMut() -> HeaderValue,
    rate: f64,
    start: Instant,
    offset: f64,
    len: Duration,
    keep_body: bool,
) -> Vec<Sample> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let end = start + len;
    let mut due = start + period.mul_f64(offset);
    let mut sent = Vec::with_capacity((rate * len.as_secs_f64()) as usize + 1);
    while due < end {
        tokio::time::sleep_until(due.into()).await;
        let lag = due.elapsed();
        let (client, uri, host) = (client.clone(), uri.clone(), hosts());
        sent.push(tokio::spawn(async move {
            one(&client, &uri, &host, lag, keep_body).await
        }));
        due += period;
    }
    let mut out = Vec::with_capacity(sent.len());
    for s in sent {
        out.push(s.await.unwrap());
    }
    out
}

/// One request, timed from handing it to the client to the end of its body.
pub async fn one(
    client: &HttpClient,
    uri: &Uri,
    host: &HeaderValue,
    lag: Duration,
    keep_body: bool,
) -> Sample {
    let req = Request::get(uri.clone())
        .header(header::HOST, host.clone())
        .body(Empty::new())
        .unwrap();
    let sent = Instant::now();
    let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let resp = client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, keep_body.then_some(body)))
    })
    .await
    .ok()
    .flatten()
    .unwrap_or((0, None));
    Sample {
        status,
        latency: sent.elapsed(),
        lag,
        body,
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics.

/// One scrape of `/metrics`: (name, labels, value) per sample line.
pub struct Scrape(Vec<(String, HashMap<String, String>, f64)>);

impl Scrape {
    pub async fn get(client: &HttpClient, admin: SocketAddr) -> Result<Self, String> {
        let (status, body) = get(client, format!("http://{admin}/metrics")).await?;
        if status != StatusCode::OK {
            return Err(format!("GET /metrics: status {status}"));
        }
        Ok(Self::parse(&String::from_utf8_lossy(&body)))
    }

    fn parse(text: &str) -> Self {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = match line.split_once("} ") {
                Some((s, v)) => (format!("{s}}}"), v),
                None => match line.split_once(' ') {
                    Some((s, v)) => (s.to_owned(), v),
                    None => continue,
                },
            };
            let value: f64 = value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n.to_owned(), l.trim_end_matches('}')),
                None => (series.clone(), ""),
            };
            let mut l = HashMap::new();
            for kv in labels.split(',') {
                if let Some((k, v)) = kv.split_once('=') {
                    l.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
            }
            out.push((name, l, value));
        }
        Self(out)
    }

    /// The sample lines of one metric (a counter's `_total` name as exported).
    pub fn series<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a HashMap<String, String>, f64)> + 'a {
        self.0
            .iter()
            .filter(move |(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
    }

    /// The sum of a metric's lines whose `label` is `value` (any line when `label` is empty).
    pub fn sum(&self, name: &str, label: &str, value: &str) -> f64 {
        self.series(name)
            .filter(|(l, _)| label.is_empty() || l.get(label).is_some_and(|v| v == value))
            .map(|(_, v)| v)
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers.

/// The nearest-rank percentile of sorted values.
pub fn pct<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort_unstable();
    pct(&s, 0.5)
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAILED" }
}
