//! Choosing a cell for a new tenant (`cellgate tenant place`), as a pure function: the cells
//! of the table and what was asked in, the chosen cell (with why) or a refusal saying which
//! constraint excluded which cell, or how full each eligible cell is. [`super::place`] reads
//! the table, calls [`choose`] and writes the choice.
//!
//! A cell is *eligible* when it is ACTIVE, has a capacity, and carries every required tag
//! (`--region R` requires `region=R`, which a cell's `region` also stands for). It has *room*
//! when the tenant's units fit under `--max-fill` of its capacity: `load + units <=
//! floor(capacity * max_fill)`. Among the eligible cells with room:
//! - `least-loaded`: the lowest fill (load / capacity), ties by cell id;
//! - `hash`: weighted rendezvous hashing of the tenant id over the eligible cells (each scores
//!   `capacity / -ln(u)`, `u` from the stable hash of tenant and cell, [`crate::hash`]); the
//!   best-scoring cell with room wins. The same tenant gets the same cell on every call while
//!   the cells stay the same, a new cell takes only the tenants that now score highest on it,
//!   and a cell's share of tenants follows its capacity.

use std::cmp::Ordering;

use serde_json::{Value, json};

use crate::hash::{StableHasher, mix};
use crate::placement::CellState;
use crate::placement::dynamo::schema::CellRecord;

/// How a cell is chosen among the eligible ones with room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    LeastLoaded,
    Hash,
}

impl Strategy {
    pub const ALL: [Self; 2] = [Self::LeastLoaded, Self::Hash];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LeastLoaded => "least-loaded",
            Self::Hash => "hash",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("expected least-loaded or hash, not {s}"))
    }
}

/// A fill limit in basis points of a capacity (7000: 70%), so the arithmetic is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxFill(u32);

impl MaxFill {
    /// `text` as a fraction in (0, 1] (`0.7`), to 4 decimals.
    pub fn parse(text: &str) -> Result<Self, String> {
        let f: f64 = text
            .trim()
            .parse()
            .map_err(|_| "a fraction of the capacity, e.g. 0.7".to_owned())?;
        if !(f.is_finite() && f > 0.0 && f <= 1.0) {
            return Err(
                "a fraction above 0 and at most 1 (never past a cell's capacity)".to_owned(),
            );
        }
        let bp = (f * 10_000.0).round();
        if bp < 1.0 {
            return Err("at least 0.0001".to_owned());
        }
        Ok(Self(bp as u32))
    }

    /// The most units a cell of `capacity` may hold under this limit.
    #[must_use]
    pub fn limit(self, capacity: u64) -> u64 {
        let l = u128::from(capacity) * u128::from(self.0) / 10_000;
        u64::try_from(l).unwrap_or(u64::MAX)
    }

    #[must_use]
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 10_000.0
    }
}

/// What was asked for.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub tenant: &'a str,
    pub tier: &'a str,
    /// `--region`: the cell must carry `region=R`.
    pub region: Option<&'a str>,
    /// `--require`: tags the cell must carry.
    pub require: &'a [String],
    pub strategy: Strategy,
    pub max_fill: MaxFill,
}

/// The chosen cell, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub cell: String,
    /// The tenant's units in that cell.
    pub units: u64,
    pub capacity: u64,
    pub load_before: u64,
    /// The most units the cell may hold under `--max-fill` (the write is conditioned on it).
    pub limit: u64,
    /// The explanation printed as `why`.
    pub why: Value,
}

/// Why no cell was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no cell can take tenant {tenant}: {}", excluded_text(.excluded))]
    NoEligible {
        tenant: String,
        /// Each cell with the constraints it fails.
        excluded: Vec<(String, Vec<String>)>,
    },
    #[error(
        "no room for tenant {tenant} ({units_text}) under --max-fill {max_fill}: every eligible \
         cell would pass it: {}; add a cell, raise a capacity (`cellgate cell put CELL \
         --capacity N`), or pass a higher --max-fill",
        full_text(.cells)
    )]
    Full {
        tenant: String,
        units_text: String,
        max_fill: String,
        /// Each eligible cell: id, load, capacity.
        cells: Vec<(String, u64, u64)>,
    },
    #[error(
        "tenant {tenant} already exists (cell {cell}, {status}); `tenant place` only places new \
         tenants: to change its cell, use `cellgate tenant move {tenant} --to CELL`"
    )]
    Exists {
        tenant: String,
        cell: String,
        status: String,
    },
}

