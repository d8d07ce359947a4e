//! The spool directory that successive runs of a node share: each process spools into its own
//! subdirectory, locked for as long as it lives, and adopts the ones whose process is gone.
//!
//! A successor that takes the sockets over runs beside its predecessor for up to the shutdown
//! grace, and both emit: one directory each means no batch file is ever written by two
//! processes. Once the predecessor has exited (after flushing its open window to the sink, or
//! to its spool if the sink was down) its lock is free, and the running process adopts the
//! directory: its batches are replayed before this run's own, oldest run first (directory
//! names sort by start time), and the directory is removed once drained. A crashed process's
//! spool is adopted the same way by the next one to start.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::event::UsageEvent;
use super::spool::{Spool, SpoolError};

/// This run's spool and the ones it adopted.
#[derive(Debug)]
pub struct Spools {
    root: PathBuf,
    max_bytes: u64,
    /// Adopted from runs that are over, oldest first.
    adopted: VecDeque<Spool>,
    own: Spool,
    /// Events dropped by adopted spools already drained and removed.
    retired_dropped: u64,
}

/// Which spool a batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Adopted,
    Own,
}

impl Spools {
    /// Claims `root/<run>` (which no other process can hold: `run` is this process's start and
    /// id) and adopts every other run directory no process holds.
    pub fn open(root: impl Into<PathBuf>, run: &str, max_bytes: u64) -> Result<Self, SpoolError> {
        let root = root.into();
        let dir = root.join(run);
        let own = Spool::claim(&dir, max_bytes)?.ok_or_else(|| SpoolError::Io {
            path: dir.display().to_string(),
            error: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "held by another process",
            ),
        })?;
        let mut spools = Self {
            root,
            max_bytes,
            adopted: VecDeque::new(),
            own,
            retired_dropped: 0,
        };
        spools.adopt()?;
        Ok(spools)
    }

    /// Adopts the run directories whose process has let go of them (called before each
    /// emission, so a predecessor's spool is picked up soon after it exits).
    pub fn adopt(&mut self) -> Result<usize, SpoolError> {
        let mut found: Vec<PathBuf> = Vec::new();
        let entries = std::fs::read_dir(&self.root).map_err(|error| SpoolError::Io {
            path: self.root.display().to_string(),
            error,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let held = |p: &Path| p == self.own.dir() || self.adopted.iter().any(|s| s.dir() == p);
            if path.is_dir() && !held(&path) {
                found.push(path);
            }
        }
        found.sort();
        let mut adopted = 0;
        for dir in found {
            if let Some(spool) = Spool::claim(&dir, self.max_bytes)? {
                if spool.is_empty() {
                    spool.remove()?;
                    continue;
                }
                tracing::info!(spool = %dir.display(), batches = spool.len(), "adopted the spool of a run that is over");
                self.adopted.push_back(spool);
                adopted += 1;
            }
        }
        // Oldest run first, wherever it was found.
        self.adopted
            .make_contiguous()
            .sort_by(|a, b| a.dir().cmp(b.dir()));
        Ok(adopted)
    }

    /// The oldest batch waiting: adopted runs' first, then this run's.
    pub fn peek(&mut self) -> Result<Option<(From, u64, Vec<UsageEvent>)>, SpoolError> {
        while let Some(first) = self.adopted.front() {
            if let Some((seq, events)) = first.peek()? {
                return Ok(Some((From::Adopted, seq, events)));
            }
            if let Some(done) = self.adopted.pop_front() {
                self.retired_dropped += done.dropped();
                done.remove()?;
            }
        }
        Ok(self.own.peek()?.map(|(seq, e)| (From::Own, seq, e)))
    }

    /// Acknowledges the batch [`Spools::peek`] returned.
    pub fn ack(&mut self, from: From, seq: u64) -> Result<(), SpoolError> {
        match from {
            From::Adopted => match self.adopted.front_mut() {
                Some(s) => s.ack(seq),
                None => Ok(()),
            },
            From::Own => self.own.ack(seq),
        }
    }

    /// Keeps `events` in this run's spool.
    pub fn push(&mut self, events: &[UsageEvent]) -> Result<(), SpoolError> {
        self.own.push(events)
    }

    /// Batches waiting, in every spool.
    #[must_use]
    pub fn len(&self) -> usize {
        self.own.len() + self.adopted.iter().map(Spool::len).sum::<usize>()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends this run's part: its directory is removed when nothing waits in it (what does
    /// wait stays for the next process to adopt).
    pub fn close(self) -> Result<(), SpoolError> {
        self.own.remove()
    }

    /// Bytes on disk, in every spool.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.own.bytes() + self.adopted.iter().map(Spool::bytes).sum::<u64>()
    }

    /// Events this run dropped because a spool was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.retired_dropped
            + self.own.dropped()
            + self.adopted.iter().map(Spool::dropped).sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::metering::event::sample as event;

    #[test]
    fn a_run_over_is_adopted_replayed_first_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let mut old = Spools::open(root.path(), "0001-1", 1 << 20).unwrap();
        old.push(&[event(1)]).unwrap();
        let mut new = Spools::open(root.path(), "0002-2", 1 << 20).unwrap();
        new.push(&[event(2)]).unwrap();
        assert_eq!(new.len(), 1, "a live run's spool is not adopted");
        drop(old);
        assert_eq!(new.adopt().unwrap(), 1);
        let (from, seq, b) = new.peek().unwrap().unwrap();
        assert_eq!((from, b[0].requests), (From::Adopted, 1));
        new.ack(from, seq).unwrap();
        let (from, seq, b) = new.peek().unwrap().unwrap();
        assert_eq!((from, b[0].requests), (From::Own, 2));
        new.ack(from, seq).unwrap();
        assert!(new.peek().unwrap().is_none());
        assert!(!root.path().join("0001-1").exists(), "drained and removed");
        assert!(
            Spools::open(root.path(), "0002-2", 1 << 20).is_err(),
            "a run's directory is its alone"
        );
    }
}
