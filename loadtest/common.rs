//! What the scenarios share on the client side: flag pairs, HTTP clients and requests with the
//! driver's timeout, the open-loop generator, `/metrics` scraping, percentiles, the proxy's config
//! frame, registry files written by rename and DynamoDB registry tables on the local server.
//!
//! The proxy process itself is in `process`, the start and stop around a scenario in `frame`.
//! Each scenario keeps its own checks; nothing here decides a verdict.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cellgate::demo::EchoTarget;
use cellgate::ops::{self, CellCommand, TableArgs};
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// The `--flag value` pairs of a scenario's arguments, in order; `usage` ends the driver when
/// the last flag has no value.
pub fn flag_pairs(
    argv: Vec<String>,
    usage: fn(&str) -> !,
) -> impl Iterator<Item = (String, String)> {
    let mut it = argv.into_iter();
    std::iter::from_fn(move || {
        let flag = it.next()?;
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        Some((flag, value))
    })
}

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

/// Sends `req` with the request timeout: status and body, or what went wrong (`timed out`).
pub async fn send(
    client: &HttpClient,
    req: Request<Empty<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let r = client.request(req).await.map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, body.to_bytes()))
    })
    .await
    .unwrap_or_else(|_| Err("timed out".to_owned()))
}

/// `GET url` with the request timeout: status and body.
pub async fn get(client: &HttpClient, url: String) -> Result<(StatusCode, Bytes), String> {
    let req = Request::get(url.as_str()).body(Empty::new()).unwrap();
    send(client, req)
        .await
        .map_err(|e| format!("GET {url}: {e}"))
}

/// `Host` of a tenant's requests (subdomain tenants under `app.test`).
pub fn host(tenant: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{tenant}.app.test")).unwrap()
}

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

/// Writes by rename, as docs/registry.md asks, so the proxy never reads half a file.
pub fn write_registry(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// A registry file's `[[cells]]` record with one target group (the cell's first echo target).
pub fn cell_toml(targets: &[EchoTarget]) -> String {
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

/// A fresh table `PREFIX-<random>` on the local DynamoDB-API server at `endpoint`
/// (`CELLGATE_TEST_DYNAMODB`, which `run.sh` sets), initialised and holding `cells`: the registry
/// handle and the table's name.
pub async fn dynamodb_registry(
    prefix: &str,
    endpoint: &str,
    cells: &[Vec<EchoTarget>],
) -> Result<(ops::Registry, String), String> {
    let table = format!("{prefix}-{}", fastrand::u32(..));
    let args = TableArgs {
        table: Some(table.clone()),
        region: Some("us-east-1".to_owned()),
        endpoint_url: Some(endpoint.to_owned()),
    };
    let reg = ops::registry(&args).await.map_err(|e| e.to_string())?;
    ops::registry_command(&reg, ops::RegistryCommand::Init { streams: false })
        .await
        .map_err(|e| e.to_string())?;
    for ts in cells {
        let cmd = CellCommand::Put {
            cell: ts[0].cell.clone(),
            targets: ts.iter().map(|t| format!("http://{}", t.addr)).collect(),
            state: None,
            region: None,
            preserve_host: None,
            max_in_flight: None,
            wave: None,
            clear_wave: false,
            protocol: None,
            capacity: None,
            tier_units: Vec::new(),
            clear_tier_units: false,
            tags: Vec::new(),
            clear_tags: false,
        };
        ops::cell_command(&reg, cmd)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok((reg, table))
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
