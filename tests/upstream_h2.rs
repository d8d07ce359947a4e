//! HTTP/2 to cells (`protocol = "http2"` on a cell): the pool's shared connections.
//!
//! The cell here is a hyper server that speaks HTTP/2 only (prior knowledge, h2c) and answers
//! with what it saw: the version, the `:authority`, `te`, the body's length and which of its
//! connections carried the request. Requests through the proxy reach it over HTTP/2, share a
//! few connections instead of one each, open another only past
//! `upstream.http2.max_concurrent_streams`, and survive the cell closing connections
//! gracefully (GOAWAY) under load: a request the old connection had not taken goes on a new one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::limits::sum;
use common::{Harness, base_config, within};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// An HTTP/2-only cell: counts connections and requests; with `goaway_after = Some(n)` it
/// closes each connection gracefully once it has taken `n` requests.
struct H2Cell {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

impl H2Cell {
    async fn start(goaway_after: Option<u64>, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let (conns, reqs) = (Arc::clone(&connections), Arc::clone(&requests));
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let n = conns.fetch_add(1, Ordering::SeqCst);
                let reqs = Arc::clone(&reqs);
                let served = Arc::new(AtomicU64::new(0));
                let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (reqs, served, tx) = (Arc::clone(&reqs), Arc::clone(&served), tx.clone());
                    async move {
                        reqs.fetch_add(1, Ordering::SeqCst);
                        let seen = json!({
                            "version": format!("{:?}", req.version()),
                            "authority": req.uri().authority().map(|a| a.to_string()),
                            "host": req.headers().get("host").map(|h| h.to_str().unwrap().to_owned()),
                            "te": req.headers().get("te").map(|h| h.to_str().unwrap().to_owned()),
                            "connection": n,
                        });
                        let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
                        tokio::time::sleep(delay).await;
                        if goaway_after
                            .is_some_and(|g| served.fetch_add(1, Ordering::SeqCst) + 1 == g)
                        {
                            let _ = tx.try_send(());
                        }
                        let mut v = seen;
                        v["body"] = json!(body.unwrap_or(0));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(v.to_string()))))
                    }
                });
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = rx.recv() => conn.as_mut().graceful_shutdown(),
                    }
                    let _ = conn.await;
                });
            }
        });
        Self {
            addr,
            connections,
            requests,
        }
    }
}

async fn proxy(cell: &H2Cell, upstream: &str) -> Harness {
    let registry = format!(
        "[[cells]]\nid = \"h2\"\nprotocol = \"http2\"\ntargets = [\"http://{}\"]\n\n\
         [[tenants]]\nid = \"acme\"\ncell = \"h2\"\nstatus = \"ACTIVE\"\nversion = 1\n",
        cell.addr
    );
    Harness::start_raw(&base_config(upstream), &registry, Vec::new()).await
}

/// Sends `n` POSTs with a body, `parallel` at a time, over the proxy; returns each answer.
async fn load(h: &Harness, n: usize, parallel: usize) -> Vec<(StatusCode, Value)> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for i in 0..n {
        let permit = Arc::clone(&sem).acquire_owned().await.unwrap();
        let req = Request::post(format!("http://{}/call/{i}", h.addr))
            .header("host", "acme.app.test")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(vec![b'x'; 100 + i])))
            .unwrap();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let resp = client.request(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            drop(permit);
            (status, body)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        out.push((status, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    }
    out
}

#[tokio::test]
async fn requests_share_http2_connections_to_the_cell() {
    within(async {
        let cell = H2Cell::start(None, Duration::from_millis(20)).await;
        let h = proxy(&cell, "").await;
        let answers = load(&h, 60, 20).await;
        for (i, (status, v)) in answers.iter().enumerate() {
            assert_eq!(*status, StatusCode::OK, "{v}");
            assert_eq!(v["version"], "HTTP/2.0");
            // The cell sees the client's host as :authority (plain-HTTP targets preserve it),
            // no Host field, and te: trailers kept for HTTP/2.
            assert_eq!(v["authority"], "acme.app.test");
            assert_eq!(v["host"], Value::Null);
            assert_eq!(v["te"], "trailers");
            assert_eq!(v["body"], 100 + i);
        }
        // 20 at a time over 2 workers: a connection or so per worker, not one per request.
        let conns = cell.connections.load(Ordering::SeqCst);
        assert!((1..=4).contains(&conns), "{conns} connections");
        let m = h.admin_get("/metrics").await.unwrap().body;
        let h2 = sum(
            &m,
            "cellgate_upstream_connects_total",
            &[("protocol", "http2")],
        );
        assert_eq!(h2 as u64, conns, "{m}");
    })
    .await;
}

#[tokio::test]
async fn a_connection_takes_at_most_max_concurrent_streams() {
    within(async {
        let cell = H2Cell::start(None, Duration::from_millis(300)).await;
        let h = proxy(&cell, "\n[upstream.http2]\nmax_concurrent_streams = 2\n").await;
        let answers = load(&h, 12, 12).await;
        assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK));
        // 12 slow requests at once, 2 per connection: at least 6 connections in all.
        let conns = cell.connections.load(Ordering::SeqCst);
        assert!(conns >= 6, "{conns} connections");
    })
    .await;
}

#[tokio::test]
async fn a_cell_closing_connections_under_load_loses_nothing() {
    within(async {
        let cell = H2Cell::start(Some(7), Duration::from_millis(2)).await;
        let h = proxy(&cell, "").await;
        let answers = load(&h, 300, 16).await;
        let failed: Vec<_> = answers
            .iter()
            .filter(|(s, _)| *s != StatusCode::OK)
            .collect();
        assert!(
            failed.is_empty(),
            "{} failed: {:?}",
            failed.len(),
            failed.first()
        );
        assert_eq!(cell.requests.load(Ordering::SeqCst), 300);
        // Each connection closed once it had taken 7 (and the ones already on their way): many
        // were opened, and none lost a request.
        let conns = cell.connections.load(Ordering::SeqCst);
        assert!(conns >= 10, "{conns} connections");
    })
    .await;
}

#[tokio::test]
async fn health_checks_speak_http2_to_an_http2_cell() {
    within(async {
        let cell = H2Cell::start(None, Duration::ZERO).await;
        let checks = "\n[upstream.health_check]\npath = \"/healthz\"\ninterval = \"50ms\"\n\
                      timeout = \"50ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 1\n";
        let h = proxy(&cell, checks).await;
        let url = format!("http://{}", cell.addr);
        common::cells::eventually(Duration::from_secs(5), "two passing checks", || {
            let h = &h;
            let url = url.clone();
            async move {
                let m = h.admin_get("/metrics").await.unwrap().body;
                let pass = sum(
                    &m,
                    "cellgate_health_checks_total",
                    &[("target", &url), ("result", "pass")],
                );
                let fail = sum(
                    &m,
                    "cellgate_health_checks_total",
                    &[("target", &url), ("result", "fail")],
                );
                assert_eq!(fail, 0.0, "an HTTP/1.1 probe of an HTTP/2-only cell fails");
                pass >= 2.0
            }
        })
        .await;
        let answers = load(&h, 4, 4).await;
        assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK));
    })
    .await;
}
