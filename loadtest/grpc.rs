//! gRPC load: `grpc-cell` serves the `echo.Echo` test cell on its own, and `grpc-load` drives
//! a fixed number of concurrent calls at an address (a cellgate, or the cell directly) for a
//! bounded time and count, then reports calls/s, latency percentiles and errors by gRPC code.
//!
//! Both are tools, not scenarios: they check nothing beyond "the calls succeeded", and
//! `bench/h2.sh` runs them (the cell and the driver pinned beside the load generator, the proxy
//! alone on the other core). The cell and the client are the tests' own (`tests/common/`):
//! tonic's server and client glue over hyper, messages derived by prost, no protoc.

#[path = "../tests/common/grpc_cell.rs"]
mod grpc_cell;
#[path = "../tests/common/grpc_client.rs"]
mod grpc_client;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Status};

use crate::common::{flag_pairs, pct};
use grpc_cell::{EchoRequest, GrpcCell};
use grpc_client::EchoClient;

/// A call slower than this counts as an error (`client_timeout`) and the worker moves on.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn runtime() -> tokio::runtime::Runtime {
    // One thread: the driver (and the cell) share the load core with the other load tools.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// grpc-cell

fn cell_usage(why: &str) -> ! {
    eprintln!(
        "grpc-cell: {why}\nusage: loadtest grpc-cell [--secs 900] [--name cell]\n\
         Serves echo.Echo over cleartext HTTP/2 (prior knowledge) on a free 127.0.0.1 port,\n\
         printed first as `listening ADDR`, until --secs have passed."
    );
    std::process::exit(2)
}

/// `loadtest grpc-cell`: the echo cell in the foreground on `127.0.0.1:0` (the tests' cell
/// binds there); prints `listening ADDR`, ends after `--secs` (default 900) so a forgotten one
/// does not outlive its benchmark by much.
pub fn run_cell(argv: Vec<String>) -> i32 {
    let mut secs = 900u64;
    let mut name = "cell".to_owned();
    for (flag, value) in flag_pairs(argv, cell_usage) {
        match flag.as_str() {
            "--secs" => secs = value.parse().unwrap_or_else(|_| cell_usage(&value)),
            "--name" => name = value,
            _ => cell_usage(&format!("unknown flag {flag}")),
        }
    }
    runtime().block_on(async move {
        let cell = GrpcCell::h2c(&name, &name).await;
        println!("listening {}", cell.addr);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(secs)) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        println!(
            "served {} calls on {} connections",
            cell.calls(),
            cell.connections()
        );
        0
    })
}

// ---------------------------------------------------------------------------------------------
// grpc-load

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Unary,
    /// `ServerStream` with this many replies per call.
    Stream(u32),
}

struct LoadArgs {
    addr: Option<SocketAddr>,
    authority: String,
    concurrency: usize,
    connections: usize,
    secs: f64,
    max_calls: u64,
    mode: Mode,
    message_bytes: usize,
}

fn load_usage(why: &str) -> ! {
    eprintln!(
        "grpc-load: {why}\n\
         usage: loadtest grpc-load [--addr 127.0.0.1:PORT] [--authority bench.localhost] [--concurrency 64]\n\
         \x20      [--connections 1] [--secs 10] [--max-calls 10000000] [--mode unary|stream]\n\
         \x20      [--stream-count 10] [--message-bytes 16]\n\
         Without --addr it starts an echo cell in this process and calls it directly."
    );
    std::process::exit(2)
}

/// `value` parsed, or the usage naming the flag.
fn num<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| load_usage(&format!("{flag} {value}")))
}

fn parse_load(argv: Vec<String>) -> LoadArgs {
    let mut a = LoadArgs {
        addr: None,
        authority: "bench.localhost".to_owned(),
        concurrency: 64,
        connections: 1,
        secs: 10.0,
        max_calls: 10_000_000,
        mode: Mode::Unary,
        message_bytes: 16,
    };
    let mut stream = false;
    let mut stream_count = 10u32;
    for (flag, value) in flag_pairs(argv, load_usage) {
        match flag.as_str() {
            "--addr" => a.addr = Some(num(&flag, &value)),
            "--authority" => a.authority = value,
            "--concurrency" => a.concurrency = num(&flag, &value),
            "--connections" => a.connections = num(&flag, &value),
            "--secs" => a.secs = num(&flag, &value),
            "--max-calls" => a.max_calls = num(&flag, &value),
            "--stream-count" => stream_count = num(&flag, &value),
            "--message-bytes" => a.message_bytes = num(&flag, &value),
            "--mode" => match value.as_str() {
                "unary" => stream = false,
                "stream" => stream = true,
                _ => load_usage("--mode: unary or stream"),
            },
            _ => load_usage(&format!("unknown flag {flag}")),
        }
    }
    if stream {
        a.mode = Mode::Stream(stream_count.max(1));
    }
    if let Some(addr) = a.addr
        && !addr.ip().is_loopback()
    {
        load_usage("--addr: 127.0.0.1 only");
    }
    if a.concurrency == 0 || a.connections == 0 || a.connections > a.concurrency {
        load_usage("need 1 <= --connections <= --concurrency");
    }
    if !(a.secs > 0.0 && a.secs <= 600.0) {
        load_usage("--secs: more than 0, at most 600");
    }
    a
}

/// What one worker saw: latencies of the calls that succeeded (µs), errors by code.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    messages: u64,
    errors: BTreeMap<String, u64>,
}

