//! `tracing.sample_ratio` over many new traces: the share of requests whose server span is
//! exported stays within two percentage points of the ratio, every sampled request (and only
//! those) tells its cell `flags 01`, each sampled trace is its own, and the exporter's counter
//! agrees with what the receiver holds.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;

use crate::cell::TracedCell;
use crate::common::cells::{eventually, metric};
use crate::common::otlp::{Receiver, hex, is_proxy_server};
use crate::{DROPPED, EXPORTED, HOST, proxy, tracing};

const RATIO: f64 = 0.2;
const REQUESTS: usize = 10_000;
/// Client connections, each sending its share of the requests one after another.
const CONNECTIONS: usize = 16;
/// The whole test, in a debug build, on a small machine.
const BOUND: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampled_share_of_new_traces_follows_the_ratio() {
    tokio::time::timeout(BOUND, run())
        .await
        .expect("the sampling test did not finish in time");
}

async fn run() {
    let rx = Receiver::start().await;
    let cell = TracedCell::start(None).await;
    // `never`: every request starts a new trace, decided by the ratio alone.
    let more = format!("sample_ratio = {RATIO}\ntrust_incoming = \"never\"");
    let h = proxy("", &tracing(&rx.url(), &more), vec![cell.url()]).await;

    let started = Instant::now();
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONNECTIONS)
        .build_http::<Full<Bytes>>();
    let mut senders = JoinSet::new();
    for c in 0..CONNECTIONS {
        let (client, addr) = (client.clone(), h.addr);
        senders.spawn(async move {
            for i in (c..REQUESTS).step_by(CONNECTIONS) {
                let req = Request::get(format!("http://{addr}/r/{i}"))
                    .header("host", HOST)
                    .body(Full::default())
                    .unwrap();
                let resp = client.request(req).await.unwrap();
                assert_eq!(resp.status(), 200, "request {i}");
                resp.into_body().collect().await.unwrap();
            }
        });
    }
    while let Some(r) = senders.join_next().await {
        r.unwrap();
    }
    let sent = started.elapsed();

    let seen = cell.seen();
    assert_eq!(seen.len(), REQUESTS);
    let flags: Vec<String> = seen.iter().map(|s| s.parts()[3].clone()).collect();
    assert!(flags.iter().all(|f| f == "00" || f == "01"), "odd flags");
    let sampled = flags.iter().filter(|f| *f == "01").count();

    // Every sampled request's server span (and its attempt) arrives; nothing else does.
    let spans = rx
        .wait_until(
            Duration::from_secs(20),
            "a server span per sampled request",
            |s| s.iter().filter(|r| is_proxy_server(r)).count() >= sampled,
        )
        .await;
    let servers: Vec<_> = spans.iter().filter(|r| is_proxy_server(r)).collect();
    assert_eq!(
        servers.len(),
        sampled,
        "server spans vs flags 01 at the cell"
    );
    let share = servers.len() as f64 / REQUESTS as f64;
    assert!(
        (share - RATIO).abs() <= 0.02,
        "{} of {REQUESTS} sampled ({share:.4}), ratio {RATIO}",
        servers.len()
    );
    let mut traces: Vec<String> = servers.iter().map(|r| hex(&r.span.trace_id)).collect();
    traces.sort();
    traces.dedup();
    assert_eq!(
        traces.len(),
        servers.len(),
        "two sampled requests shared a trace"
    );
    // The cell was told exactly the sampled traces with flags 01.
    let mut told: Vec<String> = seen
        .iter()
        .filter(|s| s.parts()[3] == "01")
        .map(|s| s.parts()[1].clone())
        .collect();
    told.sort();
    assert_eq!(told, traces);

    let total = spans.len();
    assert_eq!(total, 2 * sampled, "a server span and one attempt each");
    eventually(Duration::from_secs(5), "the exported counter", || async {
        metric(&h, EXPORTED, &[]).await == total as f64
    })
    .await;
    assert_eq!(metric(&h, DROPPED, &[]).await, 0.0);
    eprintln!(
        "{REQUESTS} requests over {CONNECTIONS} connections in {sent:?}; {sampled} sampled ({share:.4})"
    );
    h.shutdown().await;
}
