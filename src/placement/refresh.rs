//! The background service that keeps the published snapshot current.
//!
//! It loads the first snapshot (retrying until it succeeds; `/readyz` turns ready then), then
//! polls the source's cheap `changed` check every `poll_interval` and reloads on change, plus a
//! full reload every `full_refresh` as a safety net. A failed read or parse is never swallowed:
//! it logs a warning, bumps the failures counter and leaves the last good snapshot serving.
//!
//! A delta costs what it touches (the snapshot shares every unchanged node with the generation
//! before). A full build and freeing a fully replaced generation still cost O(tenants): both
//! run on the blocking pool, so they neither stall this runtime (it also answers `/readyz` and
//! `/metrics`) nor land on a worker thread that happened to drop the last reference to the old
//! generation in the middle of serving requests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::lookup::{Lookup, LookupKind, LookupOutcome, LookupRequest};
use super::{
    Cell, Delta, KeyRecord, PlacementSnapshot, PlacementSource, RegistryError, SnapshotHandle,
    TenantRecord,
};
use crate::metrics::Metrics;
use crate::shutdown::{Stop, stopped};

/// Settings for [`run`].
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    pub poll_interval: Duration,
    /// Full reload even without a detected change (the TTL safety net).
    pub full_refresh: Duration,
}

/// Loads one generation in full and publishes it.
pub async fn reload<S: PlacementSource>(
    source: &S,
    handle: &SnapshotHandle,
    config_cells: &[Cell],
    metrics: &Metrics,
) -> Result<(), RegistryError> {
    let data = source.load().await?;
    skipped(metrics, data.skipped());
    let generation = handle.load().generation + 1;
    let cells = config_cells.to_vec();
    let snap = off_runtime(source, move || {
        PlacementSnapshot::build(data, &cells, generation)
    })
    .await?;
    metrics.placement.reloads.inc();
    tracing::info!(
        registry.generation = generation,
        registry.tenants = snap.tenant_count(),
        registry.cells = snap.cell_count(),
        registry.source = %source.describe(),
        "placement snapshot loaded"
    );
    publish(snap, handle, metrics);
    Ok(())
}

/// Follows a detected change: the source's delta when it has one, else a full reload.
pub async fn update<S: PlacementSource>(
    source: &S,
    handle: &SnapshotHandle,
    config_cells: &[Cell],
    metrics: &Metrics,
) -> Result<(), RegistryError> {
    let Some(delta) = source.delta().await? else {
        return reload(source, handle, config_cells, metrics).await;
    };
    let current = handle.load_full();
    let generation = current.generation + 1;
    let (changed_tenants, changed_cells, changed_keys) =
        (delta.tenants.len(), delta.cells.len(), delta.keys.len());
    let delta_skipped = delta.skipped;
    let cells = config_cells.to_vec();
    let (snap, stats) =
        off_runtime(source, move || current.apply(&delta, &cells, generation)).await?;
    metrics.placement.deltas.inc();
    skipped(metrics, stats.skipped + delta_skipped);
    if stats.regressions > 0 {
        metrics
            .placement
            .version_regressions
            .inc_by(u64::try_from(stats.regressions).unwrap_or(u64::MAX));
        tracing::warn!(
            registry.regressions = stats.regressions,
            "older tenant records read late were ignored"
        );
    }
    tracing::info!(
        registry.generation = generation,
        registry.changed_tenants = changed_tenants,
        registry.changed_cells = changed_cells,
        registry.changed_keys = changed_keys,
        registry.source = %source.describe(),
        "placement delta applied"
    );
    publish(snap, handle, metrics);
    Ok(())
}

fn skipped(metrics: &Metrics, n: usize) {
    if n > 0 {
        metrics
            .placement
            .records_skipped
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        tracing::warn!(
            registry.skipped = n,
            "registry records skipped (invalid, or beyond 65,535 distinct tiers or arms)"
        );
    }
}

fn publish(snap: PlacementSnapshot, handle: &SnapshotHandle, metrics: &Metrics) {
    for (cell, tenants) in snap.dangling() {
        tracing::warn!(cell.id = %cell, registry.tenants = tenants, "tenant records name an unknown cell; their requests get 503");
    }
    metrics
        .placement
        .tenants
        .set(i64::try_from(snap.tenant_count()).unwrap_or(i64::MAX));
    metrics
        .placement
        .api_keys
        .set(i64::try_from(snap.key_count()).unwrap_or(i64::MAX));
    metrics
        .placement
        .cells
        .set(i64::try_from(snap.cell_count()).unwrap_or(i64::MAX));
    metrics
        .placement
        .dangling
        .set(i64::try_from(snap.dangling_tenants()).unwrap_or(i64::MAX));
    metrics
        .placement
        .generation
        .set(i64::try_from(snap.generation).unwrap_or(i64::MAX));
    retire(handle.replace(snap));
}

/// How long a replaced generation is kept before it is freed: longer than a request holds its
/// snapshot guard, so the last reference is this one.
const RETIRE_AFTER: Duration = Duration::from_secs(1);

/// Frees a replaced generation on the blocking pool once requests have let go of it.
fn retire(old: Arc<PlacementSnapshot>) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(async move {
                tokio::time::sleep(RETIRE_AFTER).await;
                let _ = tokio::task::spawn_blocking(move || drop(old)).await;
            });
        }
        Err(_) => drop(old),
    }
}

/// Runs a generation build on the blocking pool.
async fn off_runtime<S: PlacementSource, T: Send + 'static>(
    source: &S,
    build: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(build)
        .await
        .map_err(|e| RegistryError::Remote {
            source_name: source.describe(),
            message: format!("building the snapshot did not complete: {e}"),
        })
}

