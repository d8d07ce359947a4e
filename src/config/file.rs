//! The raw, serde-shaped view of a cellgate config file (`FileConfig`).
//!
//! Every table rejects unknown keys, so a typo is an error rather than a silently ignored
//! setting. Values stay as the operator wrote them (strings for durations, addresses and URLs);
//! `super::Config::from_file` turns them into real types and names the key on any failure.

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub listeners: Vec<FileListener>,
    #[serde(default)]
    pub admin: FileAdmin,
    #[serde(default)]
    pub tenant: FileTenant,
    #[serde(default)]
    pub auth: FileAuth,
    pub registry: Option<FileRegistry>,
    #[serde(default)]
    pub cells: Vec<FileCell>,
    #[serde(default)]
    pub canary: FileCanary,
    pub entitlements: Option<super::FileEntitlements>,
    pub limits: Option<FileLimits>,
    #[serde(default)]
    pub upstream: FileUpstream,
    #[serde(default)]
    pub headers: FileHeaders,
    #[serde(default)]
    pub access_log: FileAccessLog,
    /// `[metering]`: usage per tenant per window.
    pub metering: Option<super::FileMetering>,
    /// `[tracing]`: OpenTelemetry spans over OTLP/HTTP.
    pub tracing: Option<super::FileTracing>,
    #[serde(default)]
    pub log: FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    pub workers: Option<usize>,
    pub shutdown_grace: Option<String>,
    pub headers_with_underscores: Option<String>,
    pub desync_mitigation: Option<String>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_uri_bytes: Option<usize>,
    pub max_body_bytes: Option<u64>,
    pub header_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    #[serde(default)]
    pub http2: FileHttp2,
    #[serde(default)]
    pub trusted_hops: Vec<String>,
    pub trust_x_forwarded_for: Option<bool>,
    pub handover_socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp2 {
    pub max_concurrent_streams: Option<u32>,
    pub stream_window: Option<u32>,
    pub connection_window: Option<u32>,
    pub max_pending_resets: Option<usize>,
    pub max_local_resets: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    pub address: String,
    /// Expect a PROXY protocol header from trusted hops.
    #[serde(default)]
    pub proxy_protocol: bool,
    pub tls: Option<FileTls>,
}

/// `[listeners.tls]`: one certificate (`cert`, `key`) or a list (`[[listeners.tls.certificates]]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    #[serde(default)]
    pub certificates: Vec<FileCertificate>,
    pub reload_interval: Option<String>,
}

/// One `[[listeners.tls.certificates]]` entry: a PEM chain and its private key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertificate {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    pub address: Option<String>,
    /// Expect a PROXY protocol header from trusted hops (an NLB's health checks).
    #[serde(default)]
    pub proxy_protocol: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTenant {
    pub sources: Option<Vec<String>>,
    pub migrating_refuses: Option<String>,
    #[serde(default)]
    pub base_domains: Vec<String>,
    pub header: Option<FileTenantHeader>,
    pub api_key: Option<FileTenantApiKey>,
}

