//! The *place* stage: the snapshot's [`route_with`] decision, or, for a tenant the snapshot
//! does not hold, one coalesced and rate-capped registry lookup first (never a default cell).
//!
//! The verified token names the issuer to check and, under `[canary]`, the arm hint (its
//! `sub`, and whether the request's force header is honoured).

use std::sync::Arc;

use http::request::Parts;

use super::{RouteDecision, RouteError, arm_hint, route_with};
use crate::auth::VerifiedToken;
use crate::config::{CanaryConfig, RoutePolicy};
use crate::placement::SnapshotHandle;
use crate::placement::lookup::{Lookup, LookupOutcome};
use crate::tenant::TenantId;

/// What placing a request reads: the snapshot, the on-demand lookup, and the operator's
/// choices (borrowed from the proxy's shared state for the request).
#[derive(Debug, Clone, Copy)]
pub struct Placer<'a> {
    pub snapshot: &'a SnapshotHandle,
    pub lookup: &'a Lookup,
    pub policy: RoutePolicy,
    /// Look tenants missing from the snapshot up in the registry (`registry.lookup_unknown`).
    pub lookup_unknown: bool,
    pub canary: &'a CanaryConfig,
}

impl Placer<'_> {
    /// Where `tenant`'s request goes, decided on one snapshot generation (a second load only
    /// after a lookup brought the tenant in); `need` is the entitlement its route needs.
    pub async fn place(
        &self,
        tenant: &TenantId,
        parts: &Parts,
        token: Option<&VerifiedToken>,
        need: Option<&Arc<str>>,
    ) -> Result<RouteDecision, RouteError> {
        let (method, issuer) = (&parts.method, token.map(|t| &*t.issuer.iss));
        let hint = arm_hint(self.canary, &parts.headers, token);
        if let Some(arm) = hint.forced {
            tracing::debug!(tenant.id = %tenant, canary.arm = arm, "arm forced by header");
        }
        {
            let snap = self.snapshot.load();
            match route_with(tenant, method, issuer, &snap, self.policy, hint, need) {
                Err(RouteError::UnknownTenant)
                    if self.lookup_unknown && snap.tenant(tenant.as_str()).is_none() => {}
                decided => return decided,
            }
        }
        match self.lookup.resolve(tenant.as_str()).await {
            LookupOutcome::Found => {
                let snap = self.snapshot.load();
                route_with(tenant, method, issuer, &snap, self.policy, hint, need)
            }
            LookupOutcome::Absent => Err(RouteError::UnknownTenant),
            LookupOutcome::Unavailable | LookupOutcome::Limited => {
                Err(RouteError::RegistryUnavailable)
            }
        }
    }
}
