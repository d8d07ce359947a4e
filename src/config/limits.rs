//! `[limits]`, validated: rate-limit tiers, route classes, per-cell in-flight caps, and the
//! bound on limiter state.
//!
//! A tier has a `rate` (requests per second per tenant: per proxy node, or fleet-wide with
//! `[limits.fleet]`) with a `burst` (most
//! requests admitted at once; default one second's worth) and/or a `concurrency` (requests in
//! flight at once). Records name their tier; a record naming no configured tier gets
//! `default_tier`. Route classes add a stricter rate for matching requests (by method and/or
//! path prefix), optionally only for some tiers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use http::Method;

use super::file::{FileLimits, FileRouteClass, FileTier};
use super::fleet::{FleetConfig, build_fleet};
use super::parse::{dur, dur_in_range};
use crate::rules::FieldError;
use crate::rules::{MAX_ROUTE_CLASSES, MAX_TIERS, MIN_RATE, default_burst, valid_tier};

const MAX_RATE: f64 = 1_000_000.0;

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Sorted by name.
    pub tiers: Vec<TierConfig>,
    /// Index into `tiers` for records naming no configured tier (0 when there are none).
    pub default_tier: usize,
    pub routes: Vec<RouteClassConfig>,
    /// Limiter state entries kept (tenants plus tenant x route class), at most.
    pub max_tenants: usize,
    /// Default in-flight cap per cell; a cell's own `max_in_flight` wins.
    pub cell_max_in_flight: Option<u32>,
    /// How often idle limiter state is forgotten.
    pub sweep_interval: Duration,
    /// Fleet-wide limits on Redis/Valkey (`[limits.fleet]`); `None`: limits are per node.
    pub fleet: Option<FleetConfig>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            tiers: Vec::new(),
            default_tier: 0,
            routes: Vec::new(),
            max_tenants: 1 << 20,
            cell_max_in_flight: None,
            sweep_interval: Duration::from_secs(10),
            fleet: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TierConfig {
    pub name: String,
    pub rate: Option<f64>,
    pub burst: Option<u32>,
    pub concurrency: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteClassConfig {
    pub name: String,
    /// Empty: any method.
    pub methods: Vec<Method>,
    pub path_prefix: Option<String>,
    pub rate: f64,
    pub burst: u32,
    /// Indexes of the tiers it applies to; empty: every tier.
    pub tiers: Vec<usize>,
}

fn check_rate(key: &str, rate: f64) -> Result<f64, FieldError> {
    if rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(FieldError::new(
            key,
            rate,
            "requests per second: between 0.001 and 1000000",
        ))
    }
}

fn check_count(key: &str, v: u32) -> Result<u32, FieldError> {
    if (1..=1_000_000).contains(&v) {
        Ok(v)
    } else {
        Err(FieldError::new(key, v, "between 1 and 1000000"))
    }
}

fn tier(name: &str, t: &FileTier) -> Result<TierConfig, FieldError> {
    let key = format!("limits.tiers.{name}");
    if !valid_tier(name) {
        return Err(FieldError::new(
            key,
            name,
            "tier names are 1-32 characters of A-Z a-z 0-9 _ -",
        ));
    }
    let rate = t
        .rate
        .map(|r| check_rate(&format!("{key}.rate"), r))
        .transpose()?;
    let burst = t
        .burst
        .map(|b| check_count(&format!("{key}.burst"), b))
        .transpose()?;
    if burst.is_some() && rate.is_none() {
        return Err(FieldError::new(
            format!("{key}.burst"),
            burst.unwrap_or(0),
            "a burst needs a rate",
        ));
    }
    let concurrency = t
        .concurrency
        .map(|c| check_count(&format!("{key}.concurrency"), c))
        .transpose()?;
    Ok(TierConfig {
        name: name.to_owned(),
        rate,
        burst,
        concurrency,
    })
}

