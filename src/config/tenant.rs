//! `[tenant]`: where tenant ids come from (`sources`, `base_domains`, a trusted `[tenant.header]`,
//! API keys under `[tenant.api_key]`) and what a MIGRATING tenant is refused.

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
    /// Where API keys are read (set when `tenant.sources` lists `api_key`).
    pub api_key: Option<ApiKeyConfig>,
}

/// `[tenant.api_key]`, validated.
#[derive(Debug, Clone)]
pub struct ApiKeyConfig {
    /// The header carrying the key; `Authorization: ApiKey <key>` is read too.
    pub header: HeaderName,
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
            "name at least one of \"jwt\", \"subdomain\", \"header\", \"api_key\"",
        ));
    }
    let mut sources = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let key = format!("tenant.sources[{i}]");
        let s = match n.as_str() {
            "jwt" => TenantSource::Jwt,
            "subdomain" => TenantSource::Subdomain,
            "header" => TenantSource::Header,
            "api_key" => TenantSource::ApiKey,
            other => {
                return Err(FieldError::new(
                    key,
                    other,
                    "expected \"jwt\", \"subdomain\", \"header\" or \"api_key\"",
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
    let api_key = build_api_key(raw, &sources, header.as_ref())?;
    Ok(TenantConfig {
        sources,
        base_domains,
        header,
        api_key,
        route_policy: RoutePolicy {
            migrating_refuses_all,
        },
    })
}

fn build_api_key(
    raw: &FileConfig,
    sources: &[TenantSource],
    tenant_header: Option<&TenantHeaderConfig>,
) -> Result<Option<ApiKeyConfig>, FieldError> {
    let listed = sources.contains(&TenantSource::ApiKey);
    let table = raw.tenant.api_key.as_ref();
    if !listed {
        return match table {
            Some(_) => Err(FieldError::new(
                "tenant.api_key",
                "(table)",
                "configures the api_key source, which tenant.sources does not list",
            )),
            None => Ok(None),
        };
    }
    let text = table
        .and_then(|t| t.header.as_deref())
        .unwrap_or("x-api-key");
    let header = HeaderName::from_bytes(text.to_ascii_lowercase().as_bytes())
        .map_err(|_| FieldError::new("tenant.api_key.header", text, "not a valid header name"))?;
    let reserved = header == http::header::AUTHORIZATION
        || header == http::header::HOST
        || crate::headers::INTERNAL.contains(&header)
        || tenant_header.is_some_and(|h| h.name == header);
    if reserved {
        return Err(FieldError::new(
            "tenant.api_key.header",
            text,
            "is a header the proxy reads or sets for another purpose",
        ));
    }
    Ok(Some(ApiKeyConfig { header }))
}
