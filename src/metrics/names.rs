//! Every metric name cellgate exports, in one place (each is documented in the table of docs/metrics.md).
//!
//! Names follow `cellgate_<subsystem>_<thing>_{total|seconds|bytes}`; labels stay bounded
//! (cell, status class, outcome, kind) and never carry a raw tenant id.

/// Requests answered, by `cell` (`none` before a cell was chosen), `status_class` and `outcome`.
pub const HTTP_REQUESTS_TOTAL: &str = "cellgate_http_requests_total";
/// Requests refused by the hygiene stage, the ingress limits or hyper's parser, by `reason`.
pub const REQUESTS_REJECTED_TOTAL: &str = "cellgate_requests_rejected_total";
/// HTTP/1 requests the desync classifier found not compliant, by `class` (acceptable,
/// ambiguous, severe), `reason` and `action` (forward, close, refuse).
pub const DESYNC_TOTAL: &str = "cellgate_desync_total";
/// Client connections closed as soon as accepted, by `reason` (`max_connections`,
/// `max_connections_per_ip`, `proxy_protocol`).
pub const CONNECTIONS_REFUSED_TOTAL: &str = "cellgate_connections_refused_total";
/// Client connections closed after `server.idle_timeout` with no request in flight.
pub const CONNECTIONS_IDLE_CLOSED_TOTAL: &str = "cellgate_connections_idle_closed_total";
/// Time from request head received to response head sent, by `cell`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "cellgate_http_request_duration_seconds";
/// Time from forwarding to the cell's response head, by `cell`.
pub const UPSTREAM_RESPONSE_SECONDS: &str = "cellgate_upstream_response_seconds";
/// Failed upstream exchanges, by `cell` and `kind` (connect, timeout, protocol).
pub const UPSTREAM_ERRORS_TOTAL: &str = "cellgate_upstream_errors_total";
/// New upstream connections opened, by `cell` and `protocol` (`http1`, `http2`); compare with
/// requests to see pool reuse.
pub const UPSTREAM_CONNECTS_TOTAL: &str = "cellgate_upstream_connects_total";
/// Answers to gRPC calls, by `cell` (`none` when refused before one) and `grpc_status` (the
/// code name, or `none` when the call ended without one).
pub const GRPC_RESPONSES_TOTAL: &str = "cellgate_grpc_responses_total";
/// Generation of the placement snapshot in use (increments on every swap).
pub const PLACEMENT_SNAPSHOT_GENERATION: &str = "cellgate_placement_snapshot_generation";
/// Seconds since the placement snapshot was last confirmed current by the source.
pub const PLACEMENT_SNAPSHOT_AGE_SECONDS: &str = "cellgate_placement_snapshot_age_seconds";
/// Tenants in the snapshot in use.
pub const PLACEMENT_TENANTS: &str = "cellgate_placement_tenants";
/// API keys in the snapshot in use.
pub const PLACEMENT_API_KEYS: &str = "cellgate_placement_api_keys";
/// Cells in the snapshot in use.
pub const PLACEMENT_CELLS: &str = "cellgate_placement_cells";
/// Snapshots loaded and swapped in.
pub const PLACEMENT_RELOADS_TOTAL: &str = "cellgate_placement_reloads_total";
/// Change-log deltas applied (a change followed without a full reload).
pub const PLACEMENT_DELTAS_TOTAL: &str = "cellgate_placement_deltas_total";
/// Tenant records older than the one held, ignored (versions never go backwards in a node).
pub const PLACEMENT_VERSION_REGRESSIONS_TOTAL: &str =
    "cellgate_placement_version_regressions_total";
