//! The [`Verifier`]: every trusted issuer with its keys and JWKS, the verified-token cache, and
//! the check of one token against the issuer its `iss` names.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use jsonwebtoken::Header;
use serde_json::Value;
use tokio_rustls::TlsConnector;

use super::reasons::reason;
use super::{
    AuthConfig, AuthError, ClaimPath, ForcedArms, ForwardClaim, Issuer, IssuerPolicy, Jwks, Reason,
    TokenCache, TokenHead, TokenMemo, VerificationKey, read_head, token_key, unix_now, valid_kid,
};
use super::{claims, crypto};

use crate::metrics::{AuthMetrics, Metrics};
use crate::tenant::TenantId;

/// What a verified token says about the caller; shared (and cached) behind an `Arc`.
#[derive(Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    pub issuer: Arc<IssuerPolicy>,
    /// The tenant claim, when present.
    pub tenant: Option<TenantId>,
    /// The `sub` claim, when present.
    pub subject: Option<Box<str>>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// Configured claims as header values for the cell (`auth.forward_claims`).
    pub forward: Box<[(HeaderName, HeaderValue)]>,
    /// The arms this token may force with `canary.force_header` (always `None` unless
    /// `canary.force_claim` is configured).
    pub arms: ForcedArms,
    /// The token's scopes (`None` unless `entitlements.token_scope_claim` is configured and
    /// the token carries the claim): a route's entitlement must be among them.
    pub scopes: Option<Box<[Box<str>]>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth.issuers {issuer}: JWKS TLS setup: {source}")]
    Tls {
        issuer: Arc<str>,
        source: crate::tls_client::TlsError,
    },
    #[error("auth.issuers {issuer}: {reason}")]
    Keys { issuer: Arc<str>, reason: String },
}

/// Verifies bearer tokens against the configured issuers.
#[derive(Debug)]
pub struct Verifier {
    issuers: Vec<Issuer>,
    by_iss: HashMap<Box<str>, usize>,
    pub(super) cache: Arc<TokenCache>,
    forward: Vec<ForwardClaim>,
    /// `canary.force_claim`, read into [`VerifiedToken::arms`].
    arm_claim: Option<ClaimPath>,
    /// `entitlements.token_scope_claim`, read into [`VerifiedToken::scopes`].
    scope_claim: Option<ClaimPath>,
    required: bool,
    max_token_bytes: usize,
    metrics: AuthMetrics,
}

impl Verifier {
    /// Prepares every issuer (JWKS handles included; their refresh tasks are started by the
    /// server through [`Verifier::jwks`]).
    pub fn new(cfg: &AuthConfig, metrics: &Metrics) -> Result<Self, AuthSetupError> {
        crypto::install();
        let cache = Arc::new(TokenCache::new(cfg.cache_max_entries, cfg.cache_max_ttl));
        let mut issuers = Vec::with_capacity(cfg.issuers.len());
        let mut by_iss = HashMap::with_capacity(cfg.issuers.len());
        for ic in &cfg.issuers {
            let jwks = match &ic.jwks {
                None => None,
                Some(j) => {
                    let tls = crate::tls_client::client_config(j.ca_file.as_deref()).map_err(
                        |source| AuthSetupError::Tls {
                            issuer: Arc::clone(&ic.name),
                            source,
                        },
                    )?;
                    Some(Arc::new(Jwks::new(
                        Arc::clone(&ic.name),
                        j.clone(),
                        ic.algorithms,
                        TlsConnector::from(tls),
                        Arc::clone(&cache),
                        metrics.jwks(&ic.name),
                    )))
                }
            };
            let issuer = Issuer::new(ic, jwks).map_err(|reason| AuthSetupError::Keys {
                issuer: Arc::clone(&ic.name),
                reason,
            })?;
            by_iss.insert(Box::from(&*ic.issuer), issuers.len());
            issuers.push(issuer);
        }
        Ok(Self {
            issuers,
            by_iss,
            cache,
            forward: cfg.forward_claims.clone(),
            arm_claim: cfg.arm_claim.clone(),
            scope_claim: cfg.scope_claim.clone(),
            required: cfg.required,
            max_token_bytes: cfg.max_token_bytes,
            metrics: metrics.auth.clone(),
        })
    }

    /// Whether any issuer is configured (tokens can be verified at all).
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    #[must_use]
    pub const fn required(&self) -> bool {
        self.required
    }

