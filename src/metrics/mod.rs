//! Metrics registry and the handles the request path records into.
//!
//! The *log* stage records each answered request here. Families are registered once at start;
//! per-cell handles are resolved once per cell and cached ([`CellMetrics`]), so recording a
//! request is a handful of relaxed atomic adds: no label allocation, no lock.

mod auth;
mod histogram;
pub mod names;
mod tls;
pub mod upstream;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use auth::{AuthMetrics, JwksMetrics};
pub use tls::{ListenerTlsMetrics, TlsMetrics};

/// Handles for on-demand registry lookups (`cellgate_registry_lookups_total{result}`).
#[derive(Debug, Clone, Default)]
pub struct LookupMetrics {
    pub found: Counter,
    pub absent: Counter,
    pub errors: Counter,
    pub coalesced: Counter,
    pub negative_hits: Counter,
    pub limited: Counter,
    pub registry_down: Counter,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}
pub use histogram::{LATENCY_BUCKETS, LatencyHistogram};

/// How a request ended; the `outcome` label of [`names::HTTP_REQUESTS_TOTAL`].
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
}

impl Outcome {
    pub const COUNT: usize = 12;

    const fn index(self) -> usize {
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
        }
    }
}

/// Kinds of upstream failure; the `kind` label of [`names::UPSTREAM_ERRORS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum UpstreamErrorKind {
    connect,
    timeout,
    protocol,
}

