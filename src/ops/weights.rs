//! `cellgate cell weights`: the weights of named target groups across several cells (named, or
//! a whole canary wave), all checked before the first write, then one conditional write per
//! cell; a failed write says which cells were written and which were not.

use serde_json::{Value, json};

use super::io::{current_cell, write_cell};
use super::{OpsError, invalid, not_found};
use crate::placement::dynamo::schema::{CellRecord, cell_from_item};
use crate::placement::dynamo::write::Registry;
use crate::rules::valid_cell_id;
use crate::rules::{LABEL_RULE, MAX_WEIGHT, valid_label};

/// `cell weights`: the cells named, or every cell of `wave`; each must have every group in
/// `set` and stay valid with the new weights, all checked before the first write. Then one
/// conditional write per cell (a cell already at those weights is left alone); a failed write
/// stops the run and says which cells were written.
pub(super) async fn set_weights(
    reg: &Registry,
    cells: &[String],
    wave: Option<u32>,
    set: &[String],
) -> Result<Value, OpsError> {
    let mut weights: Vec<(String, u32)> = Vec::with_capacity(set.len());
    for s in set {
        let Some((group, w)) = s.split_once('=') else {
            return Err(invalid("--set", s, "GROUP=WEIGHT, e.g. canary=10"));
        };
        if !valid_label(group) {
            return Err(invalid("--set", s, format!("group names are {LABEL_RULE}")));
        }
        let w = w
            .trim()
            .parse::<u32>()
            .map_err(|_| invalid("--set", s, format!("a weight is 0-{MAX_WEIGHT}")))?;
        if weights.iter().any(|(g, _)| g == group) {
            return Err(invalid("--set", s, format!("group {group} is set twice")));
        }
        weights.push((group.to_owned(), check_weight("--set", s, w)?));
    }
    let selected = select_cells(reg, cells, wave).await?;
    // Check everything before writing anything.
    let mut plans: Vec<(CellRecord, CellRecord)> = Vec::with_capacity(selected.len());
    for current in selected {
        let mut next = current.clone();
        for (group, w) in &weights {
            let Some(g) = next.groups.iter_mut().find(|g| &g.name == group) else {
                return Err(invalid(
                    "--set",
                    &format!("{group}={w}"),
                    format!(
                        "cell {} has no group {group} (its groups: {}); nothing was written",
                        current.id,
                        group_names(&current)
                    ),
                ));
            };
            g.weight = *w;
        }
        crate::placement::Cell::from_file(&next.to_file_cell(), &format!("cell {}", current.id))
            .map_err(|f| {
                invalid(
                    f.key,
                    &f.value,
                    format!("{} with the new weights; nothing was written", f.reason),
                )
            })?;
        plans.push((current, next));
    }
    let ids: Vec<String> = plans.iter().map(|(c, _)| c.id.clone()).collect();
    let mut results = Vec::with_capacity(plans.len());
    let mut written = Vec::new();
    for (i, (current, next)) in plans.into_iter().enumerate() {
        let id = current.id.clone();
        if next.groups == current.groups {
            results.push(json!({"cell": id, "result": "unchanged", "version": current.version}));
            continue;
        }
        match write_cell(reg, next, Some(current.version)).await {
            Ok(out) => {
                let record = &out["record"];
                results.push(json!({
                    "cell": id,
                    "result": "written",
                    "version": record["version"],
                    "epoch": out["epoch"],
                    "target_groups": record["target_groups"],
                }));
                written.push(id);
            }
            Err(e) => {
                return Err(OpsError::Partial {
                    cell: id,
                    error: Box::new(e),
                    written,
                    pending: ids[i + 1..].to_vec(),
                });
            }
        }
    }
    let set: serde_json::Map<String, Value> =
        weights.into_iter().map(|(g, w)| (g, json!(w))).collect();
    Ok(json!({"set": set, "wave": wave, "cells": results}))
}

/// The cells `cell weights` works on, sorted by id: the ones named (each must exist), or every
/// registry cell of `wave` (at least one).
async fn select_cells(
    reg: &Registry,
    cells: &[String],
    wave: Option<u32>,
) -> Result<Vec<CellRecord>, OpsError> {
    let mut out = Vec::new();
    if let Some(n) = wave {
        for item in reg.list("cell").await? {
            let c = cell_from_item(&item)
                .map_err(|b| invalid(format!("stored cell: {}", b.field), &b.value, b.reason))?;
            if c.wave == Some(n) {
                out.push(c);
            }
        }
        if out.is_empty() {
            return Err(invalid(
                "--wave",
                &n.to_string(),
                format!("no cell in table {} has this wave", reg.table()),
            ));
        }
    } else {
        if cells.is_empty() {
            return Err(invalid("--cell", "", "name at least one cell, or a --wave"));
        }
        for id in cells {
            if !valid_cell_id(id) {
                return Err(invalid("--cell", id, crate::rules::CELL_ID_RULE));
            }
            if out.iter().any(|c: &CellRecord| &c.id == id) {
                continue;
            }
            match current_cell(reg, id).await? {
                Some(c) => out.push(c),
                None => return Err(not_found(reg, "cell", id)),
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

pub(super) fn check_weight(field: &str, value: &str, weight: u32) -> Result<u32, OpsError> {
    if weight > MAX_WEIGHT {
        return Err(invalid(field, value, format!("a weight is 0-{MAX_WEIGHT}")));
    }
    Ok(weight)
}

pub(super) fn group_names(c: &CellRecord) -> String {
    let names: Vec<&str> = c.groups.iter().map(|g| g.name.as_str()).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}
