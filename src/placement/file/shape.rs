//! The serde shapes of a registry file's records, shared by both formats.
//!
//! A tenant is a [`FileTenant`], an API key a [`FileKey`] and a cell a [`RegistryCell`] (the
//! fields of a config file's `[[cells]]` entry, plus the cell's region and placement
//! attributes) whether they come from a TOML `[[tenants]]` table or a JSON Lines
//! `{"tenant": {...}}` line, so both formats accept exactly the same fields, reject unknown
//! ones, and go through the same checks ([`tenant_record`](super::super::record::tenant_record),
//! [`Cell::from_file`](super::super::Cell::from_file), [`CellCapacity::check`]).
//! `cellgate registry export` writes the same shapes back ([`FileTenant::from_record`],
//! [`Line`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::super::capacity::CellCapacity;
use super::super::record::{RawKey, RawTenant};
use super::super::{Cell, KeyRecord, TenantRecord};
use crate::config::file::{FileCell, FileGroup};
use crate::ratelimit::TenantLimits;
use crate::rules::FieldError;

/// One tenant as written in a registry file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileTenant {
    pub id: String,
    pub cell: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FileLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<String>,
}

/// One API key as written in a registry file: its hash, never the key (`cellgate apikey
/// create --print-record` prints both: the key for the client, this record for the file).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileKey {
    pub id: String,
    pub tenant: String,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl FileKey {
    /// The fields as read, for [`key_record`](super::super::record::key_record).
    #[must_use]
    pub fn into_raw(self) -> RawKey {
        RawKey {
            id: self.id,
            tenant: self.tenant,
            hash: self.hash,
            status: self.status,
            expires_at: self.expires_at,
            scopes: self.scopes,
            created_at: self.created_at,
            version: self.version,
        }
    }

    /// A checked record in file form, every field written out.
    #[must_use]
    pub fn from_record(r: &KeyRecord) -> Self {
        Self {
            id: r.id.clone(),
            tenant: r.tenant.clone(),
            hash: r.hash.to_string(),
            status: Some(r.status.as_str().to_owned()),
            expires_at: r.expires_at,
            scopes: r.scopes.clone(),
            created_at: Some(r.created_at),
            version: Some(r.version),
        }
    }
}

/// A tenant's rate-limit overrides (`limits = { rate = 50, burst = 20 }`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

impl FileTenant {
    /// The fields as read, for [`tenant_record`](super::super::record::tenant_record).
    #[must_use]
    pub fn into_raw(self) -> RawTenant {
        RawTenant {
            id: self.id,
            cell: self.cell,
            status: self.status,
            tier: self.tier,
            version: self.version,
            issuers: self.issuers,
            arm: self.arm,
            limits: self
                .limits
                .map_or_else(TenantLimits::default, |l| TenantLimits {
                    rate: l.rate,
                    burst: l.burst,
                    concurrency: l.concurrency,
                }),
            entitlements: self.entitlements,
        }
    }

    /// A checked record in file form, every field written out (status, tier and version too),
    /// so the file does not depend on the defaults.
    #[must_use]
    pub fn from_record(r: &TenantRecord) -> Self {
        let l = r.limits;
        Self {
            id: r.id.clone(),
            cell: r.cell.clone(),
            status: Some(r.status.as_str().to_owned()),
            tier: Some(r.tier.clone()),
            version: Some(r.version),
            issuers: r.issuers.clone(),
            limits: (!l.is_empty()).then_some(FileLimits {
                rate: l.rate,
                burst: l.burst,
                concurrency: l.concurrency,
            }),
            arm: r.arm.clone(),
            entitlements: r.entitlements.clone(),
        }
    }
}

/// One cell as written in a registry file: what the data plane reads (a config file's
/// `[[cells]]` fields, [`FileCell`]) and what only `tenant place` reads (`region`, `capacity`,
/// `tier_units`, `tags`; the proxy checks them and routes without them). The counts a
/// DynamoDB cell item keeps (`tenants`, `load`) are not written: the file's tenants give them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCell {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<FileGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_host: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The cell's region (it counts as the tag `region=<region>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Units the cell holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    /// Units one tenant of a tier weighs (a tier not named: 1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tier_units: BTreeMap<String, u64>,
    /// Placement labels (`pci`, `region=eu-west-1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl RegistryCell {
    /// A cell in file form from its data-plane part, region and placement attributes.
    #[must_use]
    pub fn new(c: FileCell, region: Option<String>, place: &CellCapacity) -> Self {
        Self {
            id: c.id,
            state: c.state,
            targets: c.targets,
            groups: c.groups,
            preserve_host: c.preserve_host,
            max_in_flight: c.max_in_flight,
            wave: c.wave,
            protocol: c.protocol,
            region,
            capacity: place.capacity,
            tier_units: place.tier_units.clone(),
            tags: place.tags.clone(),
        }
    }

    /// The part the data plane reads.
    #[must_use]
    pub fn file_cell(&self) -> FileCell {
        FileCell {
            id: self.id.clone(),
            state: self.state.clone(),
            targets: self.targets.clone(),
            groups: self.groups.clone(),
            preserve_host: self.preserve_host,
            max_in_flight: self.max_in_flight,
            wave: self.wave,
            protocol: self.protocol.clone(),
        }
    }

    /// The placement attributes.
    #[must_use]
    pub fn place(&self) -> CellCapacity {
        CellCapacity {
            capacity: self.capacity,
            tier_units: self.tier_units.clone(),
            tags: self.tags.clone(),
        }
    }

    /// The cell the proxy serves, after every check (the data plane's and the placement
    /// attributes'); `key` names it in errors (`cells[2]`, `line 7: cell`).
    pub fn to_cell(&self, key: &str) -> Result<Cell, FieldError> {
        let cell = Cell::from_file(&self.file_cell(), key)?;
        self.place().check(self.region.as_deref(), key)?;
        Ok(cell)
    }
}

/// One line of a JSON Lines registry: `{"tenant": {...}}`, `{"cell": {...}}` or
/// `{"apikey": {...}}` (externally tagged; anything else in the object is an error).
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Line {
    Tenant(FileTenant),
    Cell(RegistryCell),
    Apikey(FileKey),
}