    #[must_use]
    pub const fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Headers that carry forwarded claims; client-supplied copies are always stripped.
    pub fn forward_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.forward.iter().map(|f| &f.header)
    }

    #[must_use]
    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// Every issuer's JWKS handle, for the server to start their refreshers.
    pub fn jwks(&self) -> impl Iterator<Item = &Arc<Jwks>> {
        self.issuers.iter().filter_map(|i| i.jwks.as_ref())
    }

    /// Whether every JWKS was loaded at least once (part of `/readyz`).
    #[must_use]
    pub fn ready(&self) -> bool {
        self.jwks().all(|j| j.ready())
    }

    #[must_use]
    pub fn cache_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Verifies a compact JWS for a client connection: the connection's memo answers a repeat
    /// of its last token, then the shared cache, then a full verification.
    pub async fn verify_for(
        &self,
        token: &str,
        memo: &TokenMemo,
    ) -> Result<Arc<VerifiedToken>, AuthError> {
        if let Some(hit) = memo.get(token, &self.cache, unix_now()) {
            self.metrics.cache_hits.inc();
            return Ok(hit);
        }
        let generation = self.cache.generation();
        let verified = self.verify(token).await?;
        if self.cache.enabled() {
            memo.set(token, &verified, generation);
        }
        Ok(verified)
    }

    /// Verifies a compact JWS. A cached verification is answered without decoding anything.
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedToken>, AuthError> {
        let now = unix_now();
        let key = token_key(token);
        if let Some(hit) = self.cache.get(&key, now) {
            self.metrics.cache_hits.inc();
            return Ok(hit);
        }
        let generation = self.cache.generation();
        match self.verify_cold(token, now).await {
            Ok(v) => {
                self.metrics.verified.inc();
                let v = Arc::new(v);
                self.cache.insert(key, Arc::clone(&v), now, generation);
                Ok(v)
            }
            Err(e) => {
                self.metrics.rejected.inc();
                Err(e)
            }
        }
    }

    async fn verify_cold(&self, token: &str, now: u64) -> Result<VerifiedToken, AuthError> {
        use AuthError::Invalid;
        let TokenHead { header, iss } = read_head(token).map_err(Invalid)?;
        let issuer = self
            .by_iss
            .get(iss.as_str())
            .map(|&i| &self.issuers[i])
            .ok_or(Invalid(Reason::UnknownIssuer))?;
        if !issuer.algorithms.contains(header.alg) {
            return Err(Invalid(Reason::Algorithm));
        }
        if !issuer.typ_ok(header.typ.as_deref()) {
            return Err(Invalid(Reason::Typ));
        }
        let claims = self.check_signature(issuer, &header, token).await?;
        claims::check_iat(&claims, now, issuer.leeway).map_err(Invalid)?;
        claims::check_required(&claims, &issuer.required_claims).map_err(Invalid)?;
        let tenant = claims::tenant(&claims, &issuer.tenant_claim, issuer.tenant_claim_required)
            .map_err(Invalid)?;
        // jsonwebtoken accepted `exp` as a number; a fractional one counts down to the second.
        let expires_at = claims
            .get("exp")
            .and_then(|v| {
                v.as_u64().or_else(|| {
                    v.as_f64()
                        .filter(|f| f.is_finite() && *f >= 0.0)
                        .map(|f| f as u64)
                })
            })
            .ok_or(Invalid(Reason::ClaimFormat))?;
        Ok(VerifiedToken {
            issuer: Arc::clone(&issuer.policy),
            tenant,
            subject: claims.get("sub").and_then(Value::as_str).map(Box::from),
            expires_at,
            forward: claims::forwarded(&claims, &self.forward),
            arms: self
                .arm_claim
                .as_ref()
                .map_or(ForcedArms::None, |p| ForcedArms::from_claims(&claims, p)),
            scopes: self
                .scope_claim
                .as_ref()
                .and_then(|p| claims::scopes(&claims, p)),
        })
    }

    /// Finds the key (refetching the JWKS once for an unknown `kid`), checks the signature
    /// and the registered claims, and returns the claims.
    async fn check_signature(
        &self,
        issuer: &Issuer,
        header: &Header,
        token: &str,
    ) -> Result<Value, AuthError> {
        use AuthError::Invalid;
        let validation = issuer.validation(header.alg)?;
        let decode = |key: &VerificationKey| {
            if !key.algorithms.contains(header.alg) {
                return Err(Reason::Algorithm);
            }
            jsonwebtoken::decode::<Value>(token, &key.key, validation)
                .map(|d| d.claims)
                .map_err(|e| reason(e.kind()))
        };
        if let Some(kid) = &header.kid {
            if !valid_kid(kid) {
                return Err(Invalid(Reason::BadKid));
            }
            let key = match issuer.key(kid) {
                Some(k) => k,
                None => match &issuer.jwks {
                    Some(j) => j.refetch(kid).await.ok_or(Invalid(Reason::UnknownKid))?,
                    None => return Err(Invalid(Reason::UnknownKid)),
                },
            };
            return decode(&key).map_err(Invalid);
        }
        // No kid: try each key that fits the algorithm, but only a few: an unauthenticated
        // token must not buy one signature check per published key. Past the signature, a
        // failure (exp, aud...) is the token's, not the key's, so it ends the search.
        let keys = issuer.keys_for(header.alg);
        if keys.len() > MAX_KIDLESS_KEYS {
            return Err(Invalid(Reason::UnknownKid));
        }
        let mut last = Reason::UnknownKid;
        for key in keys {
            match decode(&key) {
                Ok(claims) => return Ok(claims),
                Err(r @ Reason::Signature) => last = r,
                Err(r) => return Err(Invalid(r)),
            }
        }
        Err(Invalid(last))
    }
}

/// A token without a `kid` is tried against at most this many keys of its algorithm (an issuer
/// publishing more must name its keys).
pub const MAX_KIDLESS_KEYS: usize = 4;