async fn one_call(client: &mut EchoClient, mode: Mode, message: &str) -> Result<u64, Status> {
    let req = EchoRequest {
        message: message.to_owned(),
        ..EchoRequest::default()
    };
    match mode {
        Mode::Unary => client.unary(Request::new(req)).await.map(|_| 1),
        Mode::Stream(count) => {
            let req = EchoRequest { count, ..req };
            let mut replies = client.server_stream(Request::new(req)).await?.into_inner();
            let mut n = 0;
            while replies.message().await?.is_some() {
                n += 1;
            }
            if n == u64::from(count) {
                Ok(n)
            } else {
                Err(Status::data_loss(format!("{n} of {count} replies")))
            }
        }
    }
}

/// `loadtest grpc-load`: see [`load_usage`]. Prints a summary and one `GRPC_JSON {...}` line;
/// exit 0 when every call succeeded, 1 when some failed, 2 when it could not run.
pub fn run_load(argv: Vec<String>) -> i32 {
    let a = parse_load(argv);
    runtime().block_on(load(a))
}

async fn load(a: LoadArgs) -> i32 {
    // Without an address: a cell in this process (the quick check; a benchmark runs it apart).
    let local = match a.addr {
        Some(_) => None,
        None => Some(GrpcCell::h2c("local", "local").await),
    };
    let addr = a
        .addr
        .or(local.as_ref().map(|c| c.addr))
        .expect("an address");
    // `one_connection` panics on a refused connection: say so plainly first.
    if let Err(e) = tokio::net::TcpStream::connect(addr).await {
        eprintln!("grpc-load: cannot connect to {addr}: {e}");
        return 2;
    }
    let mut clients = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        let (client, _conn) = EchoClient::one_connection(addr, &a.authority).await;
        clients.push(client);
    }
    let message = "x".repeat(a.message_bytes);
    // One call first: a path that does not work is a setup error, not a load result.
    let probe = EchoRequest {
        message: message.clone(),
        ..EchoRequest::default()
    };
    match clients[0].unary(Request::new(probe)).await {
        Ok(r) => {
            let r = r.into_inner();
            println!(
                "probe: cell {:?}, {}, authority {:?}",
                r.cell, r.version, r.authority
            );
        }
        Err(s) => {
            eprintln!(
                "grpc-load: the probe call to {addr} (authority {}) failed: {:?}: {}",
                a.authority,
                s.code(),
                s.message()
            );
            return 2;
        }
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(a.secs);
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..a.concurrency {
        let mut client = clients[i % clients.len()].clone();
        let issued = Arc::clone(&issued);
        let (mode, message, max) = (a.mode, message.clone(), a.max_calls);
        workers.spawn(async move {
            let mut t = Tally::default();
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max {
                let t0 = Instant::now();
                match tokio::time::timeout(CALL_TIMEOUT, one_call(&mut client, mode, &message))
                    .await
                {
                    Ok(Ok(n)) => {
                        let us = t0.elapsed().as_micros();
                        t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                        t.messages += n;
                    }
                    Ok(Err(s)) => *t.errors.entry(format!("{:?}", s.code())).or_default() += 1,
                    Err(_) => *t.errors.entry("client_timeout".to_owned()).or_default() += 1,
                }
            }
            t
        });
    }
    let mut all = Tally::default();
    while let Some(t) = workers.join_next().await {
        let t = t.expect("worker");
        all.latencies_us.extend(t.latencies_us);
        all.messages += t.messages;
        for (code, n) in t.errors {
            *all.errors.entry(code).or_default() += n;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(local);
    report(&a, addr, elapsed, all)
}

fn report(a: &LoadArgs, addr: SocketAddr, elapsed: f64, mut all: Tally) -> i32 {
    all.latencies_us.sort_unstable();
    let l = &all.latencies_us;
    let ok = l.len() as u64;
    let failed: u64 = all.errors.values().sum();
    let mean = if l.is_empty() {
        0.0
    } else {
        l.iter().map(|&x| f64::from(x)).sum::<f64>() / l.len() as f64
    };
    let mode = match a.mode {
        Mode::Unary => "unary".to_owned(),
        Mode::Stream(n) => format!("stream:{n}"),
    };
    println!(
        "grpc-load {mode} -> {addr} ({}), {} concurrent on {} connection(s), {elapsed:.2} s",
        a.authority, a.concurrency, a.connections
    );
    println!(
        "calls ok {ok}, failed {failed}, {:.0} calls/s, {:.0} messages/s",
        ok as f64 / elapsed,
        all.messages as f64 / elapsed
    );
    println!(
        "latency µs: p50 {} p90 {} p99 {} p99.9 {} max {} mean {mean:.0}",
        pct(l, 0.5),
        pct(l, 0.9),
        pct(l, 0.99),
        pct(l, 0.999),
        l.last().copied().unwrap_or(0)
    );
    for (code, n) in &all.errors {
        println!("errors {code}: {n}");
    }
    let json = serde_json::json!({
        "mode": mode,
        "calls": ok,
        "failed": failed,
        "messages": all.messages,
        "secs": elapsed,
        "rate": ok as f64 / elapsed,
        "p50_us": pct(l, 0.5),
        "p90_us": pct(l, 0.9),
        "p99_us": pct(l, 0.99),
        "p999_us": pct(l, 0.999),
        "max_us": l.last().copied().unwrap_or(0),
        "mean_us": mean,
        "errors": all.errors,
    });
    println!("GRPC_JSON {json}");
    if failed > 0 || ok == 0 { 1 } else { 0 }
}
