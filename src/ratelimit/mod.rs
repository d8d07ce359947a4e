//! The *admit* stage: per-tenant rate and in-flight limits by tier, route-class limits, and a
//! per-cell in-flight cap that sheds load before a cell drowns.
//!
//! A tenant's limits come from data: its registry record names a tier (configured under
//! `[limits.tiers]`) and may override the tier's `rate`, `burst` and `concurrency`. Each check
//! is a GCRA charge ([`gcra`]) and/or an in-flight count in a bounded [`store`], behind the
//! [`LimitStore`] seam so a fleet-wide store can replace the per-node one. The stage runs after
//! placement (unknown tenants never take state) and before forwarding; it returns a [`Permit`]
//! that holds the in-flight places until the response body ends, fails, or is abandoned.
//!
//! Without `[limits.fleet]` limits are per node: with N proxies behind a load balancer, a tenant
//! may send up to N times its tier's rate in total. With it, [`fleet::FleetStore`] makes a
//! tenant's rate fleet-wide (reconciled through Redis off the request path); in-flight limits
//! and route classes stay per node.

mod clock;
mod debt;
pub mod fleet;
pub mod gcra;
mod route;
mod store;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{HeaderValue, Method};

pub use crate::paths::{canonical_path, prefix_matches};
pub use clock::{Clock, ManualClock, MonotonicClock, ceil_secs};
pub use gcra::{Charge, Gcra};
pub use store::{Hold, Key, LimitStore, LocalStore, Release, StoreRefusal};

use route::RouteClass;

use crate::config::LimitsConfig;
use crate::metrics::{CellMetrics, LimitKind};
use crate::rules::default_burst;

/// Rate-limit overrides a tenant record carries (all optional); each set field wins over the
/// tenant's tier.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TenantLimits {
    /// Requests per second.
    pub rate: Option<f64>,
    /// Requests allowed above the rate in a burst.
    pub burst: Option<u32>,
    /// Requests in flight at once.
    pub concurrency: Option<u32>,
}

impl TenantLimits {
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.rate.is_none() && self.burst.is_none() && self.concurrency.is_none()
    }
}

/// The tier a request was judged under (for metrics: an index and its configured name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRef {
    pub index: usize,
    pub name: Arc<str>,
}

/// The rate a refusal was made under, for the `RateLimit-Policy` and `RateLimit` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The tier's or the route class's name.
    pub name: Arc<str>,
    pub rate: Gcra,
}

impl Policy {
    /// `"name";q=Q;w=W`: the sustained rate as a quota per window, in whole requests per whole
    /// seconds, with the smallest window that says it exactly (`q=50;w=1`, `q=3;w=2` for
    /// 1.5/s, `q=1;w=10` for 0.1/s; a rate no window up to a minute expresses is rounded down
    /// to whole requests per second, or to one request per whole seconds below 1/s).
    #[must_use]
    pub fn policy_header(&self) -> HeaderValue {
        let (q, w) = quota_window(self.rate.rate());
        header(&format!("\"{}\";q={q};w={w}", self.name))
    }

    /// `"name";r=0;t=T`: nothing left, next request admitted in `T` seconds.
    #[must_use]
    pub fn state_header(&self, wait: u64) -> HeaderValue {
        header(&format!(
            "\"{}\";r=0;t={}",
            self.name,
            ceil_secs(wait).max(1)
        ))
    }
}

/// The quota and window (seconds) that express `rate` requests per second.
fn quota_window(rate: f64) -> (u64, u64) {
    for w in 1..=60u64 {
        let q = rate * w as f64;
        if q >= 1.0 && (q - q.round()).abs() <= 1e-6 * q {
            return (q.round() as u64, w);
        }
    }
    if rate >= 1.0 {
        (rate.floor() as u64, 1)
    } else {
        (1, (1.0 / rate).round().max(1.0) as u64)
    }
}

/// Names are `[A-Za-z0-9_-]` (checked by config), so this never fails in practice.
fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("\"limit\""))
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    /// Over the tenant's (or its route class's) rate: 429.
    #[error("over the {} rate of tier {}", policy.name, tier.name)]
    Rate {
        tier: TierRef,
        kind: LimitKind,
        policy: Policy,
        /// Nanoseconds until a request would be admitted.
        wait: u64,
    },
    /// The tenant has its maximum of requests in flight: 429.
    #[error("too many requests in flight for tier {}", tier.name)]
    Concurrency { tier: TierRef },
    /// The cell has its maximum of requests in flight: 503.
    #[error("cell {0} is at its in-flight cap")]
    CellOverloaded(Arc<str>),
}

