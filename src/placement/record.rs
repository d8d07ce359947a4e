//! Validation of one tenant record, shared by every placement source.
//!
//! A source hands over the fields as it read them; [`tenant_record`] checks each (tenant id
//! rules, cell id charset, status, tier, issuers, limit overrides, entitlements) and names the
//! offending field, so the file source can point at `tenants[3].tier` and the DynamoDB source at
//! the item and attribute; [`key_record`] does the same for an API key record.

use super::keys::{KeyRecord, KeyStatus};
use super::{TenantRecord, TenantStatus};
use crate::apikey::{KeyHash, valid_id};
use crate::ratelimit::TenantLimits;
use crate::rules::{
    CELL_ID_RULE, ENTITLEMENT_RULE, LABEL_RULE, MAX_ENTITLEMENTS, MAX_RATE, MIN_RATE,
    valid_cell_id, valid_entitlement, valid_label, valid_tier,
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
    pub entitlements: Vec<String>,
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
    names("entitlements", &raw.entitlements)?;
    Ok(TenantRecord {
        id: raw.id,
        cell: raw.cell,
        status,
        tier,
        version: raw.version.unwrap_or(0),
        issuers: raw.issuers,
        limits: raw.limits,
        arm: raw.arm,
        entitlements: raw.entitlements,
    })
}

/// Checks a list of entitlement or scope names: each valid, none twice, at most
/// [`MAX_ENTITLEMENTS`].
fn names(field: &str, list: &[String]) -> Result<(), BadField> {
    if list.len() > MAX_ENTITLEMENTS {
        return Err(bad(
            field,
            &list.len().to_string(),
            format!("at most {MAX_ENTITLEMENTS} names"),
        ));
    }
    for (j, e) in list.iter().enumerate() {
        if !valid_entitlement(e) {
            return Err(bad(format!("{field}[{j}]"), e, ENTITLEMENT_RULE));
        }
        if list[..j].contains(e) {
            return Err(bad(format!("{field}[{j}]"), e, "listed twice"));
        }
    }
    Ok(())
}

/// An API key's fields as a source read them.
#[derive(Debug, Clone, Default)]
pub struct RawKey {
    pub id: String,
    pub tenant: String,
    pub hash: String,
    pub status: Option<String>,
    pub expires_at: Option<u64>,
    pub scopes: Vec<String>,
    pub created_at: Option<u64>,
    pub version: Option<u64>,
}

/// Checks every field of a key record; defaults: status ACTIVE, version 0, created at 0.
pub fn key_record(raw: RawKey) -> Result<KeyRecord, BadField> {
    if !valid_id(&raw.id) {
        return Err(bad(
            "id",
            &raw.id,
            "a key id is 12 characters of lowercase base32 (a-z, 2-7)",
        ));
    }
    if let Err(e) = TenantId::parse(&raw.tenant) {
        return Err(bad("tenant", &raw.tenant, e.to_string()));
    }
    // The hash is not secret, but it is not shown back either: it is 64 hex digits of noise.
    let hash: KeyHash = raw
        .hash
        .parse()
        .map_err(|e: &str| bad("hash", "(hidden)", e))?;
    let status_text = raw.status.as_deref().unwrap_or("ACTIVE");
    let status = KeyStatus::parse(status_text).ok_or_else(|| {
        bad(
            "status",
            status_text,
            format!("expected {}", KeyStatus::EXPECTED),
        )
    })?;
    if raw.expires_at == Some(0) {
        return Err(bad(
            "expires_at",
            "0",
            "unix seconds after 1970-01-01 (leave it out: no expiry)",
        ));
    }
    names("scopes", &raw.scopes)?;
    Ok(KeyRecord {
        id: raw.id,
        tenant: raw.tenant,
        hash,
        status,
        expires_at: raw.expires_at,
        scopes: raw.scopes,
        created_at: raw.created_at.unwrap_or(0),
        version: raw.version.unwrap_or(0),
    })
}
