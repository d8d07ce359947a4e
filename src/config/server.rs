//! `[server]`, validated: worker threads, shutdown, and what a public listener tolerates from
//! a client before it answers or hangs up (request hygiene, head and body sizes, timeouts,
//! connection caps, HTTP/2 stream and window limits). The defaults are safe for the open
//! internet; each one is a key to change, named in docs/security.md.

use std::time::Duration;

use super::file::{FileHttp2, FileServer};
use super::parse::{dur, dur_in_range, in_range};
use crate::rules::FieldError;
use ipnet::IpNet;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data-plane threads, one current-thread runtime each.
    pub workers: usize,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// What a request header name with an underscore gets (`server.headers_with_underscores`).
    pub underscores: HeaderUnderscores,
    /// What each class of HTTP/1 request gets (`server.desync_mitigation`).
    pub desync: crate::desync::Mode,
    /// Sizes and times a client must keep within.
    pub limits: IngressLimits,
    /// Connections the proxy holds at once.
    pub connections: ConnectionLimits,
    pub http2: Http2Config,
    /// Hops in front (NLB, ALB, CDN) whose word on the client's address is taken
    /// (`server.trusted_hops`): a PROXY protocol header, or `X-Forwarded-For`.
    pub trusted_hops: Vec<IpNet>,
    /// From a trusted hop, the client is taken from `X-Forwarded-For`.
    pub trust_x_forwarded_for: bool,
    /// A Unix socket where a new process can take the listening sockets over
    /// (`cellgate serve --takeover`); none: no zero-downtime upgrade.
    pub handover_socket: Option<std::path::PathBuf>,
}

/// What happens to request header names containing `_`: a proxy in front of software that
/// treats `_` and `-` alike (CGI, some frameworks) lets `x_tenant_id` slip past a check of
/// `x-tenant-id`. Names as in Envoy's `headers_with_underscores_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderUnderscores {
    /// 400 and close.
    #[default]
    Reject,
    /// Removed before the request goes on.
    Drop,
    /// Passed through.
    Allow,
}

/// Per-request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngressLimits {
    /// Request line plus headers, in bytes (431 beyond; HTTP/2: the decoded header list).
    pub max_header_bytes: usize,
    /// Header fields per request (431 beyond).
    pub max_headers: usize,
    /// Request target length in bytes (414 beyond).
    pub max_uri_bytes: usize,
    /// Request body in bytes, declared or streamed (413 beyond).
    pub max_body_bytes: u64,
    /// From the first byte of a request head to its end; the connection is closed after.
    pub header_timeout: Duration,
    /// From the head to the end of the request body (408 beyond).
    pub request_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
}

impl Default for IngressLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 100 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Connection caps, over all workers; a connection beyond one is closed as soon as accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max: usize,
    /// Per client address (after PROXY protocol, when a listener speaks it); 0 = no cap.
    pub per_ip: usize,
}

/// HTTP/2 server settings (`[server.http2]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Config {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`; a stream beyond it is refused.
    pub max_concurrent_streams: u32,
    /// Flow-control window per stream and per connection, in bytes.
    pub stream_window: u32,
    pub connection_window: u32,
    /// Streams a client may open and reset before the proxy accepts them, at once: beyond
    /// this the connection gets GOAWAY `ENHANCE_YOUR_CALM` (the HTTP/2 rapid-reset attack).
    pub max_pending_resets: usize,
    /// Streams the proxy may reset for a client's protocol errors before it closes the
    /// connection.
    pub max_local_resets: usize,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            stream_window: 1024 * 1024,
            connection_window: 2 * 1024 * 1024,
            max_pending_resets: 20,
            max_local_resets: 1024,
        }
    }
}

fn within<T>(key: &str, v: Option<T>, default: T, lo: T, hi: T) -> Result<T, FieldError>
where
    T: PartialOrd + Copy + std::fmt::Display,
{
    in_range(key, v.unwrap_or(default), lo, hi)
}

fn timeout(key: &str, v: Option<&String>, default: Duration) -> Result<Duration, FieldError> {
    let d = dur(key, v, default)?;
    dur_in_range(
        key,
        d,
        Duration::from_millis(100),
        Duration::from_secs(3600),
    )
}