use crate::rules::NO_CELL;

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
pub struct Label(Arc<str>);

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    cell: Label,
    status_class: &'static str,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CellLabels {
    cell: Label,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamErrorLabels {
    cell: Label,
    kind: UpstreamErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LimitedLabels {
    tier: Label,
    cell: Label,
    limit: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// All metric families, registered once.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<CellLabels, LatencyHistogram>,
    upstream_response: Family<CellLabels, LatencyHistogram>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    upstream_connects: Family<CellLabels, Counter>,
    connections: Family<ListenerLabels, Counter>,
    limited: Family<LimitedLabels, Counter>,
    cell_in_flight: Family<CellLabels, Gauge>,
    /// Limiter state entries (set at scrape time).
    pub ratelimit_tracked: Gauge,
    /// Limiter state forgotten because idle.
    pub ratelimit_idle_evictions: Counter,
    /// Limiter state evicted from a full store.
    pub ratelimit_forced_evictions: Counter,
    pub connections_open: Gauge,
    pub snapshot_generation: Gauge,
    pub snapshot_age_seconds: Gauge<f64, AtomicU64>,
    pub placement_tenants: Gauge,
    pub placement_cells: Gauge,
    pub placement_dangling: Gauge,
    pub placement_reloads: Counter,
    pub placement_refresh_failures: Counter,
    pub placement_deltas: Counter,
    pub placement_version_regressions: Counter,
    pub access_log_dropped: Counter,
    rejected: Family<RejectLabels, Counter>,
    refused: Family<RejectLabels, Counter>,
    /// Client connections closed for idleness.
    pub idle_closed: Counter,
    /// The verifier's counters.
    pub auth: AuthMetrics,
    /// On-demand lookup counters.
    pub lookups: LookupMetrics,
    /// Target groups, endpoint health, DNS and retries.
    pub upstream: upstream::UpstreamMetrics,
    /// Listener certificate reloads and expiry.
    pub tls: TlsMetrics,
    auth_families: auth::AuthFamilies,
    cells: Mutex<HashMap<Arc<str>, Arc<CellMetrics>>>,
    registry: Registry,
}

/// Cached handles for one cell (or for `none`, requests that never reached a cell).
#[derive(Debug)]
pub struct CellMetrics {
    label: Label,
    requests: [[OnceLock<Counter>; 5]; Outcome::COUNT],
    pub duration: LatencyHistogram,
    pub upstream_response: LatencyHistogram,
    upstream_errors: [OnceLock<Counter>; 3],
    pub upstream_connects: Counter,
    /// Requests in flight to the cell (`cellgate_cell_in_flight`), also its cap's counter.
    pub in_flight: Gauge,
    /// Rejections by tier index and limit kind.
    limited: [[OnceLock<Counter>; 3]; crate::rules::MAX_TIERS],
}

fn counter_name(name: &str) -> &str {
    // prometheus-client appends `_total` to counters itself.
    name.strip_suffix("_total").unwrap_or(name)
}

impl Metrics {
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        let duration = Family::default();
        let upstream_response = Family::default();
        let upstream_errors = Family::default();
        let upstream_connects = Family::default();
        let connections = Family::default();
        let m = Self {
            requests,
            duration,
            upstream_response,
            upstream_errors,
            upstream_connects,
            connections,
            limited: Family::default(),
            cell_in_flight: Family::default(),
            ratelimit_tracked: Gauge::default(),
            ratelimit_idle_evictions: Counter::default(),
            ratelimit_forced_evictions: Counter::default(),
            connections_open: Gauge::default(),
            snapshot_generation: Gauge::default(),
            snapshot_age_seconds: Gauge::default(),
            placement_tenants: Gauge::default(),
            placement_cells: Gauge::default(),
            placement_dangling: Gauge::default(),
            placement_reloads: Counter::default(),
            placement_refresh_failures: Counter::default(),
            placement_deltas: Counter::default(),
            placement_version_regressions: Counter::default(),
            access_log_dropped: Counter::default(),
            rejected: Family::default(),
            refused: Family::default(),
            idle_closed: Counter::default(),
            auth: AuthMetrics::default(),
            lookups: LookupMetrics::default(),
            upstream: upstream::UpstreamMetrics::default(),
            tls: TlsMetrics::default(),
            auth_families: auth::AuthFamilies::default(),
            cells: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        use names as n;
        registry.register(
            counter_name(n::HTTP_REQUESTS_TOTAL),
            "Requests answered, by cell, status class and outcome",
            m.requests.clone(),
        );
        registry.register(
            n::HTTP_REQUEST_DURATION_SECONDS,
            "Time from request head to response head, by cell",
            m.duration.clone(),
        );
        registry.register(
            n::UPSTREAM_RESPONSE_SECONDS,
            "Time from forwarding to the cell's response head, by cell",
            m.upstream_response.clone(),
        );
        registry.register(
            counter_name(n::UPSTREAM_ERRORS_TOTAL),
            "Failed upstream exchanges, by cell and kind",
            m.upstream_errors.clone(),
        );
        registry.register(
            counter_name(n::UPSTREAM_CONNECTS_TOTAL),
            "New upstream connections opened, by cell",
            m.upstream_connects.clone(),
        );
        registry.register(
            counter_name(n::HTTP_CONNECTIONS_TOTAL),
            "Client connections accepted, by listener",
            m.connections.clone(),
        );
        registry.register(
            n::HTTP_CONNECTIONS_OPEN,
            "Client connections open now",
            m.connections_open.clone(),
        );
        registry.register(
            n::PLACEMENT_SNAPSHOT_GENERATION,
            "Generation of the placement snapshot in use",
            m.snapshot_generation.clone(),
        );
        registry.register(
            n::PLACEMENT_SNAPSHOT_AGE_SECONDS,
            "Seconds since the snapshot was last confirmed current",
            m.snapshot_age_seconds.clone(),
        );
        registry.register(
            n::PLACEMENT_TENANTS,
            "Tenants in the snapshot in use",
            m.placement_tenants.clone(),
        );
        registry.register(
            n::PLACEMENT_CELLS,
            "Cells in the snapshot in use",
            m.placement_cells.clone(),
        );
        registry.register(
            n::PLACEMENT_DANGLING_TENANTS,
            "Tenant records naming a cell no source defines",
            m.placement_dangling.clone(),
        );
        registry.register(
            counter_name(n::PLACEMENT_RELOADS_TOTAL),
            "Placement snapshots loaded and swapped in",
            m.placement_reloads.clone(),
        );
        registry.register(
            counter_name(n::PLACEMENT_REFRESH_FAILURES_TOTAL),
            "Registry reads or parses that failed",
            m.placement_refresh_failures.clone(),
        );
        registry.register(
            counter_name(n::PLACEMENT_DELTAS_TOTAL),
            "Change-log deltas applied without a full reload",
            m.placement_deltas.clone(),
        );
        registry.register(
            counter_name(n::PLACEMENT_VERSION_REGRESSIONS_TOTAL),
            "Tenant records older than the one held, ignored",
            m.placement_version_regressions.clone(),
        );
        registry.register(
            counter_name(n::ACCESS_LOG_DROPPED_TOTAL),
            "Access-log lines dropped because the writer fell behind",
            m.access_log_dropped.clone(),
        );
        registry.register(
            counter_name(n::REQUESTS_REJECTED_TOTAL),
            "Requests refused as malformed, ambiguous, oversized or too slow, by reason",
            m.rejected.clone(),
        );
        registry.register(
            counter_name(n::CONNECTIONS_REFUSED_TOTAL),
            "Client connections closed as soon as accepted, by reason",
            m.refused.clone(),
        );
        registry.register(
            counter_name(n::CONNECTIONS_IDLE_CLOSED_TOTAL),
            "Client connections closed after the idle timeout",
            m.idle_closed.clone(),
        );
        registry.register(
            counter_name(n::RATELIMIT_REJECTIONS_TOTAL),
            "Requests refused by a tenant limit, by tier, cell and limit",
            m.limited.clone(),
        );
        registry.register(
            n::RATELIMIT_TRACKED_KEYS,
            "Limiter state entries held now",
            m.ratelimit_tracked.clone(),
        );
        let evictions = Family::<ReasonLabel, Counter>::default();
        registry.register(
            counter_name(n::RATELIMIT_EVICTIONS_TOTAL),
            "Limiter state entries forgotten, by reason (idle, forced)",
            evictions.clone(),
        );
        registry.register(
            n::CELL_IN_FLIGHT,
            "Requests in flight to each cell now",
            m.cell_in_flight.clone(),
        );
        m.auth_families.register(&mut registry);
        m.upstream.register(&mut registry);
        m.tls.register(&mut registry);
        let auth = m.auth_families.auth();
        let lookups_family = Family::<ResultLabel, Counter>::default();
        registry.register(
            counter_name(n::REGISTRY_LOOKUPS_TOTAL),
            "On-demand registry lookups of tenants missing from the snapshot, by result",
            lookups_family.clone(),
        );
        let r = |result| lookups_family.get_or_create_owned(&ResultLabel { result });
        let lookups = LookupMetrics {
            found: r("found"),
            absent: r("absent"),
            errors: r("error"),
            coalesced: r("coalesced"),
            negative_hits: r("negative_hit"),
            limited: r("limited"),
            registry_down: r("registry_down"),
        };
        Self {
            registry,
            auth,
            lookups,
            ratelimit_idle_evictions: evictions
                .get_or_create_owned(&ReasonLabel { reason: "idle" }),
            ratelimit_forced_evictions: evictions
                .get_or_create_owned(&ReasonLabel { reason: "forced" }),
            ..m
        }
    }

    /// Handles for one issuer's JWKS (labelled by its configured name).
    #[must_use]
    pub fn jwks(&self, issuer: &str) -> JwksMetrics {
        self.auth_families.jwks(issuer)
    }

    /// Counts a request refused by a token check (`reason` from a fixed set).
    /// Counts a request refused before any stage looked at it (hygiene, or hyper's parser).
    pub fn request_rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&RejectLabels { reason }).inc();
    }

    /// A client connection closed as soon as accepted.
    pub fn connection_refused(&self, reason: &'static str) {
        self.refused.get_or_create(&RejectLabels { reason }).inc();
    }

    pub fn auth_rejection(&self, reason: &'static str) {
        self.auth_families.rejection(reason);
    }

    /// Sets the verified-token cache gauge (at scrape time).
    pub fn set_token_cache_entries(&self, entries: u64) {
        self.auth_families
            .cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

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
            upstream_connects: self.upstream_connects.get_or_create_owned(&labels),
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
            upstream_connects: self.upstream_connects.get_or_create_owned(&labels),
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
    /// bounded set (at most [`MAX_TIERS`](crate::rules::MAX_TIERS)) and `name` its name.
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

    /// The per-listener connection counter.
    #[must_use]
    pub fn listener_connections(&self, listener: usize) -> Counter {
        self.connections.get_or_create_owned(&ListenerLabels {
            listener: listener.to_string(),
        })
    }

    /// Renders the OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