/// What one poll did.
enum Step {
    Full,
    Changed,
    Unchanged,
}

fn failed(metrics: &Metrics, handle: &SnapshotHandle, source: &str, e: &RegistryError) {
    metrics.placement.refresh_failures.inc();
    handle.record_failure(&e.to_string());
    tracing::warn!(registry.source = %source, error = %e, "registry refresh failed; keeping the last good snapshot");
}

/// On-demand lookups served by [`run`]: the service and the requests it queues.
pub type LookupService = (Arc<Lookup>, mpsc::Receiver<LookupRequest>);

/// Runs until `shutdown` flips to true.
pub async fn run<S: PlacementSource>(
    source: Arc<S>,
    handle: Arc<SnapshotHandle>,
    config_cells: Arc<[Cell]>,
    metrics: Arc<Metrics>,
    settings: RefreshSettings,
    lookups: Option<LookupService>,
    mut shutdown: Stop,
) {
    let describe = source.describe();
    handle.set_source(&describe);
    // First load: retry with back-off until it works; not ready until then.
    let mut backoff = Duration::from_millis(200);
    while let Err(e) = reload(&*source, &handle, &config_cells, &metrics).await {
        failed(&metrics, &handle, &describe, &e);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    let (lookup, mut requests) = match lookups {
        Some((l, rx)) => (Some(l), Some(rx)),
        None => (None, None),
    };
    // Lookup reads run beside the loop; their results come back here, so the loop stays the
    // snapshot's only writer.
    let (found_tx, mut found_rx) = mpsc::channel::<Fetched>(1024);
    let mut last_full = Instant::now();
    let mut next_poll = Instant::now() + settings.poll_interval;
    // After a failed read the snapshot is no longer confirmed current, even if the source then
    // reports "unchanged": its age keeps growing until a load succeeds.
    let mut healthy = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_poll) => {}
            Some(req) = recv(&mut requests) => {
                let (source, tx) = (Arc::clone(&source), found_tx.clone());
                tokio::spawn(async move {
                    let result = match req.kind {
                        LookupKind::Tenant => source.fetch_tenant(&req.id).await.map(Record::Tenant),
                        LookupKind::Key => source.fetch_key(&req.id).await.map(Record::Key),
                    };
                    let _ = tx.send((req, result)).await;
                });
                continue;
            }
            Some((req, result)) = found_rx.recv() => {
                if let Some(l) = &lookup {
                    let outcome = apply_lookup(&req, result, &handle, &config_cells, &metrics);
                    l.complete(req.kind, &req.id, outcome);
                }
                continue;
            }
            () = stopped(&mut shutdown) => return,
        }
        next_poll = Instant::now() + settings.poll_interval;
        let due = last_full.elapsed() >= settings.full_refresh;
        let result = match source.changed().await {
            Ok(_) if due => reload(&*source, &handle, &config_cells, &metrics)
                .await
                .map(|()| Step::Full),
            Ok(true) => update(&*source, &handle, &config_cells, &metrics)
                .await
                .map(|()| Step::Changed),
            Ok(false) => Ok(Step::Unchanged),
            Err(e) => Err(e),
        };
        match result {
            Ok(Step::Full) => {
                healthy = true;
                last_full = Instant::now();
            }
            Ok(Step::Changed) => healthy = true,
            Ok(Step::Unchanged) if healthy => handle.confirm(),
            Ok(Step::Unchanged) => {}
            Err(e) => {
                healthy = false;
                failed(&metrics, &handle, &describe, &e);
            }
        }
        if let Some(l) = &lookup {
            l.set_registry_up(healthy);
        }
    }
}

/// What a lookup read: the record, or `None` when the registry has none.
enum Record {
    Tenant(Option<TenantRecord>),
    Key(Option<KeyRecord>),
}

type Fetched = (LookupRequest, Result<Record, RegistryError>);

async fn recv(rx: &mut Option<mpsc::Receiver<LookupRequest>>) -> Option<LookupRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Publishes what a lookup read (a one-record delta) and says what it found.
fn apply_lookup(
    req: &LookupRequest,
    result: Result<Record, RegistryError>,
    handle: &SnapshotHandle,
    config_cells: &[Cell],
    metrics: &Metrics,
) -> LookupOutcome {
    let record = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(lookup.id = %req.id, lookup.kind = ?req.kind, error = %e, "registry lookup failed");
            return LookupOutcome::Unavailable;
        }
    };
    let current = handle.load_full();
    let id = req.id.to_string();
    let (found, held, delta) = match record {
        Record::Tenant(t) => (
            t.is_some(),
            current.tenant(&req.id).is_some(),
            Delta {
                tenants: vec![(id, t)],
                ..Delta::default()
            },
        ),
        Record::Key(k) => (
            k.is_some(),
            current.api_key(&req.id).is_some(),
            Delta {
                keys: vec![(id, k)],
                ..Delta::default()
            },
        ),
    };
    let outcome = if found {
        LookupOutcome::Found
    } else {
        LookupOutcome::Absent
    };
    // A plain lookup only adds; a forced re-read (invalidation) also removes.
    if !(found || req.force && held) {
        return outcome;
    }
    let (snap, stats) = current.apply(&delta, config_cells, current.generation + 1);
    if stats.regressions > 0 {
        metrics.placement.version_regressions.inc();
    }
    skipped(metrics, stats.skipped);
    tracing::info!(lookup.id = %req.id, lookup.kind = ?req.kind, registry.generation = snap.generation, "record re-read from the registry");
    publish(snap, handle, metrics);
    outcome
}
