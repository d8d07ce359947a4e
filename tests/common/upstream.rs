//! A controllable upstream for the failure-domain tests (`tests/failure.rs`,
//! `tests/discovery.rs`): a real HTTP/1.1 server on a loopback address whose answers can be
//! flipped at run time (status of ordinary requests, status of the health path), that counts
//! what reached it (requests and their paths, health checks, connections), and that can be
//! killed (listener and every open connection closed, so a reconnect is refused) and brought
//! back on the same address.
//!
//! Ordinary requests get the demo echo's JSON (`cell`, `target`, `tenant`, `method`,
//! `request_bytes`), with the status set by [`Upstream::set_status`] (or `?status=N`), after
//! the delay set by [`Upstream::set_delay`]; `GET
//! /healthz` gets an empty answer with the status set by [`Upstream::set_health`]; `/stream`
//! answers in chunks without a `Content-Length` (`?chunks=N&every_ms=M`); a request asking to
//! upgrade gets `101` and then its bytes echoed back.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The path the tests configure as `upstream.health_check.path`.
pub const HEALTH_PATH: &str = "/healthz";

#[derive(Debug)]
struct State {
    cell: String,
    name: String,
    /// Status of ordinary requests.
    status: AtomicU16,
    /// Status of `GET /healthz`.
    health: AtomicU16,
    /// Milliseconds every ordinary request (upgrades included) waits before its answer.
    delay_ms: AtomicU64,
    requests: AtomicU64,
    /// The path of every ordinary request, in arrival order.
    paths: Mutex<Vec<String>>,
    checks: AtomicU64,
    accepted: AtomicU64,
    open: AtomicI64,
}

/// One running (or killed) upstream server.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    running: Mutex<Option<(JoinHandle<()>, watch::Sender<bool>)>>,
}

