//! `[access_log]` and `[log]`: what the access log writes, and the process log's level and
//! format.

use super::file::{FileAccessLog, FileLog};
use super::parse::in_range;
use crate::rules::FieldError;

#[derive(Debug, Clone)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// Fraction of routed requests logged; errors and rejections are always logged.
    pub sample: f64,
    /// Lines buffered between the request path and the writer; beyond it lines are dropped.
    pub buffer: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

pub(super) fn build_access_log(a: &FileAccessLog) -> Result<AccessLogConfig, FieldError> {
    let sample = in_range("access_log.sample", a.sample.unwrap_or(1.0), 0.0, 1.0)?;
    let buffer = a.buffer.unwrap_or(16_384);
    if buffer == 0 {
        return Err(FieldError::new(
            "access_log.buffer",
            0,
            "must be at least 1",
        ));
    }
    let access_log = AccessLogConfig {
        enabled: a.enabled.unwrap_or(true),
        sample,
        buffer,
    };
    Ok(access_log)
}

pub(super) fn build_log(l: &FileLog) -> Result<LogConfig, FieldError> {
    let level = l.level.clone().unwrap_or_else(|| "info".to_owned());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(FieldError::new(
            "log.level",
            &level,
            "not a log level or filter (e.g. \"info\", \"cellgate=debug\")",
        ));
    }
    let format = match l.format.as_deref().unwrap_or("json") {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            return Err(FieldError::new(
                "log.format",
                other,
                "expected \"json\" or \"text\"",
            ));
        }
    };
    Ok(LogConfig { level, format })
}
