//! Cells: a failure domain and deployment unit with its own targets.

use std::sync::{Arc, OnceLock};

use http::HeaderValue;

use super::UnknownName;
use super::group::Group;
use crate::config::file::FileCell;
use crate::metrics::{CellMetrics, Metrics};
use crate::rules::{CELL_ID_RULE, FieldError, valid_cell_id};
use crate::upstream::{Protocol, RetryBudget, Scheme, Target, Upstreams};

/// Operator-set state of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    /// Serving.
    Active,
    /// Existing tenants are still served; no new placements should land here.
    Draining,
    /// Answer 503 at once, without trying the targets.
    Down,
}

impl CellState {
    /// Every state, in the order error messages list them.
    pub const ALL: [Self; 3] = [Self::Active, Self::Draining, Self::Down];
    /// The accepted names, for error messages.
    pub const EXPECTED: &'static str = "ACTIVE, DRAINING or DOWN";

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draining => "DRAINING",
            Self::Down => "DOWN",
        }
    }
}

impl std::str::FromStr for CellState {
    type Err = UnknownName;

    /// The registry's spelling only (`DRAINING`, not `draining`).
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownName::new("cell state", s, Self::EXPECTED))
    }
}

impl std::fmt::Display for CellState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cell and its targets, as one registry generation sees it.
#[derive(Debug)]
pub struct Cell {
    pub id: Arc<str>,
    pub state: CellState,
    pub targets: Vec<Target>,
    /// Deployment arms, each a weighted slice of `targets` (one `stable` group by default).
    pub groups: Vec<Group>,
    /// Forward the client's `Host` (true) or the target's own name (false).
    pub preserve_host: bool,
    /// The trusted `x-cell-id` value, built once.
    pub id_header: HeaderValue,
    /// Requests in flight to this cell at most (503 `cell_overloaded` beyond); `None`: the
    /// `limits.cell_max_in_flight` default.
    pub max_in_flight: Option<u32>,
    /// The canary wave the cell belongs to: an operator's label (weights are changed wave by
    /// wave); routing never reads it.
    pub wave: Option<u32>,
    /// How its targets are spoken to (every target carries it too).
    pub protocol: Protocol,
    metrics: OnceLock<Arc<CellMetrics>>,
    budget: OnceLock<Arc<RetryBudget>>,
}

impl Clone for Cell {
    fn clone(&self) -> Self {
        Self {
            id: Arc::clone(&self.id),
            state: self.state,
            targets: self.targets.clone(),
            groups: self.groups.clone(),
            preserve_host: self.preserve_host,
            id_header: self.id_header.clone(),
            max_in_flight: self.max_in_flight,
            wave: self.wave,
            protocol: self.protocol,
            metrics: OnceLock::new(),
            budget: OnceLock::new(),
        }
    }
}

impl Cell {
    /// What the admit stage needs of the cell: its id and its own in-flight cap.
    #[must_use]
    pub const fn cap(&self) -> crate::ratelimit::CellCap<'_> {
        crate::ratelimit::CellCap {
            id: &self.id,
            max_in_flight: self.max_in_flight,
        }
    }

    /// Builds a cell from its file form; `key` is its path for error messages (`cells[2]`).
    pub fn from_file(c: &FileCell, key: &str) -> Result<Self, FieldError> {
        if !valid_cell_id(&c.id) {
            return Err(FieldError::new(format!("{key}.id"), &c.id, CELL_ID_RULE));
        }
        let state = match c.state.as_deref().map(str::parse::<CellState>) {
            None => CellState::Active,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                return Err(FieldError::new(
                    format!("{key}.state"),
                    &e.value,
                    format!("expected {}", e.expected),
                ));
            }
        };
        let protocol = match c.protocol.as_deref() {
            None => Protocol::Http1,
            Some(p) => Protocol::parse(p).ok_or_else(|| {
                FieldError::new(
                    format!("{key}.protocol"),
                    p,
                    format!("expected {}", Protocol::EXPECTED),
                )
            })?,
        };
        let (groups, targets) = super::group::build(c, key, protocol)?;
        let weighted = groups.iter().any(|g| g.weight > 0 && !g.targets.is_empty());
        if !weighted && state != CellState::Down {
            return Err(FieldError::new(
                format!("{key}.targets"),
                "[]",
                "a cell that is not DOWN needs at least one target (in a group with a weight)",
            ));
        }
        // Plain-HTTP targets are usually the app itself and want the client's Host; an https
        // target is usually an ALB that must see its own name (its certificate and rules).
        let preserve_host = c
            .preserve_host
            .unwrap_or_else(|| targets.iter().all(|t| t.scheme == Scheme::Http));
        let id_header = HeaderValue::from_str(&c.id)
            .map_err(|_| FieldError::new(format!("{key}.id"), &c.id, "not a valid header value"))?;
        if let Some(n) = c.max_in_flight
            && !(1..=1_000_000).contains(&n)
        {
            return Err(FieldError::new(
                format!("{key}.max_in_flight"),
                n,
                "between 1 and 1000000",
            ));
        }
        Ok(Self {
            id: Arc::from(c.id.as_str()),
            state,
            targets,
            groups,
            preserve_host,
            id_header,
            max_in_flight: c.max_in_flight,
            wave: c.wave,
            protocol,
            metrics: OnceLock::new(),
            budget: OnceLock::new(),
        })
    }

    /// This cell's metric handles, resolved on first use.
    pub fn metrics(&self, m: &Metrics) -> &Arc<CellMetrics> {
        self.metrics.get_or_init(|| m.cell(&self.id))
    }

    /// This cell's retry budget (kept across generations), resolved on first use.
    pub fn retry_budget(&self, up: &Upstreams) -> &Arc<RetryBudget> {
        self.budget.get_or_init(|| up.budget(&self.id))
    }
}
