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
use crate::rules::FieldError;

/// What the preflight built: the config file's cells, ready for the registry refresh.
#[derive(Debug)]
pub struct Prepared {
    pub cells: Vec<Cell>,
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
    Ok(Prepared { cells })
}
