#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use crate::config::{Config, ConfigError, Overrides};
use crate::rules::FieldError;

const TLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
const CONFIG_PATH: &str = "/etc/cellgate/cellgate.toml";

fn config(tls: &str) -> String {
    format!(
        r#"
[[listeners]]
address = "127.0.0.1:8443"
{tls}

[tenant]
sources = ["subdomain"]
base_domains = ["example.com"]

[registry]
source = "file"
"#
    )
}

/// Loaded and preflighted, as `cellgate validate` does: the preflight loads the certificates.
fn parse(tls: &str) -> Result<Config, ConfigError> {
    let cfg = Config::from_toml(&config(tls), Path::new(CONFIG_PATH), &Overrides::default())?;
    crate::server::preflight(&cfg)?;
    Ok(cfg)
}

fn invalid(tls: &str) -> FieldError {
    match parse(tls) {
        Err(ConfigError::Invalid { field, .. }) => field,
        Err(other) => panic!("expected ConfigError::Invalid, got {other}"),
        Ok(_) => panic!("expected ConfigError::Invalid, config was accepted"),
    }
}

fn entry(cert: &str, key: &str) -> String {
    format!("[[listeners.tls.certificates]]\ncert = \"{TLS}/{cert}\"\nkey = \"{TLS}/{key}\"\n")
}

#[test]
fn the_single_form_is_one_default_certificate() {
    let cfg = parse(&format!(
        "tls = {{ cert = \"{TLS}/cert.pem\", key = \"{TLS}/key.pem\" }}"
    ))
    .unwrap();
    let tls = cfg.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.certificates.len(), 1);
    assert_eq!(tls.certificates[0].cert, Path::new(TLS).join("cert.pem"));
    assert_eq!(tls.reload_interval, Duration::from_secs(30));
}

#[test]
fn the_list_form_keeps_order_and_takes_a_reload_interval() {
    let cfg = parse(&format!(
        "[listeners.tls]\nreload_interval = \"250ms\"\n{}{}",
        entry("other.pem", "other.key"),
        entry("cert.pem", "key.pem")
    ))
    .unwrap();
    let tls = cfg.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.certificates.len(), 2);
    assert_eq!(tls.certificates[0].cert, Path::new(TLS).join("other.pem"));
    assert_eq!(tls.reload_interval, Duration::from_millis(250));
}

#[test]
fn certificate_errors_name_the_entry_key_and_the_file() {
    // Key of another certificate.
    let f = invalid(&format!(
        "{}{}",
        entry("cert.pem", "key.pem"),
        entry("other.pem", "special.key")
    ));
    assert_eq!(f.key, "listeners[0].tls.certificates[1].key");
    assert_eq!(f.value, format!("{TLS}/special.key"));
    assert!(f.reason.contains("does not match"), "{}", f.reason);

    // No DNS name, with another certificate beside it.
    let f = invalid(&format!(
        "{}{}",
        entry("cert.pem", "key.pem"),
        entry("nosan.pem", "nosan.key")
    ));
    assert_eq!(f.key, "listeners[0].tls.certificates[1].cert");
    assert_eq!(f.value, format!("{TLS}/nosan.pem"));

    // Not a certificate at all, in the single form.
    let f = invalid(&format!(
        "tls = {{ cert = \"{TLS}/key.pem\", key = \"{TLS}/key.pem\" }}"
    ));
    assert_eq!(f.key, "listeners[0].tls.cert");
    assert!(f.reason.contains("no certificate"), "{}", f.reason);

    let f = invalid(&entry("absent.pem", "key.pem"));
    assert_eq!(
        (f.key.as_str(), f.reason.as_str()),
        ("listeners[0].tls.certificates[0].cert", "file not found")
    );
}

#[test]
fn shape_errors_name_the_key() {
    let f = invalid(&format!("tls = {{ cert = \"{TLS}/cert.pem\" }}"));
    assert_eq!(f.key, "listeners[0].tls.key");
    let f = invalid(&format!(
        "[listeners.tls]\ncert = \"{TLS}/cert.pem\"\nkey = \"{TLS}/key.pem\"\n{}",
        entry("other.pem", "other.key")
    ));
    assert_eq!(f.key, "listeners[0].tls.certificates");
    let f = invalid("[listeners.tls]\nreload_interval = \"1s\"");
    assert_eq!(f.key, "listeners[0].tls");
    let f = invalid(&format!(
        "[listeners.tls]\nreload_interval = \"0s\"\n{}",
        entry("cert.pem", "key.pem")
    ));
    assert_eq!(f.key, "listeners[0].tls.reload_interval");
    let shown = ConfigError::Invalid {
        file: CONFIG_PATH.into(),
        field: f,
    }
    .to_string();
    assert!(
        shown.contains("listeners[0].tls.reload_interval = \"0s\""),
        "{shown}"
    );
}
