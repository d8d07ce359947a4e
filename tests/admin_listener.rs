//! The admin listener as an NLB health-checks it: with `admin.proxy_protocol`, a connection
//! from a trusted hop starts with a PROXY header (v2 `LOCAL`, as the NLB's checks send it, or
//! v1/v2 naming a client) and is refused without one; anyone else, and a listener with the
//! setting off, is served as before. `/readyz` answers 503 until the first registry load, and
//! a header never makes a remote caller an operator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cellgate::config::{Config, Overrides};
use cellgate::server::Server;
use common::limits::sum;
use common::{base_config, registry, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A v2 header with the `LOCAL` command and no addresses: what an NLB health check sends.
const V2_LOCAL: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
const V1: &[u8] = b"PROXY TCP4 203.0.113.7 10.0.0.5 50000 9090\r\n";
const READYZ: &str = "GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";

/// A proxy started by hand: the harness waits for `/readyz` with a plain request, which a
/// trusted hop may not send here.
struct Proxy {
    admin: SocketAddr,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts cellgate with `server` lines in `[server]` and `admin` lines in `[admin]`; with
    /// `registry_text` as its registry file, or none (the first load fails until one appears).
    fn start(server: &str, admin: &str, registry_text: Option<&str>) -> Self {
        let config = base_config("")
            .replace(
                "shutdown_grace = \"5s\"",
                &format!("shutdown_grace = \"5s\"\n{server}"),
            )
            .replace(
                "[admin]\naddress = \"127.0.0.1:0\"",
                &format!("[admin]\naddress = \"127.0.0.1:0\"\n{admin}"),
            );
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = registry_text {
            std::fs::write(dir.path().join("registry.toml"), text).unwrap();
        }
        let path = dir.path().join("cellgate.toml");
        std::fs::write(&path, config).unwrap();
        let config = Config::load(&path, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        let server = Server::bind(config).unwrap();
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
        Self {
            admin,
            dir,
            stop: Some(tx),
            task,
        }
    }

    /// Sends `prefix`, then `request`, on one new connection; everything the proxy wrote back
    /// before closing it (empty: closed without an answer).
    async fn ask(&self, prefix: &[u8], request: &str) -> String {
        let mut s = TcpStream::connect(self.admin).await.unwrap();
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(request.as_bytes());
        let _ = s.write_all(&bytes).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Polls `GET /readyz` (after `prefix`) until it answers 200.
    async fn until_ready(&self, prefix: &[u8]) {
        for _ in 0..500 {
            if status(&self.ask(prefix, READYZ).await) == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the admin listener never answered ready");
    }

    async fn refused(&self, prefix: &[u8]) -> f64 {
        let text = self.ask(prefix, &get("/metrics")).await;
        sum(
            &text,
            "cellgate_connections_refused_total",
            &[("reason", "proxy_protocol")],
        )
    }

    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server did not stop")
            .unwrap();
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
}

const INVALIDATE: &str = "POST /admin/tenants/acme/invalidate HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// The status code of a raw HTTP/1.1 answer; 0 when there was none.
fn status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// One tenant in one cell; the cell's address is never dialled by these tests.
fn one_tenant() -> String {
    let cells = [("a".to_owned(), vec!["http://127.0.0.1:9".to_owned()])];
    registry(&cells, &[("acme", "a", "ACTIVE")])
}

const LOOPBACK_HOP: &str = "trusted_hops = [\"127.0.0.1/32\"]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_hops_proxy_header_reaches_readyz() {
    within(async {
        let p = Proxy::start(LOOPBACK_HOP, "proxy_protocol = true", Some(&one_tenant()));
        p.until_ready(V2_LOCAL).await;
        let answer = p.ask(V2_LOCAL, READYZ).await;
        assert_eq!(status(&answer), 200, "{answer}");
        assert!(answer.contains("\"ready\":true"), "{answer}");
        let answer = p.ask(V1, READYZ).await;
        assert_eq!(status(&answer), 200, "{answer}");
        p.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_hop_without_a_header_gets_no_answer() {
    within(async {
        let p = Proxy::start(LOOPBACK_HOP, "proxy_protocol = true", Some(&one_tenant()));
        p.until_ready(V2_LOCAL).await;
        let before = p.refused(V2_LOCAL).await;
        let answer = p.ask(b"GARBAGE NOT A PROXY HEADER\r\n", READYZ).await;
        assert!(answer.is_empty(), "a garbage header was answered: {answer}");
        let answer = p.ask(b"", READYZ).await;
        assert!(answer.is_empty(), "a missing header was answered: {answer}");
        // A v2 signature with a command that is neither LOCAL nor PROXY.
        let answer = p.ask(b"\r\n\r\n\0\r\nQUIT\n\x2f\x00\x00\x00", READYZ).await;
        assert!(answer.is_empty(), "a bad v2 command was answered: {answer}");
        assert_eq!(p.refused(V2_LOCAL).await, before + 3.0);
        p.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_or_from_anyone_else_admin_is_plain_http() {
    within(async {
        // Off (the default), even from a trusted hop: plain HTTP, and a header is a bad request.
        let p = Proxy::start(LOOPBACK_HOP, "", Some(&one_tenant()));
        p.until_ready(b"").await;
        assert_eq!(status(&p.ask(b"", READYZ).await), 200);
        assert_eq!(status(&p.ask(V2_LOCAL, READYZ).await), 400);
        p.shutdown().await;

        // On, but the peer (loopback: the container's own health check) is no trusted hop.
        let p = Proxy::start(
            "trusted_hops = [\"10.0.0.0/8\"]",
            "proxy_protocol = true",
            Some(&one_tenant()),
        );
        p.until_ready(b"").await;
        assert_eq!(status(&p.ask(b"", READYZ).await), 200);
        assert_eq!(status(&p.ask(b"", INVALIDATE).await), 200);
        p.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_first_registry_load() {
    within(async {
        // No registry file yet: the first load fails and is retried; the config's own cell
        // does not make the node ready.
        let p = Proxy::start(
            LOOPBACK_HOP,
            "proxy_protocol = true\n\n[[cells]]\nid = \"a\"\ntargets = [\"http://127.0.0.1:9\"]",
            None,
        );
        for _ in 0..5 {
            let answer = p.ask(V2_LOCAL, READYZ).await;
            assert_eq!(status(&answer), 503, "{answer}");
            assert!(
                answer.contains("no placement snapshot loaded yet"),
                "{answer}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::fs::write(p.dir.path().join("registry.toml"), one_tenant()).unwrap();
        p.until_ready(V2_LOCAL).await;
        p.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_never_makes_a_remote_caller_an_operator() {
    within(async {
        let p = Proxy::start(LOOPBACK_HOP, "proxy_protocol = true", Some(&one_tenant()));
        p.until_ready(V2_LOCAL).await;
        // LOCAL: the hop speaks for itself, and here the hop is loopback.
        let answer = p.ask(V2_LOCAL, INVALIDATE).await;
        assert_eq!(status(&answer), 200, "{answer}");
        // The header names a remote client: that client is who asks.
        let answer = p.ask(V1, INVALIDATE).await;
        assert_eq!(status(&answer), 403, "{answer}");
        assert!(answer.contains("loopback_only"), "{answer}");
        // GETs are for anyone the listener serves.
        assert_eq!(status(&p.ask(V1, &get("/admin/tenants/acme")).await), 200);
        p.shutdown().await;
    })
    .await;
}
