//! Threads, sockets, TLS and shutdown: everything engine-specific.
//!
//! Thread-per-core: each worker thread runs its own current-thread tokio runtime with its own
//! `SO_REUSEPORT` listening socket per listener (the kernel spreads connections) and its own
//! upstream pool, so the request path shares nothing mutable between threads but the
//! snapshot pointer and atomic metrics. The control plane (registry refresh, admin listener)
//! runs on the runtime that calls [`Server::run`].
//!
//! Shutdown: on the signal, workers stop accepting, ask every connection to finish its
//! in-flight requests (HTTP/1 closes after the current response, HTTP/2 sends GOAWAY), and
//! wait up to `server.shutdown_grace` before cutting what is left.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{Client, Shared, Worker, handle};
use crate::accesslog::AccessLog;
use crate::auth::Verifier;
use crate::config::{Config, RegistryConfig};
use crate::metrics::Metrics;
use crate::placement::SnapshotHandle;
use crate::placement::dynamo::DynamoSource;
use crate::placement::file::FileSource;
use crate::placement::lookup::Lookup;
use crate::placement::refresh::{self, RefreshSettings};
use crate::upstream::{Pool, tls};

/// Full registry reload even when no change was detected (the TTL safety net).
/// Longest time a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("TLS for listener {addr}: {reason}")]
    ListenerTls { addr: SocketAddr, reason: String },
    #[error(transparent)]
    UpstreamTls(#[from] tls::TlsError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("start: {0}")]
    Start(#[from] std::io::Error),
}

struct BoundListener {
    index: usize,
    /// One socket per worker (`SO_REUSEPORT`).
    sockets: Vec<std::net::TcpListener>,
    tls: Option<TlsAcceptor>,
    addr: SocketAddr,
}

/// A bound, not yet running proxy.
pub struct Server {
    shared: Arc<Shared>,
    lookups: Option<tokio::sync::mpsc::Receiver<crate::placement::lookup::LookupRequest>>,
    listeners: Vec<BoundListener>,
    admin: std::net::TcpListener,
    admin_addr: SocketAddr,
    upstream_tls: Arc<rustls::ClientConfig>,
    /// One certificate reload task per TLS listener, started by `run`.
    cert_watches: Vec<super::certs::CertWatch>,
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// The listener's acceptor and the watch that reloads its certificates (see [`super::certs`]).
fn listener_tls(
    index: usize,
    tls: &crate::config::ListenerTls,
    metrics: &Metrics,
) -> Result<(TlsAcceptor, super::certs::CertWatch), super::certs::TlsSetupError> {
    let (cfg, watch) = super::certs::listener(index, tls, metrics)?;
    Ok((TlsAcceptor::from(cfg), watch))
}

/// What the registry refresh service needs, whichever source it serves.
struct RefreshParts {
    handle: Arc<SnapshotHandle>,
    cells: Arc<[crate::placement::Cell]>,
    metrics: Arc<Metrics>,
    settings: RefreshSettings,
    lookups: Option<refresh::LookupService>,
    stop: watch::Receiver<bool>,
}

impl RefreshParts {
    fn spawn<S: crate::placement::PlacementSource>(self, control: &mut JoinSet<()>, source: S) {
        control.spawn(refresh::run(
            Arc::new(source),
            self.handle,
            self.cells,
            self.metrics,
            self.settings,
            self.lookups,
            self.stop,
        ));
    }
}

impl Server {
    /// Builds shared state and binds every socket (so port 0 resolves now), starting nothing.
    pub fn bind(config: Config) -> Result<Self, ServeError> {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        let access_log = Arc::new(AccessLog::start(
            &config.access_log,
            metrics.access_log_dropped.clone(),
        )?);
        let snapshot = Arc::new(SnapshotHandle::new());
        let verifier = Verifier::new(&config.auth, &metrics)?;
        let (lookup, lookups) = Lookup::new(config.lookup.settings, metrics.lookups.clone());
        let shared = Arc::new(Shared::new(
            Arc::clone(&config),
            snapshot,
            verifier,
            Arc::new(lookup),
            metrics,
            access_log,
        ));
        let workers = config.server.workers;
        let mut listeners = Vec::with_capacity(config.listeners.len());
        let mut cert_watches = Vec::new();
        for (index, l) in config.listeners.iter().enumerate() {
            let first = bind_socket(l.address).map_err(|error| ServeError::Bind {
                addr: l.address,
                error,
            })?;
            let addr = first.local_addr()?;
            let mut sockets = vec![first];
            for _ in 1..workers {
                sockets.push(bind_socket(addr).map_err(|error| ServeError::Bind { addr, error })?);
            }
            let tls = match &l.tls {
                None => None,
                Some(t) => {
                    let (acceptor, watch) =
                        listener_tls(index, t, &shared.metrics).map_err(|e| {
                            ServeError::ListenerTls {
                                addr,
                                reason: e.to_string(),
                            }
                        })?;
                    cert_watches.push(watch);
                    Some(acceptor)
                }
            };
            listeners.push(BoundListener {
                index,
                sockets,
                tls,
                addr,
            });
        }
        let admin = std::net::TcpListener::bind(config.admin.address).map_err(|error| {
            ServeError::Bind {
                addr: config.admin.address,
                error,
            }
        })?;
        admin.set_nonblocking(true)?;
        let admin_addr = admin.local_addr()?;
        let upstream_tls = tls::client_config(config.upstream.ca_file.as_deref())?;
        Ok(Self {
            shared,
            lookups: Some(lookups),
            listeners,
            admin,
            admin_addr,
            upstream_tls,
            cert_watches,
        })
    }

    /// Addresses of the proxy listeners, in config order.
    #[must_use]
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }

    #[must_use]
    pub const fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The shared state (snapshot handle, metrics), e.g. for tests.
    #[must_use]
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Runs until `shutdown` completes, then drains. Call from within a tokio runtime.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::clone(&self.shared);
        let config = Arc::clone(&shared.config);
        let mut control = JoinSet::new();

        let refresh = RefreshParts {
            handle: Arc::clone(&shared.snapshot),
            cells: Arc::from(config.cells.clone()),
            metrics: Arc::clone(&shared.metrics),
            settings: RefreshSettings {
                poll_interval: config.registry.poll_interval(),
                full_refresh: config.registry.full_refresh(),
            },
            lookups: self
                .lookups
                .take()
                .map(|rx| (Arc::clone(&shared.lookup), rx)),
            stop: stop_rx.clone(),
        };
        match &config.registry {
            RegistryConfig::File { path, .. } => {
                refresh.spawn(&mut control, FileSource::new(path.clone()));
            }
            RegistryConfig::Dynamo { settings, .. } => {
                refresh.spawn(&mut control, DynamoSource::new(settings.clone()).await);
            }
        }
        for jwks in shared.verifier.jwks() {
            control.spawn(Arc::clone(jwks).run(stop_rx.clone()));
        }
        control.spawn(sweep_limits(Arc::clone(&shared), stop_rx.clone()));
        for watch in std::mem::take(&mut self.cert_watches) {
            control.spawn(watch.run(stop_rx.clone()));
        }
        control.spawn(crate::upstream::discovery::run(
            Arc::clone(&shared.upstreams),
            Arc::clone(&shared.snapshot),
            config.upstream.clone(),
            Arc::clone(&self.upstream_tls),
            stop_rx.clone(),
        ));
        let admin = TcpListener::from_std(self.admin)?;
        control.spawn(crate::admin::serve(
            admin,
            Arc::clone(&shared),
            stop_rx.clone(),
        ));

        let workers = config.server.workers;
        let mut threads = Vec::with_capacity(workers);
        for id in 0..workers {
            let mut mine = Vec::with_capacity(self.listeners.len());
            for l in &self.listeners {
                if let Some(sock) = l.sockets.get(id) {
                    mine.push((l.index, sock.try_clone()?, l.tls.clone()));
                }
            }
            let shared = Arc::clone(&shared);
            let tls = Arc::clone(&self.upstream_tls);
            let stop = stop_rx.clone();
            let grace = config.server.shutdown_grace;
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("cellgate-worker-{id}"))
                .spawn(move || {
                    if let Err(e) = worker_main(shared, tls, mine, stop, grace) {
                        tracing::error!(worker = id, error = %e, "worker failed");
                    }
                    drop(done_tx);
                })?;
            threads.push(done_rx);
        }
        drop(self.listeners);
        tracing::info!(
            listeners = ?config.listeners.iter().map(|l| l.address).collect::<Vec<_>>(),
            admin = %self.admin_addr,
            workers,
            "cellgate serving"
        );

        shutdown.await;
        tracing::info!(grace = ?config.server.shutdown_grace, "shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
        for t in threads {
            let _ = t.await;
        }
        while control.join_next().await.is_some() {}
        tracing::info!("cellgate stopped");
        Ok(())
    }
}

