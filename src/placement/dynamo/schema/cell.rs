//! Cell items: a cell's state, region, target groups (each with its targets, weight and
//! version), caps, canary wave and protocol, its placement attributes (capacity, tier units,
//! tags) and counts (tenants, load), and the conversions to the file forms: the one the data
//! plane reads and the registry file's.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Item, PK, bad, cell_key, get_n, get_s, get_strings, n, s};
use crate::config::file::{FileCell, FileGroup};
use crate::placement::capacity::CellCapacity;
use crate::placement::file::shape::RegistryCell;
use crate::placement::record::BadField;
use crate::placement::{CellState, UnknownName};
use crate::upstream::Protocol;

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
    /// How the proxy speaks to the cell's targets (`None`: unset, so `http1`).
    pub protocol: Option<Protocol>,
    /// Capacity, tier units and tags (`tenant place` chooses by them; routing never reads them).
    pub place: CellCapacity,
    /// Tenants placed in the cell (every status but OFFBOARDED), kept by every tenant write.
    pub tenants: u64,
    /// Units those tenants weigh (`tier_units`), kept with `tenants`.
    pub load: u64,
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
            protocol: self.protocol.map(|p| p.as_str().to_owned()),
        }
    }

    /// The cell as a registry file writes it (`registry export`): the data plane's fields, its
    /// region and its placement attributes; not the counts, which the file's tenants give.
    #[must_use]
    pub fn to_registry_cell(&self) -> RegistryCell {
        RegistryCell::new(self.to_file_cell(), self.region.clone(), &self.place)
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
    if let Some(p) = c.protocol {
        item.insert("protocol".to_owned(), s(p.as_str()));
    }
    if let Some(cap) = c.place.capacity {
        item.insert("capacity".to_owned(), n(cap));
    }
    if !c.place.tier_units.is_empty() {
        let units = c
            .place
            .tier_units
            .iter()
            .map(|(t, &u)| (t.clone(), n(u)))
            .collect();
        item.insert("tier_units".to_owned(), AttributeValue::M(units));
    }
    if !c.place.tags.is_empty() {
        item.insert(
            "tags".to_owned(),
            AttributeValue::L(c.place.tags.iter().map(s).collect()),
        );
    }
    item.insert("tenants".to_owned(), n(c.tenants));
    item.insert("load".to_owned(), n(c.load));
    item
}

/// The placement attributes of a cell item, checked as every registry form checks them.
fn place_from_item(item: &Item, region: Option<&str>) -> Result<CellCapacity, BadField> {
    let mut tier_units = BTreeMap::new();
    match item.get("tier_units") {
        None | Some(AttributeValue::Null(_)) => {}
        Some(AttributeValue::M(m)) => {
            for tier in m.keys() {
                let units = get_n(m, tier)
                    .map_err(|b| BadField {
                        field: format!("tier_units.{tier}"),
                        ..b
                    })?
                    .unwrap_or(1);
                tier_units.insert(tier.clone(), units);
            }
        }
        Some(_) => {
            return Err(bad(
                "tier_units",
                "(not a map)",
                "expected a map of tier to units",
            ));
        }
    }
    let place = CellCapacity {
        capacity: get_n(item, "capacity")?,
        tier_units,
        tags: get_strings(item, "tags")?,
    };
    place.check(region, "cell").map_err(|f| BadField {
        field: f.key.trim_start_matches("cell.").to_owned(),
        value: f.value,
        reason: f.reason,
    })?;
    Ok(place)
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
    let protocol = get_s(item, "protocol")?
        .map(|p| {
            Protocol::parse(p)
                .ok_or_else(|| bad("protocol", p, &format!("expected {}", Protocol::EXPECTED)))
        })
        .transpose()?;
    let region = get_s(item, "region")?;
    Ok(CellRecord {
        place: place_from_item(item, region)?,
        tenants: get_n(item, "tenants")?.unwrap_or(0),
        load: get_n(item, "load")?.unwrap_or(0),
        id: id.to_owned(),
        state: match get_s(item, "state")? {
            None => CellState::Active,
            Some(text) => text.parse().map_err(|e: UnknownName| {
                bad("state", text, &format!("expected {}", e.expected))
            })?,
        },
        region: region.map(str::to_owned),
        groups,
        preserve_host,
        max_in_flight,
        wave,
        protocol,
        version: get_n(item, "version")?.unwrap_or(0),
    })
}
