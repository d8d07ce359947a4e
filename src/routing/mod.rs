//! The *place and route* stage: (tenant, snapshot) -> the cell and target to forward to.
//!
//! Pure and synchronous: it reads one snapshot generation (and the request's [`ArmHint`], for
//! the choice of the cell's canary arm) and returns a decision or a typed refusal, so it can be
//! unit-tested and benchmarked without a socket. A tenant whose cell is
//! down or missing gets a refusal naming that cell; there is no default or fallback cell, ever.

pub mod canary;
mod keys;
mod place;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};

use crate::auth::VerifiedToken;
use crate::config::{CanaryConfig, HashBy, RoutePolicy};
use crate::entitle::{Holder, NotEntitled};
use crate::placement::{Cell, CellState, PlacementSnapshot, TenantStatus};
use crate::ratelimit::{Ask, TenantLimits};
use crate::tenant::TenantId;

pub use place::Placer;

/// Where a request goes.
#[derive(Debug, Clone)]
pub struct RouteDecision {
    pub cell: Arc<Cell>,
    /// Index into `cell.groups` of the tenant's arm.
    pub group: usize,
    /// Index into `cell.targets` of the first target to try (one of the group's).
    pub target: usize,
    pub tenant_header: HeaderValue,
    pub version: u64,
    /// The tier the record names, and its rate-limit overrides (for the admit stage).
    pub tier: Arc<str>,
    pub limits: TenantLimits,
    /// The tenant is MIGRATING (only safe methods got this far): a long-lived exchange opened
    /// now may stay open through the migration, and an upgrade is refused like a write.
    pub migrating: bool,
}

impl RouteDecision {
    /// An upgrade opens a two-way channel that outlives the request: for a MIGRATING tenant
    /// (writes frozen) it counts as a write, and is refused like one.
    pub const fn admits_upgrade(&self, upgrade: bool) -> Result<(), RouteError> {
        if upgrade && self.migrating {
            Err(RouteError::Migrating)
        } else {
            Ok(())
        }
    }

    /// What the admit stage is asked about this request: the tenant, the tier and overrides
    /// its record names, and the method and path its route classes match on.
    #[must_use]
    pub fn ask<'a>(&'a self, tenant: &'a TenantId, parts: &'a http::request::Parts) -> Ask<'a> {
        Ask {
            tenant: tenant.as_str(),
            tier: &self.tier,
            overrides: self.limits,
            method: &parts.method,
            path: parts.uri.path(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no placement snapshot loaded yet")]
    NotReady,
    /// A tenant missing from the snapshot could not be looked up (registry failing, or the
    /// miss rate cap reached).
    #[error("the registry cannot be asked about this tenant now")]
    RegistryUnavailable,
    /// Unknown and offboarded tenants look the same from outside.
    #[error("unknown tenant")]
    UnknownTenant,
    #[error("tenant suspended")]
    Suspended,
    /// The tenant's record binds it to other token issuers.
    #[error("the token's issuer is not bound to this tenant")]
    IssuerNotAllowed,
    #[error("tenant is migrating; writes are paused")]
    Migrating,
    #[error("cell {0} is not defined")]
    CellMissing(Arc<str>),
    #[error("cell {0} is down")]
    CellDown(Arc<str>),
    /// The tenant's record does not list the entitlement the route needs.
    #[error(transparent)]
    NotEntitled(NotEntitled),
}

impl RouteError {
    /// The cell involved, if the refusal is about a cell.
    #[must_use]
    pub fn cell(&self) -> Option<&Arc<str>> {
        match self {
            Self::CellMissing(c) | Self::CellDown(c) => Some(c),
            _ => None,
        }
    }
}

/// What one request adds to the choice of its tenant's arm, resolved by the caller (the proxy
/// reads it from the verified token and the `[canary]` config with [`arm_hint`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArmHint<'a> {
    /// Hashed with the tenant id (`canary.hash_by = "sub"`: the token's `sub`), so each key of
    /// a tenant gets its own sticky arm; `None`: the tenant id alone decides.
    pub key: Option<&'a str>,
    /// An arm this request may force (a permitted `canary.force_header`); it wins over the
    /// record's pin and the weights, unless the cell has no such group with targets.
    pub forced: Option<&'a str>,
}

