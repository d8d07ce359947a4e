//! Why a token was refused: the fixed set of [`Reason`]s (a bounded metric label, never the
//! token or its claims) and the [`AuthError`]s the identify stage turns into 401, 403 or 431.

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

/// The reason for a `jsonwebtoken` refusal.
pub(super) fn reason(kind: &jsonwebtoken::errors::ErrorKind) -> Reason {
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
