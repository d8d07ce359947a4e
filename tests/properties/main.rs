//! Property tests for the parsers that face the client and the operator: tenant extraction
//! from the Host, the bearer token and JWT header read before any key, config text, registry
//! files (TOML and JSON Lines agree), and the hygiene and rewrite stages over arbitrary header
//! lists, and API keys as a client sends them.
//!
//! They state the same properties as the cargo-fuzz targets in `fuzz/` (which need a nightly
//! toolchain and run by hand), bounded so the whole file runs in seconds in CI. A crash input
//! the fuzzers find becomes a named regression test beside the code it broke.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apikey;
mod config;
mod desync;
mod hygiene;
mod jwt;
mod registry;
mod tenant;

use proptest::test_runner::{Config, FileFailurePersistence};

/// `cases` per property; failures are not persisted to files (a failure found here becomes a
/// named test instead).
pub fn cases(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}
