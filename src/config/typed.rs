//! The validated runtime config and the conversion from [`FileConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use super::auth::build_auth;
use super::file::{FileConfig, FileRegistry};
use super::{ServerConfig, parse_addr, parse_duration};
use crate::auth::AuthConfig;
use crate::placement::Cell;
use crate::rules::FieldError;
use crate::tenant::TenantSource;

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this config was read from.
    pub source_path: PathBuf,
    pub server: ServerConfig,
    pub listeners: Vec<ListenerConfig>,
    pub admin: AdminConfig,
    pub tenant: TenantConfig,
    pub auth: AuthConfig,
    /// How a tenant's arm is chosen, and who may force one (`[canary]`).
    pub canary: super::CanaryConfig,
    pub registry: RegistryConfig,
    /// On-demand lookups and forced re-reads (`registry.lookup_*`, `registry.negative_*`).
    pub lookup: LookupConfig,
    /// Cells defined in the config file; a registry cell with the same id wins.
    pub cells: Vec<Cell>,
    /// Rate-limit tiers, route classes and cell caps (`[limits]`).
    pub limits: super::LimitsConfig,
    pub upstream: super::UpstreamConfig,
    /// Client-supplied headers removed before forwarding, on top of the built-in internal ones.
    pub strip_headers: Vec<HeaderName>,
    pub access_log: AccessLogConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    /// Connections from `server.trusted_hops` start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// TLS termination (`[listeners.tls]`), its certificates loaded once at config load.
    pub tls: Option<ListenerTls>,
}

/// The certificates a TLS listener serves, chosen by SNI.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// In config order, never empty; the first is the default (no SNI, or an unknown name).
    pub certificates: Vec<TlsFiles>,
    /// How often the files' metadata is checked for a change (`reload_interval`).
    pub reload_interval: Duration,
}

/// One certificate: a PEM chain (leaf first) and its PEM private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub address: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// Sources in precedence order.
    pub sources: Vec<TenantSource>,
    /// Lower-case, without a leading dot, longest first (so the most specific one matches).
    pub base_domains: Vec<String>,
    pub header: Option<TenantHeaderConfig>,
    /// What a MIGRATING tenant is refused (`tenant.migrating_refuses`).
    pub route_policy: crate::routing::RoutePolicy,
}

#[derive(Debug, Clone)]
pub struct TenantHeaderConfig {
    pub name: HeaderName,
    pub trusted_sources: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy)]
pub struct LookupConfig {
    /// Look tenants missing from the snapshot up in the registry (default: DynamoDB only).
    pub unknown: bool,
    pub settings: crate::placement::lookup::LookupSettings,
}

#[derive(Debug, Clone)]
pub enum RegistryConfig {
    /// A TOML file re-read when it changes.
    File {
        path: PathBuf,
        poll_interval: Duration,
        full_refresh: Duration,
    },
    /// A DynamoDB table, its `epoch` item polled for changes.
    Dynamo {
        settings: crate::placement::dynamo::DynamoSettings,
        poll_interval: Duration,
        full_refresh: Duration,
    },
}

impl RegistryConfig {
    #[must_use]
    pub const fn poll_interval(&self) -> Duration {
        match self {
            Self::File { poll_interval, .. } | Self::Dynamo { poll_interval, .. } => *poll_interval,
        }
    }

