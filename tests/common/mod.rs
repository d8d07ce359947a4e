//! Test harness: a real cellgate in-process on 127.0.0.1:0 in front of real echo cells.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod apikeys;
pub mod cells;
pub mod cli;
pub mod dns;
pub mod dynamo;
pub mod grpc_cell;
pub mod grpc_checks;
pub mod grpc_client;
pub mod h2_echo;
pub mod h2raw;
pub mod jwks;
pub mod limits;
pub mod metering;
pub mod otlp;
pub mod redis_server;
pub mod toggle;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use cellgate::config::{Config, Overrides};
use cellgate::demo::{EchoTarget, spawn_cells};
use cellgate::server::Server;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

/// Every test runs inside this bound, so a hang is a failure rather than a stuck run.
pub const TEST_BOUND: Duration = Duration::from_secs(25);

pub async fn within<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_BOUND, f)
        .await
        .expect("test did not finish in time");
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "cellgate-test";

/// The base config: subdomain + JWT (RS256, ES256, EdDSA fixture keys), file registry.
pub fn base_config(extra: &str) -> String {
    format!(
        r#"
[server]
workers = 2
shutdown_grace = "5s"

[[listeners]]
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[tenant]
sources = ["jwt", "subdomain"]
base_domains = ["app.test"]

[[auth.issuers]]
name = "test"
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]

[[auth.issuers.keys]]
kid = "rsa-1"
algorithm = "RS256"
public_key_file = "{rsa}"

[[auth.issuers.keys]]
kid = "ec-1"
algorithm = "ES256"
public_key_file = "{ec}"

[[auth.issuers.keys]]
kid = "ed-1"
algorithm = "EdDSA"
public_key_file = "{ed}"

[registry]
source = "file"
path = "registry.toml"
poll_interval = "20ms"

[upstream]
connect_timeout = "500ms"
read_timeout = "5s"
total_timeout = "10s"

[access_log]
enabled = false

[log]
level = "warn"
{extra}
"#,
        rsa = fixture("rsa.pub.pem").display(),
        ec = fixture("ec.pub.pem").display(),
        ed = fixture("ed25519.pub.pem").display(),
    )
}

/// Registry text for `cells` (cell-1.. with their targets) and `(tenant, cell, status)`.
pub fn registry(cells: &[(String, Vec<String>)], tenants: &[(&str, &str, &str)]) -> String {
    let mut s = String::new();
    for (id, targets) in cells {
        let t: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        s.push_str(&format!(
            "[[cells]]\nid = \"{id}\"\ntargets = [{}]\n\n",
            t.join(", ")
        ));
    }
    for (i, (tenant, cell, status)) in tenants.iter().enumerate() {
        s.push_str(&format!("[[tenants]]\nid = \"{tenant}\"\ncell = \"{cell}\"\nstatus = \"{status}\"\nversion = {}\n\n", i + 1));
    }
    s
}

/// A cell for [`registry_with_protocols`]: id, `protocol` (none: the key is left out) and
/// target URLs.
pub struct CellSpec<'a> {
    pub id: &'a str,
    pub protocol: Option<&'a str>,
    pub targets: Vec<String>,
}

/// Registry text like [`registry`], with each cell's `protocol` key where it has one.
pub fn registry_with_protocols(cells: &[CellSpec], tenants: &[(&str, &str, &str)]) -> String {
    let mut s = String::new();
    for c in cells {
        let t: Vec<String> = c.targets.iter().map(|t| format!("\"{t}\"")).collect();
        s.push_str(&format!(
            "[[cells]]\nid = \"{}\"\ntargets = [{}]\n",
            c.id,
            t.join(", ")
        ));
        if let Some(p) = c.protocol {
            s.push_str(&format!("protocol = \"{p}\"\n"));
        }
        s.push('\n');
    }
    s.push_str(&registry(&[], tenants));
    s
}

