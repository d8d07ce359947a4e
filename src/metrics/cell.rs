//! Per-cell handles: resolved once per cell and cached, so recording a request is a handful
//! of relaxed atomic adds, with no label allocation and no lock on the request path.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::labels::{
    CONNECT_PROTOCOLS, CellLabels, ConnectLabels, GRPC_STATUSES, GrpcLabels, Label, LimitKind,
    LimitedLabels, Outcome, RequestLabels, STATUS_CLASSES, UpstreamErrorKind, UpstreamErrorLabels,
};
use super::{LatencyHistogram, Metrics};
use crate::rules::{MAX_TIERS, NO_CELL};

/// Cached handles for one cell (or for `none`, requests that never reached a cell).
#[derive(Debug)]
pub struct CellMetrics {
    pub(super) label: Label,
    pub(super) requests: [[OnceLock<Counter>; 5]; Outcome::COUNT],
    pub duration: LatencyHistogram,
    pub upstream_response: LatencyHistogram,
    pub(super) upstream_errors: [OnceLock<Counter>; 3],
    /// New connections by protocol ([`CONNECT_PROTOCOLS`]).
    pub(super) upstream_connects: [Counter; 2],
    /// Answers to gRPC calls by status ([`GRPC_STATUSES`]), created on first use.
    pub(super) grpc: [OnceLock<Counter>; GRPC_STATUSES.len()],
    pub(super) grpc_family: Family<GrpcLabels, Counter>,
    /// Requests in flight to the cell (`cellgate_cell_in_flight`), also its cap's counter.
    pub in_flight: Gauge,
    /// Rejections by tier index and limit kind.
    pub(super) limited: [[OnceLock<Counter>; 3]; MAX_TIERS],
}

impl CellMetrics {
    /// Counts a new upstream connection, by the protocol it settled on.
    pub fn connected(&self, http2: bool) {
        self.upstream_connects[usize::from(http2)].inc();
    }

    /// Counts the answer to a gRPC call: its `grpc-status`, or none (the call was cut).
    pub fn grpc_answered(&self, status: Option<u16>) {
        let i = match status {
            None => GRPC_STATUSES.len() - 1,
            Some(s) if usize::from(s) < GRPC_STATUSES.len() - 1 => usize::from(s),
            Some(_) => 2,
        };
        self.grpc[i]
            .get_or_init(|| {
                self.grpc_family.get_or_create_owned(&GrpcLabels {
                    cell: self.label.clone(),
                    grpc_status: GRPC_STATUSES[i],
                })
            })
            .inc();
    }
}

impl Metrics {
    /// Handles for requests that never reached a cell (labelled [`NO_CELL`]; no cell may take
    /// that id). They are never in flight to a cell, so their in-flight gauge is not exported.
    #[must_use]
    pub fn unrouted(&self) -> Arc<CellMetrics> {
        let label = Label(Arc::from(NO_CELL));
        let labels = CellLabels {
            cell: label.clone(),
        };
        Arc::new(CellMetrics {
            requests: Default::default(),
            duration: self.duration.get_or_create_owned(&labels),
            upstream_response: self.upstream_response.get_or_create_owned(&labels),
            upstream_errors: Default::default(),
            upstream_connects: self.connects(&label),
            grpc: Default::default(),
            grpc_family: self.grpc.clone(),
            in_flight: Gauge::default(),
            limited: Default::default(),
            label,
        })
    }

    /// Handles for `cell` (created on first use, then shared).
    pub fn cell(&self, cell: &str) -> Arc<CellMetrics> {
        let mut cells = self
            .cells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(m) = cells.get(cell) {
            return Arc::clone(m);
        }
        let label = Label(Arc::from(cell));
        let labels = CellLabels {
            cell: label.clone(),
        };
        let m = Arc::new(CellMetrics {
            requests: Default::default(),
            duration: self.duration.get_or_create_owned(&labels),
            upstream_response: self.upstream_response.get_or_create_owned(&labels),
            upstream_errors: Default::default(),
            upstream_connects: self.connects(&label),
            grpc: Default::default(),
            grpc_family: self.grpc.clone(),
            in_flight: self.cell_in_flight.get_or_create_owned(&labels),
            limited: Default::default(),
            label,
        });
        cells.insert(Arc::from(cell), Arc::clone(&m));
        m
    }

    /// Records one answered request.
    pub fn record_request(
        &self,
        cell: &CellMetrics,
        status: u16,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        cell.requests[outcome.index()][class]
            .get_or_init(|| {
                self.requests.get_or_create_owned(&RequestLabels {
                    cell: cell.label.clone(),
                    status_class: STATUS_CLASSES[class],
                    outcome,
                })
            })
            .inc();
        cell.duration.observe(elapsed);
    }

    fn connects(&self, cell: &Label) -> [Counter; 2] {
        CONNECT_PROTOCOLS.map(|protocol| {
            self.upstream_connects.get_or_create_owned(&ConnectLabels {
                cell: cell.clone(),
                protocol,
            })
        })
    }

    pub fn record_upstream_error(&self, cell: &CellMetrics, kind: UpstreamErrorKind) {
        cell.upstream_errors[kind as usize]
            .get_or_init(|| {
                self.upstream_errors
                    .get_or_create_owned(&UpstreamErrorLabels {
                        cell: cell.label.clone(),
                        kind,
                    })
            })
            .inc();
    }

    /// Counts a request refused by a tenant limit: `tier` is the tier's index in the config's
    /// bounded set (at most [`MAX_TIERS`]) and `name` its name.
    pub fn rate_limited(&self, cell: &CellMetrics, tier: usize, name: &Arc<str>, kind: LimitKind) {
        let Some(row) = cell.limited.get(tier) else {
            return;
        };
        row[kind as usize]
            .get_or_init(|| {
                self.limited.get_or_create_owned(&LimitedLabels {
                    tier: Label(Arc::clone(name)),
                    cell: cell.label.clone(),
                    limit: kind.as_str(),
                })
            })
            .inc();
    }
}