    #[must_use]
    pub const fn full_refresh(&self) -> Duration {
        match self {
            Self::File { full_refresh, .. } | Self::Dynamo { full_refresh, .. } => *full_refresh,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// Fraction of routed requests logged; errors and rejections are always logged.
    pub sample: f64,
    /// Lines buffered between the request path and the writer; beyond it lines are dropped.
    pub buffer: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

pub(super) fn dur(
    key: &str,
    value: Option<&String>,
    default: Duration,
) -> Result<Duration, FieldError> {
    value.map_or(Ok(default), |v| parse_duration(key, v))
}

pub(crate) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(super) fn build(raw: FileConfig, path: &Path, base: &Path) -> Result<Config, FieldError> {
    let server = super::server::build_server(&raw.server, base)?;

    if raw.listeners.is_empty() {
        return Err(FieldError::new(
            "listeners",
            "[]",
            "at least one [[listeners]] entry is required",
        ));
    }
    let mut listeners = Vec::with_capacity(raw.listeners.len());
    for (i, l) in raw.listeners.iter().enumerate() {
        let address = parse_addr(&format!("listeners[{i}].address"), &l.address)?;
        let tls = l
            .tls
            .as_ref()
            .map(|t| super::tls::build_listener_tls(i, t, base))
            .transpose()?;
        if l.proxy_protocol && server.trusted_hops.is_empty() {
            return Err(FieldError::new(
                format!("listeners[{i}].proxy_protocol"),
                true,
                "needs server.trusted_hops: the header is only read from them",
            ));
        }
        listeners.push(ListenerConfig {
            address,
            proxy_protocol: l.proxy_protocol,
            tls,
        });
    }
    let admin = AdminConfig {
        address: parse_addr(
            "admin.address",
            raw.admin.address.as_deref().unwrap_or("127.0.0.1:9090"),
        )?,
    };

    let tenant = build_tenant(&raw)?;
    let mut auth = build_auth(&raw.auth, base)?;
    if let Some(h) = &tenant.header
        && let Some(i) = auth.forward_claims.iter().position(|f| f.header == h.name)
    {
        return Err(FieldError::new(
            format!("auth.forward_claims[{i}].header"),
            &h.name,
            "is tenant.header.name: a claim may not stand in for the trusted tenant header",
        ));
    }
    if tenant.sources.contains(&TenantSource::Jwt) && auth.issuers.is_empty() {
        return Err(FieldError::new(
            "tenant.sources",
            "jwt",
            "the jwt source needs at least one [[auth.issuers]] entry",
        ));
    }

    let canary = super::build_canary(&raw.canary, &auth, tenant.header.as_ref())?;
    // The verifier captures the claim with each verified token.
    auth.arm_claim = canary.force.as_ref().map(|f| f.claim.clone());

    let registry = build_registry(raw.registry.as_ref(), base)?;
    let lookup = build_lookup(raw.registry.as_ref(), &registry)?;
    let mut cells = Vec::with_capacity(raw.cells.len());
    for (i, c) in raw.cells.iter().enumerate() {
        let cell = Cell::from_file(c, &format!("cells[{i}]"))?;
        if cells.iter().any(|known: &Cell| known.id == cell.id) {
            return Err(FieldError::new(
                format!("cells[{i}].id"),
                &cell.id,
                "duplicate cell id",
            ));
        }
        cells.push(cell);
    }

    let upstream = super::upstream::build_upstream(&raw.upstream, base)?;
    let mut strip_headers = Vec::with_capacity(raw.headers.strip.len());
    for (i, h) in raw.headers.strip.iter().enumerate() {
        let name = HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).map_err(|_| {
            FieldError::new(format!("headers.strip[{i}]"), h, "not a valid header name")
        })?;
        strip_headers.push(name);
    }

    let sample = raw.access_log.sample.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample) {
        return Err(FieldError::new(
            "access_log.sample",
            sample,
            "must be between 0.0 and 1.0",
        ));
    }
    let buffer = raw.access_log.buffer.unwrap_or(16_384);
    if buffer == 0 {
        return Err(FieldError::new(
            "access_log.buffer",
            0,
            "must be at least 1",
        ));
    }
    let access_log = AccessLogConfig {
        enabled: raw.access_log.enabled.unwrap_or(true),
        sample,
        buffer,
    };

    let level = raw.log.level.clone().unwrap_or_else(|| "info".to_owned());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(FieldError::new(
            "log.level",
            &level,
            "not a log level or filter (e.g. \"info\", \"cellgate=debug\")",
        ));
    }
    let format = match raw.log.format.as_deref().unwrap_or("json") {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            return Err(FieldError::new(
                "log.format",
                other,
                "expected \"json\" or \"text\"",
            ));
        }
    };

    Ok(Config {
        source_path: path.to_path_buf(),
        server,
        listeners,
        admin,
        tenant,
        auth,
        canary,
        registry,
        lookup,
        cells,
        limits: super::build_limits(raw.limits.as_ref())?,
        upstream,
        strip_headers,
        access_log,
        log: LogConfig { level, format },
    })
}

