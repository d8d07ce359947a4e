//! The validated runtime [`Config`] and the conversion from [`FileConfig`]: listeners, admin,
//! and the assembly of every section's own builder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::HeaderName;

use super::ServerConfig;
use super::auth::build_auth;
use super::file::{FileCell, FileConfig};
use super::logs::{AccessLogConfig, LogConfig, build_access_log, build_log};
use super::parse::parse_addr;
use super::registry::{LookupConfig, RegistryConfig, build_lookup, build_registry};
use super::tenant::{TenantConfig, build_tenant};
use super::tls::{ListenerTls, build_listener_tls};
use crate::auth::AuthConfig;
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
    /// Which routes need which entitlement (`[entitlements]`).
    pub entitlements: super::EntitlementsConfig,
    pub registry: RegistryConfig,
    /// On-demand lookups and forced re-reads (`registry.lookup_*`, `registry.negative_*`).
    pub lookup: LookupConfig,
    /// Cells defined in the config file, as written (ids unique); the server builds them at
    /// start-up, and [`crate::config`]'s callers check them with the preflight. A registry
    /// cell with the same id wins.
    pub cells: Vec<FileCell>,
    /// Rate-limit tiers, route classes and cell caps (`[limits]`).
    pub limits: super::LimitsConfig,
    pub upstream: super::UpstreamConfig,
    /// Client-supplied headers removed before forwarding, on top of the built-in internal ones.
    pub strip_headers: Vec<HeaderName>,
    pub access_log: AccessLogConfig,
    /// Usage per tenant per window, to a sink (`[metering]`; `None`: off).
    pub metering: Option<super::MeteringConfig>,
    /// Spans to an OTLP/HTTP endpoint (`[tracing]`; `None`: off).
    pub tracing: Option<super::TracingConfig>,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    /// Connections from `server.trusted_hops` start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// TLS termination (`[listeners.tls]`); its certificates are loaded by the preflight.
    pub tls: Option<ListenerTls>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub address: SocketAddr,
    /// Connections from `server.trusted_hops` start with a PROXY protocol header (an NLB's
    /// health checks); anyone else is served as they come.
    pub proxy_protocol: bool,
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
            .map(|t| build_listener_tls(i, t, base))
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
    if raw.admin.proxy_protocol && server.trusted_hops.is_empty() {
        return Err(FieldError::new(
            "admin.proxy_protocol",
            true,
            "needs server.trusted_hops: the header is only read from them",
        ));
    }
    let admin = AdminConfig {
        address: parse_addr(
            "admin.address",
            raw.admin.address.as_deref().unwrap_or("127.0.0.1:9090"),
        )?,
        proxy_protocol: raw.admin.proxy_protocol,
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
    let entitlements = super::build_entitlements(raw.entitlements.as_ref())?;
    auth.scope_claim.clone_from(&entitlements.token_scope_claim);

    let registry = build_registry(raw.registry.as_ref(), base)?;
    let lookup = build_lookup(raw.registry.as_ref(), &registry)?;
    for (i, c) in raw.cells.iter().enumerate() {
        if raw.cells[..i].iter().any(|known| known.id == c.id) {
            return Err(FieldError::new(
                format!("cells[{i}].id"),
                &c.id,
                "duplicate cell id",
            ));
        }
    }

    let upstream = super::upstream::build_upstream(&raw.upstream, base)?;
    let mut strip_headers = Vec::with_capacity(raw.headers.strip.len());
    for (i, h) in raw.headers.strip.iter().enumerate() {
        let name = HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).map_err(|_| {
            FieldError::new(format!("headers.strip[{i}]"), h, "not a valid header name")
        })?;
        strip_headers.push(name);
    }

    let access_log = build_access_log(&raw.access_log)?;
    let log = build_log(&raw.log)?;
    let metering = super::build_metering(raw.metering.as_ref(), base)?;
    let tracing = super::build_tracing(raw.tracing.as_ref())?;

    Ok(Config {
        source_path: path.to_path_buf(),
        server,
        listeners,
        admin,
        tenant,
        auth,
        canary,
        entitlements,
        registry,
        lookup,
        cells: raw.cells,
        limits: super::build_limits(raw.limits.as_ref(), base)?,
        upstream,
        strip_headers,
        access_log,
        metering,
        tracing,
        log,
    })
}