fn excluded_text(excluded: &[(String, Vec<String>)]) -> String {
    if excluded.is_empty() {
        return "the table has no cells (`cellgate cell put CELL --target URL --capacity N`)"
            .to_owned();
    }
    excluded
        .iter()
        .map(|(c, why)| format!("{c} {}", why.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn full_text(cells: &[(String, u64, u64)]) -> String {
    cells
        .iter()
        .map(|(c, load, cap)| format!("{c} at {load}/{cap} units ({})", percent(*load, *cap)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `load / capacity` as a percentage with one decimal (`70.0%`).
#[must_use]
pub fn percent(load: u64, capacity: u64) -> String {
    format!("{:.1}%", fill(load, capacity) * 100.0)
}

/// `load / capacity`, rounded to 4 decimals (0 for no capacity).
#[must_use]
pub fn fill(load: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        return 0.0;
    }
    ((load as f64 / capacity as f64) * 10_000.0).round() / 10_000.0
}

/// What keeps `c` out for `ask`, in words (empty: eligible).
fn exclusions(c: &CellRecord, ask: &Ask<'_>) -> Vec<String> {
    let mut why = Vec::new();
    if c.state != CellState::Active {
        why.push(format!("is {}", c.state));
    }
    if c.place.capacity.is_none() {
        why.push(format!(
            "has no capacity (`cellgate cell put {} --capacity N`)",
            c.id
        ));
    }
    let region = c.region.as_deref();
    if let Some(r) = ask.region
        && !c.place.has_tag(region, &format!("region={r}"))
    {
        why.push(match region {
            Some(theirs) => format!("is in region {theirs}, not {r}"),
            None => format!("has no region (wanted {r})"),
        });
    }
    let missing: Vec<&str> = ask
        .require
        .iter()
        .filter(|t| !c.place.has_tag(region, t))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        why.push(format!("lacks {}", missing.join(", ")));
    }
    why
}

/// The rendezvous score of `cell` for `tenant`, weighted by `capacity`.
fn score(tenant: &str, cell: &str, capacity: u64) -> f64 {
    let mut h = StableHasher::new();
    h.write(tenant.as_bytes());
    h.write(&[0]);
    h.write(cell.as_bytes());
    // u in (0, 1): 53 bits, centred so it is never 0 or 1 (as the canary arms do).
    let u = ((mix(h.finish()) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    capacity as f64 / -u.ln()
}

/// An eligible cell: its record, capacity and the tenant's units there.
#[derive(Debug, Clone, Copy)]
struct Eligible<'a> {
    cell: &'a CellRecord,
    capacity: u64,
    units: u64,
}

impl Eligible<'_> {
    fn has_room(&self, max_fill: MaxFill) -> bool {
        self.cell.load.saturating_add(self.units) <= max_fill.limit(self.capacity)
    }
}

/// Chooses a cell for `ask` among `cells` (in any order), or says why none fits.
pub fn choose(cells: &[CellRecord], ask: &Ask<'_>) -> Result<Choice, Refusal> {
    let mut excluded = Vec::new();
    let mut eligible: Vec<Eligible<'_>> = Vec::new();
    for c in cells {
        let why = exclusions(c, ask);
        match c.place.capacity {
            Some(capacity) if why.is_empty() => eligible.push(Eligible {
                cell: c,
                capacity,
                units: c.place.units(ask.tier),
            }),
            _ => excluded.push((c.id.clone(), why)),
        }
    }
    excluded.sort();
    if eligible.is_empty() {
        return Err(Refusal::NoEligible {
            tenant: ask.tenant.to_owned(),
            excluded,
        });
    }
    eligible.sort_by(|a, b| a.cell.id.cmp(&b.cell.id));
    let mut ranked: Vec<Eligible<'_>> = eligible.clone();
    match ask.strategy {
        // Lowest load / capacity first (compared exactly); the sort is stable, so ties stay
        // in cell id order.
        Strategy::LeastLoaded => ranked.sort_by(|a, b| {
            (u128::from(a.cell.load) * u128::from(b.capacity))
                .cmp(&(u128::from(b.cell.load) * u128::from(a.capacity)))
        }),
        Strategy::Hash => ranked.sort_by(|a, b| {
            let (sa, sb) = (
                score(ask.tenant, &a.cell.id, a.capacity),
                score(ask.tenant, &b.cell.id, b.capacity),
            );
            sb.partial_cmp(&sa).unwrap_or(Ordering::Equal)
        }),
    }
    let Some(chosen) = ranked.into_iter().find(|e| e.has_room(ask.max_fill)) else {
        return Err(Refusal::Full {
            tenant: ask.tenant.to_owned(),
            units_text: units_text(ask.tier, &eligible),
            max_fill: format!("{}", ask.max_fill.fraction()),
            cells: eligible
                .iter()
                .map(|e| (e.cell.id.clone(), e.cell.load, e.capacity))
                .collect(),
        });
    };
    let (load, capacity) = (chosen.cell.load, chosen.capacity);
    let load_after = load + chosen.units;
    let why = json!({
        "strategy": ask.strategy.as_str(),
        "max_fill": ask.max_fill.fraction(),
        "units": chosen.units,
        "capacity": capacity,
        "load_before": load,
        "load_after": load_after,
        "fill_before": fill(load, capacity),
        "fill_after": fill(load_after, capacity),
        "eligible": eligible.iter().map(|e| json!({
            "cell": e.cell.id,
            "load": e.cell.load,
            "capacity": e.capacity,
            "fill": fill(e.cell.load, e.capacity),
            "room": e.has_room(ask.max_fill),
        })).collect::<Vec<_>>(),
        "excluded": excluded
            .iter()
            .map(|(c, why)| json!({"cell": c, "why": why}))
            .collect::<Vec<_>>(),
    });
    Ok(Choice {
        cell: chosen.cell.id.clone(),
        units: chosen.units,
        capacity,
        load_before: load,
        limit: ask.max_fill.limit(capacity),
        why,
    })
}

/// `tier standard, 1 unit` (or the range of units when the cells weigh the tier differently).
fn units_text(tier: &str, eligible: &[Eligible<'_>]) -> String {
    let lo = eligible.iter().map(|e| e.units).min().unwrap_or(1);
    let hi = eligible.iter().map(|e| e.units).max().unwrap_or(1);
    let n = if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    };
    let s = if hi == 1 { "" } else { "s" };
    format!("tier {tier}, {n} unit{s}")
}

#[cfg(test)]
mod tests;
