//! Upstream targets and the per-thread connection pool that reaches them.
//!
//! Called by the *forward* stage. A [`Target`] is a parsed `http(s)://host:port`; everything the
//! request path needs from it (pool key, `Host` value, TLS server name) is computed once when
//! the registry is loaded. Connections live in a per-worker [`pool::Pool`] (no locks: each
//! worker thread owns its pool), are kept alive under the configured idle timeout (below an
//! ALB's 60 s), and go back to the pool only once their response body has been read to the end.

mod body;
pub mod checks;
pub mod discovery;
pub mod endpoint;
pub mod h2;
pub mod health;
pub mod pool;
pub mod retry;

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use rustls_pki_types::ServerName;

pub use body::{BodyError, BodyLimit, RequestBody, RequestBodyError, Reuse, UpstreamBody};
pub use endpoint::{Arm, Endpoint, Pick, TargetState, Tried, Upstreams, select};
pub use pool::{Pool, Timeouts};

/// Runs hyper's connection tasks on the worker's own thread (`spawn_local`): requests and
/// bodies on the request path are not `Send`.
#[derive(Clone, Copy, Debug)]
pub struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}
pub use retry::RetryBudget;

/// How a cell's targets are spoken to (`protocol` on a cell).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1, a request per connection at a time (the default).
    #[default]
    Http1,
    /// HTTP/2 only: over TLS by ALPN `h2`, in cleartext by prior knowledge (h2c).
    Http2,
    /// Over TLS, whatever ALPN settles (`h2` or `http/1.1`); in cleartext, HTTP/1.1.
    Auto,
}

impl Protocol {
    /// Every protocol, in the order error messages list them.
    pub const ALL: [Self; 3] = [Self::Http1, Self::Http2, Self::Auto];
    /// The accepted names, for error messages.
    pub const EXPECTED: &'static str = "http1, http2 or auto";

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Auto => "auto",
        }
    }

    /// The protocol named `s` (the registry's spelling only).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// One address of a cell: an ALB, an ECS task, or a local server.
#[derive(Debug)]
pub struct Target {
    pub scheme: Scheme,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: Arc<str>,
    pub port: u16,
    /// The target's own name for the `Host` header (`host` or `host:port` for a non-default port).
    pub authority: HeaderValue,
    /// Canonical `scheme://host:port`: the pool key and the name in logs.
    pub url: Arc<str>,
    /// Set when `host` is an IP literal, so no resolution is needed.
    pub ip: Option<IpAddr>,
    /// TLS server name (SNI and certificate check), for https targets.
    pub server_name: Option<ServerName<'static>>,
    /// What the target speaks: its cell's `protocol`.
    pub protocol: Protocol,
    /// Its runtime state (addresses, health), resolved on first use in this generation.
    state: OnceLock<Arc<TargetState>>,
}

impl Clone for Target {
    fn clone(&self) -> Self {
        Self {
            scheme: self.scheme,
            host: Arc::clone(&self.host),
            port: self.port,
            authority: self.authority.clone(),
            url: Arc::clone(&self.url),
            ip: self.ip,
            server_name: self.server_name.clone(),
            protocol: self.protocol,
            // Looked up again by the new owner, so a clone never keeps a dropped state alive.
            state: OnceLock::new(),
        }
    }
}

