//! Threads, sockets, TLS and shutdown: everything engine-specific.
//!
//! Thread-per-core: each worker thread runs its own current-thread tokio runtime with its own
//! `SO_REUSEPORT` listening socket per listener (the kernel spreads connections) and its own
//! upstream pool, so the request path shares nothing mutable between threads but the
//! snapshot pointer and atomic metrics. The control plane (registry refresh, admin listener)
//! runs on the runtime that calls [`Server::run`].
//!
//! Shutdown: on the signal, or when a successor took the sockets over ([`handover`]), workers
//! stop accepting and drain their connections ([`crate::proxy::accept`]: HTTP/1 closed after its next
//! answer or once quiet, HTTP/2 GOAWAY), waiting up to `server.shutdown_grace` before cutting
//! what is left. A listener's connections, from accept to hyper, are in [`crate::proxy::accept`].

pub mod handover;
mod preflight;

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use handover::Inherited;
pub use preflight::{Prepared, preflight};

use crate::accesslog::AccessLog;
use crate::auth::Verifier;
use crate::config::{Config, RegistryConfig};
use crate::metrics::Metrics;
use crate::placement::SnapshotHandle;
use crate::placement::dynamo::DynamoSource;
use crate::placement::file::FileSource;
use crate::placement::lookup::Lookup;
use crate::placement::refresh::{self, RefreshSettings};
use crate::proxy::accept::{ConnTracker, ListenerCtx, accept_loop, http_builder};
use crate::proxy::{Shared, Worker};
use crate::shutdown::{Stop, stopped};
use crate::tls_client as tls;
use crate::upstream::Pool;

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
    #[error(transparent)]
    Handover(#[from] handover::HandoverError),
    #[error(
        "not ready within {0:?} (no placement snapshot, or a JWKS not fetched): the running process goes on serving"
    )]
    NotReady(Duration),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
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
    /// Taken over from a running process: told when this one serves.
    inherited: Option<Inherited>,
    /// The handover socket, bound at start (a successor binds it once it serves).
    handover: Option<std::os::unix::net::UnixListener>,
    /// One certificate reload task per TLS listener, started by `run`.
    cert_watches: Vec<crate::certs::CertWatch>,
    /// The config file's cells, built by the preflight.
    cells: Arc<[crate::placement::Cell]>,
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

/// The listener's acceptor and the watch that reloads its certificates (see [`crate::certs`]).
fn listener_tls(
    index: usize,
    tls: &crate::config::ListenerTls,
    metrics: &Metrics,
) -> Result<(TlsAcceptor, crate::certs::CertWatch), crate::certs::TlsSetupError> {
    let (cfg, watch) = crate::certs::listener(index, tls, metrics)?;
    Ok((TlsAcceptor::from(cfg), watch))
}

