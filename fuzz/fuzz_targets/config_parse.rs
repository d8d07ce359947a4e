//! Config text (`config::Config::from_toml`, then `server::preflight`): never a panic; an
//! accepted config validates the same way twice; a refused one says why, under a key of a
//! known table.
//!
//! Paths resolve under a directory that does not exist, but an absolute path in the input
//! (`secret_file = "/dev/zero"`) is still read: run this target where that is harmless.
#![no_main]

use std::path::Path;

use cellgate::config::{Config, ConfigError, Overrides};
use libfuzzer_sys::fuzz_target;

const TOP: &[&str] = &[
    "server",
    "listeners",
    "admin",
    "tenant",
    "auth",
    "registry",
    "cells",
    "canary",
    "limits",
    "upstream",
    "headers",
    "access_log",
    "log",
];

/// Checked as `cellgate validate` checks it: loaded, then the preflight.
fn parse(text: &str) -> Result<Config, ConfigError> {
    let path = Path::new("/nonexistent/cellgate-fuzz/cellgate.toml");
    let config = Config::from_toml(text, path, &Overrides::default())?;
    cellgate::server::preflight(&config)?;
    Ok(config)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let first = parse(text);
    match &first {
        Ok(_) => {}
        Err(ConfigError::Parse { message, .. }) => assert!(!message.is_empty()),
        Err(ConfigError::Invalid { field, .. }) => {
            assert!(!field.reason.is_empty());
            let top = field.key.split(['.', '[']).next().unwrap_or_default();
            assert!(TOP.contains(&top), "{} is under no known table", field.key);
        }
        Err(ConfigError::Read { .. }) => unreachable!("neither step reads a config file"),
    }
    assert_eq!(format!("{first:?}"), format!("{:?}", parse(text)));
});
