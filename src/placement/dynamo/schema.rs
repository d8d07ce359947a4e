//! The registry table's item layout (a public contract, documented in docs/registry.md).
//!
//! One table, one string hash key `pk`:
//!
//! | `pk` | item |
//! |---|---|
//! | `tenant#<id>` | `kind = "tenant"`, `tenant`, `cell`, `status`, `tier`, `version` (N), `issuers` (L of S, optional), `limits` (M: `rate`, `burst`, `concurrency`, each optional), `arm` (S, optional: a pinned target group), `entitlements` (L of S, optional), `updated_at` |
//! | `apikey#<id>` | `kind = "apikey"`, `key_id`, `tenant`, `hash` (`sha256:<hex>`: never the key), `status` (`ACTIVE`/`REVOKED`), `expires_at` (N, optional: unix seconds; also the table's TTL attribute, so DynamoDB deletes an expired key's item some time after it expired), `scopes` (L of S, optional), `created_at` (N), `version` (N), `updated_at` |
//! | `cell#<id>` | `kind = "cell"`, `cell`, `state`, `region` (optional), `target_groups` (L of M: `name`, `targets` (L of S), `weight` (N), `version`), `preserve_host` (BOOL, optional), `max_in_flight` (N, optional), `wave` (N, optional: the canary wave), `version` (N), `updated_at` |
//! | `epoch` | `epoch` (N): bumped by every write, in the same transaction |
//! | `change#<epoch, 20 digits>` | `kind = "change"`, `key` (the `pk` written: a single write) or `keys` (L of S: every `pk` a batched write wrote, at most 98), `epoch` (N), `expires_at` (N, TTL) |
//!
//! Conversions here are pure, so they are unit-tested without a server.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::config::file::{FileCell, FileGroup};
use crate::placement::record::{BadField, RawKey, RawTenant, key_record, tenant_record};
use crate::placement::{CellState, KeyRecord, TenantRecord, UnknownName};
use crate::ratelimit::TenantLimits;

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

/// A named set of targets within a cell, with a weight and a version label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    pub name: String,
    pub targets: Vec<String>,
    pub weight: u32,
    pub version: String,
}

/// A cell as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellRecord {
    pub id: String,
    pub state: CellState,
    pub region: Option<String>,
    pub groups: Vec<TargetGroup>,
    pub preserve_host: Option<bool>,
    pub max_in_flight: Option<u32>,
    /// The canary wave (`cell weights --wave N` selects by it).
    pub wave: Option<u32>,
    pub version: u64,
}

impl CellRecord {
    /// The cell as the data plane uses it: its target groups, weights and versions.
    #[must_use]
    pub fn to_file_cell(&self) -> FileCell {
        FileCell {
            id: self.id.clone(),
            state: Some(self.state.as_str().to_owned()),
            targets: Vec::new(),
            groups: self
                .groups
                .iter()
                .map(|g| FileGroup {
                    name: g.name.clone(),
                    version: Some(g.version.clone()),
                    weight: g.weight,
                    targets: g.targets.clone(),
                })
                .collect(),
            preserve_host: self.preserve_host,
            max_in_flight: self.max_in_flight,
            wave: self.wave,
        }
    }
}

/// The item for a cell record.
#[must_use]
pub fn cell_item(c: &CellRecord, updated_at: &str) -> Item {
    let groups = c
        .groups
        .iter()
        .map(|g| {
            AttributeValue::M(HashMap::from([
                ("name".to_owned(), s(&g.name)),
                (
                    "targets".to_owned(),
                    AttributeValue::L(g.targets.iter().map(s).collect()),
                ),
                ("weight".to_owned(), n(u64::from(g.weight))),
                ("version".to_owned(), s(&g.version)),
            ]))
        })
        .collect();
    let mut item = Item::from([
        (PK.to_owned(), s(cell_key(&c.id))),
        ("kind".to_owned(), s("cell")),
        ("cell".to_owned(), s(&c.id)),
        ("state".to_owned(), s(c.state.as_str())),
        ("target_groups".to_owned(), AttributeValue::L(groups)),
        ("version".to_owned(), n(c.version)),
        ("updated_at".to_owned(), s(updated_at)),
    ]);
    if let Some(r) = &c.region {
        item.insert("region".to_owned(), s(r));
    }
    if let Some(p) = c.preserve_host {
        item.insert("preserve_host".to_owned(), AttributeValue::Bool(p));
    }
    if let Some(m) = c.max_in_flight {
        item.insert("max_in_flight".to_owned(), n(u64::from(m)));
    }
    if let Some(w) = c.wave {
        item.insert("wave".to_owned(), n(u64::from(w)));
    }
    item
}

