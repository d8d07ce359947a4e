//! The one published snapshot behind an `ArcSwap`, and what the refresh service last did.
//!
//! Requests load the current generation once ([`SnapshotHandle::load`]); the refresh service
//! is the only writer ([`SnapshotHandle::replace`]); tasks that follow changes (target
//! discovery, long-lived exchanges of moved tenants) subscribe to the published generation.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use super::PlacementSnapshot;

/// The one published snapshot, plus when the source last confirmed it.
#[derive(Debug)]
pub struct SnapshotHandle {
    current: ArcSwap<PlacementSnapshot>,
    /// The generation last published, for tasks that follow changes (target discovery,
    /// long-lived connections of moved tenants).
    published: tokio::sync::watch::Sender<u64>,
    confirmed: std::sync::Mutex<Instant>,
    status: std::sync::Mutex<RefreshStatus>,
}

/// What the refresh service last did, for `GET /admin/registry`.
#[derive(Debug, Clone, Default)]
pub struct RefreshStatus {
    /// The source's description (`file:...`, `dynamodb:...`).
    pub source: String,
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    pub failures: u64,
}

impl Default for SnapshotHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotHandle {
    #[must_use]
    pub fn new() -> Self {
        Self {
            current: ArcSwap::from_pointee(PlacementSnapshot::empty()),
            published: tokio::sync::watch::Sender::new(0),
            confirmed: std::sync::Mutex::new(Instant::now()),
            status: std::sync::Mutex::new(RefreshStatus::default()),
        }
    }

    /// The current snapshot (cheap; hold it for one request, not across long waits).
    #[must_use]
    pub fn load(&self) -> arc_swap::Guard<Arc<PlacementSnapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc` (for building the next generation from it).
    #[must_use]
    pub fn load_full(&self) -> Arc<PlacementSnapshot> {
        self.current.load_full()
    }

    /// Publishes a new generation.
    pub fn store(&self, snapshot: PlacementSnapshot) {
        drop(self.replace(snapshot));
    }

    /// Publishes a new generation and hands back the one it replaced (whoever drops the last
    /// reference frees every tenant entry of it).
    pub fn replace(&self, snapshot: PlacementSnapshot) -> Arc<PlacementSnapshot> {
        let generation = snapshot.generation;
        let old = self.current.swap(Arc::new(snapshot));
        self.confirm();
        self.published.send_replace(generation);
        old
    }

    /// Follows published generations (the receiver sees the latest one, never a backlog).
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Records that the source was checked and the snapshot is still current.
    pub fn confirm(&self) {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// Time since the source last confirmed the snapshot (what "stale" means).
    #[must_use]
    pub fn age(&self) -> std::time::Duration {
        self.confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// Records the source's name (once, at start) and each failure.
    pub fn set_source(&self, source: &str) {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .source = source.to_owned();
    }

    pub fn record_failure(&self, error: &str) {
        let mut st = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.last_error = Some(error.to_owned());
        st.last_error_at = Some(SystemTime::now());
        st.failures += 1;
    }

    #[must_use]
    pub fn status(&self) -> RefreshStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    #[must_use]
    pub fn ready(&self) -> bool {
        self.current.load().generation > 0
    }
}

/// Discovery follows the targets of the current generation's cells.
impl crate::upstream::discovery::Watched for SnapshotHandle {
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.subscribe()
    }

    fn each_target(&self, f: &mut dyn FnMut(&crate::upstream::Target)) {
        let snap = self.load_full();
        for cell in snap.cells() {
            cell.targets.iter().for_each(&mut *f);
        }
    }
}
