//! Metering as a running service: one [`Meter`] per worker, and the emitter thread that takes
//! their closed windows once per window and hands them to the [`Emitter`].
//!
//! The thread wakes just after each window boundary (aligned on the clock, as the windows
//! are), takes every worker's closed windows in one go (so a window's parts from all workers
//! are one batch) and emits them: the spool's batches first, then these. It also wakes for the
//! stop: it then flushes the open windows (the workers have drained by then, so every answer is
//! in them), emits once more and ends. Its own runtime (the Kinesis sink's) and its blocking
//! file I/O stay off the workers and the control plane.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use super::emit::{Emitted, Emitter, Sink};
use super::event::Origin;
use super::file::FileSink;
use super::kinesis::KinesisSink;
use super::runs::Spools;
use super::spool::SpoolError;
use super::window::Meter;
use crate::config::{MeteringConfig, MeteringSink};
use crate::metrics::MeteringMetrics;

/// How long after a window's end the emitter takes it (a request answered at the boundary has
/// been recorded by then).
const AFTER_BOUNDARY: Duration = Duration::from_millis(50);

/// One meter per worker, in worker order.
pub type Meters = Arc<[Arc<Meter>]>;

/// Why metering could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    #[error("metering.spool_dir: {0}")]
    Spool(#[from] SpoolError),
    #[error("metering: starting the emitter: {0}")]
    Start(std::io::Error),
}

/// The running emitter: tell it to flush and stop with [`MeteringTask::finish`].
#[derive(Debug)]
pub struct MeteringTask {
    stop: mpsc::Sender<()>,
    done: oneshot::Receiver<()>,
}

impl MeteringTask {
    /// Flushes the open windows (call once the workers have drained), emits them and waits for
    /// the emitter to end.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

/// Time since the Unix epoch.
fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Starts metering for `workers` workers: their meters, and the emitter thread; `routes` names
/// the route classes (`[[limits.routes]]`, in config order).
pub fn start(
    cfg: &MeteringConfig,
    workers: usize,
    routes: Arc<[Arc<str>]>,
    metrics: MeteringMetrics,
) -> Result<(Meters, MeteringTask), MeteringError> {
    let started = unix_now();
    let run = u64::try_from(started.as_millis()).unwrap_or(u64::MAX);
    let spools = Spools::open(
        &cfg.spool_dir,
        &format!("{run:013}-{}", std::process::id()),
        cfg.spool_max_bytes,
    )?;
    let meters: Meters = (0..workers.max(1))
        .map(|_| Arc::new(Meter::new(cfg.window, cfg.max_tenants, started.as_secs())))
        .collect();
    let origin = Origin {
        node: cfg.node.clone(),
        run,
        routes,
    };
    let (stop, stopped) = mpsc::channel();
    let (done_tx, done) = oneshot::channel();
    let (cfg, taken) = (cfg.clone(), Arc::clone(&meters));
    std::thread::Builder::new()
        .name("cellgate-metering".to_owned())
        .spawn(move || {
            let sink: Box<dyn Sink + Send> = match &cfg.sink {
                MeteringSink::File {
                    path,
                    max_bytes,
                    keep,
                } => Box::new(FileSink::new(path, *max_bytes, *keep)),
                MeteringSink::Kinesis {
                    stream,
                    region,
                    endpoint_url,
                    timeout,
                } => match KinesisSink::new(
                    stream.clone(),
                    region.as_deref(),
                    endpoint_url.as_deref(),
                    *timeout,
                ) {
                    Ok(k) => Box::new(k),
                    Err(e) => {
                        tracing::error!(error = %e, "metering: the Kinesis sink could not start; windows go to the spool");
                        Box::new(Down(e.to_string()))
                    }
                },
            };
            run_emitter(&cfg, &taken, Emitter::new(origin, spools, sink), &metrics, &stopped);
            drop(done_tx);
        })
        .map_err(MeteringError::Start)?;
    Ok((meters, MeteringTask { stop, done }))
}

/// A sink that could not start: every batch goes to the spool.
struct Down(String);

impl Sink for Down {
    fn send(&mut self, _: &[super::event::UsageEvent]) -> Result<(), String> {
        Err(self.0.clone())
    }
}

fn run_emitter<S: Sink>(
    cfg: &MeteringConfig,
    meters: &[Arc<Meter>],
    mut emitter: Emitter<S>,
    metrics: &MeteringMetrics,
    stop: &mpsc::Receiver<()>,
) {
    let window = cfg.window.as_secs().max(1);
    let mut seen = Seen::default();
    loop {
        let now = unix_now();
        let next = Duration::from_secs((now.as_secs() / window + 1) * window);
        let flush = !matches!(
            stop.recv_timeout(next.saturating_sub(now) + AFTER_BOUNDARY),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        let now = unix_now().as_secs();
        let windows = meters.iter().flat_map(|m| m.take(now, flush)).collect();
        let done = emitter.emit(windows);
        seen.record(&done, now, meters, &emitter, metrics);
        if flush {
            tracing::info!(
                sent = done.sent,
                spooled = done.spooled,
                "metering: the open windows were flushed"
            );
            if let Err(e) = emitter.close() {
                tracing::warn!(error = %e, "metering: this run's empty spool directory stays");
            }
            return;
        }
    }
}

/// Totals already counted into the metrics (the meters and the spool count on their own).
#[derive(Debug, Default)]
struct Seen {
    closed_early: u64,
    windows_dropped: u64,
    spool_dropped: u64,
}

impl Seen {
    fn record<S: Sink>(
        &mut self,
        done: &Emitted,
        now: u64,
        meters: &[Arc<Meter>],
        emitter: &Emitter<S>,
        m: &MeteringMetrics,
    ) {
        m.sent.inc_by(done.sent);
        m.replayed.inc_by(done.replayed);
        m.spooled.inc_by(done.spooled);
        if done.failed {
            m.sink_errors.inc();
        } else {
            m.last_success.set(i64::try_from(now).unwrap_or(i64::MAX));
        }
        let closed_early: u64 = meters.iter().map(|m| m.early_closes()).sum();
        let windows_dropped: u64 = meters.iter().map(|m| m.dropped()).sum();
        let spool_dropped = emitter.spool().dropped();
        m.dropped.inc_by(done.lost);
        m.closed_early
            .inc_by(closed_early.saturating_sub(self.closed_early));
        m.windows_dropped
            .inc_by(windows_dropped.saturating_sub(self.windows_dropped));
        m.dropped
            .inc_by(spool_dropped.saturating_sub(self.spool_dropped));
        (self.closed_early, self.windows_dropped) = (closed_early, windows_dropped);
        self.spool_dropped = spool_dropped;
        let spool = emitter.spool();
        m.spool_batches
            .set(i64::try_from(spool.len()).unwrap_or(i64::MAX));
        m.spool_bytes
            .set(i64::try_from(spool.bytes()).unwrap_or(i64::MAX));
    }
}
