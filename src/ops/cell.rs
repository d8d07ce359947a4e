//! `cellgate cell put|group|get|list|drain`: cell records, their target groups and their
//! placement attributes (capacity, tier units, tags). A cell is checked as the proxy will
//! check it before it is written, and keeps its placement counts; `cell weights` is in
//! [`super::weights`], `cell usage` in [`super::usage`].

use std::collections::BTreeMap;

use serde_json::Value;

use super::args::CellCommand;
use super::io::{current_cell, list, write_cell};
use super::weights::{check_weight, group_names, set_weights};
use super::{OpsError, invalid, not_found};
use crate::placement::CellState;
use crate::placement::capacity::CellCapacity;
use crate::placement::dynamo::schema::{CellRecord, TargetGroup, cell_key, item_json};
use crate::placement::dynamo::write::Registry;
use crate::rules::valid_cell_id;
use crate::rules::{LABEL_RULE, valid_label};

pub async fn cell_command(reg: &Registry, cmd: CellCommand) -> Result<Value, OpsError> {
    match cmd {
        CellCommand::Put {
            cell,
            targets,
            state,
            region,
            preserve_host,
            max_in_flight,
            wave,
            clear_wave,
            protocol,
            capacity,
            tier_units,
            clear_tier_units,
            tags,
            clear_tags,
        } => {
            // The placement flags are checked before the table is read.
            let given = CellCapacity {
                capacity: capacity.filter(|&c| c > 0),
                tier_units: parse_tier_units(&tier_units)?,
                tags,
            };
            given.check(None, "cell").map_err(flag_error)?;
            if !valid_cell_id(&cell) {
                return Err(invalid("cell", &cell, crate::rules::CELL_ID_RULE));
            }
            if let Some(n) = max_in_flight
                && n > 1_000_000
            {
                return Err(invalid(
                    "max_in_flight",
                    &n.to_string(),
                    "at most 1000000 (0 removes the cell's own cap)",
                ));
            }
            let current = current_cell(reg, &cell).await?;
            let groups = match (&current, targets.is_empty()) {
                (_, false) => vec![TargetGroup {
                    name: "stable".to_owned(),
                    targets,
                    weight: 100,
                    version: "stable".to_owned(),
                }],
                (Some(c), true) => c.groups.clone(),
                (None, true) => {
                    return Err(invalid(
                        "--target",
                        "[]",
                        format!("cell {cell} is new: give it at least one target"),
                    ));
                }
            };
            let held = current
                .as_ref()
                .map(|c| c.place.clone())
                .unwrap_or_default();
            let place = CellCapacity {
                capacity: match capacity {
                    Some(0) => None,
                    Some(_) => given.capacity,
                    None => held.capacity,
                },
                tier_units: if clear_tier_units {
                    BTreeMap::new()
                } else if given.tier_units.is_empty() {
                    held.tier_units.clone()
                } else {
                    given.tier_units
                },
                tags: if clear_tags {
                    Vec::new()
                } else if given.tags.is_empty() {
                    held.tags.clone()
                } else {
                    given.tags
                },
            };
            let region = region.or_else(|| current.as_ref().and_then(|c| c.region.clone()));
            place.check(region.as_deref(), "cell").map_err(flag_error)?;
            let units_changed = place.tier_units != held.tier_units;
            let record = CellRecord {
                id: cell.clone(),
                state: state
                    .or_else(|| current.as_ref().map(|c| c.state))
                    .unwrap_or(CellState::Active),
                region,
                groups,
                preserve_host,
                max_in_flight: match max_in_flight {
                    Some(0) => None,
                    Some(n) => Some(n),
                    None => current.as_ref().and_then(|c| c.max_in_flight),
                },
                wave: if clear_wave {
                    None
                } else {
                    wave.or_else(|| current.as_ref().and_then(|c| c.wave))
                },
                protocol: protocol.or_else(|| current.as_ref().and_then(|c| c.protocol)),
                place,
                tenants: current.as_ref().map_or(0, |c| c.tenants),
                load: current.as_ref().map_or(0, |c| c.load),
                version: 0,
            };
            let tenants = record.tenants;
            let mut out = write_cell(reg, record, current.map(|c| c.version)).await?;
            if units_changed && tenants > 0 {
                out["note"] = Value::from(format!(
                    "tier_units changed: the stored load counts the {tenants} tenant(s) at the old \
                     units; run `cellgate cell usage --recount`"
                ));
            }
            Ok(out)
        }
        CellCommand::Usage { recount } => super::usage::usage(reg, recount).await,
        CellCommand::Group {
            cell,
            name,
            version,
            weight,
            targets,
            remove,
        } => {
            let edit = GroupEdit {
                name,
                version,
                weight,
                targets,
            };
            cell_group(reg, &cell, edit, remove).await
        }
        CellCommand::Weights { cells, wave, set } => set_weights(reg, &cells, wave, &set).await,
        CellCommand::Get { cell } => match reg.get(&cell_key(&cell)).await? {
            Some(item) => Ok(item_json(&item)),
            None => Err(not_found(reg, "cell", &cell)),
        },
        CellCommand::List => list(reg, "cell").await,
        CellCommand::Drain { cell } => {
            let Some(current) = current_cell(reg, &cell).await? else {
                return Err(not_found(reg, "cell", &cell));
            };
            let expected = current.version;
            let next = CellRecord {
                state: CellState::Draining,
                ..current
            };
            write_cell(reg, next, Some(expected)).await
        }
    }
}

