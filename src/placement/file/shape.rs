//! The serde shapes of a registry file's records, shared by both formats.
//!
//! A tenant is a [`FileTenant`] and a cell a [`FileCell`] (the `[[cells]]` entry of a config
//! file) whether they come from a TOML `[[tenants]]` table or a JSON Lines `{"tenant": {...}}`
//! line, so both formats accept exactly the same fields, reject unknown ones, and go through
//! the same checks ([`tenant_record`](super::super::record::tenant_record),
//! [`Cell::from_file`](super::super::Cell::from_file)). `cellgate registry export` writes the
//! same shapes back ([`FileTenant::from_record`], [`Line`]).

use serde::{Deserialize, Serialize};

use super::super::TenantRecord;
use super::super::record::RawTenant;
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
        }
    }
}

/// One line of a JSON Lines registry: `{"tenant": {...}}` or `{"cell": {...}}` (externally
/// tagged; anything else in the object is an error).
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Line {
    Tenant(FileTenant),
    Cell(FileCell),
}