/// What the registry refresh service needs, whichever source it serves.
struct RefreshParts {
    handle: Arc<SnapshotHandle>,
    cells: Arc<[crate::placement::Cell]>,
    metrics: Arc<Metrics>,
    settings: RefreshSettings,
    lookups: Option<refresh::LookupService>,
    stop: Stop,
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
        Self::bind_with(config, None)
    }

    /// Like [`Server::bind`], but takes the listening sockets from the process serving at
    /// `server.handover_socket`; that one drains and exits once this one [`Server::run`]s.
    pub fn takeover(config: Config) -> Result<Self, ServeError> {
        let path = config
            .server
            .handover_socket
            .clone()
            .ok_or(handover::HandoverError::NotConfigured)?;
        let inherited = handover::take(&path)?;
        tracing::info!(path = %path.display(), "took the listening sockets over");
        Self::bind_with(config, Some(inherited))
    }

    fn bind_with(config: Config, mut inherited: Option<Inherited>) -> Result<Self, ServeError> {
        let prepared = preflight(&config)?;
        // A fresh process claims the handover socket first, failing (with the way out) if
        // another proxy serves there; a successor claims it once it serves.
        let handover = match (&config.server.handover_socket, &inherited) {
            (Some(path), None) => Some(handover::listen(path, false)?),
            _ => None,
        };
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
            let mut sockets = inherited
                .as_mut()
                .map(|i| i.take_listener(index, &l.address.to_string()))
                .unwrap_or_default();
            if sockets.is_empty() {
                sockets.push(bind_socket(l.address).map_err(|error| ServeError::Bind {
                    addr: l.address,
                    error,
                })?);
            }
            let addr = sockets[0].local_addr()?;
            // One socket per worker at least (`SO_REUSEPORT`); inherited extras are served too.
            while sockets.len() < workers {
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
        let admin = match inherited
            .as_mut()
            .and_then(|i| i.take_admin(&config.admin.address.to_string()))
        {
            Some(admin) => admin,
            None => std::net::TcpListener::bind(config.admin.address).map_err(|error| {
                ServeError::Bind {
                    addr: config.admin.address,
                    error,
                }
            })?,
        };
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
            inherited,
            handover,
            cert_watches,
            cells: Arc::from(prepared.cells),
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
        let (stop_tx, stop_rx) = crate::shutdown::Signal::new();
        let shared = Arc::clone(&self.shared);
        let config = Arc::clone(&shared.config);
        let mut control = JoinSet::new();

        let refresh = RefreshParts {
            handle: Arc::clone(&shared.snapshot),
            cells: Arc::clone(&self.cells),
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
        let offer = match &config.server.handover_socket {
            Some(_) => Some(handover::Offer {
                listeners: config
                    .listeners
                    .iter()
                    .zip(&self.listeners)
                    .map(|(c, l)| {
                        let dups = l.sockets.iter().map(std::net::TcpListener::try_clone);
                        Ok((c.address.to_string(), dups.collect::<std::io::Result<_>>()?))
                    })
                    .collect::<std::io::Result<_>>()?,
                admin: (config.admin.address.to_string(), self.admin.try_clone()?),
            }),
            None => None,
        };
        let admin = TcpListener::from_std(self.admin)?;
        control.spawn(crate::admin::serve(
            admin,
            Arc::clone(&shared),
            stop_rx.clone(),
        ));

        if self.inherited.is_some() {
            // The old process serves until this one can: accept nothing before a snapshot
            // (and every JWKS) is loaded, or give up and leave it serving.
            ready(&shared, TAKEOVER_READY_TIMEOUT).await?;
        }
        let workers = config.server.workers;
        let mut threads = Vec::with_capacity(workers);
        for id in 0..workers {
            let mut mine = Vec::with_capacity(self.listeners.len());
            for l in &self.listeners {
                for sock in l.sockets.iter().skip(id).step_by(workers) {
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

        let (succeeded_tx, succeeded) = tokio::sync::oneshot::channel::<()>();
        if let Some(inherited) = self.inherited.take() {
            // Serving: the old process may drain now.
            inherited.ready()?;
        }
        if let (Some(path), Some(offer)) = (&config.server.handover_socket, offer) {
            let listener = match self.handover.take() {
                Some(l) => l,
                None => handover::listen(path, true)?,
            };
            let (path, stop) = (path.clone(), stop_rx.clone());
            control.spawn(async move {
                if handover::offer(listener, path, offer, stop).await {
                    let _ = succeeded_tx.send(());
                }
            });
        }

        tokio::select! {
            () = shutdown => {}
            Ok(()) = succeeded => {}
        }
        tracing::info!(grace = ?config.server.shutdown_grace, "shutting down: draining in-flight requests");
        shared
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        stop_tx.stop();
        for t in threads {
            let _ = t.await;
        }
        while control.join_next().await.is_some() {}
        tracing::info!("cellgate stopped");
        Ok(())
    }
}

/// How long a successor may take to load its snapshot before it gives the takeover up.
const TAKEOVER_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until the proxy could answer: a placement snapshot loaded and every JWKS fetched.
async fn ready(shared: &Shared, limit: Duration) -> Result<(), ServeError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let jwks = shared.verifier.jwks().all(|j| j.ready());
        if shared.snapshot.load().generation > 0 && jwks {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServeError::NotReady(limit));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Forgets idle rate-limit state every `limits.sweep_interval` (it only ever drops state
/// equal to a fresh one, so nobody gains a burst by it).
async fn sweep_limits(shared: Arc<Shared>, mut stop: Stop) {
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

fn worker_main(
    shared: Arc<Shared>,
    upstream_tls: Arc<rustls::ClientConfig>,
    listeners: Vec<(usize, std::net::TcpListener, Option<TlsAcceptor>)>,
    mut stop: Stop,
    grace: Duration,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let pool = Pool::new(&shared.config.upstream, upstream_tls);
        let long_lived = Rc::new(crate::proxy::moves::LongLived::default());
        let worker = Rc::new(Worker {
            shared: Arc::clone(&shared),
            pool: Rc::clone(&pool),
            long_lived: Rc::clone(&long_lived),
        });
        let follower = tokio::task::spawn_local(crate::proxy::moves::follow(
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
        let tracker = Rc::new(ConnTracker::default());
        let builder = Rc::new(http_builder(&shared.config.server));
        let mut loops = Vec::with_capacity(listeners.len());
        for (index, std_listener, tls) in listeners {
            let listener = TcpListener::from_std(std_listener)?;
            let ctx = ListenerCtx {
                index,
                tls,
                proxy_protocol: shared.config.listeners[index].proxy_protocol,
                worker: Rc::clone(&worker),
                builder: Rc::clone(&builder),
                tracker: Rc::clone(&tracker),
                stop: stop.clone(),
            };
            loops.push(tokio::task::spawn_local(accept_loop(listener, ctx)));
        }
        stopped(&mut stop).await;
        for l in loops {
            let _ = l.await;
        }
        sweeper.abort();
        follower.abort();
        if tokio::time::timeout(grace, tracker.all_closed()).await.is_err() {
            tracing::warn!(grace = ?grace, "shutdown grace expired; closing the remaining connections");
        }
        Ok(())
    })
}
