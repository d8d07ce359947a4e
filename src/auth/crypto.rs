//! Signature verification for `jsonwebtoken` backed by `ring` (the TLS stack's own crypto).
//!
//! Installed once as jsonwebtoken's process-wide `CryptoProvider` (by [`install`], called at
//! start and by the verifier). jsonwebtoken still does everything else (header and claim
//! decoding, `exp`/`nbf`/`iss`/`aud`); only the signature check moves to ring, which is several
//! times faster than the pure-Rust backend on a cold verification (see `bench/jwt.rs` and
//! docs/performance.md), and that is the cost an attacker with a flood of fresh tokens makes us
//! pay. RSA keys must be 2048 to 8192 bits. Signing (demo and test tokens) stays with the pure-Rust
//! backend.

use std::sync::OnceLock;

use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, rust_crypto};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use ring::signature::{self as sig, RsaParameters, RsaPublicKeyComponents, VerificationAlgorithm};

static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();

/// Makes ring verify every JWT signature in this process. Idempotent; if jsonwebtoken was
/// already used (and so chose its default backend), that backend stays: still correct, slower.
pub fn install() {
    let provider = PROVIDER.get_or_init(|| CryptoProvider {
        signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
        verifier_factory: new_verifier,
        key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
    });
    let _ = provider.install_default();
}

enum Key {
    /// A public key in the form ring parses at verification (PKCS#1 RSA, SEC1 point, Ed25519).
    Der(&'static dyn VerificationAlgorithm, Vec<u8>),
    Rsa(&'static RsaParameters, Vec<u8>, Vec<u8>),
    Hmac(ring::hmac::Key),
}

struct RingVerifier {
    alg: Algorithm,
    key: Key,
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let ok = match &self.key {
            Key::Der(alg, bytes) => sig::UnparsedPublicKey::new(*alg, bytes).verify(msg, signature),
            Key::Rsa(params, n, e) => {
                RsaPublicKeyComponents { n, e }.verify(params, msg, signature)
            }
            Key::Hmac(key) => ring::hmac::verify(key, msg, signature),
        };
        ok.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn rsa_params(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let alg = *alg;
    let wrong_key = || Error::from(ErrorKind::InvalidKeyFormat);
    if key.family() != alg.family() {
        return Err(wrong_key());
    }
    let prepared = match (key.family(), key.kind()) {
        (AlgorithmFamily::Hmac, DecodingKeyKind::SecretOrDer(secret)) => {
            let h = match alg {
                Algorithm::HS256 => ring::hmac::HMAC_SHA256,
                Algorithm::HS384 => ring::hmac::HMAC_SHA384,
                _ => ring::hmac::HMAC_SHA512,
            };
            Key::Hmac(ring::hmac::Key::new(h, secret))
        }
        (AlgorithmFamily::Rsa, DecodingKeyKind::SecretOrDer(der)) => {
            Key::Der(rsa_params(alg).ok_or_else(wrong_key)?, der.clone())
        }
        (AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            Key::Rsa(rsa_params(alg).ok_or_else(wrong_key)?, n.clone(), e.clone())
        }
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            let curve: &'static dyn VerificationAlgorithm = match alg {
                Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
                Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
                _ => return Err(wrong_key()),
            };
            Key::Der(curve, point.clone())
        }
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(public)) => {
            Key::Der(&sig::ED25519, public.clone())
        }
        _ => return Err(wrong_key()),
    };
    Ok(Box::new(RingVerifier { alg, key: prepared }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::auth::testing::KEYS;
    use jsonwebtoken::{EncodingKey, Header};

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(format!("{KEYS}/{name}")).unwrap()
    }

    /// Signs with the pure-Rust backend, splits into (signed part, signature bytes).
    fn signed(alg: Algorithm, key: &EncodingKey) -> (Vec<u8>, Vec<u8>) {
        let token =
            jsonwebtoken::encode(&Header::new(alg), &serde_json::json!({"a": 1}), key).unwrap();
        let (msg, sig) = token.rsplit_once('.').unwrap();
        let sig =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
        (msg.as_bytes().to_vec(), sig)
    }

    #[test]
    fn ring_verifies_what_the_pure_rust_backend_signs_and_nothing_else() {
        let rsa = EncodingKey::from_rsa_pem(&read("rsa.pem")).unwrap();
        let rsa_pub = DecodingKey::from_rsa_pem(&read("rsa.pub.pem")).unwrap();
        let ec = EncodingKey::from_ec_pem(&read("ec.pem")).unwrap();
        let ec_pub = DecodingKey::from_ec_pem(&read("ec.pub.pem")).unwrap();
        let ed = EncodingKey::from_ed_pem(&read("ed25519.pem")).unwrap();
        let ed_pub = DecodingKey::from_ed_pem(&read("ed25519.pub.pem")).unwrap();
        let secret = read("hmac.secret");
        let (hs, hs_key) = (
            EncodingKey::from_secret(&secret),
            DecodingKey::from_secret(&secret),
        );
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_slice(&read("jwk/rsa.json")).unwrap();
        let rsa_jwk = DecodingKey::from_jwk(&jwk).unwrap();
        let cases = [
            (Algorithm::RS256, &rsa, &rsa_pub),
            (Algorithm::RS512, &rsa, &rsa_jwk),
            (Algorithm::PS256, &rsa, &rsa_pub),
            (Algorithm::ES256, &ec, &ec_pub),
            (Algorithm::EdDSA, &ed, &ed_pub),
            (Algorithm::HS256, &hs, &hs_key),
        ];
        for (alg, signing, public) in cases {
            let (msg, sig) = signed(alg, signing);
            let v = new_verifier(&alg, public).unwrap();
            assert!(v.verify(&msg, &sig).is_ok(), "{alg:?}");
            let mut bad = sig.clone();
            bad[3] ^= 1;
            assert!(v.verify(&msg, &bad).is_err(), "{alg:?} tampered signature");
            assert!(v.verify(b"other", &sig).is_err(), "{alg:?} other message");
        }
        // A key is only ever used for its own family.
        for (alg, key) in [
            (Algorithm::HS256, &rsa_pub),
            (Algorithm::RS256, &ec_pub),
            (Algorithm::ES256, &ed_pub),
        ] {
            assert!(new_verifier(&alg, key).is_err(), "{alg:?}");
        }
    }
}
