//! `[tenant]`: where tenant ids come from (`sources`, `base_domains`, a trusted `[tenant.header]`)
//! and what a MIGRATING tenant is refused.

use http::HeaderName;
use ipnet::IpNet;

use super::file::FileConfig;
use super::server::nets;
use crate::rules::FieldError;
use crate::tenant::TenantSource;

#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// Sources in precedence order.
    pub sources: Vec<TenantSource>,
    /// Lower-case, without a leading dot, longest first (so the most specific one matches).
    pub base_domains: Vec<String>,
    pub header: Option<TenantHeaderConfig>,
    /// What a MIGRATING tenant is refused (`tenant.migrating_refuses`).
    pub route_policy: RoutePolicy,
}

#[derive(Debug, Clone)]
pub struct TenantHeaderConfig {
    pub name: HeaderName,
    pub trusted_sources: Vec<IpNet>,
}

/// Operator choices the route decision honours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// Refuse every request of a MIGRATING tenant, not only the non-safe methods.
    pub migrating_refuses_all: bool,
}

pub(super) fn build_tenant(raw: &FileConfig) -> Result<TenantConfig, FieldError> {
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
            let trusted = nets("tenant.header.trusted_sources", &h.trusted_sources)?;
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
        route_policy: RoutePolicy {
            migrating_refuses_all,
        },
    })
}
