//! `[upstream]`, validated: timeouts and pooling toward the cells, and the failure-domain
//! settings: active health checks, passive outlier ejection, retries with their budget, and
//! DNS re-resolution of targets named by a host name.
//!
//! Defaults follow what an ALB or Envoy operator expects: health checks are off until
//! `[upstream.health_check]` is written (then `/` every 5 s, 2 up / 3 down); five consecutive
//! gateway failures eject an address for 10 s, doubling to at most 5 min; three attempts in
//! all, retries at most 20% of requests (plus 10 a second); DNS answers are kept for their TTL,
//! clamped to 5 s .. 60 s.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{
    FileDns, FileHealthCheck, FileOutlier, FileRetry, FileUpstream, FileUpstreamHttp2,
};
use super::parse::{dur, in_range, resolve};
use crate::rules::FieldError;

/// ALBs close idle connections after 60 s; a pooled connection must be dropped before that.
pub const MAX_POOL_IDLE: Duration = Duration::from_secs(59);

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    /// Longest wait for the response head, and for each later chunk of the response body.
    pub read_timeout: Duration,
    /// Longest time for the whole exchange, response body included (upgraded connections exempt).
    pub total_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_target: usize,
    /// Extra PEM roots for upstream TLS (besides the public web roots).
    pub ca_file: Option<PathBuf>,
    /// Active checks; `None`: off (passive ejection still applies).
    pub health_check: Option<HealthCheckConfig>,
    pub outlier: OutlierConfig,
    pub retry: RetryConfig,
    pub dns: DnsConfig,
    pub http2: UpstreamHttp2Config,
}

/// `[upstream.http2]`: how the pool shares an HTTP/2 connection to a target.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamHttp2Config {
    /// Streams one connection carries at once before the pool opens another to the target
    /// (the target's own `SETTINGS_MAX_CONCURRENT_STREAMS` may hold them lower).
    pub max_concurrent_streams: u32,
    /// A PING this often on every connection, busy or idle; `None`: no pings.
    pub keep_alive_interval: Option<Duration>,
    /// A connection whose PING is not answered within this is closed.
    pub keep_alive_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    /// Path and query of the `GET` sent to every address.
    pub path: http::uri::PathAndQuery,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that bring an address back.
    pub healthy_threshold: u32,
    /// Consecutive failures that take it out.
    pub unhealthy_threshold: u32,
    /// Inclusive status ranges that count as a pass.
    pub statuses: Vec<(u16, u16)>,
}