pub struct Harness {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub cells: Vec<Vec<EchoTarget>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// The demo's three tenants in three cells.
pub const DEFAULT_TENANTS: &[(&str, &str, &str)] = &[
    ("acme", "cell-1", "ACTIVE"),
    ("globex", "cell-2", "ACTIVE"),
    ("initech", "cell-3", "ACTIVE"),
];

pub fn cell_list(cells: &[Vec<EchoTarget>]) -> Vec<(String, Vec<String>)> {
    cells
        .iter()
        .map(|ts| {
            (
                ts[0].cell.clone(),
                ts.iter().map(|t| format!("http://{}", t.addr)).collect(),
            )
        })
        .collect()
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with("", DEFAULT_TENANTS).await
    }

    /// Starts 3 echo cells (2 targets each) and the proxy with `extra` config appended.
    pub async fn start_with(extra: &str, tenants: &[(&str, &str, &str)]) -> Self {
        let cells = spawn_cells(3, 2).await.unwrap();
        let text = registry(&cell_list(&cells), tenants);
        Self::start_raw(&base_config(extra), &text, cells).await
    }

    pub async fn start_raw(config: &str, registry_text: &str, cells: Vec<Vec<EchoTarget>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("registry.toml"), registry_text).unwrap();
        let path = dir.path().join("cellgate.toml");
        std::fs::write(&path, config).unwrap();
        let config = Config::load(&path, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        let server = Server::bind(config).unwrap();
        let addr = server.local_addrs()[0];
        let admin = server.admin_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        let client = Client::builder(TokioExecutor::new()).build_http();
        let h = Self {
            addr,
            admin,
            dir,
            cells,
            stop: Some(tx),
            task: Some(task),
            client,
        };
        h.wait_ready().await;
        h
    }

    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self.admin_get("/readyz").await
                && r.status == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("proxy never became ready");
    }

    /// Atomically replaces the registry file (write + rename).
    pub fn write_registry(&self, text: &str) {
        let tmp = self.dir.path().join("registry.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("registry.toml")).unwrap();
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        let resp = self.client.request(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub fn request(&self, host: &str, path: &str) -> http::request::Builder {
        Request::get(format!("http://{}{path}", self.addr)).header("host", host)
    }

    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.send(self.request(host, path).body(Full::default()).unwrap())
            .await
    }

    pub async fn get_with_token(&self, host: Option<&str>, token: &str) -> Reply {
        let mut b = Request::get(format!("http://{}/", self.addr))
            .header("authorization", format!("Bearer {token}"));
        if let Some(h) = host {
            b = b.header("host", h);
        }
        self.send(b.body(Full::default()).unwrap()).await
    }

    pub async fn admin_get(&self, path: &str) -> Result<Reply, hyper_util::client::legacy::Error> {
        let req = Request::get(format!("http://{}{path}", self.admin))
            .body(Full::default())
            .unwrap();
        let resp = self.client.request(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Signals shutdown and waits for the server to drain and stop.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("server did not stop")
                .unwrap();
        }
    }

    /// An HTTP/2 client (prior knowledge, cleartext) on one new connection to the proxy.
    pub async fn h2(&self) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::handshake(
            TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        sender
    }

    /// Asks for a WebSocket on `host` over a raw socket; returns the socket (the tunnel, if the
    /// answer was 101) and the response head, lower-cased.
    pub async fn websocket(&self, host: &str) -> (tokio::net::TcpStream, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        (s, String::from_utf8(head).unwrap().to_ascii_lowercase())
    }

    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap()
    }
}

/// Mints a token with a fixture key: `alg` is "RS256", "ES256" or "EdDSA".
pub fn token(alg: &str, tenant: &str) -> String {
    let (file, kid, algorithm) = match alg {
        "RS256" => ("rsa.pem", "rsa-1", jsonwebtoken::Algorithm::RS256),
        "ES256" => ("ec.pem", "ec-1", jsonwebtoken::Algorithm::ES256),
        _ => ("ed25519.pem", "ed-1", jsonwebtoken::Algorithm::EdDSA),
    };
    let spec = cellgate::demo::TokenSpec {
        tenant: tenant.to_owned(),
        subject: format!("user@{tenant}"),
        ttl: Duration::from_secs(600),
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        kid: Some(kid.to_owned()),
        algorithm,
        key_pem: std::fs::read(fixture(file)).unwrap(),
    };
    cellgate::demo::mint(&spec).unwrap()
}