impl Target {
    /// The target's runtime state: the same for every generation naming this URL.
    pub fn state(&self, up: &Upstreams) -> &Arc<TargetState> {
        self.state.get_or_init(|| up.get_or_register(self))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(&'static str);

impl Target {
    /// Parses `http://host:port` or `https://host[:port]` (no path, query or credentials),
    /// spoken to over HTTP/1.1 until its cell says otherwise.
    pub fn parse(s: &str) -> Result<Self, TargetError> {
        let uri: http::Uri = s
            .parse()
            .map_err(|_| TargetError("not a URL, expected e.g. http://10.0.0.5:8080"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => return Err(TargetError("scheme must be http or https")),
        };
        let auth = uri.authority().ok_or(TargetError("missing host"))?;
        if auth.as_str().contains('@') {
            return Err(TargetError("credentials are not allowed in a target URL"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(TargetError(
                "a target is host and port only, without a path or query",
            ));
        }
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(TargetError("missing host"));
        }
        let default_port = if scheme == Scheme::Https { 443 } else { 80 };
        let port = auth.port_u16().unwrap_or(default_port);
        let ip = host.parse::<IpAddr>().ok();
        let authority =
            HeaderValue::from_str(auth.as_str()).map_err(|_| TargetError("invalid host"))?;
        let url_host = if ip.is_some_and(|i| i.is_ipv6()) {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let url = format!(
            "{}://{url_host}:{port}",
            if scheme == Scheme::Https {
                "https"
            } else {
                "http"
            }
        );
        let server_name = match scheme {
            Scheme::Http => None,
            Scheme::Https => Some(
                ServerName::try_from(host.to_owned())
                    .map_err(|_| TargetError("host is not a valid TLS server name"))?,
            ),
        };
        Ok(Self {
            scheme,
            host: Arc::from(host),
            port,
            authority,
            url: Arc::from(url),
            ip,
            server_name,
            protocol: Protocol::Http1,
            state: OnceLock::new(),
        })
    }
}

/// Why an exchange with a cell failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {target} failed: {reason}")]
    Connect { target: Arc<str>, reason: String },
    #[error("connect to {target} timed out")]
    ConnectTimeout { target: Arc<str> },
    #[error("{target} sent no response head in time")]
    ResponseTimeout { target: Arc<str> },
    /// Every address of the tenant's arm of the cell is failing health checks or ejected.
    #[error("cell {cell} has no healthy target")]
    NoHealthyTarget { cell: Arc<str> },
    #[error("exchange with {target} failed: {source}")]
    Protocol {
        target: Arc<str>,
        source: hyper::Error,
    },
}

/// Time from the upstream epoch (the first call) to `at`: the coarse clock shared by the
/// ejection back-off ([`health`]) and the retry budget's buckets ([`retry`]).
fn since_epoch(at: std::time::Instant) -> std::time::Duration {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    at.saturating_duration_since(*EPOCH.get_or_init(std::time::Instant::now))
}

impl UpstreamError {
    /// The `kind` label of `cellgate_upstream_errors_total` (none: nothing was attempted).
    #[must_use]
    pub const fn metric_kind(&self) -> Option<crate::metrics::UpstreamErrorKind> {
        use crate::metrics::UpstreamErrorKind as K;
        match self {
            Self::Connect { .. } | Self::ConnectTimeout { .. } => Some(K::connect),
            Self::ResponseTimeout { .. } => Some(K::timeout),
            Self::Protocol { .. } => Some(K::protocol),
            Self::NoHealthyTarget { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:8081").unwrap();
        assert_eq!(
            (t.scheme, &*t.host, t.port, &*t.url),
            (Scheme::Http, "127.0.0.1", 8081, "http://127.0.0.1:8081")
        );
        assert!(t.ip.is_some() && t.server_name.is_none());
        let t = Target::parse("https://my-alb-123.eu-west-1.elb.amazonaws.com").unwrap();
        assert_eq!(
            (t.port, t.authority.to_str().unwrap()),
            (443, "my-alb-123.eu-west-1.elb.amazonaws.com")
        );
        assert!(t.server_name.is_some() && t.ip.is_none());
        let t = Target::parse("http://[::1]:9000").unwrap();
        assert_eq!((&*t.host, &*t.url), ("::1", "http://[::1]:9000"));
    }

    #[test]
    fn rejects_bad_targets() {
        for bad in [
            "ftp://x:1",
            "127.0.0.1:80",
            "http://h:1/path",
            "http://u:p@h:1",
            "http://h:1?q=1",
            "nonsense",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
