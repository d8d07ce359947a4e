//! `[entitlements]`: which routes need which entitlement (`[[entitlements.routes]]`), and the
//! token claim whose scopes may narrow it (`token_scope_claim`).
//!
//! A route names an entitlement and a path, either a prefix by whole segments (`path_prefix =
//! "/v1/billing"` covers `/v1/billing` and `/v1/billing/x`, not `/v1/billings`) or one exact
//! path (`path`), optionally limited to some methods. Paths are compared canonically and
//! ignoring case ([`crate::paths`]). The stage itself is [`crate::entitle`].

use http::Method;
use serde::Deserialize;

use crate::auth::ClaimPath;
use crate::rules::{ENTITLEMENT_RULE, FieldError, valid_entitlement};

/// Routes beyond this many are refused (the table is for product features, not every path).
pub const MAX_ROUTES: usize = 1_000;

/// `[entitlements]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntitlements {
    pub token_scope_claim: Option<String>,
    #[serde(default)]
    pub routes: Vec<FileEntitlementRoute>,
}

/// One `[[entitlements.routes]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntitlementRoute {
    pub entitlement: String,
    #[serde(default)]
    pub methods: Vec<String>,
    pub path_prefix: Option<String>,
    pub path: Option<String>,
}

/// What a route's path covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePath {
    /// This path and everything below it, by whole segments.
    Prefix(String),
    /// This path only.
    Exact(String),
}

/// One validated route.
#[derive(Debug, Clone)]
pub struct EntitlementRoute {
    pub entitlement: String,
    /// Empty: every method.
    pub methods: Vec<Method>,
    pub path: RoutePath,
}

/// The validated `[entitlements]` section (empty when absent: nothing is required).
#[derive(Debug, Clone, Default)]
pub struct EntitlementsConfig {
    pub routes: Vec<EntitlementRoute>,
    /// A verified token's claim listing its scopes (a space-separated string, as OAuth's
    /// `scope`, or a list of strings, as `scp`); when the token carries it, a route's
    /// entitlement must be among them too.
    pub token_scope_claim: Option<ClaimPath>,
}

/// Validates `[entitlements]`.
pub fn build_entitlements(
    raw: Option<&FileEntitlements>,
) -> Result<EntitlementsConfig, FieldError> {
    let Some(raw) = raw else {
        return Ok(EntitlementsConfig::default());
    };
    let token_scope_claim = raw
        .token_scope_claim
        .as_deref()
        .map(|c| {
            ClaimPath::parse(c)
                .map_err(|reason| FieldError::new("entitlements.token_scope_claim", c, reason))
        })
        .transpose()?;
    if raw.routes.len() > MAX_ROUTES {
        return Err(FieldError::new(
            "entitlements.routes",
            raw.routes.len(),
            format!("at most {MAX_ROUTES} routes"),
        ));
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        routes.push(build_route(&format!("entitlements.routes[{i}]"), r)?);
    }
    Ok(EntitlementsConfig {
        routes,
        token_scope_claim,
    })
}

fn build_route(key: &str, r: &FileEntitlementRoute) -> Result<EntitlementRoute, FieldError> {
    if !valid_entitlement(&r.entitlement) {
        return Err(FieldError::new(
            format!("{key}.entitlement"),
            &r.entitlement,
            ENTITLEMENT_RULE,
        ));
    }
    let mut methods = Vec::with_capacity(r.methods.len());
    for (j, m) in r.methods.iter().enumerate() {
        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) if !methods.contains(&m) => methods.push(m),
            Ok(_) => {
                return Err(FieldError::new(
                    format!("{key}.methods[{j}]"),
                    m,
                    "listed twice",
                ));
            }
            Err(_) => {
                return Err(FieldError::new(
                    format!("{key}.methods[{j}]"),
                    m,
                    "not an HTTP method",
                ));
            }
        }
    }
    let path = match (&r.path_prefix, &r.path) {
        (Some(p), None) => RoutePath::Prefix(checked_path(&format!("{key}.path_prefix"), p)?),
        (None, Some(p)) => RoutePath::Exact(checked_path(&format!("{key}.path"), p)?),
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                key,
                "path_prefix and path",
                "a route names `path_prefix` or `path`, not both",
            ));
        }
        (None, None) => {
            return Err(FieldError::new(
                key,
                "(no path)",
                "a route names `path_prefix` (this path and below) or `path` (this path only)",
            ));
        }
    };
    Ok(EntitlementRoute {
        entitlement: r.entitlement.clone(),
        methods,
        path,
    })
}

fn checked_path(key: &str, p: &str) -> Result<String, FieldError> {
    if !p.starts_with('/') {
        return Err(FieldError::new(key, p, "a path starts with /"));
    }
    if p.bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
    {
        return Err(FieldError::new(
            key,
            p,
            "a path has no spaces, control characters, query or fragment",
        ));
    }
    Ok(p.to_owned())
}
