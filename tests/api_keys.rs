//! API keys as a tenant source and entitlements at the edge, end to end: a real proxy, real echo
//! cells that say which cell answered and which headers reached them, a file-backed registry
//! holding only the hashes of keys minted here with [`cellgate::apikey::generate`].
//!
//! Covered: each source combination (`api_key` alone, with `subdomain`, with `jwt`) and what
//! the cell sees (the key's id, never the key); every bad key answered with one and the same
//! 401, counted under its own reason; a revocation written to the registry file followed within
//! a bounded wait; a flood of random keys answered cheaply with bounded memory and a bounded
//! number of registry reads; entitlements by tenant, narrowed by a key's and a token's scopes,
//! through disguised paths.
//!
//! The flood runs the built binary as a child process, so its resident memory can be read from
//! `/proc/<pid>/status` without counting the test's client; every other test runs the proxy
//! in-process (`common::Harness`), as the rest of the suite does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cellgate::apikey::{ID_LEN, NewKey, PREFIX, generate};
use cellgate::demo::spawn_cells;
use common::jwks::{claims, mint};
use common::limits::{metrics, sum};
use common::{AUDIENCE, Harness, ISSUER, Reply, base_config, cell_list, token, within};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::Algorithm::RS256;
use serde_json::{Value, json};

/// Longest wait for something the proxy does in the background (a registry change).
const WAIT: Duration = Duration::from_secs(5);
const KEY_REJECTIONS: &str = "cellgate_api_key_rejections_total";
const NOT_ENTITLED: &str = "cellgate_not_entitled_total";
const LOOKUPS: &str = "cellgate_registry_lookups_total";

// ---------------------------------------------------------------------------------------------
// Harness: config, registry text, requests, checks.