/// Forgets idle rate-limit state every `limits.sweep_interval` (it only ever drops state
/// equal to a fresh one, so nobody gains a burst by it).
async fn sweep_limits(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = shared.config.limits.sweep_interval;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {
                let n = shared.limiter.sweep();
                tracing::debug!(forgotten = n, tracked = shared.limiter.tracked(), "rate-limit state swept");
            }
            () = stopped(&mut stop) => return,
        }
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

fn worker_main(
    shared: Arc<Shared>,
    upstream_tls: Arc<rustls::ClientConfig>,
    listeners: Vec<(usize, std::net::TcpListener, Option<TlsAcceptor>)>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let pool = Pool::new(&shared.config.upstream, upstream_tls);
        let long_lived = Rc::new(super::moves::LongLived::default());
        let worker = Rc::new(Worker {
            shared: Arc::clone(&shared),
            pool: Rc::clone(&pool),
            long_lived: Rc::clone(&long_lived),
        });
        let follower = tokio::task::spawn_local(super::moves::follow(
            long_lived,
            Arc::clone(&shared.snapshot),
            stop.clone(),
        ));
        let sweeper = tokio::task::spawn_local(async move {
            let every = pool.idle_timeout() / 2;
            loop {
                tokio::time::sleep(every).await;
                pool.sweep();
            }
        });
        let graceful = Rc::new(GracefulShutdown::new());
        let mut builder = auto::Builder::new(LocalExec);
        builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true).writev(false);
        builder.http2().timer(TokioTimer::new()).max_concurrent_streams(100);
        let builder = Rc::new(builder);
        let mut loops = Vec::with_capacity(listeners.len());
        for (index, std_listener, tls) in listeners {
            let listener = TcpListener::from_std(std_listener)?;
            loops.push(tokio::task::spawn_local(accept_loop(
                listener,
                index,
                tls,
                Rc::clone(&worker),
                Rc::clone(&builder),
                Rc::clone(&graceful),
                stop.clone(),
            )));
        }
        stopped(&mut stop).await;
        for l in loops {
            let _ = l.await;
        }
        sweeper.abort();
        follower.abort();
        match Rc::try_unwrap(graceful) {
            Ok(g) => {
                if tokio::time::timeout(grace, g.shutdown()).await.is_err() {
                    tracing::warn!(grace = ?grace, "shutdown grace expired; closing the remaining connections");
                }
            }
            Err(_) => tokio::time::sleep(grace).await,
        }
        Ok(())
    })
}

