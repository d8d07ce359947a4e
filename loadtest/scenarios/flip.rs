//! Loadtest scenario `flip`: placement flips under load against a DynamoDB registry.
//!
//! Starts three local echo cells and a cellgate (in-process, 127.0.0.1:0) on a fresh table of a
//! local DynamoDB-API server, keeps `--clients` connections sending requests for one tenant, and
//! flips the tenant between cells `--flips` times through the operator write path. For each
//! flip it measures the propagation time (commit -> first response from the new cell) and
//! counts responses from the old cell after the new one has answered. Bounded in count and
//! time, loopback only. Run it with `bash loadtest/run.sh flip` (which starts the local server).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cellgate::config::{Config, Overrides};
use cellgate::ops::{self, TenantCommand};
use cellgate::server::Server;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;

struct Args {
    flips: usize,
    clients: usize,
    poll: String,
}

fn args(argv: Vec<String>) -> Args {
    let mut a = Args {
        flips: 20,
        clients: 8,
        poll: "250ms".to_owned(),
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--flips" => a.flips = value.parse().unwrap(),
            "--clients" => a.clients = value.parse().unwrap(),
            "--poll-interval" => a.poll = value,
            other => panic!("unknown flag {other} (--flips N, --clients N, --poll-interval D)"),
        }
    }
    a
}

/// One observed response: when it was sent and which cell answered.
type Seen = (Instant, String);

pub fn run(argv: Vec<String>) -> i32 {
    let a = args(argv);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(flip(a))
}

async fn flip(a: Args) -> i32 {
    let endpoint = std::env::var("CELLGATE_TEST_DYNAMODB")
        .expect("CELLGATE_TEST_DYNAMODB: run through `bash loadtest/run.sh flip`");
    let cells = cellgate::demo::spawn_cells(2, 1).await.unwrap();
    let (reg, table) = crate::common::dynamodb_registry("flip", &endpoint, &cells)
        .await
        .unwrap();
    put(&reg, "cell-1").await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cellgate.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nworkers = 1\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
             [admin]\naddress = \"127.0.0.1:0\"\n[tenant]\nsources = [\"subdomain\"]\n\
             base_domains = [\"app.test\"]\n[access_log]\nenabled = false\n[log]\nlevel = \"warn\"\n\
             [registry]\nsource = \"dynamodb\"\ntable = \"{}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{endpoint}\"\npoll_interval = \"{}\"\n",
            table, a.poll
        ),
    )
    .unwrap();
    let config = Config::load(&path, &Overrides::default()).unwrap();
    let server = Server::bind(config).unwrap();
    let addr = server.local_addrs()[0];
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let proxy = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    // Wait until the proxy routes.
    let start = Instant::now();
    while call(&client, addr).await.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the proxy never got ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
    let (stop, requests, failures) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut load = Vec::new();
    for _ in 0..a.clients {
        let (client, seen, stop, requests, failures) = (
            client.clone(),
            Arc::clone(&seen),
            Arc::clone(&stop),
            Arc::clone(&requests),
            Arc::clone(&failures),
        );
        load.push(tokio::spawn(async move {
            let mut local = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                requests.fetch_add(1, Ordering::Relaxed);
                match call(&client, addr).await {
                    Some(cell) => local.push((sent, cell)),
                    None => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            seen.lock().await.extend(local);
        }));
    }

    let began = Instant::now();
    let mut flips: Vec<(Instant, String)> = Vec::with_capacity(a.flips);
    for i in 0..a.flips {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let to = if i % 2 == 0 { "cell-2" } else { "cell-1" };
        // Timed from before the write: the write's own latency counts against propagation.
        let at = Instant::now();
        put(&reg, to).await;
        flips.push((at, to.to_owned()));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let elapsed = began.elapsed();
    let mut seen = std::mem::take(&mut *seen.lock().await);
    seen.sort_by_key(|(t, _)| *t);

    let mut propagation = Vec::with_capacity(flips.len());
    let mut stale_after = 0usize;
    for (i, (committed, to)) in flips.iter().enumerate() {
        let window_end = flips.get(i + 1).map(|(t, _)| *t);
        let in_window = seen
            .iter()
            .filter(|(t, _)| *t >= *committed && window_end.is_none_or(|e| *t < e));
        let mut first_new: Option<Instant> = None;
        for (t, cell) in in_window {
            match first_new {
                None if cell == to => first_new = Some(*t),
                Some(_) if cell != to => stale_after += 1,
                _ => {}
            }
        }
        let p = first_new.map_or(Duration::MAX, |t| t.saturating_duration_since(*committed));
        propagation.push(p);
    }
    propagation.sort();
    let pct = |q: f64| crate::common::pct(&propagation, q);
    let total = requests.load(Ordering::Relaxed);
    println!(
        "scenario flip: {} flips under load, {} clients, poll {}",
        a.flips, a.clients, a.poll
    );
    println!(
        "requests: {total} in {:.1} s ({:.0}/s), failed: {}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        failures.load(Ordering::Relaxed)
    );
    println!(
        "propagation (commit -> first response from the new cell): p50 {:?}, p99 {:?}, max {:?}",
        pct(0.5),
        pct(0.99),
        propagation.last().copied().unwrap_or_default()
    );
    println!("responses from the old cell after the new one answered: {stale_after}");
    let _ = stop_tx.send(());
    proxy.await.unwrap().unwrap();
    i32::from(pct(0.99) > Duration::from_secs(1) || stale_after > 0)
}

async fn put(reg: &ops::Registry, cell: &str) {
    ops::tenant_command(reg, TenantCommand::place("acme", cell))
        .await
        .unwrap();
}

/// One request for acme; the cell that answered, or `None` on any failure.
async fn call(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    addr: std::net::SocketAddr,
) -> Option<String> {
    let req = http::Request::get(format!("http://{addr}/"))
        .header("host", "acme.app.test")
        .body(Empty::new())
        .ok()?;
    let resp = client.request(req).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["cell"].as_str().map(str::to_owned)
}