impl Limited {
    /// The tier and limit, for the rejections metric (cell overload is counted by outcome).
    #[must_use]
    pub fn tier(&self) -> Option<(&TierRef, LimitKind)> {
        match self {
            Self::Rate { tier, kind, .. } => Some((tier, *kind)),
            Self::Concurrency { tier } => Some((tier, LimitKind::Concurrency)),
            Self::CellOverloaded(_) => None,
        }
    }
}

/// In-flight places held for one admitted request; dropping it gives them back.
#[derive(Debug, Default)]
pub struct Permit {
    tenant: Hold,
    cell: Option<Arc<CellMetrics>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(cm) = self.cell.take() {
            cm.in_flight.dec();
        }
    }
}

/// The limits that apply to one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective<'a> {
    /// Index of the tier applied (the default tier for an unknown name).
    pub index: usize,
    pub tier: &'a Arc<str>,
    pub rate: Option<Gcra>,
    pub concurrency: Option<u32>,
}

impl Effective<'_> {
    fn tier_ref(&self) -> TierRef {
        TierRef {
            index: self.index,
            name: Arc::clone(self.tier),
        }
    }
}

/// What the admit stage knows about a request.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub tenant: &'a str,
    /// The tier the tenant's record names (the default tier applies to an unknown name).
    pub tier: &'a str,
    pub overrides: TenantLimits,
    pub method: &'a Method,
    pub path: &'a str,
}

/// The cell a request is admitted into: its id (named in a refusal) and its own in-flight cap
/// (`None`: `limits.cell_max_in_flight` applies).
#[derive(Debug, Clone, Copy)]
pub struct CellCap<'a> {
    pub id: &'a Arc<str>,
    pub max_in_flight: Option<u32>,
}

#[derive(Debug)]
struct Tier {
    name: Arc<str>,
    rate: Option<Gcra>,
    concurrency: Option<u32>,
}

/// The admit stage's state: tiers, route classes, cell caps, a store and a clock.
#[derive(Debug)]
pub struct Limiter {
    tiers: Box<[Tier]>,
    default_tier: usize,
    routes: Box<[RouteClass]>,
    cell_max_in_flight: Option<u32>,
    store: Arc<dyn LimitStore>,
    clock: Arc<dyn Clock>,
}

impl Limiter {
    #[must_use]
    pub fn new(config: &LimitsConfig, store: Arc<dyn LimitStore>, clock: Arc<dyn Clock>) -> Self {
        let tiers = config
            .tiers
            .iter()
            .map(|t| Tier {
                name: Arc::from(t.name.as_str()),
                rate: t
                    .rate
                    .map(|r| Gcra::new(r, t.burst.unwrap_or_else(|| default_burst(r)))),
                concurrency: t.concurrency,
            })
            .collect();
        Self {
            tiers,
            default_tier: config.default_tier,
            routes: config.routes.iter().map(RouteClass::from_config).collect(),
            cell_max_in_flight: config.cell_max_in_flight,
            store,
            clock,
        }
    }