/// Registry records skipped (an invalid item, or a tier or arm beyond the 65,535 a snapshot
/// holds); each is also logged with its key.
pub const PLACEMENT_RECORDS_SKIPPED_TOTAL: &str = "cellgate_placement_records_skipped_total";
/// On-demand registry lookups of tenants missing from the snapshot, by `result`: `found`,
/// `absent`, `error` (each one registry read), `coalesced` (joined a read in flight),
/// `negative_hit` (known absent, no read), `limited` (refused by the miss rate cap),
/// `registry_down` (refused at once while the registry's polls fail).
pub const REGISTRY_LOOKUPS_TOTAL: &str = "cellgate_registry_lookups_total";
/// Registry reads or parses that failed (the last good snapshot stayed in place).
pub const PLACEMENT_REFRESH_FAILURES_TOTAL: &str = "cellgate_placement_refresh_failures_total";
/// Tenant records that name a cell no source defines (their requests get 503).
pub const PLACEMENT_DANGLING_TENANTS: &str = "cellgate_placement_dangling_tenants";
/// Access-log lines dropped because the writer fell behind.
pub const ACCESS_LOG_DROPPED_TOTAL: &str = "cellgate_access_log_dropped_total";
/// Client connections accepted, by `listener` index.
pub const HTTP_CONNECTIONS_TOTAL: &str = "cellgate_http_connections_total";
/// Client connections open now.
pub const HTTP_CONNECTIONS_OPEN: &str = "cellgate_http_connections_open";
/// Bearer tokens checked, by `result`: `cache_hit` (no signature check), `verified`, `rejected`.
pub const JWT_VERIFICATIONS_TOTAL: &str = "cellgate_jwt_verifications_total";
/// Requests refused by token checks, by `reason` (a fixed set: `expired`, `signature`,
/// `unknown_kid`, `issuer_not_allowed`, ...; see docs/identity.md).
pub const JWT_REJECTIONS_TOTAL: &str = "cellgate_jwt_rejections_total";
/// Requests refused by the API key check, by `reason`: `missing`, `malformed`, `unknown`,
/// `wrong_secret`, `revoked`, `expired`, `unchecked` (past the lookup miss cap) (all answered 401 `invalid_api_key` or
/// `api_key_required`).
pub const API_KEY_REJECTIONS_TOTAL: &str = "cellgate_api_key_rejections_total";
/// Requests refused 403 `not_entitled`, by `by`: who lacked the route's entitlement (`tenant`,
/// `key` scopes, `token` scopes).
pub const NOT_ENTITLED_TOTAL: &str = "cellgate_not_entitled_total";
/// Verified tokens held in the cache.
pub const JWT_CACHE_ENTRIES: &str = "cellgate_jwt_cache_entries";
/// JWKS fetches, by `issuer` and `result` (`ok`, `error`).
pub const JWKS_FETCHES_TOTAL: &str = "cellgate_jwks_fetches_total";
/// Keys in the issuer's current JWKS, by `issuer`.
pub const JWKS_KEYS: &str = "cellgate_jwks_keys";
/// 1 when the issuer's last JWKS fetch succeeded, 0 after a failure (the last good set stays).
pub const JWKS_UP: &str = "cellgate_jwks_up";
/// Seconds since the issuer's JWKS was last fetched successfully, by `issuer`.
pub const JWKS_AGE_SECONDS: &str = "cellgate_jwks_age_seconds";
/// Unknown-`kid` refetches refused by the cooldown or the negative cache, by `issuer`.
pub const JWKS_REFETCH_SUPPRESSED_TOTAL: &str = "cellgate_jwks_refetch_suppressed_total";
/// Requests refused by a tenant limit, by `tier`, `cell` and `limit` (`rate`, `concurrency`,
/// `route` for a route class's rate). Never labelled by tenant.
pub const RATELIMIT_REJECTIONS_TOTAL: &str = "cellgate_ratelimit_rejections_total";
/// Limiter state entries held now (tenants, and tenant x route class, seen recently).
pub const RATELIMIT_TRACKED_KEYS: &str = "cellgate_ratelimit_tracked_keys";
/// Limiter state entries forgotten, by `reason`: `idle` (bucket full again, nothing in flight:
/// forgetting grants nothing) or `forced` (the state was full; the debt is kept, see docs/limits.md).
pub const RATELIMIT_EVICTIONS_TOTAL: &str = "cellgate_ratelimit_evictions_total";
/// One flush round trip to Redis of the fleet-wide limiter (every tenant key in it).
pub const FLEET_SYNC_SECONDS: &str = "cellgate_fleet_sync_seconds";
/// Tenant keys reconciled with Redis per flush.
pub const FLEET_FLUSH_KEYS: &str = "cellgate_fleet_flush_keys";
/// Failed Redis exchanges, by `kind` (`timeout`, `connect`, `io`, `auth`, `script`, `response`).
pub const FLEET_REDIS_ERRORS_TOTAL: &str = "cellgate_fleet_redis_errors_total";
/// The Redis circuit breaker: 0 closed, 1 open (local fallback), 2 half-open (probing).
pub const FLEET_BREAKER_STATE: &str = "cellgate_fleet_breaker_state";
/// Live nodes in the fleet membership set, as this node last saw it.
pub const FLEET_NODES: &str = "cellgate_fleet_nodes";
/// Seconds this node enforced the local fallback (limit ÷ nodes) instead of fleet accounting.
pub const FLEET_FALLBACK_SECONDS_TOTAL: &str = "cellgate_fleet_fallback_seconds_total";
/// Shadow mode: requests fleet accounting would have refused, by `tier`.
pub const FLEET_WOULD_REFUSE_TOTAL: &str = "cellgate_fleet_would_refuse_total";
/// Enforce mode: requests fleet accounting refused, by `tier` (also in the rejections total).
pub const FLEET_REFUSED_TOTAL: &str = "cellgate_fleet_refused_total";
/// Usage events by `result`: `sent` (the sink took them), `replayed` (sent from the spool, also
/// in `sent`), `spooled` (the sink failed), `dropped` (the spool was full).
pub const METERING_EVENTS_TOTAL: &str = "cellgate_metering_events_total";
/// Batches of usage events the sink refused or did not answer for in time.
pub const METERING_SINK_ERRORS_TOTAL: &str = "cellgate_metering_sink_errors_total";
/// Batches of usage events waiting in the local spool.
pub const METERING_SPOOL_BATCHES: &str = "cellgate_metering_spool_batches";
/// Bytes of usage events waiting in the local spool.
pub const METERING_SPOOL_BYTES: &str = "cellgate_metering_spool_bytes";
/// Windows closed early because a worker's window held `metering.max_tenants` tenants.
pub const METERING_WINDOWS_CLOSED_EARLY_TOTAL: &str =
    "cellgate_metering_windows_closed_early_total";
