//! `[canary]`, validated: what a tenant's arm is hashed by, and who may force an arm by header.
//!
//! The arm of a cell with target groups is chosen by the *place and route* stage
//! ([`crate::routing`]): by default from the tenant id alone; with `hash_by = "sub"` from the
//! tenant id and the verified token's `sub`, so the users of one tenant spread over the arms.
//! `force_header` lets a request name its arm, but only when its verified token carries the
//! `force_claim` claim (true, or the arm's name, or a list holding it): the header alone never
//! moves a request, and it is always stripped before the request reaches a cell.

use http::HeaderName;

use super::auth::reserved;
use super::file::FileCanary;
use super::tenant::TenantHeaderConfig;
use crate::auth::AuthConfig;
use crate::auth::ClaimPath;
use crate::rules::FieldError;

/// What the weighted arm choice hashes, besides the tenant id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HashBy {
    /// The tenant id alone: every request of a tenant on one arm.
    #[default]
    Tenant,
    /// The tenant id and the verified token's `sub`; requests without one fall back to the
    /// tenant id.
    Sub,
}

/// A header that forces a request's arm, honoured only for tokens carrying `claim`.
#[derive(Debug, Clone)]
pub struct ForceArm {
    pub header: HeaderName,
    /// Read at verification time into [`crate::auth::VerifiedToken::arms`].
    pub claim: ClaimPath,
}

#[derive(Debug, Clone, Default)]
pub struct CanaryConfig {
    pub hash_by: HashBy,
    pub force: Option<ForceArm>,
}

/// Validates `[canary]`; `auth` and `tenant_header` are the already validated `[auth]` and
/// `[tenant.header]`, whose headers the force header may not take over.
pub fn build_canary(
    c: &FileCanary,
    auth: &AuthConfig,
    tenant_header: Option<&TenantHeaderConfig>,
) -> Result<CanaryConfig, FieldError> {
    let hash_by = match c.hash_by.as_deref().unwrap_or("tenant") {
        "tenant" => HashBy::Tenant,
        "sub" => HashBy::Sub,
        other => {
            return Err(FieldError::new(
                "canary.hash_by",
                other,
                "expected \"tenant\" or \"sub\"",
            ));
        }
    };
    let force = match (&c.force_header, &c.force_claim) {
        (None, None) => None,
        (Some(h), None) => {
            return Err(FieldError::new(
                "canary.force_claim",
                "(missing)",
                format!(
                    "canary.force_header = {h:?} needs the claim that permits a token to force an arm"
                ),
            ));
        }
        (None, Some(claim)) => {
            return Err(FieldError::new(
                "canary.force_header",
                "(missing)",
                format!(
                    "canary.force_claim = {claim:?} needs the header that names the forced arm"
                ),
            ));
        }
        (Some(h), Some(claim)) => {
            let header =
                HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    FieldError::new("canary.force_header", h, "not a valid header name")
                })?;
            // The header is stripped before forwarding: it must not be one the proxy sets,
            // strips for its own reasons, or that carries the request's identity.
            let taken = reserved(&header)
                || tenant_header.is_some_and(|t| t.name == header)
                || auth.forward_claims.iter().any(|f| f.header == header);
            if taken {
                return Err(FieldError::new(
                    "canary.force_header",
                    h,
                    "reserved: the proxy sets or checks this header itself (trusted, hop-by-hop, \
                     tenant or forwarded-claim header)",
                ));
            }
            let claim = ClaimPath::parse(claim)
                .map_err(|reason| FieldError::new("canary.force_claim", claim, reason))?;
            if auth.issuers.is_empty() {
                return Err(FieldError::new(
                    "canary.force_claim",
                    claim.as_str(),
                    "a claim needs verified tokens: add at least one [[auth.issuers]] entry",
                ));
            }
            Some(ForceArm { header, claim })
        }
    };
    Ok(CanaryConfig { hash_by, force })
}
