//! The spool: usage events a sink could not take, kept on local disk, bounded, and handed back
//! oldest first when the sink recovers.
//!
//! Each batch is one file, `<seq>-<events>.jsonl` (20-digit sequence, event count), written to
//! a temporary name and renamed, so a crash leaves a batch whole or absent, never half there
//! (temporary files found at open are removed). Batches survive a restart: [`Spool::open`]
//! finds them and carries on the sequence. When the spool passes `max_bytes` the oldest batches
//! are removed and their events counted as dropped: a sink that stays down loses the oldest
//! windows, never the newest, and never blocks the emitter. Blocking file I/O: the emitter calls
//! it off the request path.

use std::path::{Path, PathBuf};

use super::event::UsageEvent;

/// The lock file in a spool directory.
const LOCK: &str = "lock";

/// A bounded on-disk queue of event batches.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// (sequence, events, bytes, path), oldest first.
    batches: std::collections::VecDeque<(u64, u64, u64, PathBuf)>,
    bytes: u64,
    next: u64,
    dropped: u64,
    /// The directory's lock, held while this process owns it ([`Spool::claim`]).
    _lock: Option<std::fs::File>,
}

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("encoding a batch: {0}")]
    Encode(serde_json::Error),
    #[error("{path}: line {line}: {error}")]
    Parse {
        path: String,
        line: usize,
        error: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |error| SpoolError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// `(sequence, events)` from a batch file's name.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (seq, rest) = name.strip_suffix(".jsonl")?.split_once('-')?;
    Some((seq.parse().ok()?, rest.parse().ok()?))
}

impl Spool {
    /// The spool in `dir` (created if missing), with the batches a previous run left, oldest
    /// first; at most `max_bytes` kept.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, SpoolError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut batches = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // A batch being written when the process stopped: never acknowledged to anyone.
                std::fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            if let Some((seq, events)) = parse_name(&name) {
                let bytes = entry.metadata().map_err(io(&path))?.len();
                batches.push((seq, events, bytes, path));
            }
        }
        batches.sort_by_key(|b| b.0);
        let next = batches.last().map_or(0, |b| b.0 + 1);
        let bytes = batches.iter().map(|b| b.2).sum();
        let mut spool = Self {
            dir,
            max_bytes: max_bytes.max(1),
            batches: batches.into(),
            bytes,
            next,
            dropped: 0,
            _lock: None,
        };
        spool.trim()?;
        Ok(spool)
    }

    /// The spool in `dir` if no other process holds it, locked for as long as it lives
    /// (`None`: a live process owns it). The lock is the OS's, so a process that dies, however
    /// it dies, lets go of it.
    pub fn claim(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Option<Self>, SpoolError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(LOCK);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        let mut spool = Self::open(dir, max_bytes)?;
        spool._lock = Some(lock);
        Ok(Some(spool))
    }

    /// Removes this spool's directory once it holds nothing (an adopted one, drained).
    pub fn remove(self) -> Result<(), SpoolError> {
        if !self.batches.is_empty() {
            return Ok(());
        }
        let lock = self.dir.join(LOCK);
        std::fs::remove_file(&lock).map_err(io(&lock))?;
        std::fs::remove_dir(&self.dir).map_err(io(&self.dir))
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps `events` for later (the newest batch).
    pub fn push(&mut self, events: &[UsageEvent]) -> Result<(), SpoolError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(events.len() * 320);
        for e in events {
            serde_json::to_writer(&mut buf, e).map_err(SpoolError::Encode)?;
            buf.push(b'\n');
        }
        let seq = self.next;
        let name = format!("{seq:020}-{}.jsonl", events.len());
        let (tmp, path) = (self.dir.join(format!("{name}.tmp")), self.dir.join(&name));
        std::fs::write(&tmp, &buf).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.next += 1;
        self.bytes += buf.len() as u64;
        self.batches
            .push_back((seq, events.len() as u64, buf.len() as u64, path));
        self.trim()
    }

    /// The oldest batch kept: its sequence and events.
    pub fn peek(&self) -> Result<Option<(u64, Vec<UsageEvent>)>, SpoolError> {
        let Some((seq, _, _, path)) = self.batches.front() else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let mut events = Vec::new();
        for (i, line) in text.lines().enumerate() {
            events.push(
                serde_json::from_str(line).map_err(|error| SpoolError::Parse {
                    path: path.display().to_string(),
                    line: i + 1,
                    error,
                })?,
            );
        }
        Ok(Some((*seq, events)))
    }

    /// Removes batch `seq` once a sink took it (only the oldest can be acknowledged).
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        if self.batches.front().is_some_and(|b| b.0 == seq)
            && let Some((_, _, bytes, path)) = self.batches.pop_front()
        {
            self.bytes -= bytes;
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        Ok(())
    }

    /// Batches waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Bytes on disk.
    #[must_use]
    pub const fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Events dropped by this run because the spool was full.
    #[must_use]
    pub const fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Removes the oldest batches until the spool fits (the newest is always kept).
    fn trim(&mut self) -> Result<(), SpoolError> {
        while self.bytes > self.max_bytes && self.batches.len() > 1 {
            if let Some((_, events, bytes, path)) = self.batches.pop_front() {
                self.bytes -= bytes;
                self.dropped += events;
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use crate::metering::event::sample as event;

    fn requests(batch: &[UsageEvent]) -> Vec<u64> {
        batch.iter().map(|e| e.requests).collect()
    }

    #[test]
    fn batches_come_back_oldest_first_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.push(&[event(1), event(2)]).unwrap();
        s.push(&[event(3)]).unwrap();
        let (seq, b) = s.peek().unwrap().unwrap();
        assert_eq!(requests(&b), [1, 2]);
        s.ack(seq + 1).unwrap();
        assert_eq!(s.len(), 2, "only the oldest is acknowledged");
        s.ack(seq).unwrap();
        // A batch half written when the process stopped is not a batch.
        std::fs::write(dir.path().join("00000000000000000009-1.jsonl.tmp"), "{").unwrap();
        drop(s);
        let mut again = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(again.len(), 1);
        let (seq, b) = again.peek().unwrap().unwrap();
        assert_eq!(requests(&b), [3]);
        again.ack(seq).unwrap();
        assert!(again.is_empty() && again.bytes() == 0);
        again.push(&[event(4)]).unwrap();
        assert!(
            again.peek().unwrap().unwrap().0 > seq,
            "the sequence goes on"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_batches_and_counts_their_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1_000).unwrap();
        for n in 1..=10 {
            s.push(&[event(n), event(n)]).unwrap();
        }
        assert!(s.bytes() <= 1_000, "{}", s.bytes());
        let kept = s.len() as u64;
        assert_eq!(s.dropped(), (10 - kept) * 2);
        let (_, oldest) = s.peek().unwrap().unwrap();
        assert_eq!(oldest[0].requests, 10 - kept + 1, "the newest are kept");
    }
}