fn build_tenant(raw: &FileConfig) -> Result<TenantConfig, FieldError> {
    let names = raw
        .tenant
        .sources
        .clone()
        .unwrap_or_else(|| vec!["jwt".to_owned(), "subdomain".to_owned()]);
    if names.is_empty() {
        return Err(FieldError::new(
            "tenant.sources",
            "[]",
            "name at least one of \"jwt\", \"subdomain\", \"header\"",
        ));
    }
    let mut sources = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let key = format!("tenant.sources[{i}]");
        let s = match n.as_str() {
            "jwt" => TenantSource::Jwt,
            "subdomain" => TenantSource::Subdomain,
            "header" => TenantSource::Header,
            other => {
                return Err(FieldError::new(
                    key,
                    other,
                    "expected \"jwt\", \"subdomain\" or \"header\"",
                ));
            }
        };
        if sources.contains(&s) {
            return Err(FieldError::new(key, n, "listed twice"));
        }
        sources.push(s);
    }
    let mut base_domains = Vec::with_capacity(raw.tenant.base_domains.len());
    for (i, d) in raw.tenant.base_domains.iter().enumerate() {
        let norm = d.trim_start_matches('.').to_ascii_lowercase();
        let valid = !norm.is_empty()
            && norm.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(FieldError::new(
                format!("tenant.base_domains[{i}]"),
                d,
                "not a domain name",
            ));
        }
        base_domains.push(norm);
    }
    base_domains.sort_by_key(|d| std::cmp::Reverse(d.len()));
    if sources.contains(&TenantSource::Subdomain) && base_domains.is_empty() {
        return Err(FieldError::new(
            "tenant.base_domains",
            "[]",
            "the subdomain source needs at least one base domain",
        ));
    }
    let header = match &raw.tenant.header {
        None => None,
        Some(h) => {
            let name =
                HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    FieldError::new("tenant.header.name", &h.name, "not a valid header name")
                })?;
            let trusted = super::server::nets("tenant.header.trusted_sources", &h.trusted_sources)?;
            Some(TenantHeaderConfig {
                name,
                trusted_sources: trusted,
            })
        }
    };
    if sources.contains(&TenantSource::Header) {
        match &header {
            None => {
                return Err(FieldError::new(
                    "tenant.sources",
                    "header",
                    "the header source needs a [tenant.header] table",
                ));
            }
            Some(h) if h.trusted_sources.is_empty() => {
                return Err(FieldError::new(
                    "tenant.header.trusted_sources",
                    "[]",
                    "a tenant header is only accepted from trusted sources; list at least one CIDR",
                ));
            }
            Some(_) => {}
        }
    }
    let migrating_refuses_all = match raw.tenant.migrating_refuses.as_deref().unwrap_or("writes") {
        "writes" => false,
        "all" => true,
        other => {
            return Err(FieldError::new(
                "tenant.migrating_refuses",
                other,
                "expected \"writes\" (reads pass) or \"all\"",
            ));
        }
    };
    Ok(TenantConfig {
        sources,
        base_domains,
        header,
        route_policy: crate::routing::RoutePolicy {
            migrating_refuses_all,
        },
    })
}

