//! What the auth library is told: the trusted issuers and how their tokens are checked. The
//! config loader (`config::build_auth`) fills these from `[auth]`; [`super::Verifier::new`]
//! builds the verifier from them.

use std::sync::Arc;
use std::time::Duration;

use super::{AlgSet, ClaimPath, ForwardClaim, JwksConfig, VerificationKey};
use crate::tenant::TenantId;

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Reject requests without a bearer token (401).
    pub required: bool,
    /// Longest `Authorization` header accepted (431 beyond).
    pub max_token_bytes: usize,
    /// Verified-token cache size; 0 turns the cache off.
    pub cache_max_entries: u64,
    /// Longest a verified token stays cached (never past its `exp`).
    pub cache_max_ttl: Duration,
    pub forward_claims: Vec<ForwardClaim>,
    pub issuers: Vec<IssuerConfig>,
    /// The claim read into [`super::VerifiedToken::arms`] at verification: a copy of
    /// `canary.force_claim`, set by the config loader.
    pub arm_claim: Option<ClaimPath>,
    /// The claim read into [`super::VerifiedToken::scopes`]: a copy of
    /// `entitlements.token_scope_claim`, set by the config loader.
    pub scope_claim: Option<ClaimPath>,
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub name: Arc<str>,
    pub issuer: Arc<str>,
    pub audiences: Vec<String>,
    pub algorithms: AlgSet,
    pub tenant_claim: ClaimPath,
    /// A token without the tenant claim is refused (401) rather than left to other sources.
    pub tenant_claim_required: bool,
    pub leeway: Duration,
    pub required_claims: Vec<ClaimPath>,
    pub typ: Option<String>,
    /// When set, the only tenants this issuer may speak for.
    pub tenants: Option<Vec<TenantId>>,
    pub jwks: Option<JwksConfig>,
    pub keys: Vec<VerificationKey>,
}