/// Closed windows dropped because the emitter did not take them in time.
pub const METERING_WINDOWS_DROPPED_TOTAL: &str = "cellgate_metering_windows_dropped_total";
/// When the sink last took a whole emission (Unix seconds; 0: never).
pub const METERING_LAST_SUCCESS_TIMESTAMP_SECONDS: &str =
    "cellgate_metering_last_success_timestamp_seconds";
/// Spans the OTLP endpoint accepted (`[tracing]`).
pub const TRACE_SPANS_EXPORTED_TOTAL: &str = "cellgate_trace_spans_exported_total";
/// Spans dropped, by `reason`: `queue_full` (the export queue was full), `export_failed` (the
/// endpoint refused, was unreachable or too slow).
pub const TRACE_SPANS_DROPPED_TOTAL: &str = "cellgate_trace_spans_dropped_total";
/// OTLP export requests, by `result`: `ok`, `error`.
pub const TRACE_EXPORTS_TOTAL: &str = "cellgate_trace_exports_total";
/// Requests in flight to each cell now, by `cell` (the gauge the per-cell cap checks).
pub const CELL_IN_FLIGHT: &str = "cellgate_cell_in_flight";
/// Routed requests by `cell`, target `group`, `version` and `status_class`: compare a canary
/// arm with stable.
pub const GROUP_REQUESTS_TOTAL: &str = "cellgate_group_requests_total";
/// Time from request head to response head of routed requests, by `cell`, `group`, `version`.
pub const GROUP_REQUEST_DURATION_SECONDS: &str = "cellgate_group_request_duration_seconds";
/// 1 when a target address is in rotation, 0 when it fails health checks or is ejected, by
/// `target` and `address`.
pub const ENDPOINT_HEALTHY: &str = "cellgate_endpoint_healthy";
/// Passive ejections after consecutive gateway failures, by `target` and `address`.
pub const ENDPOINT_EJECTIONS_TOTAL: &str = "cellgate_endpoint_ejections_total";
/// Active health checks, by `target` and `result` (`pass`, `fail`).
pub const HEALTH_CHECKS_TOTAL: &str = "cellgate_health_checks_total";
/// Addresses a target named by host resolves to now, by `target`.
pub const TARGET_ADDRESSES: &str = "cellgate_target_addresses";
/// DNS resolutions of targets named by host, by `target` and `result` (`ok`, `error`: the last
/// good address set stays).
pub const DNS_RESOLUTIONS_TOTAL: &str = "cellgate_dns_resolutions_total";
/// Retries to another target of the same cell, by `cell` and `result` (`sent`,
/// `budget_exhausted`: refused by the cell's retry budget).
pub const RETRIES_TOTAL: &str = "cellgate_retries_total";
/// Listener certificate reloads after a change on disk, by `listener` and `result` (`ok`,
/// `error`: the files did not load and the current certificates kept serving).
pub const TLS_RELOADS_TOTAL: &str = "cellgate_tls_reloads_total";
/// notAfter of each served leaf certificate as Unix seconds, by `listener` and `cert` (file).
pub const TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS: &str =
    "cellgate_tls_certificate_expiry_timestamp_seconds";