fn route_class(
    i: usize,
    r: &FileRouteClass,
    tiers: &[TierConfig],
) -> Result<RouteClassConfig, FieldError> {
    let key = format!("limits.routes[{i}]");
    if !valid_tier(&r.name) {
        return Err(FieldError::new(
            format!("{key}.name"),
            &r.name,
            "route class names are 1-32 characters of A-Z a-z 0-9 _ -",
        ));
    }
    let mut methods = Vec::with_capacity(r.methods.len());
    for (j, m) in r.methods.iter().enumerate() {
        let upper = m.to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(m) => methods.push(m),
            Err(_) => {
                return Err(FieldError::new(
                    format!("{key}.methods[{j}]"),
                    m,
                    "not an HTTP method",
                ));
            }
        }
    }
    if let Some(p) = &r.path_prefix
        && !p.starts_with('/')
    {
        return Err(FieldError::new(
            format!("{key}.path_prefix"),
            p,
            "a path prefix starts with /",
        ));
    }
    if methods.is_empty() && r.path_prefix.is_none() {
        return Err(FieldError::new(
            key,
            &r.name,
            "a route class needs `methods`, `path_prefix`, or both",
        ));
    }
    let rate = check_rate(&format!("{key}.rate"), r.rate)?;
    let burst = match r.burst {
        Some(b) => check_count(&format!("{key}.burst"), b)?,
        None => default_burst(rate),
    };
    let mut idx = Vec::with_capacity(r.tiers.len());
    for (j, t) in r.tiers.iter().enumerate() {
        match tiers.iter().position(|c| &c.name == t) {
            Some(n) => idx.push(n),
            None => {
                return Err(FieldError::new(
                    format!("{key}.tiers[{j}]"),
                    t,
                    "no such tier under [limits.tiers]",
                ));
            }
        }
    }
    Ok(RouteClassConfig {
        name: r.name.clone(),
        methods,
        path_prefix: r.path_prefix.clone(),
        rate,
        burst,
        tiers: idx,
    })
}

/// Builds [`LimitsConfig`] from `[limits]` (absent: no tenant limits, no cell caps).
pub fn build_limits(raw: Option<&FileLimits>, base: &Path) -> Result<LimitsConfig, FieldError> {
    let Some(raw) = raw else {
        return Ok(LimitsConfig::default());
    };
    let sorted: BTreeMap<&String, &FileTier> = raw.tiers.iter().collect();
    if sorted.len() > MAX_TIERS {
        return Err(FieldError::new(
            "limits.tiers",
            sorted.len(),
            format!("at most {MAX_TIERS} tiers"),
        ));
    }
    let tiers = sorted
        .into_iter()
        .map(|(name, t)| tier(name, t))
        .collect::<Result<Vec<_>, _>>()?;
    let default_tier = match raw.default_tier.as_deref() {
        Some(name) => tiers.iter().position(|t| t.name == name).ok_or_else(|| {
            FieldError::new("limits.default_tier", name, "no such tier under [limits.tiers]")
        })?,
        None if tiers.is_empty() => 0,
        None => tiers.iter().position(|t| t.name == "standard").ok_or_else(|| {
            FieldError::new(
                "limits.default_tier",
                "(unset)",
                "required when no tier is called `standard`: the tier for records naming an unknown one",
            )
        })?,
    };
    if raw.routes.len() > MAX_ROUTE_CLASSES {
        return Err(FieldError::new(
            "limits.routes",
            raw.routes.len(),
            format!("at most {MAX_ROUTE_CLASSES} route classes"),
        ));
    }
    if !raw.routes.is_empty() && tiers.is_empty() {
        return Err(FieldError::new(
            "limits.routes[0].name",
            &raw.routes[0].name,
            "route classes apply to tenants of a tier: define [limits.tiers] too",
        ));
    }
    let routes = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route_class(i, r, &tiers))
        .collect::<Result<Vec<_>, _>>()?;
    let max_tenants = raw.max_tenants.unwrap_or(1 << 20);
    if !(64..=100_000_000).contains(&max_tenants) {
        return Err(FieldError::new(
            "limits.max_tenants",
            max_tenants,
            "between 64 and 100000000",
        ));
    }
    let cell_max_in_flight = match raw.cell_max_in_flight {
        None | Some(0) => None,
        Some(n) => Some(check_count("limits.cell_max_in_flight", n)?),
    };
    let sweep_interval = dur(
        "limits.sweep_interval",
        raw.sweep_interval.as_ref(),
        Duration::from_secs(10),
    )?;
    dur_in_range(
        "limits.sweep_interval",
        sweep_interval,
        Duration::from_millis(100),
        Duration::from_secs(3600),
    )?;
    Ok(LimitsConfig {
        tiers,
        default_tier,
        routes,
        max_tenants,
        cell_max_in_flight,
        sweep_interval,
        fleet: build_fleet(raw.fleet.as_ref(), base)?,
    })
}
