//! A plain (non-gRPC) echo target that reports the HTTP version it saw, for the cell
//! `protocol` tests: in cleartext it speaks HTTP/2 by prior knowledge only (an HTTP/1.1
//! request is not understood and the connection closes); over TLS (the fixture certificate) it
//! offers the ALPN protocols it is given and serves whichever one was settled. Every request
//! gets `200` and JSON `{cell, target, version, alpn, method, path, authority}`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::grpc_cell::tls_acceptor;

#[derive(Debug)]
struct State {
    cell: String,
    target: String,
    requests: AtomicU64,
    connections: AtomicU64,
}

/// A running echo target; stopped (listener and connections) when dropped.
#[derive(Debug)]
pub struct H2Echo {
    pub addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for H2Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl H2Echo {
    /// Cleartext, HTTP/2 by prior knowledge only.
    pub async fn h2c(cell: &str, target: &str) -> Self {
        Self::start(cell, target, None).await
    }

    /// TLS offering the ALPN protocols `alpn`, in order of preference.
    pub async fn tls(cell: &str, target: &str, alpn: &[&[u8]]) -> Self {
        Self::start(cell, target, Some(tls_acceptor(alpn))).await
    }

    async fn start(cell: &str, target: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            cell: cell.to_owned(),
            target: target.to_owned(),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let is_tls = tls.is_some();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), tls));
        Self {
            addr,
            tls: is_tls,
            state,
            task,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, say: let some close rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        let state = Arc::clone(&state);
        let tls = tls.clone();
        conns.spawn(async move {
            let Some(acceptor) = tls else {
                let svc = service(state, String::new());
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
                return;
            };
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            let label = String::from_utf8_lossy(alpn.as_deref().unwrap_or_default()).into_owned();
            let svc = service(state, label);
            if alpn.as_deref() == Some(b"h2") {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            }
        });
        while conns.try_join_next().is_some() {}
    }
}

fn service(
    state: Arc<State>,
    alpn: String,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone {
    service_fn(move |req: Request<Incoming>| {
        state.requests.fetch_add(1, Ordering::SeqCst);
        let authority = req.uri().authority().map_or_else(
            || {
                req.headers()
                    .get("host")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            },
            ToString::to_string,
        );
        let body = json!({
            "cell": state.cell,
            "target": state.target,
            "version": format!("{:?}", req.version()),
            "alpn": alpn,
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "authority": authority,
        });
        let resp = Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        std::future::ready(Ok(resp))
    })
}
