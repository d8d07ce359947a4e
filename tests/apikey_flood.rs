//! A flood of random API keys against the built binary, run as a child process so its resident
//! memory can be read from `/proc/<pid>/status` without counting the test's client: every key
//! is answered 401 cheaply, with bounded memory and a bounded number of registry reads, whether
//! the registry file is JSON Lines (streamed for each lookup) or TOML (parsed whole). The rest
//! of the API key tests run the proxy in-process (`tests/apikey_proxy.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cellgate::apikey::{ID_LEN, PREFIX, generate};
use cellgate::demo::spawn_cells;
use common::apikeys::{LOOKUPS, config, key_entry, key_rejections, new_key, registry_text};
use common::cell_list;
use common::limits::sum;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

/// Requests in the flood, and the keep-alive connections they are spread over.
const FLOOD: usize = 100_000;
const CONNECTIONS: usize = 16;
/// `registry.lookup_rate` and `registry.lookup_burst` of the flood's proxy (the defaults).
const LOOKUP_RATE: f64 = 20.0;
const LOOKUP_BURST: f64 = 40.0;
/// How much the proxy's resident memory may grow during the flood.
const RSS_GROWTH: u64 = 64 << 20;

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A `cellgate serve` child process, killed (by its pid) when dropped.
struct ChildProxy {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for ChildProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildProxy {
    /// Starts the binary with `config` (its listener and admin addresses replaced by free
    /// ports) and the registry file `file` holding `registry`, and waits until it is ready.
    async fn start(config: &str, file: &str, registry: &str) -> Self {
        let (addr, admin) = (free_port(), free_port());
        let any = "address = \"127.0.0.1:0\"";
        let config = config
            .replacen(any, &format!("address = \"{addr}\""), 1)
            .replacen(any, &format!("address = \"{admin}\""), 1)
            .replace("path = \"registry.toml\"", &format!("path = \"{file}\""));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), registry).unwrap();
        std::fs::write(dir.path().join("cellgate.toml"), config).unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cellgate"))
            .arg("serve")
            .arg("--config")
            .arg(dir.path().join("cellgate.toml"))
            .stdout(log("out.log"))
            .stderr(log("err.log"))
            .spawn()
            .unwrap();
        let mut p = Self {
            child,
            addr,
            admin,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((StatusCode::OK, _)) = p.admin_get("/readyz").await {
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                let err = std::fs::read_to_string(p.dir.path().join("err.log")).unwrap();
                panic!("cellgate exited ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "cellgate never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn admin_get(&self, path: &str) -> Result<(StatusCode, String), String> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let uri = format!("http://{}{path}", self.admin);
        let resp = client
            .get(uri.parse().unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    }

    async fn metrics(&self) -> String {
        let (status, body) = self.admin_get("/metrics").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        body
    }
}

/// The resident memory of process `pid` (`VmRSS`), in bytes.
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Random well-formed keys, cheaply (xorshift64*): a debug build's SHA-256 and a system call
/// per key would make the client, not the proxy, the bottleneck. Seeded from the OS.
struct RandomKeys(u64);

impl RandomKeys {
    fn new() -> Self {
        let seed = generate().unwrap().hash.to_bytes();
        let mut s = [0u8; 8];
        s.copy_from_slice(&seed[..8]);
        Self(u64::from_le_bytes(s) | 1)
    }

    fn next(&mut self) -> String {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut out = String::with_capacity(cellgate::apikey::KEY_LEN);
        out.push_str(PREFIX);
        for i in 0..ID_LEN + 1 + cellgate::apikey::SECRET_LEN {
            if i == ID_LEN {
                out.push('_');
                continue;
            }
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
            out.push(char::from(ALPHABET[(r >> 59) as usize]));
        }
        out
    }
}

/// What one connection's share of the flood was answered.
#[derive(Debug, Default)]
struct Tally {
    unauthorized: u64,
    other: Vec<String>,
}

/// Sends `n` requests, each with a fresh random well-formed key, one after another on one
/// keep-alive connection to `addr`.
async fn flood_one(addr: SocketAddr, n: usize) -> Tally {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (mut keys, mut t) = (RandomKeys::new(), Tally::default());
    for _ in 0..n {
        let req = Request::get("/")
            .header("host", "api.test")
            .header("x-api-key", keys.next())
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.ready()
            .await
            .expect("the keep-alive connection closed");
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let has = |code: &str| {
            let needle = format!("\"error\":\"{code}\"");
            body.windows(needle.len()).any(|w| w == needle.as_bytes())
        };
        match status {
            StatusCode::UNAUTHORIZED if has("invalid_api_key") => t.unauthorized += 1,
            _ if t.other.len() < 5 => {
                t.other
                    .push(format!("{status} {}", String::from_utf8_lossy(&body)));
            }
            _ => {}
        }
    }
    t
}

/// The registry file a flood's proxy reads.
#[derive(Debug, Clone, Copy)]
enum Format {
    Toml,
    JsonLines,
}

/// Floods a proxy with `lookup_unknown` on, whose registry file (in `format`) holds one tenant
/// and one key, with `n` random keys, and checks what the flood test's comment says.
async fn flood(format: Format, n: usize) {
    let cells = spawn_cells(1, 1).await.unwrap();
    let a = new_key();
    let (file, registry) = match format {
        Format::Toml => (
            "registry.toml",
            registry_text(
                &cell_list(&cells),
                &[("acme", "cell-1", &[])],
                &key_entry(&a, "acme", "version = 1"),
            ),
        ),
        Format::JsonLines => {
            let url = format!("http://{}", cells[0][0].addr);
            let lines = [
                json!({"cell": {"id": "cell-1", "targets": [url]}}),
                json!({"tenant": {"id": "acme", "cell": "cell-1", "version": 1}}),
                json!({"apikey": {"id": a.id, "tenant": "acme", "hash": a.hash.to_string(),
                    "version": 1}}),
            ];
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            ("registry.jsonl", text)
        }
    };
    let lookup = format!(
        "lookup_unknown = true\nlookup_rate = {LOOKUP_RATE:?}\nlookup_burst = {LOOKUP_BURST:?}"
    );
    let p = ChildProxy::start(&config(r#"["api_key"]"#, &lookup, ""), file, &registry).await;
    let before = p.metrics().await;
    let pid = p.child.id();
    let rss_before = rss_of(pid);

    // Resident memory sampled every 5 ms while the flood runs.
    let peak = Arc::new(AtomicU64::new(rss_before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let started = Instant::now();
    let per_connection = n / CONNECTIONS;
    let flood = async {
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| tokio::spawn(flood_one(p.addr, per_connection)))
            .collect();
        let mut all = Tally::default();
        for t in tasks {
            let t = t.await.unwrap();
            all.unauthorized += t.unauthorized;
            all.other.extend(t.other);
        }
        all
    };
    let tally = tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("the flood did not finish in 60 s");
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let peak = peak.load(Ordering::Relaxed).max(rss_of(pid));

    let sent = (per_connection * CONNECTIONS) as u64;
    assert!(
        tally.other.is_empty(),
        "unexpected answers: {:?}",
        tally.other
    );
    assert_eq!(tally.unauthorized, sent, "{tally:?}");

    let after = p.metrics().await;
    let delta = |result: &str| {
        sum(&after, LOOKUPS, &[("result", result)]) - sum(&before, LOOKUPS, &[("result", result)])
    };
    let reads = delta("found") + delta("absent") + delta("error");
    let allowed = LOOKUP_BURST + LOOKUP_RATE * elapsed.as_secs_f64();
    assert!(
        reads <= allowed.floor(),
        "{reads} registry reads, at most {allowed} allowed"
    );
    assert!(reads >= 1.0, "the burst was never used");
    assert_eq!(delta("found"), 0.0);
    // A key whose read found nothing is counted `unknown`; one over the cap, not read at all,
    // `unchecked`: both answered 401.
    let unknown = key_rejections(&after, "unknown") - key_rejections(&before, "unknown");
    let unchecked = key_rejections(&after, "unchecked") - key_rejections(&before, "unchecked");
    assert_eq!(unknown, delta("absent"), "{tally:?}");
    assert_eq!(unknown + unchecked, sent as f64, "{tally:?}");
    assert!(
        unknown >= 1.0 && unchecked >= 1.0,
        "{unknown} unknown, {unchecked} unchecked"
    );
    assert_eq!(
        unchecked,
        delta("limited"),
        "every key over the cap was refused unread"
    );
    assert_eq!(delta("negative_hit"), 0.0, "random ids never repeat");

    let report = format!(
        "flood ({format:?}): {sent} requests in {elapsed:.2?} ({:.0}/s) over {CONNECTIONS} \
         connections: {} x 401 ({unknown} unknown, {unchecked} unchecked); {reads} registry reads \
         (at most {allowed:.0}); RSS {} MiB, peak {} MiB",
        sent as f64 / elapsed.as_secs_f64(),
        tally.unauthorized,
        rss_before >> 20,
        peak >> 20
    );
    eprintln!("{report}");
    assert!(
        peak.saturating_sub(rss_before) < RSS_GROWTH,
        "RSS grew by more than {} MiB: {report}",
        RSS_GROWTH >> 20
    );

    // The proxy still serves a real key at once.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{}/", p.addr))
        .header("x-api-key", &a.key)
        .body(Full::default())
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), StatusCode::OK);
}

// With `registry.lookup_unknown` on, an id the snapshot lacks costs a registry read only while
// the miss bucket shared by all lookups has a token (`placement::lookup`): the read finds
// nothing and the answer is 401 (`unknown`, and the id is cached negatively); past the cap the
// answer is 401 too, without a read (`unchecked`: a guess, not an outage, so not 503). Random
// ids never repeat, so the negative cache never answers. Hence: every answer is 401, the
// `unknown`s are the reads that found nothing, the `unchecked`s the keys over the cap, and
// reads stay within `lookup_burst + lookup_rate x elapsed`.
// (With `lookup_unknown` off, the default for a file registry, every answer would be 401 and
// no read made: see `every_bad_key_gets_the_same_401_and_is_counted_by_its_own_reason` in
// `tests/apikey_proxy.rs`.)
//
// The registry is JSON Lines, whose lookups stream the file for one record; the same flood
// against a TOML registry, parsed whole for each read, is the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_keys_is_refused_with_bounded_memory_and_registry_reads() {
    flood(Format::JsonLines, FLOOD).await;
}

// Each on-demand lookup in a TOML registry parses the whole file into a `RegistryData`; its map
// builders allocate a branch's leaves only on its first entry (they once allocated all 65,536
// at once, about 6 MiB per read, and a burst of reads took the RSS up by 100 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_keys_against_a_toml_registry_keeps_memory_bounded() {
    flood(Format::Toml, FLOOD / 5).await;
}
