//! One trusted token issuer at run time: its policy, its prepared validations, and its keys.
//!
//! Built once from an `[[auth.issuers]]` entry. Everything a cold verification needs is
//! prepared here (one `jsonwebtoken::Validation` per allowed algorithm, the static key set,
//! the JWKS handle), so [`super::Verifier::verify`] only looks things up.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};

use super::IssuerConfig;
use super::claims::ClaimPath;
use super::jwks::Jwks;
use super::keys::{AlgSet, KeySet, VerificationKey};
use super::{AuthError, Reason};
use crate::tenant::TenantId;

/// What a verified token carries about its issuer: enough to apply the issuer-to-tenant
/// binding on every request, including cache hits.
#[derive(Debug, PartialEq, Eq)]
pub struct IssuerPolicy {
    /// Label for metrics, logs and the admin API.
    pub name: Arc<str>,
    /// The exact `iss` value.
    pub iss: Arc<str>,
    /// When set, the only tenants this issuer may speak for.
    pub tenants: Option<Box<[TenantId]>>,
}

impl IssuerPolicy {
    /// Whether this issuer may vouch for `tenant` (an issuer with no list may vouch for any).
    #[must_use]
    pub fn allows(&self, tenant: &TenantId) -> bool {
        self.tenants.as_ref().is_none_or(|t| t.contains(tenant))
    }
}

#[derive(Debug)]
pub struct Issuer {
    pub policy: Arc<IssuerPolicy>,
    pub algorithms: AlgSet,
    validations: Vec<(Algorithm, Validation)>,
    pub typ: Option<Box<str>>,
    pub tenant_claim: ClaimPath,
    pub tenant_claim_required: bool,
    pub required_claims: Vec<ClaimPath>,
    pub leeway: u64,
    pub static_keys: KeySet,
    pub jwks: Option<Arc<Jwks>>,
}

impl Issuer {
    /// Prepares `cfg`; `jwks` is the issuer's key-set handle when it has a JWKS URL.
    pub fn new(cfg: &IssuerConfig, jwks: Option<Arc<Jwks>>) -> Result<Self, String> {
        // Whole seconds, rounded up so a sub-second leeway is not silently zero.
        let leeway = cfg.leeway.as_secs() + u64::from(cfg.leeway.subsec_nanos() > 0);
        let validations = cfg
            .algorithms
            .iter()
            .map(|alg| {
                let mut v = Validation::new(alg);
                v.leeway = leeway;
                v.validate_nbf = true;
                v.validate_exp = true;
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                v.set_issuer(&[&*cfg.issuer]);
                v.set_audience(&cfg.audiences);
                (alg, v)
            })
            .collect();
        let static_keys = KeySet::new(cfg.keys.clone())?;
        Ok(Self {
            policy: Arc::new(IssuerPolicy {
                name: Arc::clone(&cfg.name),
                iss: Arc::clone(&cfg.issuer),
                tenants: cfg.tenants.clone().map(Vec::into_boxed_slice),
            }),
            algorithms: cfg.algorithms,
            validations,
            typ: cfg.typ.as_deref().map(Box::from),
            tenant_claim: cfg.tenant_claim.clone(),
            tenant_claim_required: cfg.tenant_claim_required,
            required_claims: cfg.required_claims.clone(),
            leeway,
            static_keys,
            jwks,
        })
    }

    /// The prepared validation for `alg`, or a refusal when the issuer does not allow it.
    pub fn validation(&self, alg: Algorithm) -> Result<&Validation, AuthError> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
            .ok_or(AuthError::Invalid(Reason::Algorithm))
    }

    /// The key named `kid`: a static key first, then the current JWKS set.
    #[must_use]
    pub fn key(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        if let Some(k) = self.static_keys.get(kid) {
            return Some(Arc::clone(k));
        }
        self.jwks.as_ref().and_then(|j| j.key(kid))
    }

    /// Keys that may verify `alg`, for a token without a `kid`.
    #[must_use]
    pub fn keys_for(&self, alg: Algorithm) -> Vec<Arc<VerificationKey>> {
        let mut keys: Vec<_> = self.static_keys.for_alg(alg).cloned().collect();
        if let Some(j) = &self.jwks {
            keys.extend(j.keys().for_alg(alg).cloned());
        }
        keys
    }

    /// Whether the `typ` header is acceptable (`at+jwt` also matches `application/at+jwt`).
    #[must_use]
    pub fn typ_ok(&self, typ: Option<&str>) -> bool {
        let Some(want) = &self.typ else { return true };
        typ.is_some_and(|t| {
            let t = t
                .get(..12)
                .filter(|p| p.eq_ignore_ascii_case("application/"))
                .map_or(t, |_| &t[12..]);
            t.eq_ignore_ascii_case(want)
        })
    }
}
