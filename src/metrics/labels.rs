//! Label values and label sets: plain values (a cell id, a tier name, fixed words), never a
//! domain type, so the metrics module sits below everything that records into it.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// How a request ended; the `outcome` label of [`super::names::HTTP_REQUESTS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Forwarded to a cell; the status is the cell's.
    routed,
    /// Malformed request (400).
    bad_request,
    /// Missing or invalid token (401), or an oversized Authorization header (431).
    unauthorized,
    /// Token and host name different tenants (403).
    tenant_mismatch,
    /// The token's issuer may not speak for the tenant (403).
    issuer_not_allowed,
    /// Tenant suspended (403).
    tenant_suspended,
    /// Unknown or offboarded tenant (404).
    unknown_tenant,
    /// The cell is down, has no targets, or its tenant record names a missing cell (503).
    cell_unavailable,
    /// The cell failed: connect error, timeout, or broken response (502/503/504).
    upstream_error,
    /// No placement snapshot loaded yet (503).
    not_ready,
    /// Over a tenant rate, route-class rate or in-flight limit (429).
    rate_limited,
    /// The cell is at its in-flight cap; shed before reaching it (503).
    cell_overloaded,
    /// The route needs an entitlement the tenant, its key or its token lacks (403).
    not_entitled,
}

impl Outcome {
    pub const COUNT: usize = 13;

    pub(super) const fn index(self) -> usize {
        self as usize
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::routed => "routed",
            Self::bad_request => "bad_request",
            Self::unauthorized => "unauthorized",
            Self::tenant_mismatch => "tenant_mismatch",
            Self::issuer_not_allowed => "issuer_not_allowed",
            Self::tenant_suspended => "tenant_suspended",
            Self::unknown_tenant => "unknown_tenant",
            Self::cell_unavailable => "cell_unavailable",
            Self::upstream_error => "upstream_error",
            Self::not_ready => "not_ready",
            Self::rate_limited => "rate_limited",
            Self::cell_overloaded => "cell_overloaded",
            Self::not_entitled => "not_entitled",
        }
    }
}

/// Kinds of upstream failure; the `kind` label of [`super::names::UPSTREAM_ERRORS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum UpstreamErrorKind {
    connect,
    timeout,
    protocol,
}

impl UpstreamErrorKind {
    /// The label's value, for spans.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::connect => "connect",
            Self::timeout => "timeout",
            Self::protocol => "protocol",
        }
    }
}

/// Which limit refused a request; the `limit` label of the rejections metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Rate,
    Concurrency,
    Route,
}

impl LimitKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rate => "rate",
            Self::Concurrency => "concurrency",
            Self::Route => "route",
        }
    }
}

/// A shared, cheaply cloned label value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label(pub(super) Arc<str>);

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) cell: Label,
    pub(super) status_class: &'static str,
    pub(super) outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct CellLabels {
    pub(super) cell: Label,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ConnectLabels {
    pub(super) cell: Label,
    /// `http1` or `http2`: what the connection settled on.
    pub(super) protocol: &'static str,
}

/// The `protocol` label values of `cellgate_upstream_connects_total`, by index.
pub const CONNECT_PROTOCOLS: [&str; 2] = ["http1", "http2"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct GrpcLabels {
    pub(super) cell: Label,
    pub(super) grpc_status: &'static str,
}

/// The `grpc_status` label values: the code names by number (0 to 16; any other number
/// counts as `UNKNOWN`, as gRPC itself reads it), then `none`: the call ended with no status.
pub const GRPC_STATUSES: [&str; 18] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
    "none",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct UpstreamErrorLabels {
    pub(super) cell: Label,
    pub(super) kind: UpstreamErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct LimitedLabels {
    pub(super) tier: Label,
    pub(super) cell: Label,
    pub(super) limit: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    pub(super) reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RejectLabels {
    pub(super) reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct DesyncLabels {
    pub(super) class: &'static str,
    pub(super) reason: &'static str,
    pub(super) action: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ListenerLabels {
    pub(super) listener: String,
}

pub(super) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ResultLabel {
    pub(super) result: &'static str,
}
