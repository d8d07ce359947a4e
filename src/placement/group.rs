//! Target groups: the deployment arms of a cell (`stable` 95, `canary` 5), each a weight, a
//! version label and a slice of the cell's targets.
//!
//! A cell written with plain `targets` is one group, `stable`, weight 100. Which group serves a
//! tenant is decided by [`crate::routing::canary`], stickily per tenant; this module only builds
//! and validates the groups.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::Cell;
use crate::config::file::{FileCell, FileGroup};
use crate::metrics::upstream::{GroupMetrics, UpstreamMetrics};
use crate::rules::{FieldError, LABEL_RULE, MAX_WEIGHT, valid_label};
use crate::upstream::{Arm, Protocol, Target};

/// One arm of a cell.
#[derive(Debug)]
pub struct Group {
    pub name: Arc<str>,
    /// Version label, for metrics and the admin API (`v1.42.0`, `canary`).
    pub version: Arc<str>,
    /// Relative share of the cell's tenants; 0 takes no tenant.
    pub weight: u32,
    /// Its targets: a range of the cell's `targets`.
    pub targets: Range<usize>,
    /// Seed of the group's name for the stable per-tenant hash.
    pub seed: u64,
    next: AtomicUsize,
    metrics: OnceLock<Arc<GroupMetrics>>,
}

impl Clone for Group {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            version: Arc::clone(&self.version),
            weight: self.weight,
            targets: self.targets.clone(),
            seed: self.seed,
            // A fresh generation starts its rotation anywhere (see `Cell::clone`).
            next: AtomicUsize::new(fastrand::usize(..)),
            metrics: OnceLock::new(),
        }
    }
}

impl Group {
    /// This group's metric handles (labelled by cell, name and version), resolved on first use.
    pub fn metrics(&self, cell: &Arc<str>, m: &UpstreamMetrics) -> &Arc<GroupMetrics> {
        self.metrics
            .get_or_init(|| m.group(cell, &self.name, &self.version))
    }

    /// Index (into the cell's targets) of the next target of this group, round robin.
    #[must_use]
    pub fn next_target(&self) -> usize {
        let n = self.targets.len().max(1);
        self.targets.start + self.next.fetch_add(1, Ordering::Relaxed) % n
    }

    /// This group as the request path's [`Arm`] of `cell`: the cell's targets and this
    /// group's run of them.
    #[must_use]
    pub fn arm<'a>(&self, cell: &'a Cell) -> Arm<'a> {
        Arm {
            cell: &cell.id,
            targets: &cell.targets,
            start: self.targets.start,
            end: self.targets.end,
        }
    }
}

/// The cell's groups, and its targets flattened in group order; `key` is the cell's path for
/// error messages (`cells[2]`).
pub fn build(
    c: &FileCell,
    key: &str,
    protocol: Protocol,
) -> Result<(Vec<Group>, Vec<Target>), FieldError> {
    let single;
    let groups: &[FileGroup] = match (c.targets.is_empty(), c.groups.is_empty()) {
        (false, false) => {
            return Err(FieldError::new(
                format!("{key}.groups"),
                c.groups.len(),
                "a cell has either `targets` (one group) or `groups`, not both",
            ));
        }
        (true, true) => return Ok((Vec::new(), Vec::new())), // a DOWN cell, checked by the caller
        (false, true) => {
            single = [FileGroup {
                name: "stable".to_owned(),
                version: None,
                weight: 100,
                targets: c.targets.clone(),
            }];
            &single
        }
        (true, false) => &c.groups,
    };
    let mut out = Vec::with_capacity(groups.len());
    let mut targets = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let gkey = if c.groups.is_empty() {
            key.to_owned()
        } else {
            format!("{key}.groups[{i}]")
        };
        if !valid_label(&g.name) {
            return Err(FieldError::new(format!("{gkey}.name"), &g.name, LABEL_RULE));
        }
        if out.iter().any(|o: &Group| *o.name == *g.name) {
            return Err(FieldError::new(
                format!("{gkey}.name"),
                &g.name,
                "duplicate group name",
            ));
        }
        let version = g.version.as_deref().unwrap_or(&g.name);
        if !valid_label(version) {
            return Err(FieldError::new(
                format!("{gkey}.version"),
                version,
                LABEL_RULE,
            ));
        }
        if g.weight > MAX_WEIGHT {
            return Err(FieldError::new(
                format!("{gkey}.weight"),
                g.weight,
                format!("at most {MAX_WEIGHT}"),
            ));
        }
        let start = targets.len();
        for (j, t) in g.targets.iter().enumerate() {
            let mut target = Target::parse(t)
                .map_err(|e| FieldError::new(format!("{gkey}.targets[{j}]"), t, e.to_string()))?;
            target.protocol = protocol;
            targets.push(target);
        }
        if g.weight > 0 && g.targets.is_empty() {
            return Err(FieldError::new(
                format!("{gkey}.targets"),
                "[]",
                "a group with a weight needs at least one target",
            ));
        }
        out.push(Group {
            name: Arc::from(g.name.as_str()),
            version: Arc::from(version),
            weight: g.weight,
            targets: start..targets.len(),
            seed: crate::hash::stable_hash(g.name.as_bytes()),
            next: AtomicUsize::new(0),
            metrics: OnceLock::new(),
        });
    }
    Ok((out, targets))
}
