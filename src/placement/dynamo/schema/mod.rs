//! The registry table's item layout (a public contract, documented in docs/registry.md).
//!
//! One table, one string hash key `pk`:
//!
//! | `pk` | item |
//! |---|---|
//! | `tenant#<id>` | `kind = "tenant"`, `tenant`, `cell`, `status`, `tier`, `version` (N), `issuers` (L of S, optional), `limits` (M: `rate`, `burst`, `concurrency`, each optional), `arm` (S, optional: a pinned target group), `entitlements` (L of S, optional), `updated_at` |
//! | `apikey#<id>` | `kind = "apikey"`, `key_id`, `tenant`, `hash` (`sha256:<hex>`: never the key), `status` (`ACTIVE`/`REVOKED`), `expires_at` (N, optional: unix seconds; also the table's TTL attribute, so DynamoDB deletes an expired key's item some time after it expired), `scopes` (L of S, optional), `created_at` (N), `version` (N), `updated_at` |
//! | `cell#<id>` | `kind = "cell"`, `cell`, `state`, `region` (optional), `target_groups` (L of M: `name`, `targets` (L of S), `weight` (N), `version`), `preserve_host` (BOOL, optional), `max_in_flight` (N, optional), `wave` (N, optional: the canary wave), `protocol` (S, optional: `http1`, `http2` or `auto`; absent: `http1`), `capacity` (N, optional), `tier_units` (M of N, optional), `tags` (L of S, optional), `tenants` and `load` (N: the placement counts), `version` (N), `updated_at` |
//! | `epoch` | `epoch` (N): bumped by every write, in the same transaction |
//! | `change#<epoch, 20 digits>` | `kind = "change"`, `key` (the `pk` written: a single write) or `keys` (L of S: every `pk` a batched write wrote, at most 98), `epoch` (N), `expires_at` (N, TTL) |
//!
//! Conversions here are pure, so they are unit-tested without a server.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::placement::record::{BadField, RawKey, RawTenant, key_record, tenant_record};
use crate::placement::{KeyRecord, TenantRecord};
use crate::ratelimit::TenantLimits;

mod cell;

pub use self::cell::{CellRecord, TargetGroup, cell_from_item, cell_item};

pub type Item = HashMap<String, AttributeValue>;

pub const PK: &str = "pk";
pub const EPOCH_KEY: &str = "epoch";
/// The TTL attribute of change items.
pub const TTL_ATTRIBUTE: &str = "expires_at";

#[must_use]
pub fn tenant_key(id: &str) -> String {
    format!("tenant#{id}")
}

#[must_use]
pub fn apikey_key(id: &str) -> String {
    format!("apikey#{id}")
}

#[must_use]
pub fn cell_key(id: &str) -> String {
    format!("cell#{id}")
}

#[must_use]
pub fn change_key(epoch: u64) -> String {
    format!("change#{epoch:020}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn bad(field: &str, value: &str, reason: &str) -> BadField {
    BadField {
        field: field.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A string attribute, if present.
fn get_s<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, BadField> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(bad(
            name,
            "(not a string)",
            "expected a string attribute (S)",
        )),
    }
}

/// A non-negative integer attribute, if present.
pub fn get_n(item: &Item, name: &str) -> Result<Option<u64>, BadField> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| bad(name, v, "expected a non-negative integer")),
        Some(_) => Err(bad(
            name,
            "(not a number)",
            "expected a number attribute (N)",
        )),
    }
}

fn get_strings(item: &Item, name: &str) -> Result<Vec<String>, BadField> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
        Some(AttributeValue::Ss(v)) => Ok(v.clone()),
        Some(AttributeValue::L(v)) => v
            .iter()
            .map(|x| match x {
                AttributeValue::S(s) => Ok(s.clone()),
                _ => Err(bad(name, "(list)", "expected a list of strings")),
            })
            .collect(),
        Some(_) => Err(bad(name, "(other)", "expected a list of strings")),
    }
}

/// The `kind` attribute (`tenant`, `cell`, `change`), if any.
#[must_use]
pub fn kind(item: &Item) -> Option<&str> {
    match item.get("kind") {
        Some(AttributeValue::S(k)) => Some(k),
        _ => None,
    }
}

/// The item for a tenant record.
#[must_use]
pub fn tenant_item(r: &TenantRecord, updated_at: &str) -> Item {
    let mut item = Item::from([
        (PK.to_owned(), s(tenant_key(&r.id))),
        ("kind".to_owned(), s("tenant")),
        ("tenant".to_owned(), s(&r.id)),
        ("cell".to_owned(), s(&r.cell)),
        ("status".to_owned(), s(r.status.as_str())),
        ("tier".to_owned(), s(&r.tier)),
        ("version".to_owned(), n(r.version)),
        ("updated_at".to_owned(), s(updated_at)),
    ]);
    if !r.issuers.is_empty() {
        item.insert(
            "issuers".to_owned(),
            AttributeValue::L(r.issuers.iter().map(s).collect()),
        );
    }
    if !r.limits.is_empty() {
        let mut m = HashMap::new();
        if let Some(rate) = r.limits.rate {
            m.insert("rate".to_owned(), AttributeValue::N(rate.to_string()));
        }
        if let Some(b) = r.limits.burst {
            m.insert("burst".to_owned(), n(u64::from(b)));
        }
        if let Some(c) = r.limits.concurrency {
            m.insert("concurrency".to_owned(), n(u64::from(c)));
        }
        item.insert("limits".to_owned(), AttributeValue::M(m));
    }
    if let Some(a) = &r.arm {
        item.insert("arm".to_owned(), s(a));
    }
    if !r.entitlements.is_empty() {
        item.insert(
            "entitlements".to_owned(),
            AttributeValue::L(r.entitlements.iter().map(s).collect()),
        );
    }
    item
}