    /// The store's keys held now.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.store.tracked()
    }

    /// The fleet-wide store's state (`None`: limits are per node).
    #[must_use]
    pub fn fleet(&self) -> Option<fleet::FleetStatus> {
        self.store.fleet()
    }

    /// Forgets idle state; run periodically.
    pub fn sweep(&self) -> usize {
        self.store.sweep(self.clock.now())
    }

    fn tier_index(&self, name: &str) -> usize {
        self.tiers
            .iter()
            .position(|t| &*t.name == name)
            .unwrap_or(self.default_tier)
    }

    /// The limits that apply to a tenant of tier `tier` with `overrides` (`None` without tiers):
    /// each override field wins over the tier's; a rate without a burst keeps the tier's burst,
    /// else one second's worth.
    #[must_use]
    pub fn effective(&self, tier: &str, o: TenantLimits) -> Option<Effective<'_>> {
        let index = self.tier_index(tier);
        let t = self.tiers.get(index)?;
        let rate = if o.rate.is_none() && o.burst.is_none() {
            t.rate
        } else {
            o.rate.or(t.rate.map(|g| g.rate())).map(|r| {
                let burst = o
                    .burst
                    .or(t.rate.map(|g| u32::try_from(g.burst()).unwrap_or(u32::MAX)));
                Gcra::new(r, burst.unwrap_or_else(|| default_burst(r)))
            })
        };
        Some(Effective {
            index,
            tier: &t.name,
            rate,
            concurrency: o.concurrency.or(t.concurrency),
        })
    }

    /// Admits one request to `cell` or says which limit refuses it. Order: the tenant's
    /// in-flight limit and rate, every matching route class's rate, then the cell's in-flight
    /// cap. A refusal undoes what the earlier checks took: a refused request costs the tenant
    /// nothing, and a tenant held at its own limits never takes a place under the cell's cap.
    pub fn admit(
        &self,
        ask: &Ask<'_>,
        cell: &CellCap<'_>,
        cm: &Arc<CellMetrics>,
    ) -> Result<Permit, Limited> {
        let mut permit = Permit::default();
        let mut charged = Charged::default();
        if let Some(eff) = self.effective(ask.tier, ask.overrides) {
            let now = self.clock.now();
            permit.tenant = self.admit_tenant(ask, &eff, now, &mut charged)?;
        }
        let cap = cell.max_in_flight.or(self.cell_max_in_flight);
        if !take_place(&cm.in_flight, cap) {
            self.refund(ask.tenant, &charged);
            return Err(Limited::CellOverloaded(Arc::clone(cell.id)));
        }
        permit.cell = Some(Arc::clone(cm));
        Ok(permit)
    }

    /// The tenant's own limits and its route classes'; `charged` records what was taken.
    fn admit_tenant(
        &self,
        ask: &Ask<'_>,
        eff: &Effective<'_>,
        now: u64,
        charged: &mut Charged,
    ) -> Result<Hold, Limited> {
        let mut hold = Hold::default();
        charged.tier = eff.index;
        if eff.rate.is_some() || eff.concurrency.is_some() {
            let key = Key {
                tenant: ask.tenant,
                class: 0,
                tier: eff.index,
            };
            match self
                .store
                .acquire(key, eff.rate.as_ref(), eff.concurrency, now)
            {
                Ok(h) => hold = h,
                Err(StoreRefusal::InFlight) => {
                    return Err(Limited::Concurrency {
                        tier: eff.tier_ref(),
                    });
                }
                Err(StoreRefusal::Rate { wait }) => {
                    return Err(Limited::Rate {
                        tier: eff.tier_ref(),
                        kind: LimitKind::Rate,
                        policy: Policy {
                            name: Arc::clone(eff.tier),
                            // The store refuses on rate only when it was given one.
                            rate: eff.rate.unwrap_or_else(|| Gcra::new(1.0, 1)),
                        },
                        wait,
                    });
                }
            }
            charged.tenant = eff.rate;
            charged.now = now;
        }
        for (i, class) in self.routes.iter().enumerate() {
            if !class.matches(eff.index, ask.method, ask.path) {
                continue;
            }
            let key = Key {
                tenant: ask.tenant,
                class: class_tag(i),
                tier: eff.index,
            };
            if let Err(StoreRefusal::Rate { wait }) =
                self.store.acquire(key, Some(&class.rate), None, now)
            {
                charged.now = now;
                self.refund(ask.tenant, charged);
                return Err(Limited::Rate {
                    tier: eff.tier_ref(),
                    kind: LimitKind::Route,
                    policy: Policy {
                        name: Arc::clone(&class.name),
                        rate: class.rate,
                    },
                    wait,
                });
            }
            charged.classes |= 1 << i;
        }
        Ok(hold)
    }

    /// The request's route class for usage metering: the first `[[limits.routes]]` entry whose
    /// methods and path it matches, whatever its tier (an index into the config's list).
    #[must_use]
    pub fn route_class(&self, method: &http::Method, path: &str) -> Option<u8> {
        self.routes
            .iter()
            .position(|c| c.covers(method, path))
            .and_then(|i| u8::try_from(i).ok())
    }

    /// Gives back the rate charges of a request refused by a later check.
    fn refund(&self, tenant: &str, charged: &Charged) {
        if let Some(g) = &charged.tenant {
            let key = Key {
                tenant,
                class: 0,
                tier: charged.tier,
            };
            self.store.refund(key, g, charged.now);
        }
        for (i, class) in self.routes.iter().enumerate() {
            if charged.classes & (1 << i) != 0 {
                let key = Key {
                    tenant,
                    class: class_tag(i),
                    tier: charged.tier,
                };
                self.store.refund(key, &class.rate, charged.now);
            }
        }
    }
}

/// The rate charges one request made, to undo on a later refusal.
#[derive(Debug, Default)]
struct Charged {
    tenant: Option<Gcra>,
    /// Bit i: route class i was charged (at most [`MAX_ROUTE_CLASSES`] = 32).
    classes: u32,
    now: u64,
    /// The tier judged under.
    tier: usize,
}

/// The store key's class byte for route class `i` (0 is the tenant's own limit).
fn class_tag(i: usize) -> u8 {
    u8::try_from(i + 1).unwrap_or(u8::MAX)
}

/// Takes an in-flight place under `cap`, without ever going over it (no place is taken and
/// given back, so a flood of refusals cannot crowd out admitted requests).
fn take_place(gauge: &prometheus_client::metrics::gauge::Gauge, cap: Option<u32>) -> bool {
    let Some(max) = cap else {
        gauge.inc();
        return true;
    };
    gauge
        .inner()
        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
            (n < i64::from(max)).then_some(n + 1)
        })
        .is_ok()
}

#[cfg(test)]
mod tests;
