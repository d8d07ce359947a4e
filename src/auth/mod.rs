//! JWT verification: which issuer signed a token, for which tenant, and is it still good.
//!
//! Called by the *identify* stage. A token is checked against the `[[auth.issuers]]` entry its
//! `iss` names (read with the header before any key is chosen, [`head`]; multi-issuer
//! tenancy): the issuer's algorithm allow-list, keys bound to their algorithm family
//! ([`keys`]), static keys and/or a JWKS refreshed in the background ([`jwks`]), `exp` always,
//! `nbf`/`iat` when present, `iss` and `aud` required, an optional `typ`, required claims, and
//! the tenant claim ([`claims`]). Keys never come from the token (`jku`, `x5u`, `jwk`, `x5c`
//! are ignored) and a `kid` is charset-checked before any lookup. A verified token is cached by
//! its hash until its `exp` ([`cache`]), so a client that sends the same token again pays for a
//! hash and a lookup, not a signature check. Errors carry a fixed [`Reason`], never the token
//! or its claims, so nothing secret reaches a log line.

mod cache;
pub mod claims;
pub mod crypto;
pub mod fetch;
pub mod head;
mod issuer;
pub mod jwks;
pub mod keys;
mod settings;

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::Header;
use serde_json::Value;
use tokio_rustls::TlsConnector;

pub use cache::{TokenCache, TokenMemo, token_key, unix_now};
pub use claims::{ClaimPath, ForcedArms, ForwardClaim};
pub use head::{TokenHead, read_head};
pub use issuer::{Issuer, IssuerPolicy};
pub use jwks::{Jwks, JwksConfig};
pub use keys::{AlgSet, FileKey, KeySet, VerificationKey, load_key, valid_kid};
pub use settings::{AuthConfig, IssuerConfig};

use crate::metrics::{AuthMetrics, Metrics};
use crate::tenant::TenantId;

/// Why a token was refused: a fixed, bounded set (the `reason` label of
/// `cellgate_jwt_rejections_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Malformed,
    CriticalHeader,
    Algorithm,
    UnknownIssuer,
    Audience,
    Expired,
    NotYetValid,
    IssuedInFuture,
    Signature,
    BadKid,
    UnknownKid,
    Typ,
    ClaimMissing,
    ClaimFormat,
    TenantClaimMissing,
    TenantClaimType,
    TenantClaimInvalid,
}

impl Reason {
    pub const ALL: [Self; 17] = [
        Self::Malformed,
        Self::CriticalHeader,
        Self::Algorithm,
        Self::UnknownIssuer,
        Self::Audience,
        Self::Expired,
        Self::NotYetValid,
        Self::IssuedInFuture,
        Self::Signature,
        Self::BadKid,
        Self::UnknownKid,
        Self::Typ,
        Self::ClaimMissing,
        Self::ClaimFormat,
        Self::TenantClaimMissing,
        Self::TenantClaimType,
        Self::TenantClaimInvalid,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::CriticalHeader => "critical_header",
            Self::Algorithm => "algorithm",
            Self::UnknownIssuer => "issuer",
            Self::Audience => "audience",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::Signature => "signature",
            Self::BadKid => "bad_kid",
            Self::UnknownKid => "unknown_kid",
            Self::Typ => "typ",
            Self::ClaimMissing => "claim_missing",
            Self::ClaimFormat => "claim_format",
            Self::TenantClaimMissing => "tenant_claim_missing",
            Self::TenantClaimType => "tenant_claim_type",
            Self::TenantClaimInvalid => "tenant_claim_invalid",
        }
    }

    #[must_use]
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Malformed => "malformed token",
            Self::CriticalHeader => "the token header names critical extensions",
            Self::Algorithm => "the token's alg is not allowed for this issuer or key",
            Self::UnknownIssuer => "issuer not accepted",
            Self::Audience => "audience not accepted",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not yet valid (nbf)",
            Self::IssuedInFuture => "token issued in the future (iat)",
            Self::Signature => "signature does not verify",
            Self::BadKid => "kid is malformed",
            Self::UnknownKid => "no key with this kid (or no kid and too many candidate keys)",
            Self::Typ => "token typ not accepted",
            Self::ClaimMissing => "a required claim is missing",
            Self::ClaimFormat => "a claim has the wrong format",
            Self::TenantClaimMissing => "the tenant claim is missing",
            Self::TenantClaimType => "the tenant claim is not a string",
            Self::TenantClaimInvalid => "the tenant claim is not a valid tenant id",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token was presented")]
    Missing,
    #[error("the Authorization header is longer than {0} bytes")]
    TooLarge(usize),
    /// More than one `Authorization` field: the cell could read one the proxy never checked.
    #[error("more than one Authorization header")]
    Duplicate,
    #[error("invalid token: {0}")]
    Invalid(Reason),
    /// The token's issuer is not bound to the tenant it speaks for (config `tenants` list or the
    /// tenant's registry record).
    #[error("the token's issuer may not speak for this tenant")]
    IssuerNotAllowed,
}

impl AuthError {
    /// The `reason` label for `cellgate_jwt_rejections_total`.
    #[must_use]
    pub const fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::TooLarge(_) => "too_large",
            Self::Duplicate => "duplicate",
            Self::Invalid(r) => r.as_str(),
            Self::IssuerNotAllowed => "issuer_not_allowed",
        }
    }
}

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
    cache: Arc<TokenCache>,
    forward: Vec<ForwardClaim>,
    /// `canary.force_claim`, read into [`VerifiedToken::arms`].
    arm_claim: Option<ClaimPath>,
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

fn reason(kind: &jsonwebtoken::errors::ErrorKind) -> Reason {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => Reason::Signature,
        K::ExpiredSignature => Reason::Expired,
        K::ImmatureSignature => Reason::NotYetValid,
        K::InvalidIssuer => Reason::UnknownIssuer,
        K::InvalidAudience => Reason::Audience,
        K::MissingRequiredClaim(c) if c == "aud" => Reason::Audience,
        K::MissingRequiredClaim(_) => Reason::ClaimMissing,
        K::InvalidClaimFormat(_) => Reason::ClaimFormat,
        K::InvalidAlgorithm | K::InvalidAlgorithmName => Reason::Algorithm,
        _ => Reason::Malformed,
    }
}

/// The bearer token in `Authorization`, if any. The header is size-checked before anything
/// decodes it. Another scheme (`Basic ...`) is not ours to judge: it counts as no token and
/// travels on to the cell.
pub fn bearer_token(headers: &HeaderMap, max_bytes: usize) -> Result<Option<&str>, AuthError> {
    let mut all = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = all.next() else {
        return Ok(None);
    };
    // `Authorization` is not a list (RFC 9110 §11.6.2): a second field is refused, never
    // forwarded beside the one that was verified.
    if all.next().is_some() {
        return Err(AuthError::Duplicate);
    }
    let bytes = value.as_bytes();
    if bytes.len() > max_bytes {
        return Err(AuthError::TooLarge(max_bytes));
    }
    let Some(scheme_end) = bytes.iter().position(|&b| b == b' ' || b == b'\t') else {
        // `Bearer` alone is a bearer token with nothing in it, not another scheme.
        return if bytes.eq_ignore_ascii_case(b"bearer") {
            Err(AuthError::Missing)
        } else {
            Ok(None)
        };
    };
    if !bytes[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    let token = std::str::from_utf8(&bytes[scheme_end + 1..])
        .map_err(|_| AuthError::Invalid(Reason::Malformed))?
        .trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(Some(token))
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