/// Every exported name, for docs and for checks that dashboards only use real metrics.
pub const ALL: &[&str] = &[
    HTTP_REQUESTS_TOTAL,
    HTTP_REQUEST_DURATION_SECONDS,
    UPSTREAM_RESPONSE_SECONDS,
    UPSTREAM_ERRORS_TOTAL,
    UPSTREAM_CONNECTS_TOTAL,
    GRPC_RESPONSES_TOTAL,
    PLACEMENT_SNAPSHOT_GENERATION,
    PLACEMENT_SNAPSHOT_AGE_SECONDS,
    PLACEMENT_TENANTS,
    PLACEMENT_API_KEYS,
    PLACEMENT_CELLS,
    PLACEMENT_RELOADS_TOTAL,
    PLACEMENT_REFRESH_FAILURES_TOTAL,
    PLACEMENT_DELTAS_TOTAL,
    PLACEMENT_VERSION_REGRESSIONS_TOTAL,
    PLACEMENT_RECORDS_SKIPPED_TOTAL,
    REGISTRY_LOOKUPS_TOTAL,
    PLACEMENT_DANGLING_TENANTS,
    ACCESS_LOG_DROPPED_TOTAL,
    REQUESTS_REJECTED_TOTAL,
    DESYNC_TOTAL,
    CONNECTIONS_REFUSED_TOTAL,
    CONNECTIONS_IDLE_CLOSED_TOTAL,
    HTTP_CONNECTIONS_TOTAL,
    HTTP_CONNECTIONS_OPEN,
    JWT_VERIFICATIONS_TOTAL,
    JWT_REJECTIONS_TOTAL,
    JWT_CACHE_ENTRIES,
    API_KEY_REJECTIONS_TOTAL,
    NOT_ENTITLED_TOTAL,
    JWKS_FETCHES_TOTAL,
    JWKS_KEYS,
    JWKS_UP,
    JWKS_AGE_SECONDS,
    JWKS_REFETCH_SUPPRESSED_TOTAL,
    RATELIMIT_REJECTIONS_TOTAL,
    RATELIMIT_TRACKED_KEYS,
    RATELIMIT_EVICTIONS_TOTAL,
    FLEET_SYNC_SECONDS,
    FLEET_FLUSH_KEYS,
    FLEET_REDIS_ERRORS_TOTAL,
    FLEET_BREAKER_STATE,
    FLEET_NODES,
    FLEET_FALLBACK_SECONDS_TOTAL,
    FLEET_WOULD_REFUSE_TOTAL,
    FLEET_REFUSED_TOTAL,
    METERING_EVENTS_TOTAL,
    METERING_SINK_ERRORS_TOTAL,
    METERING_SPOOL_BATCHES,
    METERING_SPOOL_BYTES,
    METERING_WINDOWS_CLOSED_EARLY_TOTAL,
    METERING_WINDOWS_DROPPED_TOTAL,
    METERING_LAST_SUCCESS_TIMESTAMP_SECONDS,
    TRACE_SPANS_EXPORTED_TOTAL,
    TRACE_SPANS_DROPPED_TOTAL,
    TRACE_EXPORTS_TOTAL,
    CELL_IN_FLIGHT,
    GROUP_REQUESTS_TOTAL,
    GROUP_REQUEST_DURATION_SECONDS,
    ENDPOINT_HEALTHY,
    ENDPOINT_EJECTIONS_TOTAL,
    HEALTH_CHECKS_TOTAL,
    TARGET_ADDRESSES,
    DNS_RESOLUTIONS_TOTAL,
    RETRIES_TOTAL,
    TLS_RELOADS_TOTAL,
    TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS,
];