impl HealthCheckConfig {
    #[must_use]
    pub fn passes(&self, status: u16) -> bool {
        self.statuses
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct OutlierConfig {
    /// Consecutive gateway failures (connect failure, reset, 502/503/504) that eject an
    /// address; 0 turns passive ejection off.
    pub consecutive_failures: u32,
    /// First ejection; each further one doubles it.
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// Most addresses of one target group ejected at once, in percent (one is always allowed),
    /// so a burst of failures cannot empty a group that active checks would keep.
    pub max_ejection_percent: u8,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    /// Attempts per request, the first included (1: never retry).
    pub max_attempts: u32,
    /// Retry idempotent requests without a body after a reset or a 502/503/504, not only after
    /// a connect failure.
    pub idempotent: bool,
    /// Retries allowed per cell, as a fraction of its requests over the last 10 s.
    pub budget_ratio: f64,
    /// Retries per second a cell may always spend, whatever its traffic.
    pub budget_min_per_second: u32,
}

#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Name servers (`ip` or `ip:port`); empty: the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Shortest time an answer is kept, whatever its TTL.
    pub min_ttl: Duration,
    /// Longest time an answer is kept before asking again, whatever its TTL.
    pub max_ttl: Duration,
    pub timeout: Duration,
}

pub(super) fn build_upstream(u: &FileUpstream, base: &Path) -> Result<UpstreamConfig, FieldError> {
    let connect_timeout = positive(
        "upstream.connect_timeout",
        u.connect_timeout.as_ref(),
        Duration::from_secs(2),
    )?;
    let read_timeout = positive(
        "upstream.read_timeout",
        u.read_timeout.as_ref(),
        Duration::from_secs(30),
    )?;
    let total_timeout = positive(
        "upstream.total_timeout",
        u.total_timeout.as_ref(),
        Duration::from_secs(120),
    )?;
    let pool_idle_timeout = positive(
        "upstream.pool_idle_timeout",
        u.pool_idle_timeout.as_ref(),
        Duration::from_secs(50),
    )?;
    if pool_idle_timeout > MAX_POOL_IDLE {
        return Err(FieldError::new(
            "upstream.pool_idle_timeout",
            humantime::format_duration(pool_idle_timeout),
            "must be at most 59s: an ALB closes idle connections at 60s and a reused one would fail",
        ));
    }
    if total_timeout < read_timeout {
        return Err(FieldError::new(
            "upstream.total_timeout",
            humantime::format_duration(total_timeout),
            "must not be shorter than upstream.read_timeout",
        ));
    }
    let ca_file = u.ca_file.as_deref().map(|p| resolve(base, p));
    if let Some(p) = &ca_file
        && !p.is_file()
    {
        return Err(FieldError::new(
            "upstream.ca_file",
            p.display(),
            "file not found",
        ));
    }
    Ok(UpstreamConfig {
        connect_timeout,
        read_timeout,
        total_timeout,
        pool_idle_timeout,
        pool_max_idle_per_target: u.pool_max_idle_per_target.unwrap_or(256),
        ca_file,
        health_check: u.health_check.as_ref().map(build_health).transpose()?,
        outlier: build_outlier(&u.outlier)?,
        retry: build_retry(&u.retry)?,
        dns: build_dns(&u.dns)?,
        http2: build_http2(&u.http2)?,
    })
}

fn positive(key: &str, v: Option<&String>, default: Duration) -> Result<Duration, FieldError> {
    let d = dur(key, v, default)?;
    if d.is_zero() {
        return Err(FieldError::new(key, "0s", "must be above zero"));
    }
    Ok(d)
}

fn build_health(h: &FileHealthCheck) -> Result<HealthCheckConfig, FieldError> {
    const KEY: &str = "upstream.health_check";
    let raw_path = h.path.as_deref().unwrap_or("/");
    let path = raw_path
        .parse::<http::uri::PathAndQuery>()
        .ok()
        .filter(|_| raw_path.starts_with('/'))
        .ok_or_else(|| {
            FieldError::new(
                format!("{KEY}.path"),
                raw_path,
                "an absolute path, e.g. /healthz",
            )
        })?;
    let interval = positive(
        &format!("{KEY}.interval"),
        h.interval.as_ref(),
        Duration::from_secs(5),
    )?;
    let timeout = positive(
        &format!("{KEY}.timeout"),
        h.timeout.as_ref(),
        Duration::from_secs(2),
    )?;
    if timeout > interval {
        return Err(FieldError::new(
            format!("{KEY}.timeout"),
            humantime::format_duration(timeout),
            "must not be longer than the interval",
        ));
    }
    let statuses = parse_statuses(h.statuses.as_deref().unwrap_or("200-399")).ok_or_else(|| {
        FieldError::new(
            format!("{KEY}.statuses"),
            h.statuses.as_deref().unwrap_or(""),
            "status codes and ranges, e.g. \"200-299,302\"",
        )
    })?;
    Ok(HealthCheckConfig {
        path,
        interval,
        timeout,
        healthy_threshold: in_range(
            &format!("{KEY}.healthy_threshold"),
            h.healthy_threshold.unwrap_or(2),
            1,
            10,
        )?,
        unhealthy_threshold: in_range(
            &format!("{KEY}.unhealthy_threshold"),
            h.unhealthy_threshold.unwrap_or(3),
            1,
            10,
        )?,
        statuses,
    })
}

/// `"200-299,302"` -> `[(200, 299), (302, 302)]`; `None` when malformed or out of 100..=599.
fn parse_statuses(s: &str) -> Option<Vec<(u16, u16)>> {
    let code = |t: &str| {
        t.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    s.split(',')
        .map(|part| match part.split_once('-') {
            Some((lo, hi)) => Some((code(lo)?, code(hi)?)).filter(|(lo, hi)| lo <= hi),
            None => code(part).map(|c| (c, c)),
        })
        .collect()
}

fn build_outlier(o: &FileOutlier) -> Result<OutlierConfig, FieldError> {
    let base_ejection = positive(
        "upstream.outlier.base_ejection",
        o.base_ejection.as_ref(),
        Duration::from_secs(10),
    )?;
    let max_ejection = positive(
        "upstream.outlier.max_ejection",
        o.max_ejection.as_ref(),
        Duration::from_secs(300),
    )?;
    if max_ejection < base_ejection {
        return Err(FieldError::new(
            "upstream.outlier.max_ejection",
            humantime::format_duration(max_ejection),
            "must not be shorter than upstream.outlier.base_ejection",
        ));
    }
    Ok(OutlierConfig {
        consecutive_failures: in_range(
            "upstream.outlier.consecutive_failures",
            o.consecutive_failures.unwrap_or(5),
            0,
            1000,
        )?,
        base_ejection,
        max_ejection,
        max_ejection_percent: u8::try_from(in_range(
            "upstream.outlier.max_ejection_percent",
            o.max_ejection_percent.unwrap_or(50),
            0,
            100,
        )?)
        .unwrap_or(100),
    })
}

fn build_retry(r: &FileRetry) -> Result<RetryConfig, FieldError> {
    let budget_ratio = r.budget_ratio.unwrap_or(0.2);
    if !(0.0..=1.0).contains(&budget_ratio) {
        return Err(FieldError::new(
            "upstream.retry.budget_ratio",
            budget_ratio,
            "between 0 and 1 (0.2: retries at most 20% of requests)",
        ));
    }
    Ok(RetryConfig {
        max_attempts: in_range(
            "upstream.retry.max_attempts",
            r.max_attempts.unwrap_or(3),
            1,
            5,
        )?,
        // Off by default: keeping a replayable head costs a header-map copy per request.
        idempotent: r.idempotent.unwrap_or(false),
        budget_ratio,
        budget_min_per_second: in_range(
            "upstream.retry.budget_min_per_second",
            r.budget_min_per_second.unwrap_or(10),
            0,
            100_000,
        )?,
    })
}

fn build_http2(h: &FileUpstreamHttp2) -> Result<UpstreamHttp2Config, FieldError> {
    let interval = dur(
        "upstream.http2.keep_alive_interval",
        h.keep_alive_interval.as_ref(),
        Duration::from_secs(20),
    )?;
    Ok(UpstreamHttp2Config {
        max_concurrent_streams: in_range(
            "upstream.http2.max_concurrent_streams",
            h.max_concurrent_streams.unwrap_or(100),
            1,
            10_000,
        )?,
        keep_alive_interval: (!interval.is_zero()).then_some(interval),
        keep_alive_timeout: positive(
            "upstream.http2.keep_alive_timeout",
            h.keep_alive_timeout.as_ref(),
            Duration::from_secs(10),
        )?,
    })
}

fn build_dns(d: &FileDns) -> Result<DnsConfig, FieldError> {
    let mut nameservers = Vec::with_capacity(d.nameservers.len());
    for (i, ns) in d.nameservers.iter().enumerate() {
        let addr = ns
            .parse::<SocketAddr>()
            .or_else(|_| {
                ns.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map_err(|_| {
                FieldError::new(
                    format!("upstream.dns.nameservers[{i}]"),
                    ns,
                    "an IP address, optionally with a port (10.0.0.2 or 127.0.0.1:5353)",
                )
            })?;
        nameservers.push(addr);
    }
    let min_ttl = positive(
        "upstream.dns.min_ttl",
        d.min_ttl.as_ref(),
        Duration::from_secs(5),
    )?;
    let max_ttl = positive(
        "upstream.dns.max_ttl",
        d.max_ttl.as_ref(),
        Duration::from_secs(60),
    )?;
    if max_ttl < min_ttl {
        return Err(FieldError::new(
            "upstream.dns.max_ttl",
            humantime::format_duration(max_ttl),
            "must not be shorter than upstream.dns.min_ttl",
        ));
    }
    Ok(DnsConfig {
        nameservers,
        min_ttl,
        max_ttl,
        timeout: positive(
            "upstream.dns.timeout",
            d.timeout.as_ref(),
            Duration::from_secs(2),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse() {
        assert_eq!(
            parse_statuses("200-299, 302"),
            Some(vec![(200, 299), (302, 302)])
        );
        for bad in ["", "2xx", "300-200", "99", "200-600"] {
            assert_eq!(parse_statuses(bad), None, "{bad}");
        }
    }

    #[test]
    fn defaults_and_errors_name_the_key() {
        let base = Path::new(".");
        let u = build_upstream(&FileUpstream::default(), base).unwrap();
        assert!(u.health_check.is_none());
        assert_eq!(u.outlier.consecutive_failures, 5);
        assert_eq!(u.retry.max_attempts, 3);
        assert_eq!(u.dns.max_ttl, Duration::from_secs(60));

        let f = FileUpstream {
            health_check: Some(FileHealthCheck {
                path: Some("healthz".into()),
                ..FileHealthCheck::default()
            }),
            ..FileUpstream::default()
        };
        let e = build_upstream(&f, base).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.value.as_str()),
            ("upstream.health_check.path", "healthz")
        );

        let mut f = FileUpstream::default();
        f.retry.budget_ratio = Some(1.5);
        assert_eq!(
            build_upstream(&f, base).unwrap_err().key,
            "upstream.retry.budget_ratio"
        );

        let mut f = FileUpstream::default();
        f.dns.nameservers = vec!["dns.example".into()];
        assert_eq!(
            build_upstream(&f, base).unwrap_err().key,
            "upstream.dns.nameservers[0]"
        );

        let f = FileUpstream {
            health_check: Some(FileHealthCheck {
                interval: Some("1s".into()),
                timeout: Some("2s".into()),
                ..FileHealthCheck::default()
            }),
            ..FileUpstream::default()
        };
        assert_eq!(
            build_upstream(&f, base).unwrap_err().key,
            "upstream.health_check.timeout"
        );
    }
}