/// `--tier-units TIER=UNITS...` as a map (a tier given twice is refused).
fn parse_tier_units(given: &[String]) -> Result<BTreeMap<String, u64>, OpsError> {
    let mut map = BTreeMap::new();
    for pair in given {
        let Some((tier, units)) = pair.split_once('=') else {
            return Err(invalid(
                "--tier-units",
                pair,
                "expected TIER=UNITS, e.g. enterprise=5",
            ));
        };
        let units: u64 = units.parse().map_err(|_| {
            invalid(
                "--tier-units",
                pair,
                "UNITS is a whole number, e.g. enterprise=5",
            )
        })?;
        if map.insert(tier.to_owned(), units).is_some() {
            return Err(invalid("--tier-units", pair, "the tier is given twice"));
        }
    }
    Ok(map)
}

/// A placement attribute's error, named by the flag that sets it.
fn flag_error(f: crate::rules::FieldError) -> OpsError {
    let flag = if f.key.starts_with("cell.tags") {
        "--tag"
    } else if f.key.starts_with("cell.tier_units") {
        "--tier-units"
    } else {
        "--capacity"
    };
    invalid(flag, &f.value, f.reason)
}

/// `cell group`, parsed: the fields to set on one group (unset ones keep their values).
#[derive(Debug, Clone)]
pub struct GroupEdit {
    pub name: String,
    pub version: Option<String>,
    pub weight: Option<u32>,
    pub targets: Vec<String>,
}

/// Creates, updates or removes one target group of a registry cell; the other groups are kept
/// and the result is checked as the proxy will check it before it is written (version + 1).
async fn cell_group(
    reg: &Registry,
    cell: &str,
    edit: GroupEdit,
    remove: bool,
) -> Result<Value, OpsError> {
    if !valid_cell_id(cell) {
        return Err(invalid("cell", cell, crate::rules::CELL_ID_RULE));
    }
    if !valid_label(&edit.name) {
        return Err(invalid("--name", &edit.name, LABEL_RULE));
    }
    if let Some(v) = &edit.version
        && !valid_label(v)
    {
        return Err(invalid("--version", v, LABEL_RULE));
    }
    if let Some(w) = edit.weight {
        check_weight("--weight", &w.to_string(), w)?;
    }
    let Some(current) = current_cell(reg, cell).await? else {
        return Err(not_found(reg, "cell", cell));
    };
    let expected = current.version;
    let mut next = current.clone();
    let at = next.groups.iter().position(|g| g.name == edit.name);
    if remove {
        let Some(i) = at else {
            return Err(invalid(
                "--name",
                &edit.name,
                format!(
                    "cell {cell} has no such group (its groups: {})",
                    group_names(&current)
                ),
            ));
        };
        next.groups.remove(i);
        let weighted = next
            .groups
            .iter()
            .any(|g| g.weight > 0 && !g.targets.is_empty());
        if !weighted && next.state != CellState::Down {
            return Err(invalid(
                "--remove",
                &edit.name,
                format!(
                    "the last group with a weight in cell {cell} ({}): give another group a \
                     weight first, or mark the cell DOWN",
                    current.state
                ),
            ));
        }
    } else {
        match at {
            Some(i) => {
                let g = &mut next.groups[i];
                if let Some(v) = edit.version {
                    g.version = v;
                }
                if let Some(w) = edit.weight {
                    g.weight = w;
                }
                if !edit.targets.is_empty() {
                    g.targets = edit.targets;
                }
            }
            None if edit.targets.is_empty() => {
                return Err(invalid(
                    "--target",
                    "[]",
                    format!(
                        "group {} is new in cell {cell}: give it at least one target",
                        edit.name
                    ),
                ));
            }
            None => next.groups.push(TargetGroup {
                version: edit.version.unwrap_or_else(|| edit.name.clone()),
                name: edit.name,
                targets: edit.targets,
                weight: edit.weight.unwrap_or(0),
            }),
        }
    }
    write_cell(reg, next, Some(expected)).await
}
