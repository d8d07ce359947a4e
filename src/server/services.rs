//! The control plane's background services, on the runtime that runs the server: the registry
//! refresh (file or DynamoDB), each issuer's JWKS, the limiter sweep, the fleet limiter's sync,
//! certificate reloads and target discovery. Each ends when the stop signal is given.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::ServeError;
use crate::certs::CertWatch;
use crate::config::{Config, RegistryConfig};
use crate::metrics::Metrics;
use crate::placement::dynamo::DynamoSource;
use crate::placement::file::FileSource;
use crate::placement::lookup::LookupRequest;
use crate::placement::refresh::{self, RefreshSettings};
use crate::placement::{Cell, PlacementSource, SnapshotHandle};
use crate::proxy::Shared;
use crate::ratelimit::fleet::{self, FleetSync, Secret};
use crate::ratelimit::{Clock, LimitStore, Limiter, LocalStore, MonotonicClock};
use crate::shutdown::{Stop, stopped};

/// What the services are started with, besides the shared state.
pub(super) struct Parts {
    /// The config file's cells, built by the preflight.
    pub cells: Arc<[Cell]>,
    /// On-demand lookups the request path asks for.
    pub lookups: Option<mpsc::Receiver<LookupRequest>>,
    pub cert_watches: Vec<CertWatch>,
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// The fleet limiter's sync task, when `[limits.fleet]` is on.
    pub fleet: Option<FleetSync>,
    pub stop: Stop,
}

/// The admit stage's limiter: per node, or fleet-wide with its sync task (to be spawned).
pub(super) fn limiter(
    config: &Config,
    metrics: &Metrics,
    password: Option<&Secret>,
) -> Result<(Limiter, Option<FleetSync>), ServeError> {
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock::new());
    let local = LocalStore::with_counters(
        config.limits.max_tenants,
        metrics.ratelimit_idle_evictions.clone(),
        metrics.ratelimit_forced_evictions.clone(),
    );
    let (store, sync): (Arc<dyn LimitStore>, _) = match &config.limits.fleet {
        Some(f) => {
            let (store, sync) = fleet::fleet(
                f,
                &config.limits.tiers,
                local,
                password,
                Arc::clone(&clock),
                metrics.fleet.clone(),
            )
            .map_err(|e| ServeError::Start(std::io::Error::other(format!("fleet limits: {e}"))))?;
            tracing::info!(redis = %f.redis, mode = ?f.mode, node = sync.node(), "fleet-wide tenant limits on");
            (Arc::new(store), Some(sync))
        }
        None => (Arc::new(local), None),
    };
    Ok((Limiter::new(&config.limits, store, clock), sync))
}

/// What the registry refresh service needs, whichever source it serves.
struct RefreshParts {
    handle: Arc<SnapshotHandle>,
    cells: Arc<[Cell]>,
    metrics: Arc<Metrics>,
    settings: RefreshSettings,
    lookups: Option<refresh::LookupService>,
    stop: Stop,
}

impl RefreshParts {
    fn spawn<S: PlacementSource>(self, control: &mut JoinSet<()>, source: S) {
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

/// Starts every background service on `control`.
pub(super) async fn spawn(control: &mut JoinSet<()>, shared: &Arc<Shared>, parts: Parts) {
    let config = &shared.config;
    let refresh = RefreshParts {
        handle: Arc::clone(&shared.snapshot),
        cells: parts.cells,
        metrics: Arc::clone(&shared.metrics),
        settings: RefreshSettings {
            poll_interval: config.registry.poll_interval(),
            full_refresh: config.registry.full_refresh(),
        },
        lookups: parts.lookups.map(|rx| (Arc::clone(&shared.lookup), rx)),
        stop: parts.stop.clone(),
    };
    match &config.registry {
        RegistryConfig::File { path, .. } => {
            refresh.spawn(control, FileSource::new(path.clone()));
        }
        RegistryConfig::Dynamo { settings, .. } => {
            refresh.spawn(control, DynamoSource::new(settings.clone()).await);
        }
    }
    for jwks in shared.verifier.jwks() {
        control.spawn(Arc::clone(jwks).run(parts.stop.clone()));
    }
    control.spawn(sweep_limits(Arc::clone(shared), parts.stop.clone()));
    if let Some(sync) = parts.fleet {
        control.spawn(sync.run(parts.stop.clone()));
    }
    for watch in parts.cert_watches {
        control.spawn(watch.run(parts.stop.clone()));
    }
    control.spawn(crate::upstream::discovery::run(
        Arc::clone(&shared.upstreams),
        Arc::clone(&shared.snapshot),
        config.upstream.clone(),
        parts.upstream_tls,
        parts.stop.clone(),
    ));
}

/// How long a successor may take to load its snapshot before it gives the takeover up.
pub(super) const TAKEOVER_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until the proxy could answer: a placement snapshot loaded and every JWKS fetched.
pub(super) async fn ready(shared: &Shared, limit: Duration) -> Result<(), ServeError> {
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
