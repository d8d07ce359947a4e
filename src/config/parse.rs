//! Small parsers every `[section]` builder shares: durations, addresses, paths relative to the
//! config file, and range checks whose errors name the key and the value.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::rules::FieldError;

/// Parses a duration such as `250ms`, `2s` or `1m 30s`.
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, FieldError> {
    humantime::parse_duration(value).map_err(|e| {
        FieldError::new(
            key,
            value,
            format!("not a duration ({e}); use e.g. \"2s\" or \"250ms\""),
        )
    })
}

/// Parses `ip:port`.
pub fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, FieldError> {
    value.parse().map_err(|_| {
        FieldError::new(
            key,
            value,
            "not a socket address; use ip:port, e.g. \"127.0.0.1:8080\"",
        )
    })
}

/// An optional duration, or `default` when the key is absent.
pub(super) fn dur(
    key: &str,
    value: Option<&String>,
    default: Duration,
) -> Result<Duration, FieldError> {
    value.map_or(Ok(default), |v| parse_duration(key, v))
}

/// A path from the config, anchored to the config file's directory unless absolute.
pub(crate) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// `v` if it lies in `lo..=hi`; otherwise an error naming the key, the value and the range.
pub(super) fn in_range<T: PartialOrd + Display + Copy>(
    key: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, FieldError> {
    if lo <= v && v <= hi {
        Ok(v)
    } else {
        Err(FieldError::new(
            key,
            v,
            format!("must be between {lo} and {hi}"),
        ))
    }
}

/// [`in_range`] for durations, shown as `250ms`, `1h`.
pub(super) fn dur_in_range(
    key: &str,
    d: Duration,
    lo: Duration,
    hi: Duration,
) -> Result<Duration, FieldError> {
    if lo <= d && d <= hi {
        Ok(d)
    } else {
        let show = humantime::format_duration;
        Err(FieldError::new(
            key,
            show(d),
            format!("must be between {} and {}", show(lo), show(hi)),
        ))
    }
}
