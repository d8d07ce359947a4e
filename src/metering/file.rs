//! The JSON Lines sink: usage events appended to a file, one per line, rotated by size, for any
//! pipeline that tails files (Fluent Bit, the CloudWatch agent, Vector).
//!
//! A line is written whole or not at all (one `write_all` of a buffer holding whole lines, then
//! a flush), so a reader never sees half an event. When the file passes `max_bytes` it is
//! renamed `<path>.1` (the older ones shifted to `.2` ... `.<keep>`, the oldest removed) and a new
//! file started: a tailer following by name picks the new one up. Blocking: the emitter calls
//! it off the request path.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::event::UsageEvent;

/// Appends events to a rotated JSON Lines file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<File>,
    written: u64,
}

impl FileSink {
    /// A sink writing `path`, rotated past `max_bytes`, keeping `keep` rotated files.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64, keep: u32) -> Self {
        Self {
            path: path.into(),
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
            file: None,
            written: 0,
        }
    }

    /// Appends `events`, one line each; rotates first when the file is full.
    pub fn write(&mut self, events: &[UsageEvent]) -> std::io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(events.len() * 320);
        for e in events {
            serde_json::to_writer(&mut buf, e)?;
            buf.push(b'\n');
        }
        if self.written >= self.max_bytes {
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                self.written = f.metadata()?.len();
                self.file.insert(f)
            }
        };
        file.write_all(&buf)?;
        file.flush()?;
        self.written += buf.len() as u64;
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// `path` → `path.1`, `path.1` → `path.2`, ..., the oldest past `keep` removed.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let oldest = self.rotated(self.keep);
        if oldest.exists() {
            std::fs::remove_file(&oldest)?;
        }
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        if Path::new(&self.path).exists() {
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.written = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use crate::metering::event::sample as event;

    fn lines(p: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn events_are_whole_lines_rotated_by_size_and_none_lost_within_keep() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        let mut sink = FileSink::new(&path, 600, 3);
        for n in 1..=12 {
            sink.write(&[event(n)]).unwrap();
        }
        let mut seen: Vec<u64> = Vec::new();
        for p in [
            sink.rotated(3),
            sink.rotated(2),
            sink.rotated(1),
            path.clone(),
        ] {
            seen.extend(lines(&p).iter().map(|v| v["requests"].as_u64().unwrap()));
        }
        // Oldest first across the rotated files; anything older than `keep` files is gone.
        assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
        assert_eq!(seen.last(), Some(&12));
        assert!(!sink.rotated(4).exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= 600 + 400);
    }

    #[test]
    fn an_existing_file_is_appended_to_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        FileSink::new(&path, 1 << 20, 2).write(&[event(1)]).unwrap();
        FileSink::new(&path, 1 << 20, 2)
            .write(&[event(2), event(3)])
            .unwrap();
        let got: Vec<u64> = lines(&path)
            .iter()
            .map(|v| v["requests"].as_u64().unwrap())
            .collect();
        assert_eq!(got, [1, 2, 3]);
    }
}
