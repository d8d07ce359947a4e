//! Helpers for the unit tests of the auth and tenant modules (compiled for tests only).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::Verifier;
use crate::config::build_auth;
use crate::config::file::FileAuth;
use crate::metrics::Metrics;

/// The test key fixtures (RSA, P-256, Ed25519, HMAC, and their JWKs under `jwk/`).
pub const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

/// A verifier from the body of an `[auth]` table, key paths relative to [`KEYS`].
pub fn verifier_from(auth_toml: &str) -> Verifier {
    let file: FileAuth = toml::from_str(auth_toml).unwrap();
    let cfg = build_auth(&file, Path::new(KEYS)).unwrap();
    Verifier::new(&cfg, &Metrics::new()).unwrap()
}

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
