//! The file-backed [`PlacementSource`]: a TOML registry, re-read when the file changes.
//!
//! `changed` compares the file's (modification time, length, inode) with those of the last
//! load, so polling it every few hundred milliseconds costs one `stat`. Writing the file by
//! rename (`mv new registry.toml`) is atomic; a half-written file fails to parse, is reported,
//! and the last good snapshot stays in place until the next change.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

use super::record::{RawTenant, tenant_record};
use super::{Cell, PlacementSource, RegistryData, RegistryError, TenantRecord};
use crate::config::file::FileCell;
use crate::ratelimit::TenantLimits;
use crate::tenant::TenantId;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    tenants: Vec<FileTenant>,
    #[serde(default)]
    cells: Vec<FileCell>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTenant {
    id: String,
    cell: String,
    status: Option<String>,
    tier: Option<String>,
    version: Option<u64>,
    #[serde(default)]
    issuers: Vec<String>,
    limits: Option<FileLimits>,
    arm: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    rate: Option<f64>,
    burst: Option<u32>,
    concurrency: Option<u32>,
}

type Signature = (i64, i64, u64, u64);

/// Placements from a TOML file.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    last: Mutex<Option<Signature>>,
}

impl FileSource {
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            last: Mutex::new(None),
        }
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    async fn signature(&self) -> Result<Signature, RegistryError> {
        let m = tokio::fs::metadata(&self.path)
            .await
            .map_err(|error| RegistryError::Read {
                file: self.shown(),
                error,
            })?;
        Ok((m.mtime(), m.mtime_nsec(), m.len(), m.ino()))
    }

    /// Reads and parses the whole file. The parse runs on the blocking pool: a registry of a
    /// million tenants takes over a second of CPU to parse, which must not stall the runtime
    /// that also answers `/readyz` and `/metrics`.
    async fn parse(&self) -> Result<RegistryData, RegistryError> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|error| RegistryError::Read {
                file: self.shown(),
                error,
            })?;
        let file = self.shown();
        tokio::task::spawn_blocking(move || parse_registry(&text, &file))
            .await
            .map_err(|e| RegistryError::Parse {
                file: self.shown(),
                message: format!("the parse did not complete: {e}"),
            })?
    }

    fn remember(&self, sig: Signature) {
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sig);
    }
}

impl PlacementSource for FileSource {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    async fn load(&self) -> Result<RegistryData, RegistryError> {
        let sig = self.signature().await?;
        // Remember what was tried even if it fails, so a broken file is reported once per
        // change rather than on every poll.
        self.remember(sig);
        self.parse().await
    }

    async fn changed(&self) -> Result<bool, RegistryError> {
        let sig = self.signature().await?;
        Ok(*self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            != Some(sig))
    }

    async fn fetch_tenant(&self, id: &str) -> Result<Option<TenantRecord>, RegistryError> {
        let data = self.parse().await?;
        Ok(data.tenant(id))
    }
}

/// Parses and validates registry TOML; `file` names it in errors.
pub fn parse_registry(text: &str, file: &str) -> Result<RegistryData, RegistryError> {
    let raw: RegistryFile = toml::from_str(text).map_err(|e| RegistryError::Parse {
        file: file.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let invalid = |key: String, value: &str, reason: &str| RegistryError::Invalid {
        file: file.to_owned(),
        key,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let mut data = RegistryData::new();
    let mut cell_ids = HashSet::with_capacity(raw.cells.len());
    for (i, c) in raw.cells.iter().enumerate() {
        let cell =
            Cell::from_file(c, &format!("cells[{i}]")).map_err(|f| RegistryError::Invalid {
                file: file.to_owned(),
                key: f.key,
                value: f.value,
                reason: f.reason,
            })?;
        if !cell_ids.insert(cell.id.clone()) {
            return Err(invalid(
                format!("cells[{i}].id"),
                &c.id,
                "duplicate cell id",
            ));
        }
        data.push_cell(cell);
    }
    for (i, t) in raw.tenants.into_iter().enumerate() {
        if let Err(e) = TenantId::parse(&t.id) {
            return Err(invalid(format!("tenants[{i}].id"), &t.id, &e.to_string()));
        }
        let id = t.id.clone();
        let record = tenant_record(RawTenant {
            id: t.id,
            cell: t.cell,
            status: t.status,
            tier: t.tier,
            version: t.version,
            issuers: t.issuers,
            arm: t.arm,
            limits: t
                .limits
                .map_or_else(TenantLimits::default, |l| TenantLimits {
                    rate: l.rate,
                    burst: l.burst,
                    concurrency: l.concurrency,
                }),
        })
        .map_err(|b| invalid(format!("tenants[{i}].{}", b.field), &b.value, &b.reason))?;
        if !data.push_tenant(record) {
            return Err(invalid(
                format!("tenants[{i}].id"),
                &id,
                "duplicate tenant id",
            ));
        }
    }
    Ok(data)
}
