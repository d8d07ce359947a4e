//! `[limits.fleet]`, validated: where the fleet-wide limiter's Redis/Valkey is, how often each
//! node reconciles with it, and whether it enforces or only counts.
//!
//! Off unless the section is present. When on, the tier rates and per-tenant `rate`/`burst`
//! overrides are fleet-wide figures. The password never appears in the config: it comes from
//! `redis_password_file` or `CELLGATE_REDIS_PASSWORD`, read at start-up, so a URL carrying one
//! is refused here (it would end up in logs and process listings).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::FileFleet;
use super::parse::{dur, dur_in_range, in_range, resolve};
use crate::rules::FieldError;

/// Whether fleet accounting refuses requests or only counts what it would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetMode {
    /// Refuse what the fleet-wide rate refuses.
    Enforce,
    /// Count what the fleet-wide rate would refuse; each node enforces its share (rate ÷ live
    /// nodes), as per-node limits did.
    Shadow,
}

/// Where Redis is: parsed from `redis://[user@]host[:port][/db]` or `rediss://…` (TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub db: u16,
    /// An ACL user name (the password comes from the file or the environment).
    pub username: Option<String>,
}

impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{host}:{}/{}", self.port, self.db)
    }
}

/// The fleet-wide limiter's settings.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub redis: RedisTarget,
    /// A file holding the password (trailing newline ignored); else `CELLGATE_REDIS_PASSWORD`.
    pub password_file: Option<PathBuf>,
    /// Prefix of every key cellgate writes, so several fleets can share one Redis.
    pub key_prefix: String,
    /// How often a node reports what it admitted and learns each tenant's fleet allowance.
    pub sync_interval: Duration,
    /// The longest one Redis round trip may take before it counts as failed.
    pub timeout: Duration,
    /// How often a node renews its membership (a node is live for three of these).
    pub heartbeat_interval: Duration,
    /// How long the breaker stays open before one probe.
    pub breaker_cooldown: Duration,
    pub mode: FleetMode,
    /// Tenant keys reconciled in one flush, at most (the rest on later flushes).
    pub max_flush_keys: usize,
    /// The node count a node assumes until it has read the membership set (a node that starts
    /// while Redis is down divides by this).
    pub initial_nodes: u32,
}

const KEY: &str = "limits.fleet";

/// Parses a Redis URL into a [`RedisTarget`]; errors name `key`.
pub fn parse_redis_url(key: &str, url: &str) -> Result<RedisTarget, FieldError> {
    let bad = |why: &str| FieldError::new(key, redact(url), why.to_owned());
    let (tls, rest) = if let Some(r) = url.strip_prefix("rediss://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("redis://") {
        (false, r)
    } else {
        return Err(bad("use redis://host:port or rediss://host:port (TLS)"));
    };
    if rest.contains('?') || rest.contains('#') {
        return Err(bad("query strings and fragments are not supported"));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (username, hostport) = match authority.rsplit_once('@') {
        Some((user, hp)) => {
            if user.contains(':') {
                return Err(bad(
                    "no password in the URL: put it in redis_password_file or CELLGATE_REDIS_PASSWORD",
                ));
            }
            (Some(user.to_owned()).filter(|u| !u.is_empty()), hp)
        }
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport).ok_or_else(|| bad("not host[:port]"))?;
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return Err(bad(
            "the host is empty or has characters a host name cannot",
        ));
    }
    let db = if path.is_empty() {
        0
    } else {
        path.parse::<u16>()
            .ok()
            .filter(|d| *d < 10_000)
            .ok_or_else(|| bad("the path is a database number, e.g. /0"))?
    };
    Ok(RedisTarget {
        tls,
        host: host.to_owned(),
        port,
        db,
        username,
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; port defaults to 6379.
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok().filter(|p| *p != 0)?,
            None if after.is_empty() => 6379,
            None => return None,
        };
        return Some((host, port));
    }
    match s.split_once(':') {
        Some((h, p)) => Some((h, p.parse().ok().filter(|p| *p != 0)?)),
        None => Some((s, 6379)),
    }
}

/// The URL with anything between `://` and `@` hidden, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// A key prefix: 1-64 characters of `A-Z a-z 0-9 : _ . -` (no braces: a hash tag would pin
/// every tenant to one cluster slot).
fn key_prefix(raw: Option<&String>) -> Result<String, FieldError> {
    let p = raw.map_or("cellgate:", String::as_str);
    if p.is_empty()
        || p.len() > 64
        || !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.-".contains(&b))
    {
        return Err(FieldError::new(
            format!("{KEY}.key_prefix"),
            p,
            "1-64 characters of A-Z a-z 0-9 : _ . -",
        ));
    }
    Ok(p.to_owned())
}

