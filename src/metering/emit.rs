//! The emitter: closed windows become events, go to the sink, and, while the sink fails, to the
//! spool, replayed in order before anything newer once the sink takes events again.
//!
//! Synchronous and single-owner: the emitter thread ([`super::service`]) that runs it once per
//! window (and once at shutdown, with the open window flushed) is the only caller, so ordering is simple: a batch
//! is sent only when every older one has been. An event is either taken by the sink, waiting in
//! the spool, or counted as dropped by a full spool; never sent twice by this process except
//! after a sink error that hid a success (the idempotency key covers that).

use super::event::{Origin, UsageEvent, events};
use super::file::FileSink;
use super::runs::Spools;
use super::spool::SpoolError;
use super::window::Closed;

/// Where events go.
pub trait Sink {
    /// Takes every event of `batch`, or fails (and the emitter keeps them).
    fn send(&mut self, batch: &[UsageEvent]) -> Result<(), String>;
}

impl Sink for Box<dyn Sink + Send> {
    fn send(&mut self, batch: &[UsageEvent]) -> Result<(), String> {
        (**self).send(batch)
    }
}

impl Sink for FileSink {
    fn send(&mut self, batch: &[UsageEvent]) -> Result<(), String> {
        self.write(batch).map_err(|e| e.to_string())
    }
}

/// What one emission did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Emitted {
    /// Events the sink took (replayed ones included).
    pub sent: u64,
    /// Events from the spool among them.
    pub replayed: u64,
    /// Events that went to the spool.
    pub spooled: u64,
    /// Events neither the sink nor the spool took (the disk failed).
    pub lost: u64,
    /// The sink refused a batch.
    pub failed: bool,
}

/// Sends windows' events to a sink, through a spool.
#[derive(Debug)]
pub struct Emitter<S> {
    origin: Origin,
    batch: u64,
    spool: Spools,
    sink: S,
}

impl<S: Sink> Emitter<S> {
    #[must_use]
    pub const fn new(origin: Origin, spool: Spools, sink: S) -> Self {
        Self {
            origin,
            batch: 0,
            spool,
            sink,
        }
    }

    /// Emits `windows`: the spool's batches first, oldest first, then these; whatever the sink
    /// refuses is spooled. Never fails: a spool that cannot be read is passed by (the new
    /// events still go to the sink), and events that neither the sink nor the spool would take
    /// are counted as lost, with the error logged.
    pub fn emit(&mut self, windows: Vec<Closed>) -> Emitted {
        let mut done = Emitted::default();
        self.batch += 1;
        let fresh = events(&self.origin, self.batch, windows);
        match self.replay(&mut done) {
            Ok(true) => {}
            Ok(false) => return self.keep(fresh, done),
            Err(e) => {
                tracing::error!(error = %e, "metering spool unreadable: its batches wait, the new events go past them");
            }
        }
        if fresh.is_empty() {
            return done;
        }
        if let Err(e) = self.sink.send(&fresh) {
            tracing::warn!(error = %e, events = fresh.len(), "metering sink failed; the events are spooled");
            done.failed = true;
            return self.keep(fresh, done);
        }
        done.sent += fresh.len() as u64;
        done
    }

    /// Sends the spools' batches, oldest first; `false` when the sink failed on one.
    fn replay(&mut self, done: &mut Emitted) -> Result<bool, SpoolError> {
        self.spool.adopt()?;
        while let Some((from, seq, old)) = self.spool.peek()? {
            if let Err(e) = self.sink.send(&old) {
                tracing::warn!(error = %e, events = old.len(), "metering sink failed; replay waits");
                done.failed = true;
                return Ok(false);
            }
            self.spool.ack(from, seq)?;
            done.sent += old.len() as u64;
            done.replayed += old.len() as u64;
        }
        Ok(true)
    }

    fn keep(&mut self, fresh: Vec<UsageEvent>, mut done: Emitted) -> Emitted {
        if let Err(e) = self.spool.push(&fresh) {
            tracing::error!(error = %e, events = fresh.len(), "metering spool unwritable: these events are lost");
            done.lost += fresh.len() as u64;
        } else {
            done.spooled += fresh.len() as u64;
        }
        done
    }

    /// The spools (their size, what they dropped).
    #[must_use]
    pub const fn spool(&self) -> &Spools {
        &self.spool
    }

    /// Ends the emitter (after its last emission): this run's spool directory goes when empty.
    pub fn close(self) -> Result<(), SpoolError> {
        self.spool.close()
    }

    /// The sink.
    #[must_use]
    pub const fn sink(&self) -> &S {
        &self.sink
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::metering::{Meter, Sample};
    use crate::tenant::TenantId;

    /// A sink that takes batches while `up`, keeping what it took.
    #[derive(Debug, Default)]
    struct Flaky {
        up: bool,
        took: Vec<UsageEvent>,
    }

    impl Sink for Flaky {
        fn send(&mut self, batch: &[UsageEvent]) -> Result<(), String> {
            if !self.up {
                return Err("down".to_owned());
            }
            self.took.extend_from_slice(batch);
            Ok(())
        }
    }

    proptest! {
        /// Across any pattern of sink outages, every request reaches the sink exactly once
        /// (no spool overflow here), in window order, once the sink is back.
        #[test]
        fn an_outage_loses_nothing_and_replays_in_order(
            ticks in proptest::collection::vec((0usize..4, 1u64..30, any::<bool>()), 1..120),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let spool = Spools::open(dir.path(), "run", 1 << 30).unwrap();
            let origin = Origin { node: "n".to_owned(), run: 1, routes: std::sync::Arc::from([]) };
            let mut em = Emitter::new(origin, spool, Flaky::default());
            let meter = Meter::new(Duration::from_secs(10), 1_000, 0);
            let (mut now, mut sent) = (0u64, 0u64);
            for (tenant, dt, up) in ticks {
                now += dt;
                let s = Sample {
                    tenant: TenantId::parse(&format!("t{tenant}")).unwrap(),
                    cell: None,
                    route: None,
                    status: 200,
                    bytes_in: 0,
                    bytes_out: 0,
                    upstream: None,
                };
                meter.record(&s, now);
                sent += 1;
                em.sink.up = up;
                em.emit(meter.take(now, false));
            }
            em.sink.up = true;
            em.emit(meter.take(now, true));
            prop_assert!(em.spool().is_empty());
            let took: u64 = em.sink().took.iter().map(|e| e.requests).sum();
            prop_assert_eq!(took, sent);
            let starts: Vec<u64> = em.sink().took.iter().map(|e| e.window_start).collect();
            prop_assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{:?}", starts);
            let keys: std::collections::HashSet<&str> =
                em.sink().took.iter().map(|e| e.idempotency_key.as_str()).collect();
            prop_assert_eq!(keys.len(), em.sink().took.len());
        }
    }
}
