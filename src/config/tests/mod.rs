//! Config loading tests: the minimal config, parsing as `cellgate validate` does, shared fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

use std::time::Duration;

mod auth;
mod canary;
mod defaults;
mod errors;
mod limits;
mod listeners;
mod metering;
mod registry;
mod tenant;
mod upstream;

const CONFIG_PATH: &str = "/etc/cellgate/cellgate.toml";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

/// The smallest config that validates: one listener, one tenant source, a registry.
const MINIMAL: &str = r#"
[[listeners]]
address = "127.0.0.1:8080"

[tenant]
sources = ["subdomain"]
base_domains = ["example.com"]

[registry]
source = "file"
"#;

/// The config, checked as `cellgate validate` checks it: loaded, then the preflight (the
/// config's cells and certificates).
fn parse_with(text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
    let config = Config::from_toml(text, Path::new(CONFIG_PATH), overrides)?;
    crate::server::preflight(&config)?;
    Ok(config)
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(text, &Overrides::default())
}

/// The field named by an `Invalid` error; any other outcome fails the test.
fn invalid(text: &str) -> FieldError {
    match parse(text) {
        Err(ConfigError::Invalid { file, field }) => {
            assert_eq!(file, Path::new(CONFIG_PATH));
            field
        }
        Err(other) => panic!("expected ConfigError::Invalid, got {other}"),
        Ok(_) => panic!("expected ConfigError::Invalid, config was accepted"),
    }
}

fn kv(f: &FieldError) -> (&str, &str) {
    (f.key.as_str(), f.value.as_str())
}

/// `MINIMAL` with extra TOML appended (later tables may not repeat MINIMAL's).
fn minimal_plus(extra: &str) -> String {
    format!("{MINIMAL}\n{extra}")
}

/// `MINIMAL` with the jwt source on and `[auth]` TOML appended.
fn with_auth(auth: &str) -> String {
    format!(
        "{}\n{auth}",
        MINIMAL.replace("[\"subdomain\"]", "[\"jwt\", \"subdomain\"]")
    )
}

const ISSUER_HEAD: &str = "[[auth.issuers]]\nissuer = \"https://idp.test\"\naudiences = [\"cg\"]\n";