/// The arm hint of one request under `[canary]`: the token's `sub` as the hash key with
/// `hash_by = "sub"`, and the arm named by the (first) `force_header` when the verified token
/// may force that arm ([`VerifiedToken::arms`]). No token, no `sub`, no claim, or a header
/// naming an arm the token may not force: no hint from it, never an error.
#[must_use]
pub fn arm_hint<'a>(
    canary: &CanaryConfig,
    headers: &'a HeaderMap,
    token: Option<&'a VerifiedToken>,
) -> ArmHint<'a> {
    let Some(token) = token else {
        return ArmHint::default();
    };
    let key = match canary.hash_by {
        HashBy::Sub => token.subject.as_deref().filter(|s| !s.is_empty()),
        HashBy::Tenant => None,
    };
    let forced = canary
        .force
        .as_ref()
        .and_then(|f| headers.get(&f.header))
        .and_then(|v| v.to_str().ok())
        .filter(|arm| token.arms.permits(arm));
    ArmHint { key, forced }
}

/// [`route_with`] under the default policy, with no per-request arm hint.
pub fn route(
    tenant: &TenantId,
    method: &Method,
    issuer: Option<&str>,
    snap: &PlacementSnapshot,
) -> Result<RouteDecision, RouteError> {
    route_with(
        tenant,
        method,
        issuer,
        snap,
        RoutePolicy::default(),
        ArmHint::default(),
        None,
    )
}

/// Decides where `tenant`'s request goes under `snap`. `issuer` is the verified token's `iss`,
/// checked against the registry's issuer bindings (see [`PlacementSnapshot::issuer_allowed`]).
/// The arm is, in order: `hint.forced`, the record's `arm` pin, then the weights (hashing the
/// tenant id, with `hint.key` when given); a forced or pinned arm the cell lacks, or has
/// without targets, is passed over. `need` is the entitlement the request's route needs
/// ([`crate::entitle::Routes::required`]): the tenant's record must list it.
pub fn route_with(
    tenant: &TenantId,
    method: &Method,
    issuer: Option<&str>,
    snap: &PlacementSnapshot,
    policy: RoutePolicy,
    hint: ArmHint<'_>,
    need: Option<&Arc<str>>,
) -> Result<RouteDecision, RouteError> {
    if snap.generation == 0 {
        return Err(RouteError::NotReady);
    }
    let placement = snap
        .tenant(tenant.as_str())
        .ok_or(RouteError::UnknownTenant)?;
    match placement.status() {
        TenantStatus::Active => {}
        TenantStatus::Offboarded => return Err(RouteError::UnknownTenant),
        TenantStatus::Suspended => return Err(RouteError::Suspended),
        TenantStatus::Migrating if policy.migrating_refuses_all || !method.is_safe() => {
            return Err(RouteError::Migrating);
        }
        TenantStatus::Migrating => {}
    }
    if let Some(iss) = issuer
        && !snap.issuer_allowed(&placement, iss)
    {
        return Err(RouteError::IssuerNotAllowed);
    }
    if let Some(need) = need
        && !placement.entitled(need)
    {
        return Err(RouteError::NotEntitled(NotEntitled {
            entitlement: Arc::clone(need),
            by: Holder::Tenant,
        }));
    }
    let cell = placement
        .cell()
        .ok_or_else(|| RouteError::CellMissing(Arc::clone(placement.cell_id())))?;
    if cell.state == CellState::Down {
        return Err(RouteError::CellDown(Arc::clone(placement.cell_id())));
    }
    let usable = |name: &str| {
        cell.groups
            .iter()
            .position(|g| &*g.name == name && !g.targets.is_empty())
    };
    let chosen = hint
        .forced
        .and_then(usable)
        .or_else(|| placement.arm().and_then(usable))
        .or_else(|| canary::arm_keyed(&cell.groups, tenant.as_str(), hint.key));
    let Some(group) = chosen else {
        return Err(RouteError::CellDown(Arc::clone(placement.cell_id())));
    };
    Ok(RouteDecision {
        cell: Arc::clone(cell),
        group,
        target: cell.groups[group].next_target(),
        tenant_header: placement.tenant_header(),
        version: placement.version(),
        tier: Arc::clone(placement.tier()),
        limits: placement.limits(),
        migrating: placement.status() == TenantStatus::Migrating,
    })
}

#[cfg(test)]
mod tests;
