//! HTTP/2 connections to a target, shared by many exchanges at once.
//!
//! A cell whose `protocol` is `http2` (or `auto`, when ALPN settles on `h2`) is reached over
//! multiplexed connections: the worker's pool keeps, per endpoint, the connections it opened,
//! and an exchange takes a *stream* on the first one with room (fewer than
//! `upstream.http2.max_concurrent_streams` open) or opens another. The stream is counted until
//! its response body ends or is dropped ([`Stream`]'s `Drop`); dropping it half-way resets just
//! that stream, never the connection. A connection the target closed or sent GOAWAY on hands
//! back every request it had not started (hyper returns them unsent), and the pool sends those
//! on a fresh connection; the streams it had accepted finish where they are. Pings
//! (`keep_alive_interval`) find a dead peer on an idle or a busy connection.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme as UriScheme};
use http::{Request, Uri, Version, header};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::time::{Duration, Instant};
use tokio_rustls::TlsConnector;

use super::{LocalExec, Protocol, RequestBody, Scheme};
use crate::config::UpstreamHttp2Config;

/// One shared connection and the streams it carries now.
pub struct Shared {
    sender: SendRequest<RequestBody>,
    streams: Cell<u32>,
    /// When its last stream ended (or it was opened).
    idle_since: Cell<Instant>,
    /// Set once a request came back unsent from it: it takes no more streams.
    closing: Cell<bool>,
}

impl Shared {
    fn usable(&self) -> bool {
        !self.closing.get() && !self.sender.is_closed()
    }
}

/// One stream on a shared connection, counted until dropped.
pub struct Stream(Rc<Shared>);

impl Stream {
    fn open(conn: &Rc<Shared>) -> Self {
        conn.streams.set(conn.streams.get() + 1);
        Self(Rc::clone(conn))
    }

    /// The connection's sender (a cheap handle; the connection is shared).
    pub fn sender(&self) -> SendRequest<RequestBody> {
        self.0.sender.clone()
    }

    /// The connection will take no more streams (a request came back unsent from it).
    pub fn retire(&self) {
        self.0.closing.set(true);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let left = self.0.streams.get().saturating_sub(1);
        self.0.streams.set(left);
        if left == 0 {
            self.0.idle_since.set(Instant::now());
        }
    }
}

/// The HTTP/2 connections to one endpoint, and the connect in progress, if any.
#[derive(Default)]
pub struct Conns {
    list: Vec<Rc<Shared>>,
    /// Set while a connection is being opened: others wait for it rather than open their own.
    pub connecting: Option<Rc<tokio::sync::Notify>>,
}

impl Conns {
    /// A stream on the first usable connection with fewer than `max` open (the oldest first,
    /// so load packs onto few connections and the rest can idle out).
    pub fn checkout(&mut self, max: u32) -> Option<Stream> {
        self.list.retain(|c| c.usable() || c.streams.get() > 0);
        self.list
            .iter()
            .find(|c| c.usable() && c.streams.get() < max)
            .map(Stream::open)
    }

    /// Adds a new connection and takes its first stream.
    pub fn add(&mut self, sender: SendRequest<RequestBody>) -> Stream {
        let conn = Rc::new(Shared {
            sender,
            streams: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
            closing: Cell::new(false),
        });
        let stream = Stream::open(&conn);
        self.list.push(conn);
        stream
    }

    /// Drops connections that are closed, or idle (no stream) for `ttl`; false once none is
    /// left and no connect is in progress.
    pub fn sweep(&mut self, ttl: Duration, now: Instant) -> bool {
        self.list.retain(|c| {
            let busy = c.streams.get() > 0;
            busy || (c.usable() && now.saturating_duration_since(c.idle_since.get()) < ttl)
        });
        !self.list.is_empty() || self.connecting.is_some()
    }
}

/// TLS to targets offering ALPN `http/1.1`, `h2`, or both: one per way a cell's `protocol`
/// may ask (the same roots and settings otherwise).
#[derive(Clone)]
pub struct Connectors {
    pub http1: TlsConnector,
    pub http2: TlsConnector,
    pub either: TlsConnector,
}