async fn accept_loop(
    listener: TcpListener,
    index: usize,
    tls: Option<TlsAcceptor>,
    worker: Rc<Worker>,
    builder: Rc<auto::Builder<LocalExec>>,
    graceful: Rc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let accepted = worker.shared.metrics.listener_connections(index);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        accepted.inc();
        let _ = stream.set_nodelay(true);
        let worker = Rc::clone(&worker);
        let builder = Rc::clone(&builder);
        let graceful = Rc::clone(&graceful);
        match &tls {
            None => serve_conn(
                TokioIo::new(stream),
                peer,
                false,
                worker,
                &builder,
                &graceful,
            ),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::task::spawn_local(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => serve_conn(
                            TokioIo::new(tls_stream),
                            peer,
                            true,
                            worker,
                            &builder,
                            &graceful,
                        ),
                        Ok(Err(e)) => {
                            tracing::debug!(client = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

fn serve_conn<I>(
    io: I,
    peer: SocketAddr,
    tls: bool,
    worker: Rc<Worker>,
    builder: &auto::Builder<LocalExec>,
    graceful: &GracefulShutdown,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let metrics = Arc::clone(&worker.shared.metrics);
    let client = Rc::new(Client::new(peer, tls));
    let svc = service_fn(move |req| handle(Rc::clone(&worker), req, Rc::clone(&client)));
    let conn = graceful.watch(builder.serve_connection_with_upgrades(io, svc).into_owned());
    metrics.connections_open.inc();
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.await {
            // A head hyper could not parse (obs-fold, CR/LF/NUL in a header, a bad or
            // conflicting Content-Length, an oversized head) never became a request: it is
            // counted here, and hyper answered 400/431 and closed.
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                if h.is_parse_too_large() {
                    metrics.request_rejected("header_too_large");
                } else if h.is_parse() {
                    metrics.request_rejected("malformed");
                }
            }
            tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
        }
        metrics.connections_open.dec();
    });
}
