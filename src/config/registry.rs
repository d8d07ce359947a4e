//! `[registry]`: where placement comes from (a file, or a DynamoDB table), how often it is
//! polled and fully re-read, and how tenants missing from the snapshot are looked up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::FileRegistry;
use super::parse::{dur, dur_in_range, in_range, resolve};
use crate::rules::FieldError;

#[derive(Debug, Clone, Copy)]
pub struct LookupConfig {
    /// Look tenants missing from the snapshot up in the registry (default: DynamoDB only).
    pub unknown: bool,
    pub settings: LookupSettings,
}

#[derive(Debug, Clone)]
pub enum RegistryConfig {
    /// A registry file (TOML, or JSON Lines by its extension) re-read when it changes.
    File {
        path: PathBuf,
        poll_interval: Duration,
        full_refresh: Duration,
    },
    /// A DynamoDB table, its `epoch` item polled for changes.
    Dynamo {
        settings: DynamoSettings,
        poll_interval: Duration,
        full_refresh: Duration,
    },
}

impl RegistryConfig {
    #[must_use]
    pub const fn poll_interval(&self) -> Duration {
        match self {
            Self::File { poll_interval, .. } | Self::Dynamo { poll_interval, .. } => *poll_interval,
        }
    }

    #[must_use]
    pub const fn full_refresh(&self) -> Duration {
        match self {
            Self::File { full_refresh, .. } | Self::Dynamo { full_refresh, .. } => *full_refresh,
        }
    }
}

/// `registry.lookup_*` settings.
#[derive(Debug, Clone, Copy)]
pub struct LookupSettings {
    /// Registry reads per second for unknown tenants (token bucket rate).
    pub rate: f64,
    pub burst: f64,
    pub negative_ttl: Duration,
    pub negative_capacity: u64,
}

/// Where the registry table is, and how the proxy reads it.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    pub table: String,
    /// Overrides `AWS_REGION` and the rest of the standard chain.
    pub region: Option<String>,
    /// Overrides `AWS_ENDPOINT_URL` (a local DynamoDB-API server).
    pub endpoint_url: Option<String>,
    /// Parallel segments of the start-up scan.
    pub scan_segments: u32,
    /// Items per scan page (`Limit`); `None` lets DynamoDB page at 1 MB.
    pub scan_page_size: Option<u32>,
}

pub(super) fn build_registry(
    reg: Option<&FileRegistry>,
    base: &Path,
) -> Result<RegistryConfig, FieldError> {
    let Some(reg) = reg else {
        return Err(FieldError::new(
            "registry",
            "(missing)",
            "a [registry] table is required, e.g. source = \"file\"",
        ));
    };
    let poll_interval = dur(
        "registry.poll_interval",
        reg.poll_interval.as_ref(),
        Duration::from_millis(if reg.source == "file" { 500 } else { 250 }),
    )?;
    dur_in_range(
        "registry.poll_interval",
        poll_interval,
        Duration::from_millis(10),
        Duration::from_secs(3600),
    )?;
    let full_refresh = dur(
        "registry.full_refresh",
        reg.full_refresh.as_ref(),
        Duration::from_secs(if reg.source == "file" { 60 } else { 300 }),
    )?;
    dur_in_range(
        "registry.full_refresh",
        full_refresh,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    )?;
    let only = |key: &str, set: bool, source: &str| {
        if set {
            Err(FieldError::new(
                format!("registry.{key}"),
                "(set)",
                format!("not used by source = \"{source}\""),
            ))
        } else {
            Ok(())
        }
    };
    match reg.source.as_str() {
        "file" => {
            for (key, set) in [
                ("table", reg.table.is_some()),
                ("region", reg.region.is_some()),
                ("endpoint_url", reg.endpoint_url.is_some()),
                ("scan_segments", reg.scan_segments.is_some()),
                ("scan_page_size", reg.scan_page_size.is_some()),
            ] {
                only(key, set, "file")?;
            }
            let p = reg.path.as_deref().unwrap_or("registry.toml");
            Ok(RegistryConfig::File {
                path: resolve(base, p),
                poll_interval,
                full_refresh,
            })
        }
        "dynamodb" => {
            only("path", reg.path.is_some(), "dynamodb")?;
            let Some(table) = reg.table.clone() else {
                return Err(FieldError::new(
                    "registry.table",
                    "(missing)",
                    "the DynamoDB table name (or CELLGATE_REGISTRY_TABLE)",
                ));
            };
            let valid_table = (3..=255).contains(&table.len())
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !valid_table {
                return Err(FieldError::new(
                    "registry.table",
                    &table,
                    "DynamoDB table names are 3-255 characters of A-Z a-z 0-9 _ - .",
                ));
            }
            if let Some(u) = &reg.endpoint_url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(FieldError::new(
                    "registry.endpoint_url",
                    u,
                    "an http(s) URL, e.g. http://127.0.0.1:8000",
                ));
            }
            let scan_segments = in_range(
                "registry.scan_segments",
                reg.scan_segments.unwrap_or(4),
                1,
                64,
            )?;
            if reg.scan_page_size == Some(0) {
                return Err(FieldError::new(
                    "registry.scan_page_size",
                    0,
                    "must be at least 1 (leave it out to page at 1 MB)",
                ));
            }
            Ok(RegistryConfig::Dynamo {
                settings: DynamoSettings {
                    table,
                    region: reg.region.clone(),
                    endpoint_url: reg.endpoint_url.clone(),
                    scan_segments,
                    scan_page_size: reg.scan_page_size,
                },
                poll_interval,
                full_refresh,
            })
        }
        other => Err(FieldError::new(
            "registry.source",
            other,
            "expected \"file\" or \"dynamodb\"",
        )),
    }
}

pub(super) fn build_lookup(
    reg: Option<&FileRegistry>,
    registry: &RegistryConfig,
) -> Result<LookupConfig, FieldError> {
    let dynamo = matches!(registry, RegistryConfig::Dynamo { .. });
    let (rate, burst, ttl, capacity, unknown) = reg.map_or((None, None, None, None, None), |r| {
        (
            r.lookup_rate,
            r.lookup_burst,
            r.negative_ttl.as_ref(),
            r.negative_capacity,
            r.lookup_unknown,
        )
    });
    let rate = rate.unwrap_or(20.0);
    if !(0.1..=10_000.0).contains(&rate) {
        return Err(FieldError::new(
            "registry.lookup_rate",
            rate,
            "registry reads per second for unknown tenants: 0.1 to 10000",
        ));
    }
    let burst = burst.unwrap_or(rate * 2.0);
    if !(1.0..=100_000.0).contains(&burst) {
        return Err(FieldError::new(
            "registry.lookup_burst",
            burst,
            "must be between 1 and 100000",
        ));
    }
    let negative_ttl = dur_in_range(
        "registry.negative_ttl",
        dur("registry.negative_ttl", ttl, Duration::from_secs(5))?,
        Duration::from_millis(100),
        Duration::from_secs(3600),
    )?;
    let negative_capacity = in_range(
        "registry.negative_capacity",
        capacity.unwrap_or(100_000),
        1,
        10_000_000,
    )?;
    Ok(LookupConfig {
        unknown: unknown.unwrap_or(dynamo),
        settings: LookupSettings {
            rate,
            burst,
            negative_ttl,
            negative_capacity,
        },
    })
}
