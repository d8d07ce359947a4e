//! The access log names each request's trace: the real binary runs as a subprocess (the log
//! is its stdout, JSON lines) with `[tracing]` on. A sampled request's line carries the trace
//! and span ids of the server span the receiver got, with `trace_sampled: true`; an unsampled
//! one (a trusted hop's parent with flags 00) carries the client's trace, the span id the cell
//! was given as its parent, and `trace_sampled: false`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::cell::TracedCell;
use crate::common::cells::{eventually, within};
use crate::common::otlp::{Receiver, hex};
use crate::{
    ARRIVE, CLIENT_SPAN, CLIENT_TRACE, HOST, LOOPBACK_HOPS, config, get_at, one_cell, server_span,
    traceparent, tracing,
};

/// A free loopback port: bound, then released for the proxy to bind.
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A `cellgate serve` subprocess, killed (by its own pid) when dropped.
struct Process {
    child: Child,
    stdout: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts the binary with `config` (listener and admin on free ports, access log on) and
    /// `registry`; returns once `/readyz` answers 200.
    async fn start(config: &str, registry: &str) -> Self {
        let (addr, admin) = (free_port(), free_port());
        let config = config
            .replacen(
                "address = \"127.0.0.1:0\"",
                &format!("address = \"{addr}\""),
                1,
            )
            .replacen(
                "address = \"127.0.0.1:0\"",
                &format!("address = \"{admin}\""),
                1,
            )
            .replace(
                "[access_log]\nenabled = false",
                "[access_log]\nenabled = true",
            );
        assert!(config.contains("enabled = true"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cellgate.toml"), config).unwrap();
        std::fs::write(dir.path().join("registry.toml"), registry).unwrap();
        let stdout = dir.path().join("access.jsonl");
        let child = Command::new(env!("CARGO_BIN_EXE_cellgate"))
            .arg("serve")
            .arg("--config")
            .arg(dir.path().join("cellgate.toml"))
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let p = Self {
            child,
            stdout,
            addr,
            admin,
            _dir: dir,
        };
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        eventually(Duration::from_secs(20), "cellgate ready", || async {
            let req = Request::get(format!("http://{}/readyz", p.admin))
                .body(Full::default())
                .unwrap();
            matches!(client.request(req).await, Ok(r) if r.status() == 200)
        })
        .await;
        p
    }

    /// The access-log line of the request with id `id`, once written.
    async fn line(&self, id: &str) -> Value {
        let mut found = None;
        eventually(ARRIVE, &format!("access-log line of {id}"), || {
            let text = std::fs::read_to_string(&self.stdout).unwrap_or_default();
            found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["request_id"] == id);
            std::future::ready(found.is_some())
        })
        .await;
        found.unwrap()
    }
}

#[tokio::test]
async fn access_log_lines_carry_the_exported_span_ids() {
    within(async {
        let rx = Receiver::start().await;
        let cell = TracedCell::start(None).await;
        let extra = tracing(&rx.url(), "sample_ratio = 1.0");
        let p = Process::start(&config(LOOPBACK_HOPS, &extra), &one_cell(vec![cell.url()])).await;

        let sampled = [("x-request-id", "trace-log-sampled")];
        let r = get_at(p.addr, HOST, "/logged", &sampled).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let server = server_span(&rx, "/logged").await;
        let line = p.line("trace-log-sampled").await;
        assert_eq!(line["trace_id"], hex(&server.span.trace_id), "{line}");
        assert_eq!(line["span_id"], hex(&server.span.span_id), "{line}");
        assert_eq!(line["trace_sampled"], true, "{line}");
        assert_eq!(line["path"], "/logged");

        let tp = traceparent(CLIENT_TRACE, CLIENT_SPAN, "00");
        let unsampled = [
            ("x-request-id", "trace-log-unsampled"),
            ("traceparent", &tp),
        ];
        let r = get_at(p.addr, HOST, "/unsampled", &unsampled).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let line = p.line("trace-log-unsampled").await;
        let [_, trace, parent, flags] = cell.only("/unsampled").parts();
        assert_eq!((trace.as_str(), flags.as_str()), (CLIENT_TRACE, "00"));
        assert_eq!(line["trace_id"], CLIENT_TRACE, "{line}");
        assert_eq!(
            line["span_id"], parent,
            "the cell's parent is the proxy's span: {line}"
        );
        assert_eq!(line["trace_sampled"], false, "{line}");
        for l in [&line, &p.line("trace-log-sampled").await] {
            let ok = |k: &str, n: usize| {
                l[k].as_str().is_some_and(|s| {
                    s.len() == n
                        && s.bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                })
            };
            assert!(ok("trace_id", 32) && ok("span_id", 16), "{l}");
        }
    })
    .await;
}
