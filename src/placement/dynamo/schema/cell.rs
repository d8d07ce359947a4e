//! Cell items: a cell's state, region, target groups (each with its targets, weight and
//! version), caps and canary wave, and the conversion to the file form the data plane reads.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Item, PK, bad, cell_key, get_n, get_s, get_strings, n, s};
use crate::config::file::{FileCell, FileGroup};
use crate::placement::record::BadField;
use crate::placement::{CellState, UnknownName};

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
