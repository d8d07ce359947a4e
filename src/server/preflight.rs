//! The preflight: what a config names that only a higher layer can check, done once before
//! serving and by `cellgate validate`, so validation catches everything a start would.
//!
//! [`Config`] holds plain values; building the config file's cells (their targets and target
//! groups) is placement's, and loading listener certificates is [`crate::certs`]'s. Both run
//! here, and a failure is a [`ConfigError`] naming the file, the key and the value, as any
//! other config error.

use crate::certs::CertSet;
use crate::config::{Config, ConfigError};
use crate::placement::Cell;
use crate::ratelimit::fleet::Secret;
use crate::rules::FieldError;

/// The environment variable the fleet limiter's Redis password is read from when
/// `limits.fleet.redis_password_file` is not set.
pub const REDIS_PASSWORD_ENV: &str = "CELLGATE_REDIS_PASSWORD";

/// What the preflight built: the config file's cells, ready for the registry refresh, and the
/// fleet limiter's Redis password.
#[derive(Debug)]
pub struct Prepared {
    pub cells: Vec<Cell>,
    pub redis_password: Option<Secret>,
}

/// Builds the config's cells and loads every listener certificate once.
pub fn preflight(config: &Config) -> Result<Prepared, ConfigError> {
    let invalid = |field: FieldError| ConfigError::Invalid {
        file: config.source_path.clone(),
        field,
    };
    let cells = config
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| Cell::from_file(c, &format!("cells[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    for (i, listener) in config.listeners.iter().enumerate() {
        let Some(tls) = &listener.tls else { continue };
        CertSet::load(&tls.certificates).map_err(|e| {
            invalid(FieldError::new(
                tls.file_key(i, e.index, e.part.as_str()),
                e.path.display(),
                e.reason.to_string(),
            ))
        })?;
    }
    let redis_password = redis_password(config).map_err(invalid)?;
    Ok(Prepared {
        cells,
        redis_password,
    })
}

/// The fleet limiter's password: the file's first line when `redis_password_file` is set (an
/// unreadable or empty file is a config error), else `CELLGATE_REDIS_PASSWORD` when set.
fn redis_password(config: &Config) -> Result<Option<Secret>, FieldError> {
    let Some(fleet) = &config.limits.fleet else {
        return Ok(None);
    };
    let Some(path) = &fleet.password_file else {
        return Ok(std::env::var(REDIS_PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .map(Secret::new));
    };
    let key = "limits.fleet.redis_password_file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| FieldError::new(key, path.display(), format!("cannot read it: {e}")))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(FieldError::new(key, path.display(), "the file is empty"));
    }
    Ok(Some(Secret::new(line.to_owned())))
}