/// Reads a cell item (the cell itself is validated by `Cell::from_file`).
pub fn cell_from_item(item: &Item) -> Result<CellRecord, BadField> {
    let id = get_s(item, "cell")?.ok_or_else(|| bad("cell", "(missing)", "required"))?;
    let mut groups = Vec::new();
    if let Some(AttributeValue::L(list)) = item.get("target_groups") {
        for (i, g) in list.iter().enumerate() {
            let AttributeValue::M(m) = g else {
                return Err(bad(
                    &format!("target_groups[{i}]"),
                    "(not a map)",
                    "expected a map",
                ));
            };
            let weight = get_n(m, "weight")?.unwrap_or(1);
            groups.push(TargetGroup {
                name: get_s(m, "name")?.unwrap_or("default").to_owned(),
                targets: get_strings(m, "targets")?,
                weight: u32::try_from(weight)
                    .map_err(|_| bad("weight", &weight.to_string(), "too large"))?,
                version: get_s(m, "version")?.unwrap_or("stable").to_owned(),
            });
        }
    }
    let preserve_host = match item.get("preserve_host") {
        Some(AttributeValue::Bool(b)) => Some(*b),
        _ => None,
    };
    let max_in_flight = get_n(item, "max_in_flight")?
        .map(|m| {
            u32::try_from(m)
                .ok()
                .filter(|m| (1..=1_000_000).contains(m))
                .ok_or_else(|| bad("max_in_flight", &m.to_string(), "between 1 and 1000000"))
        })
        .transpose()?;
    let wave = get_n(item, "wave")?
        .map(|w| u32::try_from(w).map_err(|_| bad("wave", &w.to_string(), "at most 4294967295")))
        .transpose()?;
    Ok(CellRecord {
        id: id.to_owned(),
        state: match get_s(item, "state")? {
            None => CellState::Active,
            Some(text) => text.parse().map_err(|e: UnknownName| {
                bad("state", text, &format!("expected {}", e.expected))
            })?,
        },
        region: get_s(item, "region")?.map(str::to_owned),
        groups,
        preserve_host,
        max_in_flight,
        wave,
        version: get_n(item, "version")?.unwrap_or(0),
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
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::placement::TenantStatus;

    #[test]
    fn tenant_items_round_trip_and_bad_fields_are_named() {
        let r = TenantRecord {
            id: "acme".to_owned(),
            cell: "cell-1".to_owned(),
            status: TenantStatus::Migrating,
            tier: "enterprise".to_owned(),
            version: 7,
            issuers: vec!["https://acme.idp".to_owned()],
            limits: TenantLimits {
                rate: Some(50.5),
                burst: Some(20),
                concurrency: None,
            },
            arm: Some("canary".to_owned()),
            entitlements: Vec::new(),
        };
        let item = tenant_item(&r, "2026-11-23T00:00:00Z");
        assert_eq!(tenant_from_item(&item).unwrap(), r);
        assert_eq!(item_json(&item)["version"], 7);
        let mut broken = item.clone();
        broken.insert("tier".to_owned(), s("no spaces allowed"));
        assert_eq!(tenant_from_item(&broken).unwrap_err().field, "tier");
        broken.insert("version".to_owned(), AttributeValue::N("-1".to_owned()));
        assert_eq!(tenant_from_item(&broken).unwrap_err().field, "version");
        broken.remove("cell");
        assert_eq!(tenant_from_item(&broken).unwrap_err().field, "cell");
    }

    #[test]
    fn key_items_round_trip_and_never_hold_the_key() {
        let k = crate::apikey::generate().unwrap();
        let r = KeyRecord {
            id: k.id.clone(),
            tenant: "acme".to_owned(),
            hash: k.hash,
            status: crate::placement::KeyStatus::Revoked,
            expires_at: Some(1_900_000_000),
            scopes: vec!["billing".to_owned()],
            created_at: 1_700_000_000,
            version: 4,
        };
        let item = key_item(&r, "t");
        assert_eq!(key_from_item(&item).unwrap(), r);
        assert_eq!(item[PK], s(apikey_key(&k.id)));
        // The TTL attribute: DynamoDB deletes the item some time after the key expired.
        assert_eq!(item_json(&item)[TTL_ATTRIBUTE], 1_900_000_000u64);
        let text = format!("{:?}", item_json(&item));
        assert!(
            !text.contains(&k.key[k.key.len() - 26..]),
            "the secret is never stored"
        );
        let mut broken = item.clone();
        broken.insert("hash".to_owned(), s("sha256:zz"));
        assert_eq!(key_from_item(&broken).unwrap_err().field, "hash");
        broken.insert("key_id".to_owned(), s("UPPER"));
        assert_eq!(key_from_item(&broken).unwrap_err().field, "key_id");
        let mut tenant = tenant_item(
            &TenantRecord {
                id: "acme".to_owned(),
                cell: "cell-1".to_owned(),
                status: TenantStatus::Active,
                tier: "standard".to_owned(),
                version: 1,
                issuers: Vec::new(),
                limits: TenantLimits::default(),
                arm: None,
                entitlements: vec!["billing".to_owned()],
            },
            "t",
        );
        assert_eq!(tenant_from_item(&tenant).unwrap().entitlements, ["billing"]);
        tenant.insert("entitlements".to_owned(), AttributeValue::L(vec![s("a b")]));
        assert_eq!(
            tenant_from_item(&tenant).unwrap_err().field,
            "entitlements[0]"
        );
    }

    #[test]
    fn cell_items_round_trip_with_their_groups() {
        let c = CellRecord {
            id: "cell-1".to_owned(),
            state: CellState::Draining,
            region: Some("eu-west-1".to_owned()),
            groups: vec![
                TargetGroup {
                    name: "stable".to_owned(),
                    targets: vec!["http://10.0.0.1:80".to_owned()],
                    weight: 95,
                    version: "v1".to_owned(),
                },
                TargetGroup {
                    name: "off".to_owned(),
                    targets: vec!["http://10.0.0.2:80".to_owned()],
                    weight: 0,
                    version: "v2".to_owned(),
                },
            ],
            preserve_host: Some(true),
            max_in_flight: Some(800),
            wave: Some(2),
            version: 3,
        };
        let item = cell_item(&c, "t");
        assert_eq!(cell_from_item(&item).unwrap(), c);
        assert_eq!(item_json(&item)["wave"], 2);
        // No wave: no attribute; a wave out of range is named.
        let no_wave = CellRecord {
            wave: None,
            ..c.clone()
        };
        assert!(!cell_item(&no_wave, "t").contains_key("wave"));
        let mut broken = item.clone();
        broken.insert(
            "wave".to_owned(),
            AttributeValue::N("4294967296".to_owned()),
        );
        assert_eq!(cell_from_item(&broken).unwrap_err().field, "wave");
        // A state outside the three is named, with the accepted ones.
        let mut bad_state = item.clone();
        bad_state.insert("state".to_owned(), s("UP"));
        let e = cell_from_item(&bad_state).unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("state", "UP"));
        assert!(e.reason.contains("ACTIVE, DRAINING or DOWN"), "{e:?}");
        // The data plane gets every group with its weight and version.
        let cell = crate::placement::Cell::from_file(&c.to_file_cell(), "cell#cell-1").unwrap();
        assert_eq!(cell.wave, Some(2));
        let groups: Vec<_> = cell
            .groups
            .iter()
            .map(|g| (&*g.name, &*g.version, g.weight, g.targets.clone()))
            .collect();
        assert_eq!(groups, [("stable", "v1", 95, 0..1), ("off", "v2", 0, 1..2)]);
        assert_eq!(cell.targets[1].url.as_ref(), "http://10.0.0.2:80");
        assert_eq!(change_key(42), "change#00000000000000000042");
    }
}
