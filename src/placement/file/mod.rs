//! The file-backed [`PlacementSource`]: a registry file, re-read when it changes.
//!
//! Two formats, chosen by the file's extension ([`Format`]): TOML (`[[tenants]]`, `[[cells]]`
//! and `[[apikeys]]` tables, parsed whole by [`parse_registry`]; the demo and small fleets) and JSON
//! Lines (`.jsonl`, `.ndjson`: one record per line, streamed by [`jsonl`]; large registries).
//! Both carry the same records ([`shape`]) through the same checks. `changed` compares the
//! file's (modification time, length, inode) with those of the last load, so polling it every
//! few hundred milliseconds costs one `stat`. Writing the file by rename (`mv new
//! registry.toml`) is atomic; a half-written file fails to parse, is reported, and the last good
//! snapshot stays in place until the next change.

pub mod jsonl;
pub mod shape;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

use self::shape::{FileKey, FileTenant, RegistryCell};
use super::record::{key_record, tenant_record};
use super::{KeyRecord, PlacementSource, RegistryData, RegistryError, TenantRecord};
use crate::tenant::TenantId;

/// A TOML registry document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    tenants: Vec<FileTenant>,
    #[serde(default)]
    cells: Vec<RegistryCell>,
    #[serde(default)]
    apikeys: Vec<FileKey>,
}

/// A registry file's format, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Anything but the two below: `[[tenants]]` and `[[cells]]` tables.
    Toml,
    /// `.jsonl` or `.ndjson` (any case): one JSON record per line.
    JsonLines,
}

impl Format {
    #[must_use]
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson") => {
                Self::JsonLines
            }
            _ => Self::Toml,
        }
    }
}

/// Reads, parses and validates the registry file at `path` in the format its extension names.
/// Blocking (a million tenants take about a second of CPU): the file source calls it on the
/// blocking pool; `cellgate validate` calls it directly.
pub fn read_registry(path: &Path) -> Result<RegistryData, RegistryError> {
    let file = path.display().to_string();
    match Format::of(path) {
        Format::JsonLines => jsonl::read_jsonl(path, &file),
        Format::Toml => {
            let text = std::fs::read_to_string(path).map_err(|error| RegistryError::Read {
                file: file.clone(),
                error,
            })?;
            parse_registry(&text, &file)
        }
    }
}

/// One tenant's record from the registry file at `path` (blocking). A JSON Lines file is
/// streamed and only that record kept; a TOML file is parsed whole.
pub fn find_tenant(path: &Path, id: &str) -> Result<Option<TenantRecord>, RegistryError> {
    match Format::of(path) {
        Format::JsonLines => jsonl::find_tenant_jsonl(path, &path.display().to_string(), id),
        Format::Toml => Ok(read_registry(path)?.tenant(id)),
    }
}

/// One API key's record from the registry file at `path` (blocking).
pub fn find_key(path: &Path, id: &str) -> Result<Option<KeyRecord>, RegistryError> {
    match Format::of(path) {
        Format::JsonLines => jsonl::find_key_jsonl(path, &path.display().to_string(), id),
        Format::Toml => Ok(read_registry(path)?.key(id)),
    }
}

type Signature = (i64, i64, u64, u64);

/// Placements from a registry file (TOML or JSON Lines, by its extension).
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
    /// million tenants takes about a second of CPU to parse, which must not stall the runtime
    /// that also answers `/readyz` and `/metrics`.
    async fn parse(&self) -> Result<RegistryData, RegistryError> {
        let path = self.path.clone();
        self.blocking(move || read_registry(&path)).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        tokio::task::spawn_blocking(f)
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
        let (path, id) = (self.path.clone(), id.to_owned());
        self.blocking(move || find_tenant(&path, &id)).await
    }

    async fn fetch_key(&self, id: &str) -> Result<Option<KeyRecord>, RegistryError> {
        let (path, id) = (self.path.clone(), id.to_owned());
        self.blocking(move || find_key(&path, &id)).await
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
        let cell = c
            .to_cell(&format!("cells[{i}]"))
            .map_err(|f| RegistryError::Invalid {
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
        let record = tenant_record(t.into_raw())
            .map_err(|b| invalid(format!("tenants[{i}].{}", b.field), &b.value, &b.reason))?;
        if !data.push_tenant(record) {
            return Err(invalid(
                format!("tenants[{i}].id"),
                &id,
                "duplicate tenant id",
            ));
        }
    }
    for (i, k) in raw.apikeys.into_iter().enumerate() {
        let id = k.id.clone();
        let record = key_record(k.into_raw())
            .map_err(|b| invalid(format!("apikeys[{i}].{}", b.field), &b.value, &b.reason))?;
        if !data.push_key(record) {
            return Err(invalid(
                format!("apikeys[{i}].id"),
                &id,
                "duplicate API key id",
            ));
        }
    }
    Ok(data)
}
