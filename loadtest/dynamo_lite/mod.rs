//! dynamo-lite: a small, fast DynamoDB-API server for exercising cellgate's DynamoDB path at a
//! million items, where moto is far too slow (its `Scan` of 50,000 items stalled the proxy's
//! epoch reads). `loadtest dynamo-lite --port P [--tenants N --cells C --targets URL,..]`
//! serves it on 127.0.0.1; the `evacuate` scenario runs it inside the driver.
//!
//! It speaks the JSON 1.0 protocol (`POST /`, `x-amz-target: DynamoDB_20120810.<Op>`), ignores
//! signatures and credentials, and keeps each table in memory ([`store`]), so the real cellgate
//! binary, pointed at it with `registry.endpoint_url`, runs its real SDK, HTTP, scan, poll,
//! delta and apply code. Only the operations cellgate calls are implemented ([`ops`]; the rest
//! answer `UnknownOperationException`), with the condition and update expressions its write
//! path sends ([`expr`]). Seeding builds the items in process with cellgate's own `schema`
//! conversions: a million tenants take seconds instead of hours of transactions.
//!
//! What it does not model: capacity and throttling (no `ProvisionedThroughputExceeded`, no
//! per-partition 1,000 WCU / 3,000 RCU limit, so hot keys such as the `epoch` item cost
//! nothing), partitions and their splits, eventual consistency (every read is strongly
//! consistent, so a lagging replica never shows), transaction isolation details (a transaction
//! runs under one lock: no `TransactionConflict` with a concurrent transaction, no idempotency
//! tokens), TTL deletion (expired items stay), size accounting (the 1 MB page and 400 KB item
//! are counted on JSON text), expression validation beyond what it evaluates (unused names or
//! values are accepted), Streams, indexes, sort keys, `Query`, `BatchWriteItem`, latency and
//! network failures. moto stays the API-fidelity check in CI (`tests/run.sh`).

pub mod expr;
pub mod ops;
pub mod store;
pub mod wire;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use cellgate::placement::CellState;
use cellgate::placement::dynamo::schema::{CellRecord, TargetGroup};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use self::store::Store;
use self::wire::Fault;

/// The tables a server answers from, shared with whoever seeds or inspects them.
pub type Shared = Arc<Mutex<Store>>;

const TARGET_PREFIX: &str = "DynamoDB_20120810.";

/// Answers one request.
async fn handle(
    req: Request<Incoming>,
    store: Shared,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let op = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .map(str::to_owned);
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let result = match (op, body) {
        (None, _) => Err(Fault::new(
            "UnknownOperationException",
            format!("no x-amz-target header of the form {TARGET_PREFIX}<Operation>"),
        )),
        (_, Err(e)) => Err(Fault::new("SerializationException", e.to_string())),
        (Some(op), Ok(body)) => match serde_json::from_slice(&body) {
            Err(e) => Err(Fault::new("SerializationException", e.to_string())),
            Ok(v) => {
                let mut s = store.lock().unwrap_or_else(PoisonError::into_inner);
                ops::call(&mut s, &op, &v)
            }
        },
    };
    let (status, text) = match result {
        Ok(t) => (StatusCode::OK, t),
        Err(f) => (
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_REQUEST),
            f.body(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    Ok(resp)
}

/// Serves `listener` until the runtime ends.
pub async fn serve(listener: tokio::net::TcpListener, store: Shared) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |r| handle(r, Arc::clone(&store)));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Serves `store` on 127.0.0.1:`port` (0: any free port) from a thread of its own with its own
/// runtime, for as long as the process lives; the address it listens on.
pub fn spawn_thread(store: Shared, port: u16) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("dynamo-lite".to_owned())
        .spawn(move || {
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => serve(l, store).await,
                    Err(e) => eprintln!("dynamo-lite: {e}"),
                }
            });
        })?;
    Ok(addr)
}

/// An SDK client for a dynamo-lite (or any local DynamoDB-API server) at `endpoint`, with
/// fixed test credentials (the server ignores them) and no instance metadata lookups.
pub async fn sdk_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    use aws_credential_types::Credentials;
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "dynamo-lite"))
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// The environment a `cellgate` child needs to reach a local server: fixed test credentials,
/// a region, no instance metadata.
pub const CHILD_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// A cell record with one `stable` group of `targets` (what `cellgate cell put` writes).
pub fn cell_record(id: &str, targets: Vec<String>) -> CellRecord {
    CellRecord {
        id: id.to_owned(),
        state: CellState::Active,
        region: None,
        groups: vec![TargetGroup {
            name: "stable".to_owned(),
            targets,
            weight: 100,
            version: "stable".to_owned(),
        }],
        preserve_host: None,
        max_in_flight: None,
        wave: None,
        protocol: None,
        place: cellgate::placement::capacity::CellCapacity::default(),
        tenants: 0,
        load: 0,
        version: 1,
    }
}

fn usage(why: &str) -> ! {
    eprintln!(
        "dynamo-lite: {why}\nflags: --port P (8000) --table NAME (cellgate) --tenants N (0) \
         --cells C (3) --targets URL[,URL..] (cell k gets the k-th, round robin; none: no cell \
         items)\nwith --tenants or --targets, the table is created and seeded as `cellgate \
         registry init` leaves it; without, create it with `cellgate registry init`"
    );
    std::process::exit(2)
}

/// `loadtest dynamo-lite`: serves until interrupted.
pub fn run(argv: Vec<String>) -> i32 {
    let (mut port, mut table, mut tenants, mut cells) =
        (8000u16, "cellgate".to_owned(), 0usize, 3usize);
    let mut targets: Vec<String> = Vec::new();
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let num = |v: &str| -> usize { v.parse().unwrap_or_else(|_| usage(v)) };
        match flag.as_str() {
            "--port" => port = u16::try_from(num(&value)).unwrap_or_else(|_| usage(&value)),
            "--table" => table = value,
            "--tenants" => tenants = num(&value),
            "--cells" => cells = num(&value).max(1),
            "--targets" => targets = value.split(',').map(str::to_owned).collect(),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let mut store = Store::default();
    if tenants > 0 || !targets.is_empty() {
        let records: Vec<CellRecord> = if targets.is_empty() {
            Vec::new()
        } else {
            (0..cells)
                .map(|k| {
                    cell_record(
                        &format!("cell-{}", k + 1),
                        vec![targets[k % targets.len()].clone()],
                    )
                })
                .collect()
        };
        let began = std::time::Instant::now();
        store::seed(&mut store, &table, tenants, cells, &records);
        eprintln!(
            "dynamo-lite: table {table} seeded with {tenants} tenants over {cells} cells ({} cell items) in {:.1} s",
            records.len(),
            began.elapsed().as_secs_f64()
        );
    }
    let store = Arc::new(Mutex::new(store));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("dynamo-lite: cannot listen on 127.0.0.1:{port}: {e}");
                return 2;
            }
        };
        eprintln!("dynamo-lite: listening on http://127.0.0.1:{port} (Ctrl-C stops it)");
        tokio::select! {
            () = serve(listener, store) => 0,
            _ = tokio::signal::ctrl_c() => 0,
        }
    })
}
