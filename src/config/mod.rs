//! Typed, validated configuration.
//!
//! A TOML file parses into [`file::FileConfig`] (serde, unknown keys rejected), then
//! [`Config::load`] turns it into [`Config`] with real types: socket addresses, durations,
//! header names, CIDRs, loaded JWT keys and JWKS URLs. Every failure names the file, the key and the value, so
//! `cellgate validate` can point an operator at the exact line to fix. Precedence of values is
//! command line > environment > file ([`Overrides`] carries the first two).

mod auth;
mod canary;
mod entitlements;
pub mod file;
mod fleet;
mod limits;
mod logs;
mod metering;
mod parse;
mod registry;
mod server;
mod tenant;
mod tls;
mod traces;
mod typed;
mod upstream;

use std::path::{Path, PathBuf};

use crate::rules::FieldError;

pub use auth::build_auth;
pub use canary::{CanaryConfig, ForceArm, HashBy, build_canary};
pub use entitlements::{
    EntitlementRoute, EntitlementsConfig, FileEntitlementRoute, FileEntitlements, RoutePath,
    build_entitlements,
};
pub use fleet::{FleetConfig, FleetMode, RedisTarget, parse_redis_url};
pub use limits::{LimitsConfig, RouteClassConfig, TierConfig, build_limits};
pub use logs::{AccessLogConfig, LogConfig, LogFormat};
pub use metering::{FileMetering, MeteringConfig, MeteringSink, build_metering};
pub use parse::{parse_addr, parse_duration};
pub use registry::{DynamoSettings, LookupConfig, LookupSettings, RegistryConfig};
pub use server::{ConnectionLimits, HeaderUnderscores, Http2Config, IngressLimits, ServerConfig};
pub use tenant::{ApiKeyConfig, RoutePolicy, TenantConfig, TenantHeaderConfig};
pub use tls::{ListenerTls, TlsFiles};
pub use traces::{FileTracing, OtlpEndpoint, TracingConfig, TrustIncoming, build_tracing};
pub use typed::{AdminConfig, Config, ListenerConfig};
pub use upstream::{
    DnsConfig, HealthCheckConfig, MAX_POOL_IDLE, OutlierConfig, RetryConfig, UpstreamConfig,
    UpstreamHttp2Config,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {error}", file.display())]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {message}", file.display())]
    Parse { file: PathBuf, message: String },
    #[error("{}: {} = {:?}: {}", file.display(), field.key, field.value, field.reason)]
    Invalid { file: PathBuf, field: FieldError },
}

/// Values that win over the file: filled from the command line, else from the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Replaces the first listener's address (`--listen`, `CELLGATE_LISTEN`).
    pub listen: Option<String>,
    /// Replaces the admin address (`--admin`, `CELLGATE_ADMIN_LISTEN`).
    pub admin: Option<String>,
    /// Replaces `registry.path` (`CELLGATE_REGISTRY_PATH`).
    pub registry_path: Option<String>,
    /// Replaces `registry.source` (`CELLGATE_REGISTRY_SOURCE`).
    pub registry_source: Option<String>,
    /// Replaces `registry.table` (`CELLGATE_REGISTRY_TABLE`).
    pub registry_table: Option<String>,
    /// Replaces `log.level` (`CELLGATE_LOG_LEVEL`).
    pub log_level: Option<String>,
}

impl Overrides {
    /// Reads the `CELLGATE_*` environment variables; fields already set (from the command line)
    /// are kept.
    #[must_use]
    pub fn with_env(mut self) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        self.listen = self.listen.or_else(|| env("CELLGATE_LISTEN"));
        self.admin = self.admin.or_else(|| env("CELLGATE_ADMIN_LISTEN"));
        self.registry_path = self.registry_path.or_else(|| env("CELLGATE_REGISTRY_PATH"));
        self.registry_table = self
            .registry_table
            .or_else(|| env("CELLGATE_REGISTRY_TABLE"));
        self.registry_source = self
            .registry_source
            .or_else(|| env("CELLGATE_REGISTRY_SOURCE"));
        self.log_level = self.log_level.or_else(|| env("CELLGATE_LOG_LEVEL"));
        self
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.to_path_buf(),
            error,
        })?;
        Self::from_toml(&text, path, overrides)
    }

    /// Parses and validates config text; `path` names the file in errors and anchors relative
    /// paths (registry file, key files) to its directory.
    pub fn from_toml(text: &str, path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut raw: file::FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        apply_overrides(&mut raw, overrides);
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        typed::build(raw, path, &base).map_err(|field| ConfigError::Invalid {
            file: path.to_path_buf(),
            field,
        })
    }
}

fn apply_overrides(raw: &mut file::FileConfig, o: &Overrides) {
    if let Some(listen) = &o.listen {
        match raw.listeners.first_mut() {
            Some(first) => first.address.clone_from(listen),
            None => raw.listeners.push(file::FileListener {
                address: listen.clone(),
                proxy_protocol: false,
                tls: None,
            }),
        }
    }
    if let Some(admin) = &o.admin {
        raw.admin.address = Some(admin.clone());
    }
    if o.registry_path.is_some() || o.registry_source.is_some() || o.registry_table.is_some() {
        let reg = raw.registry.get_or_insert_with(|| file::FileRegistry {
            source: "file".to_owned(),
            ..file::FileRegistry::default()
        });
        if let Some(t) = &o.registry_table {
            reg.table = Some(t.clone());
        }
        if let Some(p) = &o.registry_path {
            reg.path = Some(p.clone());
        }
        if let Some(s) = &o.registry_source {
            reg.source.clone_from(s);
        }
    }
    if let Some(level) = &o.log_level {
        raw.log.level = Some(level.clone());
    }
}

#[cfg(test)]
mod tests;