/// The item for an API key record.
#[must_use]
pub fn key_item(r: &KeyRecord, updated_at: &str) -> Item {
    let mut item = Item::from([
        (PK.to_owned(), s(apikey_key(&r.id))),
        ("kind".to_owned(), s("apikey")),
        ("key_id".to_owned(), s(&r.id)),
        ("tenant".to_owned(), s(&r.tenant)),
        ("hash".to_owned(), s(r.hash.to_string())),
        ("status".to_owned(), s(r.status.as_str())),
        ("created_at".to_owned(), n(r.created_at)),
        ("version".to_owned(), n(r.version)),
        ("updated_at".to_owned(), s(updated_at)),
    ]);
    if let Some(t) = r.expires_at {
        item.insert(TTL_ATTRIBUTE.to_owned(), n(t));
    }
    if !r.scopes.is_empty() {
        item.insert(
            "scopes".to_owned(),
            AttributeValue::L(r.scopes.iter().map(s).collect()),
        );
    }
    item
}

/// Reads and validates an API key item.
pub fn key_from_item(item: &Item) -> Result<KeyRecord, BadField> {
    let id = get_s(item, "key_id")?.ok_or_else(|| bad("key_id", "(missing)", "required"))?;
    let tenant = get_s(item, "tenant")?.ok_or_else(|| bad("tenant", "(missing)", "required"))?;
    let hash = get_s(item, "hash")?.ok_or_else(|| bad("hash", "(missing)", "required"))?;
    key_record(RawKey {
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        hash: hash.to_owned(),
        status: get_s(item, "status")?.map(str::to_owned),
        expires_at: get_n(item, TTL_ATTRIBUTE)?,
        scopes: get_strings(item, "scopes")?,
        created_at: get_n(item, "created_at")?,
        version: get_n(item, "version")?,
    })
    .map_err(|mut b| {
        if b.field == "id" {
            b.field = "key_id".to_owned();
        }
        b
    })
}

fn limits_from_item(item: &Item) -> Result<TenantLimits, BadField> {
    let Some(AttributeValue::M(m)) = item.get("limits") else {
        return Ok(TenantLimits::default());
    };
    let rate = match m.get("rate") {
        None => None,
        Some(AttributeValue::N(v)) => Some(
            v.parse::<f64>()
                .map_err(|_| bad("limits.rate", v, "expected a number"))?,
        ),
        Some(_) => return Err(bad("limits.rate", "(other)", "expected a number")),
    };
    let small = |name: &str| -> Result<Option<u32>, BadField> {
        get_n(m, name)?
            .map(|v| u32::try_from(v).map_err(|_| bad(name, &v.to_string(), "too large")))
            .transpose()
    };
    Ok(TenantLimits {
        rate,
        burst: small("burst")?,
        concurrency: small("concurrency")?,
    })
}

/// Reads and validates a tenant item.
pub fn tenant_from_item(item: &Item) -> Result<TenantRecord, BadField> {
    let id = get_s(item, "tenant")?.ok_or_else(|| bad("tenant", "(missing)", "required"))?;
    let cell = get_s(item, "cell")?.ok_or_else(|| bad("cell", "(missing)", "required"))?;
    tenant_record(RawTenant {
        id: id.to_owned(),
        cell: cell.to_owned(),
        status: get_s(item, "status")?.map(str::to_owned),
        tier: get_s(item, "tier")?.map(str::to_owned),
        version: get_n(item, "version")?,
        issuers: get_strings(item, "issuers")?,
        limits: limits_from_item(item)?,
        arm: get_s(item, "arm")?.map(str::to_owned),
        entitlements: get_strings(item, "entitlements")?,
    })
}

/// An item as plain JSON (for the CLI): strings, numbers, lists, maps, booleans.
#[must_use]
pub fn item_json(item: &Item) -> Value {
    let mut keys: Vec<&String> = item.keys().collect();
    keys.sort();
    Value::Object(
        keys.into_iter()
            .map(|k| (k.clone(), attr_json(&item[k])))
            .collect(),
    )
}

fn attr_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| n.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::String(n.clone())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(l) => Value::Array(l.iter().map(attr_json).collect()),
        AttributeValue::Ss(l) => Value::Array(l.iter().cloned().map(Value::String).collect()),
        AttributeValue::M(m) => item_json(m),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests;
