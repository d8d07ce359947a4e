//! Verification keys: static ones from the config and ones an issuer publishes in its JWKS.
//!
//! Each key is bound to the algorithms it may verify: one family (RSA, EC P-256, EC P-384,
//! Ed25519, HMAC), narrowed to one algorithm when its source names one, and always intersected
//! with the issuer's allow-list (RFC 8725 §3.1). A token's `alg` must be in that set, so an RSA
//! public key can never be replayed as an HMAC secret and `none` has no key at all. HMAC keys
//! only ever come from a named environment variable or file, never from a JWKS. A [`KeySet`] is
//! immutable: a JWKS refresh builds a new one and swaps it in whole.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::rules::FieldError;

/// A static key as the config file gives it (`[[auth.issuers.keys]]`); [`load_key`] checks
/// and loads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKey {
    pub kid: Option<String>,
    pub algorithm: String,
    pub public_key_file: Option<String>,
    pub public_key_pem: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
}

/// Every algorithm cellgate can verify, in a fixed order (the bit index of [`AlgSet`]).
const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A small set of algorithms (a bitset over [`ALGORITHMS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlgSet(u16);

impl AlgSet {
    pub const HMAC: Self = Self(0b111);
    pub const RSA: Self = Self(0b1_1111_1000);
    pub const ES256: Self = Self(1 << 9);
    pub const ES384: Self = Self(1 << 10);
    pub const EDDSA: Self = Self(1 << 11);
    /// Every asymmetric algorithm: the default allow-list of an issuer with a JWKS.
    pub const ASYMMETRIC: Self = Self(Self::RSA.0 | Self::ES256.0 | Self::ES384.0 | Self::EDDSA.0);

    const fn bit(alg: Algorithm) -> u16 {
        let shift = match alg {
            Algorithm::HS256 => 0,
            Algorithm::HS384 => 1,
            Algorithm::HS512 => 2,
            Algorithm::RS256 => 3,
            Algorithm::RS384 => 4,
            Algorithm::RS512 => 5,
            Algorithm::PS256 => 6,
            Algorithm::PS384 => 7,
            Algorithm::PS512 => 8,
            Algorithm::ES256 => 9,
            Algorithm::ES384 => 10,
            Algorithm::EdDSA => 11,
            // An algorithm added to jsonwebtoken later: in no set until listed here.
            _ => return 0,
        };
        1 << shift
    }

    #[must_use]
    pub const fn one(alg: Algorithm) -> Self {
        Self(Self::bit(alg))
    }

    #[must_use]
    pub const fn contains(self, alg: Algorithm) -> bool {
        self.0 & Self::bit(alg) != 0
    }

    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    #[must_use]
    pub const fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        ALGORITHMS.into_iter().filter(move |a| self.contains(*a))
    }

    /// The algorithms' names, for the admin API and messages.
    #[must_use]
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(alg_name).collect()
    }
}

/// Parses an algorithm name as written in config (`RS256`, `EdDSA`, ...). `none` is refused.
pub fn parse_alg(name: &str) -> Result<Algorithm, &'static str> {
    if name.eq_ignore_ascii_case("none") {
        return Err("\"none\" is never accepted");
    }
    ALGORITHMS.into_iter().find(|a| alg_name(*a) == name).ok_or(
        "expected one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA",
    )
}

#[must_use]
pub const fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// The longest `kid` looked up anywhere.
pub const MAX_KID_LEN: usize = 128;

/// Whether `kid` may be used as a lookup key: 1..=128 bytes of `A-Z a-z 0-9 - _ . = + / :`
/// (base64, base64url, hex, UUIDs and thumbprints all fit), no `..`, not starting with `/` or
/// `.`. Quotes, spaces, `;`, `\`, `%` and control bytes never pass, so a hostile `kid` never
/// reaches a map, a log line or a metric label.
#[must_use]
pub fn valid_kid(kid: &str) -> bool {
    let b = kid.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_KID_LEN
        && b[0] != b'/'
        && b[0] != b'.'
        && !kid.contains("..")
        && b.iter().all(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'=' | b'+' | b'/' | b':')
        })
}

/// One verification key and the algorithms it may verify.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: Option<Box<str>>,
    pub algorithms: AlgSet,
    pub(crate) key: DecodingKey,
    /// SHA-256 of the key material, so a key replaced under the same `kid` counts as withdrawn.
    fingerprint: [u8; 32],
}

impl VerificationKey {
    fn new(kid: Option<Box<str>>, algorithms: AlgSet, key: DecodingKey) -> Self {
        let mut h = Sha256::new();
        match key.kind() {
            DecodingKeyKind::SecretOrDer(bytes) => h.update(bytes),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                h.update(n);
                h.update(b".");
                h.update(e);
            }
        }
        Self {
            kid,
            algorithms,
            key,
            fingerprint: h.finalize().into(),
        }
    }
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material (an HMAC key is a secret).
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms.names())
            .finish_non_exhaustive()
    }
}

/// Loads static key `k` (`key` is its config path, for error messages).
pub fn load_key(k: &FileKey, base: &Path, key: &str) -> Result<VerificationKey, FieldError> {
    let algorithm = parse_alg(&k.algorithm)
        .map_err(|reason| FieldError::new(format!("{key}.algorithm"), &k.algorithm, reason))?;
    if let Some(kid) = &k.kid
        && !valid_kid(kid)
    {
        return Err(FieldError::new(
            format!("{key}.kid"),
            kid,
            "kids are 1-128 characters of A-Z a-z 0-9 - _ . = + / : (no \"..\", no leading / or .)",
        ));
    }
    let decoding = if AlgSet::HMAC.contains(algorithm) {
        hmac_key(k, base, key)?
    } else {
        public_key(k, base, key, algorithm)?
    };
    Ok(VerificationKey::new(
        k.kid.as_deref().map(Box::from),
        AlgSet::one(algorithm),
        decoding,
    ))
}

fn hmac_key(k: &FileKey, base: &Path, key: &str) -> Result<DecodingKey, FieldError> {
    if k.public_key_file.is_some() || k.public_key_pem.is_some() {
        return Err(FieldError::new(
            format!("{key}.algorithm"),
            &k.algorithm,
            "an HMAC key takes secret_env or secret_file, not a public key",
        ));
    }
    // The value is a secret: errors name the variable or file, never its content.
    let (secret, field, shown) = match (&k.secret_env, &k.secret_file) {
        (Some(var), None) => (
            std::env::var(var).unwrap_or_default(),
            "secret_env",
            var.clone(),
        ),
        (None, Some(file)) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                FieldError::new(
                    format!("{key}.secret_file"),
                    path.display(),
                    format!("cannot read: {e}"),
                )
            })?;
            (
                text.trim().to_owned(),
                "secret_file",
                path.display().to_string(),
            )
        }
        _ => {
            return Err(FieldError::new(
                format!("{key}.secret_env"),
                "(missing)",
                "an HMAC key needs exactly one of secret_env (a variable name) or secret_file",
            ));
        }
    };
    if secret.len() < 32 {
        return Err(FieldError::new(
            format!("{key}.{field}"),
            shown,
            "unset, empty or shorter than 32 bytes",
        ));
    }
    Ok(DecodingKey::from_secret(secret.as_bytes()))
}

fn public_key(
    k: &FileKey,
    base: &Path,
    key: &str,
    algorithm: Algorithm,
) -> Result<DecodingKey, FieldError> {
    if k.secret_env.is_some() || k.secret_file.is_some() {
        return Err(FieldError::new(
            format!("{key}.secret_env"),
            &k.algorithm,
            "only HS256/HS384/HS512 keys take a secret",
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
    })
}

/// Converts one published JWK into a key for an issuer whose allow-list is `allowed`.
/// `Ok(None)` means the key is not for us (encryption key, symmetric key, an algorithm the
/// issuer does not allow); `Err` means it is broken. Either way the rest of the set stands.
pub fn from_jwk(
    value: &serde_json::Value,
    allowed: AlgSet,
) -> Result<Option<VerificationKey>, String> {
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    let common = &jwk.common;
    if let Some(u) = &common.public_key_use
        && *u != PublicKeyUse::Signature
    {
        return Ok(None);
    }
    if let Some(ops) = &common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Ok(None);
    }
    if let Some(kid) = &common.key_id
        && !valid_kid(kid)
    {
        return Err("kid has characters outside the accepted set".to_owned());
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgSet::RSA,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => AlgSet::ES256,
            EllipticCurve::P384 => AlgSet::ES384,
            _ => return Ok(None),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => AlgSet::EDDSA,
        // Symmetric secrets are never taken from a published key set.
        _ => return Ok(None),
    };
    let mut algorithms = family.intersect(allowed);
    if let Some(alg) = &common.key_algorithm {
        let named = parse_alg(&alg.to_string()).map_or(AlgSet::default(), AlgSet::one);
        algorithms = algorithms.intersect(named);
    }
    if algorithms.is_empty() {
        return Ok(None);
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok(Some(VerificationKey::new(
        common.key_id.as_deref().map(Box::from),
        algorithms,
        key,
    )))
}

/// An immutable set of keys, looked up by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<Box<str>, Arc<VerificationKey>>,
    unnamed: Vec<Arc<VerificationKey>>,
}

impl KeySet {
    /// Builds a set; a `kid` seen twice is an error naming it.
    pub fn new(keys: Vec<VerificationKey>) -> Result<Self, String> {
        let mut set = Self::default();
        for k in keys {
            let k = Arc::new(k);
            match &k.kid {
                Some(kid) => {
                    if set.by_kid.insert(kid.clone(), Arc::clone(&k)).is_some() {
                        return Err(format!("kid {kid:?} appears twice"));
                    }
                }
                None => set.unnamed.push(k),
            }
        }
        Ok(set)
    }

    #[must_use]
    pub fn get(&self, kid: &str) -> Option<&Arc<VerificationKey>> {
        self.by_kid.get(kid)
    }

    /// Keys that may verify `alg`, for a token that names no `kid`.
    pub fn for_alg(&self, alg: Algorithm) -> impl Iterator<Item = &Arc<VerificationKey>> {
        self.by_kid
            .values()
            .chain(&self.unnamed)
            .filter(move |k| k.algorithms.contains(alg))
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.unnamed.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The named keys' ids, sorted (for the admin API and rotation checks).
    #[must_use]
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.by_kid.keys().map(|k| &**k).collect();
        kids.sort_unstable();
        kids
    }

    /// Whether some key of `self` is missing from `next`, or replaced there by other key
    /// material under the same `kid` (a key was withdrawn, possibly revoked).
    #[must_use]
    pub fn loses_keys_in(&self, next: &Self) -> bool {
        let named_lost = self.by_kid.iter().any(|(kid, k)| {
            next.by_kid
                .get(kid)
                .is_none_or(|n| n.fingerprint != k.fingerprint)
        });
        named_lost
            || self
                .unnamed
                .iter()
                .any(|k| !next.unnamed.iter().any(|n| n.fingerprint == k.fingerprint))
    }
}
