//! JWT verification with static keys from the config.
//!
//! Called by the *identify* stage. Each configured key is bound to one algorithm (RFC 8725:
//! the token's `alg` must equal the key's, so an RSA public key can never be replayed as an
//! HMAC secret); `none` is never accepted; `exp` is required; `iss`/`aud` are checked when
//! configured; `nbf` is honoured with the configured leeway. Tokens never reach a log line:
//! errors carry a fixed reason, never the token or its claims.

use std::path::Path;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::file::FileKey;
use crate::config::{AuthConfig, FieldError};
use crate::tenant::TenantId;

/// One configured verification key, bound to its algorithm.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material (an HMAC key is a secret).
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token was presented")]
    Missing,
    #[error("the Authorization header is longer than {0} bytes")]
    TooLarge(usize),
    #[error("invalid token: {0}")]
    Invalid(&'static str),
}

/// What a verified token says about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The tenant claim, when present.
    pub tenant: Option<TenantId>,
    /// The `sub` claim, when present.
    pub subject: Option<String>,
}

/// Loads `[[auth.keys]]` entry `k`; `key` is its config path for error messages.
pub fn load_key(k: &FileKey, base: &Path, key: &str) -> Result<VerificationKey, FieldError> {
    let algorithm: Algorithm = match k.algorithm.as_str() {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        other => {
            return Err(FieldError::new(
                format!("{key}.algorithm"),
                other,
                "expected one of RS256, RS384, RS512, PS256, ES256, ES384, EdDSA, HS256",
            ));
        }
    };
    let decoding = if algorithm == Algorithm::HS256 {
        if k.public_key_file.is_some() || k.public_key_pem.is_some() {
            return Err(FieldError::new(
                format!("{key}.algorithm"),
                "HS256",
                "an HMAC key takes secret_env, not a public key",
            ));
        }
        let Some(var) = &k.secret_env else {
            return Err(FieldError::new(
                format!("{key}.secret_env"),
                "(missing)",
                "HS256 needs secret_env naming an environment variable",
            ));
        };
        // The value is a secret: errors name the variable, never its content.
        let secret = std::env::var(var).unwrap_or_default();
        if secret.len() < 32 {
            return Err(FieldError::new(
                format!("{key}.secret_env"),
                var,
                "variable unset or shorter than 32 bytes",
            ));
        }
        DecodingKey::from_secret(secret.as_bytes())
    } else {
        if k.secret_env.is_some() {
            return Err(FieldError::new(
                format!("{key}.secret_env"),
                k.algorithm.as_str(),
                "only HS256 keys take a secret",
            ));
        }
        let (pem, field, shown) = match (&k.public_key_file, &k.public_key_pem) {
            (Some(file), None) => {
                let path = base.join(file);
                let pem = std::fs::read(&path).map_err(|e| {
                    FieldError::new(
                        format!("{key}.public_key_file"),
                        path.display(),
                        format!("cannot read: {e}"),
                    )
                })?;
                (pem, "public_key_file", path.display().to_string())
            }
            (None, Some(pem)) => (
                pem.clone().into_bytes(),
                "public_key_pem",
                "(inline PEM)".to_owned(),
            ),
            _ => {
                return Err(FieldError::new(
                    format!("{key}.public_key_file"),
                    "(missing)",
                    "give exactly one of public_key_file or public_key_pem",
                ));
            }
        };
        let parsed = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
            _ => DecodingKey::from_rsa_pem(&pem),
        };
        parsed.map_err(|e| {
            FieldError::new(
                format!("{key}.{field}"),
                shown,
                format!("not a {} public key in PEM form: {e}", k.algorithm),
            )
        })?
    };
    Ok(VerificationKey {
        kid: k.kid.clone(),
        algorithm,
        key: decoding,
    })
}

/// Verifies bearer tokens against the configured keys.
#[derive(Debug)]
pub struct Verifier {
    keys: Vec<(VerificationKey, Validation)>,
    tenant_claim: String,
    required: bool,
    max_token_bytes: usize,
}

impl Verifier {
    #[must_use]
    pub fn new(cfg: &AuthConfig) -> Self {
        let keys = cfg
            .keys
            .iter()
            .map(|k| {
                let mut v = Validation::new(k.algorithm);
                // Whole seconds, rounded up so a sub-second leeway is not silently zero.
                v.leeway = cfg.leeway.as_secs() + u64::from(cfg.leeway.subsec_nanos() > 0);
                v.validate_nbf = true;
                v.set_required_spec_claims(&["exp"]);
                if cfg.issuers.is_empty() {
                    v.iss = None;
                } else {
                    v.set_issuer(&cfg.issuers);
                    v.required_spec_claims.insert("iss".to_owned());
                }
                if cfg.audiences.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&cfg.audiences);
                    v.required_spec_claims.insert("aud".to_owned());
                }
                (k.clone(), v)
            })
            .collect();
        Self {
            keys,
            tenant_claim: cfg.tenant_claim.clone(),
            required: cfg.required,
            max_token_bytes: cfg.max_token_bytes,
        }
    }

    #[must_use]
    pub const fn required(&self) -> bool {
        self.required
    }

    #[must_use]
    pub const fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Verifies a compact JWS and extracts the tenant claim and subject.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed token header"))?;
        // The key is chosen by `kid` when the token names one, else by algorithm; either way the
        // token's `alg` must be the key's own.
        let candidates = self
            .keys
            .iter()
            .filter(|(k, _)| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) | (None, _) => k.algorithm == header.alg,
            });
        let mut last = AuthError::Invalid("no configured key matches the token's kid or alg");
        for (key, validation) in candidates {
            if key.algorithm != header.alg {
                last = AuthError::Invalid("token alg does not match the key's algorithm");
                continue;
            }
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(
                token, &key.key, validation,
            ) {
                Ok(data) => return self.claims(&data.claims),
                Err(e) => last = AuthError::Invalid(reason(e.kind())),
            }
        }
        Err(last)
    }

    fn claims(&self, claims: &serde_json::Map<String, Value>) -> Result<VerifiedToken, AuthError> {
        let tenant = match claims.get(&self.tenant_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                TenantId::parse(s)
                    .map_err(|_| AuthError::Invalid("tenant claim is not a valid tenant id"))?,
            ),
            Some(_) => return Err(AuthError::Invalid("tenant claim is not a string")),
        };
        let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        Ok(VerifiedToken { tenant, subject })
    }
}

fn reason(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => "signature does not verify",
        K::ExpiredSignature => "token expired",
        K::ImmatureSignature => "token not yet valid (nbf)",
        K::InvalidIssuer => "issuer not accepted",
        K::InvalidAudience => "audience not accepted",
        K::MissingRequiredClaim(_) => "a required claim is missing",
        K::InvalidClaimFormat(_) => "a claim has the wrong format",
        K::InvalidAlgorithm => "token alg does not match the key's algorithm",
        _ => "malformed token",
    }
}

/// The bearer token in `Authorization`, if any. The header is size-checked before anything
/// decodes it. Another scheme (`Basic ...`) is not ours to judge: it counts as no token and
/// travels on to the cell.
pub fn bearer_token(headers: &HeaderMap, max_bytes: usize) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.len() > max_bytes {
        return Err(AuthError::TooLarge(max_bytes));
    }
    let Some(scheme_end) = bytes.iter().position(|&b| b == b' ') else {
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
        .map_err(|_| AuthError::Invalid("token is not ASCII"))?
        .trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests;