impl Upstream {
    /// Starts a server on `127.0.0.1:0`, answering as target `name` of cell `cell`.
    pub async fn start(cell: &str, name: &str) -> Arc<Self> {
        Self::start_on(cell, name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts a server on `addr` (any loopback address; port 0 picks one).
    pub async fn start_on(cell: &str, name: &str, addr: SocketAddr) -> Arc<Self> {
        let listener = bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(Self {
            addr,
            state: Arc::new(State {
                cell: cell.to_owned(),
                name: name.to_owned(),
                status: AtomicU16::new(200),
                health: AtomicU16::new(200),
                delay_ms: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                paths: Mutex::new(Vec::new()),
                checks: AtomicU64::new(0),
                accepted: AtomicU64::new(0),
                open: AtomicI64::new(0),
            }),
            running: Mutex::new(None),
        });
        up.serve(listener);
        up
    }

    fn serve(&self, listener: TcpListener) {
        let (stop, stopped) = watch::channel(false);
        let state = Arc::clone(&self.state);
        let task = tokio::spawn(accept_loop(listener, state, stopped));
        *self.running.lock().unwrap() = Some((task, stop));
    }

    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The status ordinary requests get from now on.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// The status `GET /healthz` gets from now on.
    pub fn set_health(&self, status: u16) {
        self.state.health.store(status, Ordering::SeqCst);
    }

    /// How long every ordinary request (upgrades included) waits before its answer, from now on.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap();
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Ordinary requests received (health checks excluded).
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The paths of the ordinary requests received so far, in arrival order.
    #[must_use]
    pub fn paths(&self) -> Vec<String> {
        self.state.paths.lock().unwrap().clone()
    }

    /// Health checks received.
    #[must_use]
    pub fn checks(&self) -> u64 {
        self.state.checks.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start.
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now (upgraded ones included).
    #[must_use]
    pub fn open_connections(&self) -> i64 {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Closes the listener and every open connection: from now on a connect is refused.
    pub async fn kill(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some((task, stop)) = running {
            let _ = stop.send(true);
            task.abort();
            let _ = task.await;
        }
        // The connection tasks see the signal and drop their sockets.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.open_connections() > 0 {
            assert!(
                Instant::now() < deadline,
                "{}: connections still open after kill",
                self.name()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Listens again on the same address.
    pub async fn revive(&self) {
        let listener = bind(self.addr).unwrap_or_else(|e| panic!("rebind {}: {e}", self.addr));
        self.serve(listener);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some((task, stop)) = self.running.get_mut().unwrap().take() {
            let _ = stop.send(true);
            task.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // A killed server's address comes back at once (its old connections may be in TIME_WAIT).
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, stopped: watch::Receiver<bool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        state.accepted.fetch_add(1, Ordering::SeqCst);
        state.open.fetch_add(1, Ordering::SeqCst);
        let (state, mut stopped) = (Arc::clone(&state), stopped.clone());
        tokio::spawn(async move {
            let svc = {
                let state = Arc::clone(&state);
                let stopped = stopped.clone();
                service_fn(move |req| answer(Arc::clone(&state), stopped.clone(), req))
            };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
            state.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn query(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

type Body = Either<Full<Bytes>, ChannelBody>;

async fn answer(
    state: Arc<State>,
    stopped: watch::Receiver<bool>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == HEALTH_PATH {
        state.checks.fetch_add(1, Ordering::SeqCst);
        let status = StatusCode::from_u16(state.health.load(Ordering::SeqCst)).unwrap();
        let mut resp = Response::new(Either::Left(Full::default()));
        *resp.status_mut() = status;
        return Ok(resp);
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    state
        .paths
        .lock()
        .unwrap()
        .push(req.uri().path().to_owned());
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if h("upgrade").is_some() {
        let on = hyper::upgrade::on(&mut req);
        let tunnel = Arc::clone(&state);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let state = tunnel;
            if let Ok(up) = on.await {
                state.open.fetch_add(1, Ordering::SeqCst);
                let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                tokio::select! {
                    _ = tokio::io::copy(&mut r, &mut w) => {}
                    _ = stopped.wait_for(|s| *s) => {}
                }
                state.open.fetch_sub(1, Ordering::SeqCst);
            }
        });
        let mut resp = Response::new(Either::Left(Full::default()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = resp.headers_mut();
        headers.insert(header::CONNECTION, "upgrade".parse().unwrap());
        if let Some(p) = req.headers().get(header::UPGRADE).cloned() {
            headers.insert(header::UPGRADE, p);
        }
        headers.insert("x-target", state.name.parse().unwrap());
        return Ok(resp);
    }
    if req.uri().path() == "/stream" {
        let chunks = query(&req, "chunks").unwrap_or(50);
        let every = Duration::from_millis(query(&req, "every_ms").unwrap_or(100));
        let (tx, rx) = mpsc::channel(1);
        let name = state.name.clone();
        tokio::spawn(async move {
            for i in 0..chunks {
                let line = Bytes::from(format!("{name} tick {i}\n"));
                if tx.send(line).await.is_err() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        });
        let mut resp = Response::new(Either::Right(ChannelBody(rx)));
        resp.headers_mut()
            .insert("x-target", state.name.parse().unwrap());
        return Ok(resp);
    }
    let status = query(&req, "status")
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or_else(|| state.status.load(Ordering::SeqCst));
    let mut body = json!({
        "cell": state.cell,
        "target": state.name,
        "tenant": h("x-tenant-id"),
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "header_names": req.headers().keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        "forwarded_for": h("x-forwarded-for"),
    });
    let received = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    body["request_bytes"] = json!(received);
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from(body.to_string()))));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    Ok(resp)
}

/// A response body fed by a channel: each message is one chunk, the end of the channel the
/// end of the body. No length is known, so hyper sends it chunked.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// A loopback address where a connect neither succeeds nor is refused: a listener with a
/// backlog of one that never accepts, its queue already full, so new SYNs are dropped and a
/// connect hangs until the caller's timeout. Keep it alive as long as the address must stay dark.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _filler: std::net::TcpStream,
}

impl Blackhole {
    pub fn new() -> Self {
        Self::on("127.0.0.1:0".parse().unwrap())
    }

    /// A blackhole on `addr` (e.g. the address of a server just killed).
    pub fn on(addr: SocketAddr) -> Self {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener.set_reuse_address(true).unwrap();
        listener.bind(&addr.into()).unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        // The one queued connection; every later SYN is dropped while it waits.
        let filler = std::net::TcpStream::connect(addr).unwrap();
        let hole = Self {
            addr,
            _listener: listener,
            _filler: filler,
        };
        // Check the trick works here: a connect must time out, not fail or succeed.
        let probe = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        assert!(
            probe
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut),
            "the blackhole at {addr} answered a connect: {probe:?}"
        );
        hole
    }

    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Default for Blackhole {
    fn default() -> Self {
        Self::new()
    }
}