fn build_registry(reg: Option<&FileRegistry>, base: &Path) -> Result<RegistryConfig, FieldError> {
    let Some(reg) = reg else {
        return Err(FieldError::new(
            "registry",
            "(missing)",
            "a [registry] table is required, e.g. source = \"file\"",
        ));
    };
    let poll_interval = dur(
        "registry.poll_interval",
        reg.poll_interval.as_ref(),
        Duration::from_millis(if reg.source == "file" { 500 } else { 250 }),
    )?;
    if poll_interval < Duration::from_millis(10) || poll_interval > Duration::from_secs(3600) {
        return Err(FieldError::new(
            "registry.poll_interval",
            humantime::format_duration(poll_interval),
            "must be between 10ms and 1h",
        ));
    }
    let full_refresh = dur(
        "registry.full_refresh",
        reg.full_refresh.as_ref(),
        Duration::from_secs(if reg.source == "file" { 60 } else { 300 }),
    )?;
    if full_refresh < Duration::from_secs(1) || full_refresh > Duration::from_secs(86_400) {
        return Err(FieldError::new(
            "registry.full_refresh",
            humantime::format_duration(full_refresh),
            "must be between 1s and 24h",
        ));
    }
    let only = |key: &str, set: bool, source: &str| {
        if set {
            Err(FieldError::new(
                format!("registry.{key}"),
                "(set)",
                format!("not used by source = \"{source}\""),
            ))
        } else {
            Ok(())
        }
    };
    match reg.source.as_str() {
        "file" => {
            for (key, set) in [
                ("table", reg.table.is_some()),
                ("region", reg.region.is_some()),
                ("endpoint_url", reg.endpoint_url.is_some()),
                ("scan_segments", reg.scan_segments.is_some()),
                ("scan_page_size", reg.scan_page_size.is_some()),
            ] {
                only(key, set, "file")?;
            }
            let p = reg.path.as_deref().unwrap_or("registry.toml");
            Ok(RegistryConfig::File {
                path: resolve(base, p),
                poll_interval,
                full_refresh,
            })
        }
        "dynamodb" => {
            only("path", reg.path.is_some(), "dynamodb")?;
            let Some(table) = reg.table.clone() else {
                return Err(FieldError::new(
                    "registry.table",
                    "(missing)",
                    "the DynamoDB table name (or CELLGATE_REGISTRY_TABLE)",
                ));
            };
            let valid_table = (3..=255).contains(&table.len())
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !valid_table {
                return Err(FieldError::new(
                    "registry.table",
                    &table,
                    "DynamoDB table names are 3-255 characters of A-Z a-z 0-9 _ - .",
                ));
            }
            if let Some(u) = &reg.endpoint_url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(FieldError::new(
                    "registry.endpoint_url",
                    u,
                    "an http(s) URL, e.g. http://127.0.0.1:8000",
                ));
            }
            let scan_segments = reg.scan_segments.unwrap_or(4);
            if !(1..=64).contains(&scan_segments) {
                return Err(FieldError::new(
                    "registry.scan_segments",
                    scan_segments,
                    "must be between 1 and 64",
                ));
            }
            if reg.scan_page_size == Some(0) {
                return Err(FieldError::new(
                    "registry.scan_page_size",
                    0,
                    "must be at least 1 (leave it out to page at 1 MB)",
                ));
            }
            Ok(RegistryConfig::Dynamo {
                settings: crate::placement::dynamo::DynamoSettings {
                    table,
                    region: reg.region.clone(),
                    endpoint_url: reg.endpoint_url.clone(),
                    scan_segments,
                    scan_page_size: reg.scan_page_size,
                },
                poll_interval,
                full_refresh,
            })
        }
        other => Err(FieldError::new(
            "registry.source",
            other,
            "expected \"file\" or \"dynamodb\"",
        )),
    }
}

fn build_lookup(
    reg: Option<&FileRegistry>,
    registry: &RegistryConfig,
) -> Result<LookupConfig, FieldError> {
    let dynamo = matches!(registry, RegistryConfig::Dynamo { .. });
    let (rate, burst, ttl, capacity, unknown) = reg.map_or((None, None, None, None, None), |r| {
        (
            r.lookup_rate,
            r.lookup_burst,
            r.negative_ttl.as_ref(),
            r.negative_capacity,
            r.lookup_unknown,
        )
    });
    let rate = rate.unwrap_or(20.0);
    if !(0.1..=10_000.0).contains(&rate) {
        return Err(FieldError::new(
            "registry.lookup_rate",
            rate,
            "registry reads per second for unknown tenants: 0.1 to 10000",
        ));
    }
    let burst = burst.unwrap_or(rate * 2.0);
    if !(1.0..=100_000.0).contains(&burst) {
        return Err(FieldError::new(
            "registry.lookup_burst",
            burst,
            "must be between 1 and 100000",
        ));
    }
    let negative_ttl = dur("registry.negative_ttl", ttl, Duration::from_secs(5))?;
    if negative_ttl < Duration::from_millis(100) || negative_ttl > Duration::from_secs(3600) {
        return Err(FieldError::new(
            "registry.negative_ttl",
            humantime::format_duration(negative_ttl),
            "must be between 100ms and 1h",
        ));
    }
    let negative_capacity = capacity.unwrap_or(100_000);
    if !(1..=10_000_000).contains(&negative_capacity) {
        return Err(FieldError::new(
            "registry.negative_capacity",
            negative_capacity,
            "must be between 1 and 10000000",
        ));
    }
    Ok(LookupConfig {
        unknown: unknown.unwrap_or(dynamo),
        settings: crate::placement::lookup::LookupSettings {
            rate,
            burst,
            negative_ttl,
            negative_capacity,
        },
    })
}
