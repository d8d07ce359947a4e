//! The composition root: the one module that knows every other. It checks what config alone
//! cannot ([`preflight`]), builds the shared state, binds the sockets (`bind.rs`), starts the
//! control plane's services (`services.rs`: registry refresh, JWKS, limiter sweep, certificate
//! reloads, discovery) and the admin listener, then the workers (`worker.rs`), and stops them.
//!
//! Thread-per-core: each worker thread runs its own current-thread tokio runtime with its own
//! `SO_REUSEPORT` listening socket per listener (the kernel spreads connections) and its own
//! upstream pool, so the request path shares nothing mutable between threads but the snapshot
//! pointer and atomic metrics. The control plane runs on the runtime that calls
//! [`Server::run`].
//!
//! Shutdown: on the signal, or when a successor took the sockets over ([`handover`]), workers
//! stop accepting and drain their connections ([`crate::proxy::accept`]: HTTP/1 closed after
//! its next answer or once quiet, HTTP/2 GOAWAY), waiting up to `server.shutdown_grace` before
//! cutting what is left; then the usage meters' open windows are flushed to the sink.

mod bind;
pub mod handover;
mod preflight;
mod services;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use bind::BoundListener;
use handover::Inherited;
pub use preflight::{Prepared, preflight};

use crate::accesslog::AccessLog;
use crate::auth::Verifier;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::otel::Tracer;
use crate::placement::SnapshotHandle;
use crate::placement::lookup::Lookup;
use crate::proxy::Shared;
use crate::tls_client as tls;

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
    #[error(transparent)]
    Metering(#[from] crate::metering::service::MeteringError),
    #[error("start: {0}")]
    Start(#[from] std::io::Error),
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
    /// The fleet limiter's sync task, started by `run`.
    fleet: Option<crate::ratelimit::fleet::FleetSync>,
    /// The usage emitter (`[metering]`), flushed once the workers have drained.
    metering: Option<crate::metering::service::MeteringTask>,
    /// The span exporter (`[tracing]`), flushed once the workers have drained.
    exporter: Option<crate::otel::export::Exporter>,
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
        let (limiter, fleet) =
            services::limiter(&config, &metrics, prepared.redis_password.as_ref())?;
        let mut shared = Shared::new(
            Arc::clone(&config),
            snapshot,
            verifier,
            Arc::new(lookup),
            Arc::clone(&metrics),
            access_log,
            limiter,
        );
        let metering = match &config.metering {
            Some(m) => {
                let workers = config.server.workers;
                let routes = config.limits.routes.iter();
                let routes = routes.map(|r| Arc::from(r.name.as_str())).collect();
                let (meters, task) =
                    crate::metering::service::start(m, workers, routes, metrics.metering.clone())?;
                shared.meters = Some(meters);
                Some(task)
            }
            None => None,
        };
        let exporter = match &config.tracing {
            Some(t) => {
                let tls = tls::client_config(None)?;
                let (tracer, exporter) = Tracer::new(t, metrics.traces.clone(), tls);
                shared.tracer = Some(Arc::new(tracer));
                tracing::info!(endpoint = %t.endpoint.uri, sample_ratio = t.sample_ratio,
                    trust_incoming = ?t.trust_incoming, "tracing on");
                Some(exporter)
            }
            None => None,
        };
        let shared = Arc::new(shared);
        let (listeners, cert_watches) =
            bind::listeners(&config, inherited.as_mut(), &shared.metrics)?;
        let admin = bind::admin(&config, inherited.as_mut())?;
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
            fleet,
            metering,
            exporter,
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
        // The exporter outlives the workers: the spans of the requests they drain go out too.
        let (export_stop, export_stop_rx) = crate::shutdown::Signal::new();
        let exporter = self
            .exporter
            .take()
            .map(|e| tokio::spawn(e.run(export_stop_rx)));

        services::spawn(
            &mut control,
            &shared,
            services::Parts {
                cells: Arc::clone(&self.cells),
                lookups: self.lookups.take(),
                cert_watches: std::mem::take(&mut self.cert_watches),
                upstream_tls: Arc::clone(&self.upstream_tls),
                fleet: self.fleet.take(),
                stop: stop_rx.clone(),
            },
        )
        .await;
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
            services::ready(&shared, services::TAKEOVER_READY_TIMEOUT).await?;
        }
        let workers = config.server.workers;
        let threads = worker::start(&shared, &self.listeners, &self.upstream_tls, &stop_rx)?;
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
        // Every answer is in the meters now: the open windows go out (or to the spool).
        if let Some(m) = self.metering.take() {
            m.finish().await;
        }
        export_stop.stop();
        if let Some(e) = exporter {
            let _ = e.await;
        }
        while control.join_next().await.is_some() {}
        tracing::info!("cellgate stopped");
        Ok(())
    }
}
