//! The serde shapes of a registry file's records, shared by both formats.
//!
//! A tenant is a [`FileTenant`], an API key a [`FileKey`] and a cell a [`FileCell`] (the `[[cells]]` entry of a config
//! file) whether they come from a TOML `[[tenants]]` table or a JSON Lines `{"tenant": {...}}`
//! line, so both formats accept exactly the same fields, reject unknown ones, and go through
//! the same checks ([`tenant_record`](super::super::record::tenant_record),
//! [`Cell::from_file`](super::super::Cell::from_file)). `cellgate registry export` writes the
//! same shapes back ([`FileTenant::from_record`], [`Line`]).

use serde::{Deserialize, Serialize};

use super::super::record::{RawKey, RawTenant};
use super::super::{KeyRecord, TenantRecord};
use crate::config::file::FileCell;
use crate::ratelimit::TenantLimits;

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

/// One line of a JSON Lines registry: `{"tenant": {...}}`, `{"cell": {...}}` or
/// `{"apikey": {...}}` (externally tagged; anything else in the object is an error).
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Line {
    Tenant(FileTenant),
    Cell(FileCell),
    Apikey(FileKey),
}