impl Connectors {
    #[must_use]
    pub fn new(tls: &Arc<rustls::ClientConfig>) -> Self {
        let alpn = |protocols: &[&[u8]]| {
            let mut c = (**tls).clone();
            c.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
            TlsConnector::from(Arc::new(c))
        };
        Self {
            http1: alpn(&[b"http/1.1"]),
            http2: alpn(&[b"h2"]),
            either: alpn(&[b"h2", b"http/1.1"]),
        }
    }

    /// The connector for a target whose cell's protocol is `protocol`.
    #[must_use]
    pub fn of(&self, protocol: Protocol) -> &TlsConnector {
        match protocol {
            Protocol::Http1 => &self.http1,
            Protocol::Http2 => &self.http2,
            Protocol::Auto => &self.either,
        }
    }
}

/// The hyper client settings for a connection to a cell.
pub fn builder(cfg: &UpstreamHttp2Config) -> http2::Builder<LocalExec> {
    let mut b = http2::Builder::new(LocalExec);
    b.timer(TokioTimer::new())
        // Until the target's SETTINGS arrive, assume no more than the pool will open.
        .initial_max_send_streams(cfg.max_concurrent_streams as usize)
        .keep_alive_interval(cfg.keep_alive_interval)
        .keep_alive_timeout(cfg.keep_alive_timeout)
        .keep_alive_while_idle(true);
    b
}

/// Opens HTTP/2 over an established stream (TLS with ALPN `h2`, or cleartext by prior
/// knowledge) and runs the connection on this worker.
pub async fn handshake<T>(
    b: &http2::Builder<LocalExec>,
    io: T,
) -> Result<SendRequest<RequestBody>, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let (sender, conn) = b.handshake(TokioIo::new(io)).await?;
    // Errors surface through the streams that hit them.
    tokio::task::spawn_local(async move { drop(conn.await) });
    Ok(sender)
}

/// Turns the request the earlier stages built for HTTP/1.1 (origin-form target, `Host`) into
/// an HTTP/2 one: `:scheme` and `:authority` from the target's scheme and the `Host` the cell
/// is to see, and no `Host` field.
pub fn to_h2(req: &mut Request<RequestBody>, scheme: Scheme) {
    let authority = req
        .headers_mut()
        .remove(header::HOST)
        .and_then(|h| Authority::from_maybe_shared(Bytes::copy_from_slice(h.as_bytes())).ok());
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(match scheme {
        Scheme::Http => UriScheme::HTTP,
        Scheme::Https => UriScheme::HTTPS,
    });
    parts.authority = authority;
    parts.path_and_query = Some(
        req.uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_2;
}

/// Back from HTTP/2 to the HTTP/1.1 form (a request handed back unsent by an `auto` target's
/// h2 connection, about to go over HTTP/1.1).
pub fn to_h1(req: &mut Request<RequestBody>) {
    if let Some(a) = req.uri().authority()
        && let Ok(h) = http::HeaderValue::from_str(a.as_str())
    {
        req.headers_mut().insert(header::HOST, h);
    }
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(pq);
    *req.version_mut() = Version::HTTP_11;
    req.headers_mut().remove(header::TE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_change_form_both_ways() {
        let mut req = Request::get("/a/b?c=1")
            .header(header::HOST, "cell-a.internal:8443")
            .header(header::TE, "trailers")
            .body(RequestBody::Empty)
            .unwrap();
        to_h2(&mut req, Scheme::Https);
        assert_eq!(req.uri(), "https://cell-a.internal:8443/a/b?c=1");
        assert_eq!(req.version(), Version::HTTP_2);
        assert!(req.headers().get(header::HOST).is_none());
        assert_eq!(req.headers()[header::TE], "trailers");
        to_h1(&mut req);
        assert_eq!(req.uri(), "/a/b?c=1");
        assert_eq!(req.headers()[header::HOST], "cell-a.internal:8443");
        assert!(req.headers().get(header::TE).is_none());
        assert_eq!(req.version(), Version::HTTP_11);
    }
}
