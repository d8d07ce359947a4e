//! `[metering]`, validated: the usage window, the memory bound, this node's name, the spool,
//! and the one sink (`[metering.file]` or `[metering.kinesis]`).
//!
//! Off unless the section is present. Exactly one sink: a replay after an outage must go where
//! the window would have gone, and two sinks would fail apart. The spool directory is required
//! (a sink that fails must have somewhere to put windows); each process keeps its own part of
//! it, so a successor taking the sockets over never writes the same files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::parse::{dur, dur_in_range, in_range, resolve};
use crate::rules::FieldError;

/// `[metering]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMetering {
    pub window: Option<String>,
    pub max_tenants: Option<usize>,
    pub node: Option<String>,
    pub spool_dir: Option<String>,
    pub spool_max_bytes: Option<u64>,
    pub file: Option<FileMeteringFile>,
    pub kinesis: Option<FileKinesis>,
}

/// `[metering.file]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMeteringFile {
    pub path: String,
    pub max_bytes: Option<u64>,
    pub keep: Option<u32>,
}

/// `[metering.kinesis]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKinesis {
    pub stream: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub timeout: Option<String>,
}

/// Where usage events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeteringSink {
    /// A rotated JSON Lines file.
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: u32,
    },
    /// An Amazon Kinesis data stream (`PutRecords`, the tenant as partition key).
    Kinesis {
        stream: String,
        region: Option<String>,
        endpoint_url: Option<String>,
        /// The longest one `PutRecords` exchange (with its retries) may take.
        timeout: Duration,
    },
}

/// Usage metering's settings.
#[derive(Debug, Clone)]
pub struct MeteringConfig {
    /// The window length, whole seconds.
    pub window: Duration,
    /// (tenant, cell, route class) entries one worker holds per window; past it the window
    /// closes early.
    pub max_tenants: usize,
    /// This node's name in every event and idempotency key.
    pub node: String,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub sink: MeteringSink,
}

const KEY: &str = "metering";

/// A node name: 1-64 of `A-Z a-z 0-9 . _ -` (it is part of the idempotency key, split on `/`).
fn node_name(raw: Option<&String>) -> Result<String, FieldError> {
    let ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if let Some(n) = raw {
        return if ok(n) {
            Ok(n.clone())
        } else {
            Err(FieldError::new(
                format!("{KEY}.node"),
                n,
                "1-64 characters of A-Z a-z 0-9 . _ -",
            ))
        };
    }
    // The host name, with anything a name cannot hold replaced.
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    Ok(if host.is_empty() {
        "node".to_owned()
    } else {
        host
    })
}

/// Builds [`MeteringConfig`] from `[metering]` (absent: metering off).
pub fn build_metering(
    raw: Option<&FileMetering>,
    base: &Path,
) -> Result<Option<MeteringConfig>, FieldError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let key = |name: &str| format!("{KEY}.{name}");
    let window = dur(&key("window"), raw.window.as_ref(), Duration::from_secs(60))?;
    let window = dur_in_range(
        &key("window"),
        window,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    )?;
    if window.subsec_nanos() != 0 {
        return Err(FieldError::new(
            key("window"),
            humantime::format_duration(window),
            "whole seconds: windows are aligned on the clock",
        ));
    }
    let max_tenants = in_range(
        &key("max_tenants"),
        raw.max_tenants.unwrap_or(100_000),
        1,
        10_000_000,
    )?;
    let node = node_name(raw.node.as_ref())?;
    let spool_dir = raw.spool_dir.as_deref().ok_or_else(|| {
        FieldError::new(
            key("spool_dir"),
            "(unset)",
            "required: where windows wait while the sink fails (a directory this process may write)",
        )
    })?;
    let spool_max_bytes = in_range(
        &key("spool_max_bytes"),
        raw.spool_max_bytes.unwrap_or(256 << 20),
        1 << 16,
        1 << 40,
    )?;
    let sink = match (&raw.file, &raw.kinesis) {
        (Some(f), None) => MeteringSink::File {
            path: resolve(base, &f.path),
            max_bytes: in_range(
                &key("file.max_bytes"),
                f.max_bytes.unwrap_or(100 << 20),
                1 << 10,
                1 << 40,
            )?,
            keep: in_range(&key("file.keep"), f.keep.unwrap_or(5), 1, 1000)?,
        },
        (None, Some(k)) => {
            if k.stream.is_empty()
                || k.stream.len() > 128
                || !k
                    .stream
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(FieldError::new(
                    key("kinesis.stream"),
                    &k.stream,
                    "a stream name: 1-128 characters of A-Z a-z 0-9 . _ -",
                ));
            }
            if let Some(e) = &k.endpoint_url
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                return Err(FieldError::new(
                    key("kinesis.endpoint_url"),
                    e,
                    "an http:// or https:// URL",
                ));
            }
            let timeout = dur(
                &key("kinesis.timeout"),
                k.timeout.as_ref(),
                Duration::from_secs(10),
            )?;
            MeteringSink::Kinesis {
                stream: k.stream.clone(),
                region: k.region.clone(),
                endpoint_url: k.endpoint_url.clone(),
                timeout: dur_in_range(
                    &key("kinesis.timeout"),
                    timeout,
                    Duration::from_millis(100),
                    window,
                )?,
            }
        }
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                KEY,
                "[metering.file] and [metering.kinesis]",
                "one sink only: a replay must go where its window would have gone",
            ));
        }
        (None, None) => {
            return Err(FieldError::new(
                KEY,
                "(no sink)",
                "needs [metering.file] or [metering.kinesis]",
            ));
        }
    };
    Ok(Some(MeteringConfig {
        window,
        max_tenants,
        node,
        spool_dir: resolve(base, spool_dir),
        spool_max_bytes,
        sink,
    }))
}
