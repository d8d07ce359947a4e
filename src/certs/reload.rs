//! The certificate reload task: one per TLS listener, on the control runtime.
//!
//! Every `reload_interval` it stats the listener's certificate and key files (size, mtime,
//! device and inode, following symlinks, so a rename over the file or a repointed symlink
//! counts). A change is loaded once the files have stayed the same for one more interval, so a
//! half-written file, or a new certificate whose new key has not landed yet, is not tried.
//! Loading runs on the blocking pool; a set that loads is swapped into the listener's
//! [`SniResolver`] and counted `ok`; one that does not is logged (file and reason, never
//! content), counted `error`, and the current set keeps serving until the files change again.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{CertSet, SniResolver};
use crate::config::{ListenerTls, TlsFiles};
use crate::metrics::ListenerTlsMetrics;
use crate::shutdown::{Stop, stopped};

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
}

/// One stamp per file (cert, key, cert, key, ...); `None` for a file that cannot be stat'ed.
pub type Stamps = Vec<Option<Stamp>>;

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// Stamps every file of the list (blocking: a few `stat` calls).
#[must_use]
pub fn stamps(files: &[TlsFiles]) -> Stamps {
    files
        .iter()
        .flat_map(|f| [stamp(&f.cert), stamp(&f.key)])
        .collect()
}

/// Watches one listener's files and swaps new sets into its resolver.
#[derive(Debug)]
pub struct CertWatch {
    listener: usize,
    files: Arc<[TlsFiles]>,
    interval: Duration,
    pub(super) resolver: Arc<SniResolver>,
    pub(super) metrics: ListenerTlsMetrics,
    /// The files as last loaded (or tried).
    seen: Stamps,
    /// A change seen at the last poll, loaded if the next poll sees the same.
    pending: Option<Stamps>,
}

enum Poll {
    Unchanged,
    Settling(Stamps),
    Loaded(Stamps, Result<CertSet, super::CertError>),
}

impl CertWatch {
    pub(super) fn new(
        listener: usize,
        tls: &ListenerTls,
        resolver: Arc<SniResolver>,
        metrics: ListenerTlsMetrics,
        seen: Stamps,
    ) -> Self {
        Self {
            listener,
            files: Arc::from(tls.certificates.as_slice()),
            interval: tls.reload_interval,
            resolver,
            metrics,
            seen,
            pending: None,
        }
    }

    /// Polls until `stop` is set.
    pub async fn run(mut self, mut stop: Stop) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => self.poll().await,
                () = stopped(&mut stop) => return,
            }
        }
    }

    pub(super) async fn poll(&mut self) {
        let files = Arc::clone(&self.files);
        let seen = self.seen.clone();
        let pending = self.pending.take();
        let polled = tokio::task::spawn_blocking(move || {
            let now = stamps(&files);
            if now == seen {
                Poll::Unchanged
            } else if pending.as_ref() == Some(&now) {
                let set = CertSet::load(&files);
                Poll::Loaded(now, set)
            } else {
                Poll::Settling(now)
            }
        })
        .await;
        match polled {
            Ok(Poll::Unchanged) => {}
            Ok(Poll::Settling(now)) => self.pending = Some(now),
            Ok(Poll::Loaded(now, Ok(set))) => {
                self.seen = now;
                self.metrics.set_expiry(set.expiries());
                let count = set.certificates().len();
                self.resolver.swap(set);
                self.metrics.reloads_ok.inc();
                tracing::info!(
                    listener = self.listener,
                    certificates = count,
                    "TLS certificates reloaded"
                );
            }
            Ok(Poll::Loaded(now, Err(e))) => {
                // Not retried until the files change again: one report per bad change.
                self.seen = now;
                self.metrics.reload_errors.inc();
                tracing::warn!(
                    listener = self.listener,
                    path = %e.path.display(),
                    file = e.part.as_str(),
                    reason = %e.reason,
                    "TLS certificate reload failed; keeping the current certificates"
                );
            }
            Err(e) => {
                self.metrics.reload_errors.inc();
                tracing::warn!(listener = self.listener, error = %e, "TLS certificate reload task failed; keeping the current certificates");
            }
        }
    }
}
