//! The background service that keeps the published snapshot current.
//!
//! It loads the first snapshot (retrying until it succeeds; `/readyz` turns ready then), then
//! polls the source's cheap `changed` check every `poll_interval` and reloads on change, plus a
//! full reload every `full_refresh` as a safety net. A failed read or parse is never swallowed:
//! it logs a warning, bumps the failures counter and leaves the last good snapshot serving.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Cell, PlacementSnapshot, PlacementSource, RegistryError, SnapshotHandle};
use crate::metrics::Metrics;

/// Settings for [`run`].
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    pub poll_interval: Duration,
    /// Full reload even without a detected change (the TTL safety net).
    pub full_refresh: Duration,
}

/// Loads one generation and publishes it.
pub async fn reload<S: PlacementSource>(
    source: &S,
    handle: &SnapshotHandle,
    config_cells: &[Cell],
    metrics: &Metrics,
) -> Result<(), RegistryError> {
    let data = source.load().await?;
    let generation = handle.load().generation + 1;
    let snap = PlacementSnapshot::build(&data, config_cells, generation);
    for (tenant, cell) in &snap.dangling {
        tracing::warn!(tenant.id = %tenant, cell.id = %cell, "tenant record names an unknown cell; its requests get 503");
    }
    metrics
        .placement_tenants
        .set(i64::try_from(snap.tenant_count()).unwrap_or(i64::MAX));
    metrics
        .placement_cells
        .set(i64::try_from(snap.cell_count()).unwrap_or(i64::MAX));
    metrics
        .placement_dangling
        .set(i64::try_from(snap.dangling.len()).unwrap_or(i64::MAX));
    metrics
        .snapshot_generation
        .set(i64::try_from(generation).unwrap_or(i64::MAX));
    metrics.placement_reloads.inc();
    tracing::info!(
        registry.generation = generation,
        registry.tenants = snap.tenant_count(),
        registry.cells = snap.cell_count(),
        registry.source = %source.describe(),
        "placement snapshot loaded"
    );
    handle.store(snap);
    Ok(())
}

fn failed(metrics: &Metrics, source: &str, e: &RegistryError) {
    metrics.placement_refresh_failures.inc();
    tracing::warn!(registry.source = %source, error = %e, "registry refresh failed; keeping the last good snapshot");
}

/// Runs until `shutdown` flips to true.
pub async fn run<S: PlacementSource>(
    source: Arc<S>,
    handle: Arc<SnapshotHandle>,
    config_cells: Arc<[Cell]>,
    metrics: Arc<Metrics>,
    settings: RefreshSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let describe = source.describe();
    // First load: retry with back-off until it works; not ready until then.
    let mut backoff = Duration::from_millis(200);
    while let Err(e) = reload(&*source, &handle, &config_cells, &metrics).await {
        failed(&metrics, &describe, &e);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    let mut last_full = tokio::time::Instant::now();
    // After a failed read the snapshot is no longer confirmed current, even if the source then
    // reports "unchanged": its age keeps growing until a load succeeds.
    let mut healthy = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep(settings.poll_interval) => {}
            _ = shutdown.changed() => return,
        }
        let due = last_full.elapsed() >= settings.full_refresh;
        let result = match source.changed().await {
            Ok(changed) if changed || due => reload(&*source, &handle, &config_cells, &metrics)
                .await
                .map(|()| true),
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        };
        match result {
            Ok(true) => {
                healthy = true;
                last_full = tokio::time::Instant::now();
            }
            Ok(false) if healthy => handle.confirm(),
            Ok(false) => {}
            Err(e) => {
                healthy = false;
                failed(&metrics, &describe, &e);
            }
        }
    }
}
