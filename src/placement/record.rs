//! Validation of one tenant record, shared by every placement source.
//!
//! A source hands over the fields as it read them; [`tenant_record`] checks each (tenant id
//! rules, cell id charset, status, tier, issuers, limit overrides) and names the offending field, so the file
//! source can point at `tenants[3].tier` and the DynamoDB source at the item and attribute.

use super::{TenantRecord, TenantStatus};
use crate::ratelimit::TenantLimits;
use crate::rules::{
    CELL_ID_RULE, LABEL_RULE, MAX_RATE, MIN_RATE, valid_cell_id, valid_label, valid_tier,
};
use crate::tenant::TenantId;

/// A tenant's fields as a source read them.
#[derive(Debug, Clone, Default)]
pub struct RawTenant {
    pub id: String,
    pub cell: String,
    pub status: Option<String>,
    pub tier: Option<String>,
    pub version: Option<u64>,
    pub issuers: Vec<String>,
    pub limits: TenantLimits,
    pub arm: Option<String>,
}

/// A field that failed validation: its name (`tier`, `issuers[1]`), value and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadField {
    pub field: String,
    pub value: String,
    pub reason: String,
}

fn bad(field: impl Into<String>, value: &str, reason: impl Into<String>) -> BadField {
    BadField {
        field: field.into(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Checks every field; defaults: status ACTIVE, tier `standard`, version 0.
pub fn tenant_record(raw: RawTenant) -> Result<TenantRecord, BadField> {
    if let Err(e) = TenantId::parse(&raw.id) {
        return Err(bad("id", &raw.id, e.to_string()));
    }
    if !valid_cell_id(&raw.cell) {
        return Err(bad("cell", &raw.cell, CELL_ID_RULE));
    }
    let status_text = raw.status.as_deref().unwrap_or("ACTIVE");
    let Some(status) = TenantStatus::parse(status_text) else {
        return Err(bad(
            "status",
            status_text,
            format!("expected {}", TenantStatus::EXPECTED),
        ));
    };
    let tier = raw.tier.unwrap_or_else(|| "standard".to_owned());
    if !valid_tier(&tier) {
        return Err(bad(
            "tier",
            &tier,
            "tiers are 1-32 characters of A-Z a-z 0-9 _ -",
        ));
    }
    for (j, iss) in raw.issuers.iter().enumerate() {
        if iss.is_empty() || iss.len() > 512 {
            return Err(bad(
                format!("issuers[{j}]"),
                iss,
                "an issuer's exact `iss` value, 1-512 characters",
            ));
        }
    }
    if let Some(a) = &raw.arm
        && !valid_label(a)
    {
        return Err(bad("arm", a, format!("a group name: {LABEL_RULE}")));
    }
    let l = raw.limits;
    if let Some(r) = l.rate
        && !(r.is_finite() && (MIN_RATE..=MAX_RATE).contains(&r))
    {
        return Err(bad(
            "limits.rate",
            &r.to_string(),
            "requests per second: between 0.001 and 1000000",
        ));
    }
    for (field, v) in [
        ("limits.burst", l.burst),
        ("limits.concurrency", l.concurrency),
    ] {
        if let Some(v) = v
            && !(1..=1_000_000).contains(&v)
        {
            return Err(bad(field, &v.to_string(), "between 1 and 1000000"));
        }
    }
    Ok(TenantRecord {
        id: raw.id,
        cell: raw.cell,
        status,
        tier,
        version: raw.version.unwrap_or(0),
        issuers: raw.issuers,
        limits: raw.limits,
        arm: raw.arm,
    })
}