/// `[tenant.api_key]`: where a client's API key is read from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTenantApiKey {
    /// The header carrying the key (default `x-api-key`); `Authorization: ApiKey <key>` is
    /// read too.
    pub header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTenantHeader {
    pub name: String,
    #[serde(default)]
    pub trusted_sources: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    pub required: Option<bool>,
    pub max_token_bytes: Option<usize>,
    pub cache_max_entries: Option<u64>,
    pub cache_max_ttl: Option<String>,
    #[serde(default)]
    pub forward_claims: Vec<FileForwardClaim>,
    #[serde(default)]
    pub issuers: Vec<FileIssuer>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileForwardClaim {
    pub claim: String,
    pub header: String,
}

/// One `[[auth.issuers]]` entry: a token issuer (IdP) and how its tokens are checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIssuer {
    pub name: Option<String>,
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub algorithms: Option<Vec<String>>,
    pub tenant_claim: Option<String>,
    pub tenant_claim_required: Option<bool>,
    pub leeway: Option<String>,
    #[serde(default)]
    pub required_claims: Vec<String>,
    pub typ: Option<String>,
    pub tenants: Option<Vec<String>>,
    pub jwks: Option<FileJwks>,
    #[serde(default)]
    pub keys: Vec<crate::auth::FileKey>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJwks {
    pub url: String,
    pub ca_file: Option<String>,
    pub refresh: Option<String>,
    pub cooldown: Option<String>,
    pub timeout: Option<String>,
    pub max_keys: Option<usize>,
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRegistry {
    pub source: String,
    pub path: Option<String>,
    pub poll_interval: Option<String>,
    pub full_refresh: Option<String>,
    pub table: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub scan_segments: Option<u32>,
    pub scan_page_size: Option<u32>,
    pub lookup_unknown: Option<bool>,
    pub lookup_rate: Option<f64>,
    pub lookup_burst: Option<f64>,
    pub negative_ttl: Option<String>,
    pub negative_capacity: Option<u64>,
}

/// A cell as written in the config file or in a registry file (serialized too: `cellgate
/// registry export` writes registry cells in this shape).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileCell {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// One group (`stable`, weight 100) of these targets; or use `groups`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Target groups (deployment arms) with weights and version labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<FileGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_host: Option<bool>,
    /// Requests in flight to this cell at most (503 beyond); overrides `limits.cell_max_in_flight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Canary wave: a label operators select cells by (`cellgate cell weights --wave N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<u32>,
    /// How the cell's targets are spoken to: `http1` (default), `http2`, or `auto` (ALPN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `[[cells.groups]]`: one deployment arm of a cell.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileGroup {
    pub name: String,
    /// Version label (default: the group's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// `[canary]`: how a tenant's arm is chosen, and who may force one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCanary {
    /// `tenant` (default) or `sub`.
    pub hash_by: Option<String>,
    /// A request header naming the arm to use (needs `force_claim`).
    pub force_header: Option<String>,
    /// The token claim that permits forcing an arm (needs `force_header`).
    pub force_claim: Option<String>,
}

/// `[limits]`: tiers, route classes and caps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub default_tier: Option<String>,
    pub max_tenants: Option<usize>,
    pub cell_max_in_flight: Option<u32>,
    pub sweep_interval: Option<String>,
    #[serde(default)]
    pub tiers: std::collections::HashMap<String, FileTier>,
    #[serde(default)]
    pub routes: Vec<FileRouteClass>,
    /// `[limits.fleet]`: fleet-wide limits on Redis/Valkey.
    pub fleet: Option<FileFleet>,
}

/// `[limits.fleet]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFleet {
    pub redis_url: Option<String>,
    pub redis_password_file: Option<String>,
    pub key_prefix: Option<String>,
    pub sync_interval: Option<String>,
    pub timeout: Option<String>,
    pub heartbeat_interval: Option<String>,
    pub breaker_cooldown: Option<String>,
    pub mode: Option<String>,
    pub max_flush_keys: Option<usize>,
    pub initial_nodes: Option<u32>,
}

/// `[limits.tiers.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTier {
    pub rate: Option<f64>,
    pub burst: Option<u32>,
    pub concurrency: Option<u32>,
}

/// `[[limits.routes]]`: a route class.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRouteClass {
    pub name: String,
    #[serde(default)]
    pub methods: Vec<String>,
    pub path_prefix: Option<String>,
    pub rate: f64,
    pub burst: Option<u32>,
    #[serde(default)]
    pub tiers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub total_timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_target: Option<usize>,
    pub ca_file: Option<String>,
    pub health_check: Option<FileHealthCheck>,
    #[serde(default)]
    pub outlier: FileOutlier,
    #[serde(default)]
    pub retry: FileRetry,
    #[serde(default)]
    pub dns: FileDns,
    #[serde(default)]
    pub http2: FileUpstreamHttp2,
}

/// `[upstream.http2]`: connections to cells whose `protocol` is `http2` or `auto`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstreamHttp2 {
    pub max_concurrent_streams: Option<u32>,
    pub keep_alive_interval: Option<String>,
    pub keep_alive_timeout: Option<String>,
}

/// `[upstream.health_check]`: active HTTP checks of every target address.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealthCheck {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub statuses: Option<String>,
}

/// `[upstream.outlier]`: passive ejection on consecutive gateway failures.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutlier {
    pub consecutive_failures: Option<u32>,
    pub base_ejection: Option<String>,
    pub max_ejection: Option<String>,
    pub max_ejection_percent: Option<u32>,
}

/// `[upstream.retry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetry {
    pub max_attempts: Option<u32>,
    pub idempotent: Option<bool>,
    pub budget_ratio: Option<f64>,
    pub budget_min_per_second: Option<u32>,
}

/// `[upstream.dns]`: re-resolution of targets named by DNS.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    pub min_ttl: Option<String>,
    pub max_ttl: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHeaders {
    #[serde(default)]
    pub strip: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccessLog {
    pub enabled: Option<bool>,
    pub sample: Option<f64>,
    pub buffer: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    pub level: Option<String>,
    pub format: Option<String>,
}
