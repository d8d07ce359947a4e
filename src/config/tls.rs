//! `[listeners.tls]`: the certificates a listener terminates TLS with, checked at load.
//!
//! Two shapes. One certificate:
//!
//! ```toml
//! [[listeners]]
//! address = "0.0.0.0:443"
//! tls = { cert = "certs/app.pem", key = "certs/app.key" }
//! ```
//!
//! or several, chosen by SNI (the first is the default for clients without SNI or with a name
//! no certificate covers):
//!
//! ```toml
//! [listeners.tls]
//! reload_interval = "30s"
//!
//! [[listeners.tls.certificates]]
//! cert = "certs/app.pem"
//! key = "certs/app.key"
//!
//! [[listeners.tls.certificates]]
//! cert = "certs/other.pem"
//! key = "certs/other.key"
//! ```
//!
//! Here the shape is checked and the files must exist; the preflight
//! (`server::preflight`, run by `cellgate validate` and at start) then loads every certificate
//! exactly as the listener will (the key must match the leaf; with several, each needs DNS
//! names and no name may repeat), so validation catches what would otherwise fail at start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::FileTls;
use super::parse::{dur, resolve};
use crate::rules::FieldError;

/// The certificates a TLS listener serves, chosen by SNI.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// In config order, never empty; the first is the default (no SNI, or an unknown name).
    pub certificates: Vec<TlsFiles>,
    /// How often the files' metadata is checked for a change (`reload_interval`).
    pub reload_interval: Duration,
    /// Given as a `[[listeners.tls.certificates]]` list (else as one `cert` and `key`).
    pub listed: bool,
}

impl ListenerTls {
    /// The config key certificate `index`'s `part` (`cert` or `key`) was written under, for
    /// errors: `listeners[0].tls.certificates[1].key`, or `listeners[0].tls.cert`.
    #[must_use]
    pub fn file_key(&self, listener: usize, index: usize, part: &str) -> String {
        if self.listed {
            format!("listeners[{listener}].tls.certificates[{index}].{part}")
        } else {
            format!("listeners[{listener}].tls.{part}")
        }
    }
}

/// One certificate: a PEM chain (leaf first) and its PEM private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How often certificate files are checked for a change, unless configured.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// Validates listener `i`'s `[listeners.tls]` table and loads its certificates once.
pub(super) fn build_listener_tls(
    i: usize,
    t: &FileTls,
    base: &Path,
) -> Result<ListenerTls, FieldError> {
    let prefix = format!("listeners[{i}].tls");
    let single = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(FieldError::new(
                format!("{prefix}.key"),
                "",
                format!("missing: {prefix}.cert = {cert:?} needs its key"),
            ));
        }
        (None, Some(key)) => {
            return Err(FieldError::new(
                format!("{prefix}.cert"),
                "",
                format!("missing: {prefix}.key = {key:?} needs its certificate"),
            ));
        }
    };
    let listed = !t.certificates.is_empty();
    let certificates: Vec<TlsFiles> = match single {
        Some(_) if listed => {
            return Err(FieldError::new(
                format!("{prefix}.certificates"),
                format!("{} entries", t.certificates.len()),
                "give either cert and key, or [[listeners.tls.certificates]] entries, not both",
            ));
        }
        Some((cert, key)) => vec![TlsFiles {
            cert: resolve(base, cert),
            key: resolve(base, key),
        }],
        None if listed => t
            .certificates
            .iter()
            .map(|c| TlsFiles {
                cert: resolve(base, &c.cert),
                key: resolve(base, &c.key),
            })
            .collect(),
        None => {
            return Err(FieldError::new(
                prefix,
                "{}",
                "needs cert and key, or [[listeners.tls.certificates]] entries",
            ));
        }
    };
    let tls = ListenerTls {
        certificates,
        reload_interval: DEFAULT_RELOAD_INTERVAL,
        listed,
    };
    for (index, f) in tls.certificates.iter().enumerate() {
        for (part, p) in [("cert", &f.cert), ("key", &f.key)] {
            if !p.is_file() {
                return Err(FieldError::new(
                    tls.file_key(i, index, part),
                    p.display(),
                    "file not found",
                ));
            }
        }
    }
    let interval_key = format!("{prefix}.reload_interval");
    let reload_interval = dur(
        &interval_key,
        t.reload_interval.as_ref(),
        DEFAULT_RELOAD_INTERVAL,
    )?;
    if reload_interval.is_zero() {
        return Err(FieldError::new(
            interval_key,
            "0s",
            "must be above zero (e.g. \"30s\")",
        ));
    }
    Ok(ListenerTls {
        reload_interval,
        ..tls
    })
}

#[cfg(test)]
mod tests;