pub(super) fn build_server(
    s: &FileServer,
    base: &std::path::Path,
) -> Result<ServerConfig, FieldError> {
    let workers = match s.workers {
        None | Some(0) => std::thread::available_parallelism().map_or(1, usize::from),
        Some(n) if n > 256 => return Err(FieldError::new("server.workers", n, "at most 256")),
        Some(n) => n,
    };
    let trusted_hops = nets("server.trusted_hops", &s.trusted_hops)?;
    let d = IngressLimits::default();
    let limits = IngressLimits {
        // hyper's read buffer must hold the whole head: 8 KiB is its floor.
        max_header_bytes: within(
            "server.max_header_bytes",
            s.max_header_bytes,
            d.max_header_bytes,
            8192,
            1024 * 1024,
        )?,
        max_headers: within("server.max_headers", s.max_headers, d.max_headers, 8, 1000)?,
        max_uri_bytes: within(
            "server.max_uri_bytes",
            s.max_uri_bytes,
            d.max_uri_bytes,
            256,
            1024 * 1024,
        )?,
        max_body_bytes: within(
            "server.max_body_bytes",
            s.max_body_bytes,
            d.max_body_bytes,
            0,
            u64::MAX >> 2,
        )?,
        header_timeout: timeout(
            "server.header_timeout",
            s.header_timeout.as_ref(),
            d.header_timeout,
        )?,
        request_timeout: timeout(
            "server.request_timeout",
            s.request_timeout.as_ref(),
            d.request_timeout,
        )?,
        idle_timeout: timeout(
            "server.idle_timeout",
            s.idle_timeout.as_ref(),
            d.idle_timeout,
        )?,
    };
    let connections = ConnectionLimits {
        max: within(
            "server.max_connections",
            s.max_connections,
            10_000,
            1,
            10_000_000,
        )?,
        per_ip: within(
            "server.max_connections_per_ip",
            s.max_connections_per_ip,
            1024,
            0,
            10_000_000,
        )?,
    };
    Ok(ServerConfig {
        workers,
        shutdown_grace: dur(
            "server.shutdown_grace",
            s.shutdown_grace.as_ref(),
            Duration::from_secs(30),
        )?,
        underscores: match s.headers_with_underscores.as_deref() {
            None | Some("reject") => HeaderUnderscores::Reject,
            Some("drop") => HeaderUnderscores::Drop,
            Some("allow") => HeaderUnderscores::Allow,
            Some(other) => {
                return Err(FieldError::new(
                    "server.headers_with_underscores",
                    other,
                    "one of \"reject\", \"drop\", \"allow\"",
                ));
            }
        },
        desync: match s.desync_mitigation.as_deref() {
            None => crate::desync::Mode::default(),
            Some(v) => crate::desync::Mode::parse(v).ok_or_else(|| {
                FieldError::new(
                    "server.desync_mitigation",
                    v,
                    "one of \"monitor\", \"defensive\", \"strictest\"",
                )
            })?,
        },
        limits,
        connections,
        http2: build_http2(&s.http2)?,
        trust_x_forwarded_for: match (s.trust_x_forwarded_for, trusted_hops.is_empty()) {
            (Some(true), true) => {
                return Err(FieldError::new(
                    "server.trust_x_forwarded_for",
                    true,
                    "needs server.trusted_hops: without them any client could pick its address",
                ));
            }
            (v, _) => v.unwrap_or(false),
        },
        trusted_hops,
        handover_socket: s
            .handover_socket
            .as_deref()
            .map(|p| super::parse::resolve(base, p)),
    })
}

/// A list of CIDRs or single addresses, each error naming its index.
pub(super) fn nets(key: &str, list: &[String]) -> Result<Vec<IpNet>, FieldError> {
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            c.parse::<IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| FieldError::new(format!("{key}[{i}]"), c, "not a CIDR or IP address"))
        })
        .collect()
}

fn build_http2(h: &FileHttp2) -> Result<Http2Config, FieldError> {
    let d = Http2Config::default();
    // RFC 9113 §6.9.2: a window above 2^31-1 is a flow-control error.
    let max_window = (1 << 31) - 1;
    Ok(Http2Config {
        max_concurrent_streams: within(
            "server.http2.max_concurrent_streams",
            h.max_concurrent_streams,
            d.max_concurrent_streams,
            1,
            10_000,
        )?,
        stream_window: within(
            "server.http2.stream_window",
            h.stream_window,
            d.stream_window,
            65_535,
            max_window,
        )?,
        connection_window: within(
            "server.http2.connection_window",
            h.connection_window,
            d.connection_window,
            65_535,
            max_window,
        )?,
        max_pending_resets: within(
            "server.http2.max_pending_resets",
            h.max_pending_resets,
            d.max_pending_resets,
            1,
            10_000,
        )?,
        max_local_resets: within(
            "server.http2.max_local_resets",
            h.max_local_resets,
            d.max_local_resets,
            1,
            100_000,
        )?,
    })
}