/// Builds [`FleetConfig`] from `[limits.fleet]` (absent: fleet limits off).
pub fn build_fleet(
    raw: Option<&FileFleet>,
    base: &Path,
) -> Result<Option<FleetConfig>, FieldError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let url_key = format!("{KEY}.redis_url");
    let url = raw
        .redis_url
        .as_deref()
        .ok_or_else(|| FieldError::new(&url_key, "(unset)", "required: redis://host:port"))?;
    let redis = parse_redis_url(&url_key, url)?;
    let d = |name: &str, v: &Option<String>, default: Duration, lo: Duration, hi: Duration| {
        let key = format!("{KEY}.{name}");
        dur_in_range(&key, dur(&key, v.as_ref(), default)?, lo, hi)
    };
    let ms = Duration::from_millis;
    let sync_interval = d("sync_interval", &raw.sync_interval, ms(20), ms(5), ms(1000))?;
    let timeout = d("timeout", &raw.timeout, ms(50), ms(1), ms(2000))?;
    let heartbeat_interval = d(
        "heartbeat_interval",
        &raw.heartbeat_interval,
        ms(1000),
        ms(100),
        ms(10_000),
    )?;
    if heartbeat_interval < sync_interval {
        return Err(FieldError::new(
            format!("{KEY}.heartbeat_interval"),
            humantime::format_duration(heartbeat_interval),
            "at least sync_interval",
        ));
    }
    let breaker_cooldown = d(
        "breaker_cooldown",
        &raw.breaker_cooldown,
        ms(500),
        ms(10),
        ms(60_000),
    )?;
    let mode = match raw.mode.as_deref() {
        None | Some("enforce") => FleetMode::Enforce,
        Some("shadow") => FleetMode::Shadow,
        Some(other) => {
            return Err(FieldError::new(
                format!("{KEY}.mode"),
                other,
                "\"enforce\" or \"shadow\"",
            ));
        }
    };
    let max_flush_keys = in_range(
        &format!("{KEY}.max_flush_keys"),
        raw.max_flush_keys.unwrap_or(10_000),
        1,
        1_000_000,
    )?;
    let initial_nodes = in_range(
        &format!("{KEY}.initial_nodes"),
        raw.initial_nodes.unwrap_or(1),
        1,
        100_000,
    )?;
    Ok(Some(FleetConfig {
        redis,
        password_file: raw.redis_password_file.as_deref().map(|p| resolve(base, p)),
        key_prefix: key_prefix(raw.key_prefix.as_ref())?,
        sync_interval,
        timeout,
        heartbeat_interval,
        breaker_cooldown,
        mode,
        max_flush_keys,
        initial_nodes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_name_what_is_wrong() {
        let t = parse_redis_url("k", "redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.db),
            (false, "127.0.0.1", 6380, 2)
        );
        let t = parse_redis_url("k", "rediss://app@cache.example.internal").unwrap();
        assert_eq!(
            (t.tls, t.port, t.username.as_deref()),
            (true, 6379, Some("app"))
        );
        let t = parse_redis_url("k", "redis://[::1]:7000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 7000));
        assert_eq!(t.to_string(), "redis://[::1]:7000/0");
        for (bad, why) in [
            ("http://h:1", "redis://"),
            ("redis://h:0", "host[:port]"),
            ("redis://h:x", "host[:port]"),
            ("redis://h/abc", "database number"),
            ("redis://h?x=1", "query"),
            ("redis://", "host is empty"),
            ("redis://h o", "host is empty"),
        ] {
            let e = parse_redis_url("limits.fleet.redis_url", bad).unwrap_err();
            assert!(e.reason.contains(why), "{bad}: {e:?}");
            assert_eq!(e.key, "limits.fleet.redis_url");
        }
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_never_echoed() {
        let e = parse_redis_url("k", "redis://user:hunter2@h:6379").unwrap_err();
        assert!(e.reason.contains("redis_password_file"));
        assert!(!e.value.contains("hunter2"), "{e:?}");
        assert_eq!(e.value, "redis://***@h:6379");
    }

    #[test]
    fn defaults_and_ranges() {
        let raw = FileFleet {
            redis_url: Some("redis://127.0.0.1".into()),
            ..FileFleet::default()
        };
        let c = build_fleet(Some(&raw), Path::new("/etc/cellgate"))
            .unwrap()
            .unwrap();
        assert_eq!(c.sync_interval, Duration::from_millis(20));
        assert_eq!(c.timeout, Duration::from_millis(50));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(c.key_prefix, "cellgate:");
        assert_eq!(c.mode, FleetMode::Enforce);
        assert!(build_fleet(None, Path::new("/")).unwrap().is_none());

        let bad = |f: fn(&mut FileFleet)| {
            let mut raw = FileFleet {
                redis_url: Some("redis://h".into()),
                ..FileFleet::default()
            };
            f(&mut raw);
            build_fleet(Some(&raw), Path::new("/")).unwrap_err()
        };
        assert_eq!(bad(|r| r.redis_url = None).key, "limits.fleet.redis_url");
        assert_eq!(
            bad(|r| r.key_prefix = Some("a{b}".into())).key,
            "limits.fleet.key_prefix"
        );
        assert_eq!(
            bad(|r| r.key_prefix = Some(String::new())).key,
            "limits.fleet.key_prefix"
        );
        assert_eq!(
            bad(|r| r.mode = Some("open".into())).key,
            "limits.fleet.mode"
        );
        assert_eq!(
            bad(|r| r.sync_interval = Some("1ms".into())).key,
            "limits.fleet.sync_interval"
        );
        assert_eq!(
            bad(|r| r.heartbeat_interval = Some("10ms".into())).key,
            "limits.fleet.heartbeat_interval"
        );
        assert_eq!(
            bad(|r| r.timeout = Some("soon".into())).key,
            "limits.fleet.timeout"
        );
    }
}