/// One tenant record: id, cell, entitlements.
type Tenant<'a> = (&'a str, &'a str, &'a [&'a str]);

/// `acme` in cell-1 and `globex` in cell-2, no entitlements.
const TWO: &[Tenant<'static>] = &[("acme", "cell-1", &[]), ("globex", "cell-2", &[])];

/// The base config with `tenant.sources = sources` (a TOML array), `registry` lines added to
/// `[registry]` and `extra` appended.
fn config(sources: &str, registry: &str, extra: &str) -> String {
    let from = "sources = [\"jwt\", \"subdomain\"]";
    let poll = "poll_interval = \"20ms\"";
    let base = base_config(extra);
    assert!(
        base.contains(from) && base.contains(poll),
        "the base config changed"
    );
    base.replace(from, &format!("sources = {sources}"))
        .replace(poll, &format!("{poll}\n{registry}"))
}

/// Registry text: the cells, the tenants (with their entitlements), then `keys`.
fn registry_text(cells: &[(String, Vec<String>)], tenants: &[Tenant<'_>], keys: &str) -> String {
    let quoted = |v: &[&str]| {
        let q: Vec<String> = v.iter().map(|s| format!("\"{s}\"")).collect();
        format!("[{}]", q.join(", "))
    };
    let mut s = String::new();
    for (id, targets) in cells {
        let t: Vec<&str> = targets.iter().map(String::as_str).collect();
        s.push_str(&format!(
            "[[cells]]\nid = \"{id}\"\ntargets = {}\n\n",
            quoted(&t)
        ));
    }
    for (i, (id, cell, ents)) in tenants.iter().enumerate() {
        s.push_str(&format!(
            "[[tenants]]\nid = \"{id}\"\ncell = \"{cell}\"\nstatus = \"ACTIVE\"\nversion = {}\n",
            i + 1
        ));
        if !ents.is_empty() {
            s.push_str(&format!("entitlements = {}\n", quoted(ents)));
        }
        s.push('\n');
    }
    s.push_str(keys);
    s
}

/// An `[[apikeys]]` entry for `k`: its id and hash (never the key), `fields` added.
fn key_entry(k: &NewKey, tenant: &str, fields: &str) -> String {
    format!(
        "[[apikeys]]\nid = \"{}\"\ntenant = \"{tenant}\"\nhash = \"{}\"\n{fields}\n\n",
        k.id, k.hash
    )
}

fn new_key() -> NewKey {
    generate().unwrap()
}

/// The secret part of a key's text.
fn secret(k: &NewKey) -> &str {
    &k.key[PREFIX.len() + ID_LEN + 1..]
}

fn now() -> u64 {
    common::jwks::now()
}

/// The proxy (3 echo cells, one target each) with `sources`, `registry` settings, `extra`
/// config, `tenants` and the `keys` entries.
async fn start(
    sources: &str,
    registry: &str,
    extra: &str,
    tenants: &[Tenant<'_>],
    keys: &str,
) -> Harness {
    let cells = spawn_cells(3, 1).await.unwrap();
    let text = registry_text(&cell_list(&cells), tenants, keys);
    Harness::start_raw(&config(sources, registry, extra), &text, cells).await
}

/// `method path`, with `host` (else the proxy's address) and `headers`.
async fn call(
    h: &Harness,
    method: Method,
    host: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", h.addr));
    if let Some(host) = host {
        b = b.header("host", host);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    h.send(b.body(Full::default()).unwrap()).await
}

/// `GET path` presenting `key` in `x-api-key`.
async fn with_key(h: &Harness, path: &str, key: &str) -> Reply {
    call(h, Method::GET, None, path, &[("x-api-key", key)]).await
}

/// The echo cell `cell` answered for `tenant`; returns the headers it received.
fn from_cell(r: &Reply, cell: &str, tenant: &str, what: &str) -> serde_json::Map<String, Value> {
    assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.body);
    let v = r.json();
    assert_eq!(v["cell"], cell, "{what}: {}", r.body);
    assert_eq!(v["tenant"], tenant, "{what}: {}", r.body);
    v["headers"].as_object().unwrap().clone()
}

/// The cell saw `k`'s id in `x-api-key-id` and nothing of the key itself.
fn saw_only_the_id(headers: &serde_json::Map<String, Value>, k: &NewKey, what: &str) {
    assert_eq!(headers.get("x-api-key-id"), Some(&json!(k.id)), "{what}");
    assert!(!headers.contains_key("x-api-key"), "{what}: {headers:?}");
    if let Some(a) = headers.get("authorization") {
        let a = a.as_str().unwrap();
        assert!(!a.to_ascii_lowercase().starts_with("apikey"), "{what}: {a}");
    }
    let all = serde_json::to_string(headers).unwrap();
    assert!(
        !all.contains(secret(k)),
        "{what}: the secret reached the cell"
    );
}

/// The proxy itself answered `status` with `code` and a request id (an echo cell's JSON has
/// `target`); returns the body.
fn refused(r: &Reply, status: StatusCode, code: &str, what: &str) -> Value {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    let v = r.json();
    assert_eq!(v["error"], code, "{what}: {}", r.body);
    assert!(
        v.get("target").is_none(),
        "{what}: reached a cell: {}",
        r.body
    );
    let id = v["request_id"].as_str().unwrap_or_default();
    assert!(!id.is_empty(), "{what}: no request id: {}", r.body);
    v
}

fn key_rejections(text: &str, reason: &str) -> f64 {
    sum(text, KEY_REJECTIONS, &[("reason", reason)])
}

// ---------------------------------------------------------------------------------------------
// 1. Source combinations.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_alone_names_the_tenant_from_either_header_and_the_cell_sees_only_its_id() {
    within(async {
        let (a, g) = (new_key(), new_key());
        let keys = key_entry(&a, "acme", "version = 1") + &key_entry(&g, "globex", "version = 1");
        let h = start(r#"["api_key"]"#, "", "", TWO, &keys).await;

        // In x-api-key, with a forged x-api-key-id beside it.
        let r = call(
            &h,
            Method::GET,
            None,
            "/orders",
            &[("x-api-key", &a.key), ("x-api-key-id", "forgedforged")],
        )
        .await;
        let seen = from_cell(&r, "cell-1", "acme", "x-api-key");
        saw_only_the_id(&seen, &a, "x-api-key");

        // As Authorization: ApiKey (any case of the scheme), for the other tenant.
        for scheme in ["ApiKey", "apikey"] {
            let auth = format!("{scheme} {}", g.key);
            let r = call(
                &h,
                Method::GET,
                None,
                "/",
                &[("authorization", &auth), ("x-api-key-id", &a.id)],
            )
            .await;
            let seen = from_cell(&r, "cell-2", "globex", scheme);
            saw_only_the_id(&seen, &g, scheme);
            assert!(!seen.contains_key("authorization"), "{scheme}: {seen:?}");
        }

        // No key at all: the only source that could name the tenant asks for one.
        let r = call(&h, Method::GET, Some("acme.app.test"), "/", &[]).await;
        refused(&r, StatusCode::UNAUTHORIZED, "api_key_required", "no key");
        let www = r.headers["www-authenticate"].to_str().unwrap();
        assert!(www.starts_with("ApiKey"), "{www}");
        assert_eq!(key_rejections(&metrics(&h).await, "missing"), 1.0);
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subdomain_and_api_key_must_agree() {
    within(async {
        let a = new_key();
        let keys = key_entry(&a, "acme", "version = 1");
        let h = start(r#"["subdomain", "api_key"]"#, "", "", TWO, &keys).await;

        let r = call(
            &h,
            Method::GET,
            Some("acme.app.test"),
            "/",
            &[("x-api-key", &a.key)],
        )
        .await;
        saw_only_the_id(&from_cell(&r, "cell-1", "acme", "agreeing"), &a, "agreeing");

        let r = call(
            &h,
            Method::GET,
            Some("globex.app.test"),
            "/",
            &[("x-api-key", &a.key)],
        )
        .await;
        refused(&r, StatusCode::FORBIDDEN, "tenant_mismatch", "disagreeing");

        // The subdomain alone still routes; a client's x-api-key-id never reaches the cell.
        let r = call(
            &h,
            Method::GET,
            Some("globex.app.test"),
            "/",
            &[("x-api-key-id", &a.id)],
        )
        .await;
        let seen = from_cell(&r, "cell-2", "globex", "subdomain only");
        assert!(!seen.contains_key("x-api-key-id"), "{seen:?}");
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_for_another_tenant_than_the_keys_is_403() {
    within(async {
        let a = new_key();
        let keys = key_entry(&a, "acme", "version = 1");
        let h = start(r#"["jwt", "api_key"]"#, "", "", TWO, &keys).await;

        let other = format!("Bearer {}", token("RS256", "globex"));
        let r = call(
            &h,
            Method::GET,
            None,
            "/",
            &[("authorization", &other), ("x-api-key", &a.key)],
        )
        .await;
        refused(
            &r,
            StatusCode::FORBIDDEN,
            "tenant_mismatch",
            "token for globex",
        );

        // The same key with a token for its own tenant: routed; the token goes on, the key not.
        let own = format!("Bearer {}", token("RS256", "acme"));
        let r = call(
            &h,
            Method::GET,
            None,
            "/",
            &[("authorization", &own), ("x-api-key", &a.key)],
        )
        .await;
        let seen = from_cell(&r, "cell-1", "acme", "token for acme");
        saw_only_the_id(&seen, &a, "token for acme");
        assert_eq!(seen.get("authorization"), Some(&json!(own)));
        h.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. Refusals.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_key_gets_the_same_401_and_is_counted_by_its_own_reason() {
    within(async {
        let (good, revoked, expired, stranger) = (new_key(), new_key(), new_key(), new_key());
        let keys = key_entry(&good, "acme", "version = 1")
            + &key_entry(&revoked, "acme", "status = \"REVOKED\"\nversion = 1")
            + &key_entry(&expired, "acme", &format!("expires_at = {}", now() - 60));
        let h = start(r#"["api_key"]"#, "", "", TWO, &keys).await;
        saw_only_the_id(
            &from_cell(
                &with_key(&h, "/", &good.key).await,
                "cell-1",
                "acme",
                "good",
            ),
            &good,
            "good",
        );

        let wrong_secret = format!("{PREFIX}{}_{}", good.id, secret(&stranger));
        let truncated = &good.key[..good.key.len() - 1];
        let upper = good.key.to_uppercase();
        let cases: [(&str, &str, &str); 7] = [
            ("malformed", "not-a-key", "junk"),
            ("malformed", truncated, "truncated"),
            ("malformed", &upper, "upper case"),
            ("unknown", &stranger.key, "unknown id"),
            ("wrong_secret", &wrong_secret, "wrong secret"),
            ("revoked", &revoked.key, "revoked"),
            ("expired", &expired.key, "expired"),
        ];
        let mut bodies = Vec::new();
        for (reason, key, what) in cases {
            let before = metrics(&h).await;
            let r = with_key(&h, "/", key).await;
            let mut v = refused(&r, StatusCode::UNAUTHORIZED, "invalid_api_key", what);
            let www = r.headers["www-authenticate"].to_str().unwrap();
            assert!(www.starts_with("ApiKey"), "{what}: {www}");
            assert!(!r.body.contains(key), "{what}: the key was echoed");
            let after = metrics(&h).await;
            for other in [
                "missing",
                "malformed",
                "unknown",
                "wrong_secret",
                "revoked",
                "expired",
            ] {
                let d = key_rejections(&after, other) - key_rejections(&before, other);
                let want = if other == reason { 1.0 } else { 0.0 };
                assert_eq!(d, want, "{what}: counted {d} under {other}");
            }
            v.as_object_mut().unwrap().remove("request_id");
            bodies.push((what, v));
        }
        // Nothing in the answer tells one refusal from another.
        for (what, v) in &bodies {
            assert_eq!(v, &json!({"error": "invalid_api_key"}), "{what}");
        }

        // Two keys in one request are malformed, whichever would have passed.
        let before = key_rejections(&metrics(&h).await, "malformed");
        let auth = format!("ApiKey {}", good.key);
        let r = call(
            &h,
            Method::GET,
            None,
            "/",
            &[("x-api-key", &good.key), ("authorization", &auth)],
        )
        .await;
        refused(&r, StatusCode::UNAUTHORIZED, "invalid_api_key", "two keys");
        assert_eq!(
            key_rejections(&metrics(&h).await, "malformed") - before,
            1.0
        );

        // A file registry does not look unknown ids up by default: no read was made.
        let text = metrics(&h).await;
        for result in ["found", "absent", "error", "limited"] {
            assert_eq!(sum(&text, LOOKUPS, &[("result", result)]), 0.0, "{result}");
        }
        assert_eq!(sum(&text, "cellgate_placement_api_keys", &[]), 3.0);
        h.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Revocation through the registry file.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_written_to_the_registry_file_is_followed() {
    within(async {
        let (a, kept) = (new_key(), new_key());
        let entry = |status: &str, version: u64| {
            key_entry(
                &a,
                "acme",
                &format!("status = \"{status}\"\nversion = {version}"),
            ) + &key_entry(&kept, "acme", "version = 1")
        };
        let h = start(r#"["api_key"]"#, "", "", TWO, &entry("ACTIVE", 1)).await;
        from_cell(&with_key(&h, "/", &a.key).await, "cell-1", "acme", "before");

        let cells = cell_list(&h.cells);
        let written = Instant::now();
        h.write_registry(&registry_text(&cells, TWO, &entry("REVOKED", 2)));
        loop {
            let r = with_key(&h, "/", &a.key).await;
            if r.status == StatusCode::UNAUTHORIZED {
                refused(&r, StatusCode::UNAUTHORIZED, "invalid_api_key", "after");
                break;
            }
            from_cell(&r, "cell-1", "acme", "not yet revoked");
            assert!(
                written.elapsed() < WAIT,
                "the revocation was not followed within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = written.elapsed();
        // It stays revoked, counted as such; the other key of the tenant is untouched.
        for _ in 0..5 {
            let r = with_key(&h, "/", &a.key).await;
            refused(
                &r,
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "still revoked",
            );
        }
        assert!(key_rejections(&metrics(&h).await, "revoked") >= 6.0);
        from_cell(
            &with_key(&h, "/", &kept.key).await,
            "cell-1",
            "acme",
            "kept",
        );
        eprintln!("revocation followed in {took:?}");
        h.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. Flood of random keys, against the built binary in a child process.

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
// no read made: see `every_bad_key_gets_the_same_401_and_is_counted_by_its_own_reason`.)
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

// ---------------------------------------------------------------------------------------------
// 5. Entitlements.

const ENTITLEMENTS: &str = r#"
[entitlements]
token_scope_claim = "scope"

[[entitlements.routes]]
entitlement = "billing"
methods = ["GET", "POST"]
path_prefix = "/v1/billing"

[[entitlements.routes]]
entitlement = "billing-admin"
methods = ["DELETE"]
path_prefix = "/v1/billing"

[[entitlements.routes]]
entitlement = "reports"
path = "/v1/reports/summary"
"#;

/// `acme` entitled to billing (cell-1), `globex` to billing and reports (cell-2).
const ENTITLED: &[Tenant<'static>] = &[
    ("acme", "cell-1", &["billing"]),
    ("globex", "cell-2", &["billing", "reports"]),
];

fn not_entitled(text: &str, by: &str) -> f64 {
    sum(text, NOT_ENTITLED, &[("by", by)])
}

/// Refused 403 `not_entitled` naming `entitlement`, counted once under `by`.
async fn denied(
    h: &Harness,
    r: impl Future<Output = Reply>,
    entitlement: &str,
    by: &str,
    what: &str,
) {
    let before = metrics(h).await;
    let r = r.await;
    let v = refused(&r, StatusCode::FORBIDDEN, "not_entitled", what);
    assert_eq!(v["entitlement"], entitlement, "{what}: {}", r.body);
    let after = metrics(h).await;
    for other in ["tenant", "key", "token"] {
        let d = not_entitled(&after, other) - not_entitled(&before, other);
        let want = if other == by { 1.0 } else { 0.0 };
        assert_eq!(d, want, "{what}: counted {d} under by={other}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_reaches_the_routes_it_is_entitled_to_whatever_the_path_looks_like() {
    within(async {
        let h = start(
            r#"["jwt", "subdomain", "api_key"]"#,
            "",
            ENTITLEMENTS,
            ENTITLED,
            "",
        )
        .await;
        let acme = Some("acme.app.test");
        let get = |path: &'static str| call(&h, Method::GET, acme, path, &[]);

        for path in [
            "/v1/billing",
            "/v1/billing/invoices",
            "/V1//Billing/%78",
            "/other",
        ] {
            from_cell(&get(path).await, "cell-1", "acme", path);
        }
        // A method no route names needs nothing.
        let r = call(&h, Method::PUT, acme, "/v1/billing/x", &[]).await;
        from_cell(&r, "cell-1", "acme", "PUT");
        // An exact path covers itself only.
        from_cell(
            &get("/v1/reports/summary/x").await,
            "cell-1",
            "acme",
            "below exact",
        );

        for path in [
            "/v1/reports/summary",
            "/V1/Reports//%73ummary",
            "/v1/x/../reports/summary",
        ] {
            denied(&h, get(path), "reports", "tenant", path).await;
        }
        let del = call(&h, Method::DELETE, acme, "/V1//Billing/%78", &[]);
        denied(&h, del, "billing-admin", "tenant", "DELETE").await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_scopes_narrow_its_tenants_entitlements() {
    within(async {
        let (scoped, whole) = (new_key(), new_key());
        let keys = key_entry(&scoped, "globex", "scopes = [\"reports\"]\nversion = 1")
            + &key_entry(&whole, "globex", "version = 1");
        let h = start(
            r#"["jwt", "subdomain", "api_key"]"#,
            "",
            ENTITLEMENTS,
            ENTITLED,
            &keys,
        )
        .await;

        let r = with_key(&h, "/v1/reports/summary", &scoped.key).await;
        saw_only_the_id(
            &from_cell(&r, "cell-2", "globex", "scoped"),
            &scoped,
            "scoped",
        );
        for path in ["/v1/billing/invoices", "/V1//Billing/%78"] {
            denied(&h, with_key(&h, path, &scoped.key), "billing", "key", path).await;
        }
        // A route needing nothing is open to a scoped key too.
        from_cell(
            &with_key(&h, "/other", &scoped.key).await,
            "cell-2",
            "globex",
            "open",
        );

        // A key without scopes carries its tenant's whole entitlement.
        for path in ["/v1/reports/summary", "/V1//Billing/%78"] {
            from_cell(
                &with_key(&h, path, &whole.key).await,
                "cell-2",
                "globex",
                path,
            );
        }
        // ...and no more: DELETE needs billing-admin, which globex lacks.
        let headers = [("x-api-key", whole.key.as_str())];
        let r = call(&h, Method::DELETE, None, "/v1/billing/x", &headers);
        denied(&h, r, "billing-admin", "tenant", "DELETE").await;
        h.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_scope_claim_narrows_its_tenants_entitlements() {
    within(async {
        let h = start(
            r#"["jwt", "subdomain", "api_key"]"#,
            "",
            ENTITLEMENTS,
            ENTITLED,
            "",
        )
        .await;
        let mut c = claims(ISSUER, AUDIENCE, "globex");
        c["scope"] = json!("billing openid");
        let narrow = format!("Bearer {}", mint(RS256, "rsa.pem", Some("rsa-1"), &c));
        let wide = format!("Bearer {}", token("RS256", "globex"));
        let hr = &h;
        let with = |auth: &str, path: &'static str| {
            let auth = auth.to_owned();
            async move { call(hr, Method::GET, None, path, &[("authorization", &auth)]).await }
        };

        from_cell(
            &with(&narrow, "/v1/billing/x").await,
            "cell-2",
            "globex",
            "billing",
        );
        denied(
            &h,
            with(&narrow, "/v1/reports/summary"),
            "reports",
            "token",
            "reports",
        )
        .await;
        // A token without the claim is not narrowed.
        from_cell(
            &with(&wide, "/v1/reports/summary").await,
            "cell-2",
            "globex",
            "wide",
        );
        h.shutdown().await;
    })
    .await;
}
