//! Metrics registry and the handles the request path records into.
//!
//! The *log* stage records each answered request here. Families are registered once at start;
//! per-cell handles are resolved once per cell and cached ([`CellMetrics`], in `cell.rs`), so
//! recording a request is a handful of relaxed atomic adds: no label allocation, no lock.
//! Labels are plain values (`labels.rs`); the snapshot's families are in `placement.rs`, the
//! verifier's in `auth.rs`, the targets' in [`upstream`], the listeners' certificates in
//! `tls.rs`. Every name is a constant in [`names`].

mod auth;
mod cell;
mod fleet;
mod histogram;
mod labels;
mod metering;
pub mod names;
mod placement;
mod tls;
mod traces;
pub mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use auth::{AuthMetrics, JwksMetrics};
pub use cell::CellMetrics;
pub use fleet::{
    BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN, FleetMetrics, RedisErrorKind,
    TierFleetCounters,
};
pub use histogram::{LATENCY_BUCKETS, LatencyHistogram};
use labels::{
    CellLabels, ConnectLabels, DesyncLabels, GrpcLabels, LimitedLabels, ListenerLabels,
    ReasonLabel, RejectLabels,
};
pub use labels::{Label, LimitKind, Outcome, UpstreamErrorKind};
use labels::{RequestLabels, UpstreamErrorLabels};
pub use metering::MeteringMetrics;
pub use placement::{LookupMetrics, PlacementMetrics};
pub use tls::{ListenerTlsMetrics, TlsMetrics};
pub use traces::TraceMetrics;

/// All metric families, registered once.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<CellLabels, LatencyHistogram>,
    upstream_response: Family<CellLabels, LatencyHistogram>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    upstream_connects: Family<ConnectLabels, Counter>,
    grpc: Family<GrpcLabels, Counter>,
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
    /// The snapshot in use and its refreshes.
    pub placement: PlacementMetrics,
    pub access_log_dropped: Counter,
    rejected: Family<RejectLabels, Counter>,
    refused: Family<RejectLabels, Counter>,
    desync: Family<DesyncLabels, Counter>,
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
    /// The fleet-wide limiter (registered whether or not it is on, so dashboards see zeros).
    pub fleet: FleetMetrics,
    /// Usage metering's emitter (registered whether or not it is on).
    pub metering: MeteringMetrics,
    /// Span export (registered whether or not `[tracing]` is on).
    pub traces: TraceMetrics,
    auth_families: auth::AuthFamilies,
    cells: Mutex<HashMap<Arc<str>, Arc<CellMetrics>>>,
    registry: Registry,
}

/// The name a counter is registered under: prometheus-client appends `_total` itself.
fn counter_name(name: &str) -> &str {
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
            grpc: Family::default(),
            connections,
            limited: Family::default(),
            cell_in_flight: Family::default(),
            ratelimit_tracked: Gauge::default(),
            ratelimit_idle_evictions: Counter::default(),
            ratelimit_forced_evictions: Counter::default(),
            connections_open: Gauge::default(),
            placement: PlacementMetrics::default(),
            access_log_dropped: Counter::default(),
            rejected: Family::default(),
            desync: Family::default(),
            refused: Family::default(),
            idle_closed: Counter::default(),
            auth: AuthMetrics::default(),
            lookups: LookupMetrics::default(),
            upstream: upstream::UpstreamMetrics::default(),
            tls: TlsMetrics::default(),
            fleet: FleetMetrics::default(),
            metering: MeteringMetrics::default(),
            traces: TraceMetrics::default(),
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
            "New upstream connections opened, by cell and protocol",
            m.upstream_connects.clone(),
        );
        registry.register(
            counter_name(n::GRPC_RESPONSES_TOTAL),
            "Answers to gRPC calls, by cell and grpc_status",
            m.grpc.clone(),
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
        m.placement.register(&mut registry);
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
            counter_name(n::DESYNC_TOTAL),
            "HTTP/1 requests found not compliant, by class, reason and action",
            m.desync.clone(),
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
        m.fleet.register(&mut registry);
        let mut metering = m.metering.clone();
        metering.register(&mut registry);
        let mut traces = m.traces.clone();
        traces.register(&mut registry);
        let auth = m.auth_families.auth();
        let lookups = LookupMetrics::register(&mut registry);
        Self {
            registry,
            auth,
            lookups,
            metering,
            traces,
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

    /// Counts a request refused before any stage looked at it (hygiene, or hyper's parser).
    pub fn request_rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&RejectLabels { reason }).inc();
    }

    /// Counts one desync classifier decision (labels from `desync`'s fixed sets).
    pub fn desync(&self, class: &'static str, reason: &'static str, action: &'static str) {
        self.desync
            .get_or_create(&DesyncLabels {
                class,
                reason,
                action,
            })
            .inc();
    }

    /// A client connection closed as soon as accepted.
    pub fn connection_refused(&self, reason: &'static str) {
        self.refused.get_or_create(&RejectLabels { reason }).inc();
    }

    /// Counts a request refused by a token check (`reason` from a fixed set).
    pub fn auth_rejection(&self, reason: &'static str) {
        self.auth_families.rejection(reason);
    }

    /// Counts a request refused by the API key check (`reason` from a fixed set).
    pub fn api_key_rejection(&self, reason: &'static str) {
        self.auth_families.key_rejection(reason);
    }

    /// Counts a request refused for an entitlement (`by`: tenant, key or token).
    pub fn not_entitled(&self, by: &'static str) {
        self.auth_families.not_entitled(by);
    }

    /// Sets the verified-token cache gauge (at scrape time).
    pub fn set_token_cache_entries(&self, entries: u64) {
        self.auth_families
            .cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
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
