//! A per-worker pool of upstream connections, keyed by endpoint (one address of a target):
//! HTTP/1.1 connections, one exchange at a time, and shared HTTP/2 ones ([`super::h2`]), as
//! the target's cell `protocol` says (`auto` lets ALPN choose over TLS).
//!
//! Each worker thread owns one `Pool` (shared by `Rc`), so checking a connection out or in is a
//! `RefCell` borrow and a `Vec` push/pop: no lock, no atomic. A connection returns to the pool
//! only after its response body was read to the end (see [`super::UpstreamBody`]); before reuse
//! it must be younger than the idle timeout and ready, and a request that a stale connection
//! could not even start sending is moved to the next connection without being lost. A
//! connection to an address that left its target's DNS answer (a retired endpoint) is never
//! reused: it is dropped when it comes back or when the pool is next swept.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use http::{Version, header};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, timeout, timeout_at};

use super::{Endpoint, LocalExec, Protocol, RequestBody, Scheme, Target, UpstreamError, h2};
use crate::config::UpstreamConfig;

/// Upstream timeouts, from `[upstream]`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub total: Duration,
}

impl From<&UpstreamConfig> for Timeouts {
    fn from(c: &UpstreamConfig) -> Self {
        Self {
            connect: c.connect_timeout,
            read: c.read_timeout,
            total: c.total_timeout,
        }
    }
}

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

/// The connections to one endpoint: idle HTTP/1.1 ones, and the shared HTTP/2 ones.
struct Slot {
    endpoint: Arc<Endpoint>,
    idle: Vec<Idle>,
    h2: h2::Conns,
}

/// One worker's idle upstream connections, keyed by endpoint id.
pub struct Pool {
    idle: RefCell<HashMap<u64, Slot>>,
    max_idle_per_target: usize,
    idle_timeout: Duration,
    /// TLS offering ALPN `http/1.1`, `h2`, or both (a cell's `protocol`).
    tls: h2::Connectors,
    h2: hyper::client::conn::http2::Builder<LocalExec>,
    max_streams: u32,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("targets", &self.idle.borrow().len())
            .finish_non_exhaustive()
    }
}

/// What an exchange holds of its connection until its response body ends.
pub enum Lease {
    /// An HTTP/1.1 connection, this exchange's alone; back to the pool once the body was read
    /// to the end.
    Http1(http1::SendRequest<RequestBody>),
    /// One stream of a shared HTTP/2 connection, counted until the body ends or is dropped.
    Http2(h2::Stream),
}

/// A response head and what the exchange holds of its connection (none for an upgrade).
pub struct Exchange {
    pub response: Response<Incoming>,
    pub lease: Option<Lease>,
    /// Whether a new connection was opened for this exchange.
    pub connected: bool,
}

/// A failed exchange; `request` is handed back when it was never sent, so it can go to
/// another target.
pub struct SendFailure {
    pub error: UpstreamError,
    pub request: Option<Request<RequestBody>>,
}

/// The protocols a connection may settle on, from the target's `protocol` (and whether the
/// exchange is an upgrade, which is HTTP/1.1's alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alpn {
    Http1,
    Http2,
    /// Over TLS, `h2` or `http/1.1` as the target chooses.
    Either,
}

impl Alpn {
    fn of(target: &Target, upgrade: bool) -> Self {
        match (upgrade, target.protocol, target.scheme) {
            (true, ..) | (false, Protocol::Http1, _) | (false, Protocol::Auto, Scheme::Http) => {
                Self::Http1
            }
            (false, Protocol::Http2, _) => Self::Http2,
            (false, Protocol::Auto, Scheme::Https) => Self::Either,
        }
    }
}

/// A connect in progress to an endpoint over HTTP/2: others wait for it instead of opening
/// their own; when it ends (done, failed or given up) they are woken to look again.
struct Connecting<'a> {
    pool: &'a Pool,
    endpoint: u64,
    done: Rc<Notify>,
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.pool.idle.borrow_mut().get_mut(&self.endpoint) {
            slot.h2.connecting = None;
        }
        self.done.notify_waiters();
    }
}

impl Pool {
    #[must_use]
    pub fn new(cfg: &UpstreamConfig, tls: Arc<rustls::ClientConfig>) -> Rc<Self> {
        Rc::new(Self {
            idle: RefCell::new(HashMap::new()),
            max_idle_per_target: cfg.pool_max_idle_per_target,
            idle_timeout: cfg.pool_idle_timeout,
            tls: h2::Connectors::new(&tls),
            h2: h2::builder(&cfg.http2),
            max_streams: cfg.http2.max_concurrent_streams,
        })
    }

    /// The pool's idle timeout (the sweep interval derives from it).
    #[must_use]
    pub const fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// A pooled connection for `alpn`: a stream on a shared HTTP/2 one with room, else (HTTP/1.1
    /// allowed) an idle HTTP/1.1 one.
    fn checkout(&self, ep: &Endpoint, now: Instant, alpn: Alpn) -> Option<Lease> {
        let mut idle = self.idle.borrow_mut();
        let slot = idle.get_mut(&ep.id)?;
        if ep.retired() {
            idle.remove(&ep.id);
            return None;
        }
        if alpn != Alpn::Http1
            && let Some(stream) = slot.h2.checkout(self.max_streams)
        {
            return Some(Lease::Http2(stream));
        }
        if alpn == Alpn::Http2 {
            return None;
        }
        while let Some(c) = slot.idle.pop() {
            if now.saturating_duration_since(c.since) < self.idle_timeout && !c.sender.is_closed() {
                return Some(Lease::Http1(c.sender));
            }
        }
        None
    }

    fn slot<'a>(map: &'a mut HashMap<u64, Slot>, ep: &Arc<Endpoint>) -> &'a mut Slot {
        map.entry(ep.id).or_insert_with(|| Slot {
            endpoint: Arc::clone(ep),
            idle: Vec::new(),
            h2: h2::Conns::default(),
        })
    }

    /// Returns a connection whose last response was fully read (dropped instead when its
    /// endpoint was retired meanwhile).
    pub fn checkin(&self, ep: &Arc<Endpoint>, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() || ep.retired() || self.max_idle_per_target == 0 {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let slot = Self::slot(&mut idle, ep);
        if slot.idle.len() < self.max_idle_per_target {
            slot.idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Drops expired and closed connections, every connection to a retired endpoint, and
    /// endpoints with none left.
    pub fn sweep(&self) {
        let (ttl, now) = (self.idle_timeout, Instant::now());
        self.idle.borrow_mut().retain(|_, slot| {
            if slot.endpoint.retired() {
                return false;
            }
            slot.idle
                .retain(|c| now.saturating_duration_since(c.since) < ttl && !c.sender.is_closed());
            let h2 = slot.h2.sweep(ttl, now);
            !slot.idle.is_empty() || h2
        });
    }

    /// Sends `req` to endpoint `ep` of `target` on a pooled or new connection and waits for the
    /// response head, for at most the read timeout from `now` and never past `deadline`.
    /// `upgrade` asks for a fresh HTTP/1.1 connection that may switch protocols (never pooled).
    /// A request that a pooled connection hands back unsent (it was closed, or sent GOAWAY)
    /// goes on the next; one that a connection opened for it hands back is returned unsent.
    pub async fn send(
        &self,
        target: &Target,
        ep: &Arc<Endpoint>,
        mut req: Request<RequestBody>,
        t: &Timeouts,
        (now, deadline): (Instant, Instant),
        upgrade: bool,
    ) -> Result<Exchange, SendFailure> {
        let head_deadline = deadline.min(now + t.read);
        let alpn = Alpn::of(target, upgrade);
        loop {
            let pooled = if upgrade {
                None
            } else {
                self.checkout(ep, now, alpn)
            };
            let (lease, connected) = match pooled {
                Some(lease) => (lease, false),
                // Boxed: connecting (TCP, TLS, either handshake) is the cold path, and inline
                // its state would make every request's future several KB larger to move.
                None => match Box::pin(self.open(target, ep, t.connect, alpn, upgrade)).await {
                    Ok(opened) => opened,
                    Err(error) => {
                        return Err(SendFailure {
                            error,
                            request: Some(req),
                        });
                    }
                },
            };
            let sent = match lease {
                Lease::Http1(mut sender) => {
                    if !connected && sender.ready().await.is_err() {
                        continue;
                    }
                    if req.version() == Version::HTTP_2 {
                        h2::to_h1(&mut req);
                    } else if target.protocol == Protocol::Auto {
                        req.headers_mut().remove(header::TE);
                    }
                    match timeout_at(head_deadline, sender.try_send_request(req)).await {
                        Err(_) => return Err(timeout_failure(target)),
                        Ok(Ok(response)) => {
                            Ok((response, (!upgrade).then_some(Lease::Http1(sender))))
                        }
                        Ok(Err(e)) => Err(e),
                    }
                }
                Lease::Http2(stream) => {
                    if req.version() != Version::HTTP_2 {
                        h2::to_h2(&mut req, target.scheme);
                    }
                    let mut sender = stream.sender();
                    match timeout_at(head_deadline, sender.try_send_request(req)).await {
                        Err(_) => return Err(timeout_failure(target)),
                        Ok(Ok(response)) => Ok((response, Some(Lease::Http2(stream)))),
                        Ok(Err(e)) => {
                            stream.retire();
                            Err(e)
                        }
                    }
                }
            };
            match sent {
                Ok((response, lease)) => {
                    return Ok(Exchange {
                        response,
                        lease,
                        connected,
                    });
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the connection died while idle, or went away (GOAWAY)
                    // before taking it; the next connection gets it.
                    Some(r) if !connected => req = r,
                    Some(r) => {
                        return Err(SendFailure {
                            error: UpstreamError::Connect {
                                target: Arc::clone(&target.url),
                                reason: format!("{}: closed before the first request", ep.addr),
                            },
                            request: Some(r),
                        });
                    }
                    None => {
                        return Err(SendFailure {
                            error: UpstreamError::Protocol {
                                target: Arc::clone(&target.url),
                                source: e.into_error(),
                            },
                            request: None,
                        });
                    }
                },
            }
        }
    }

    /// A new connection for the exchange (`true`), or, when another exchange was already
    /// opening an HTTP/2 one to the endpoint, a stream on that one once it is up (`false`).
    async fn open(
        &self,
        target: &Target,
        ep: &Arc<Endpoint>,
        limit: Duration,
        alpn: Alpn,
        upgrade: bool,
    ) -> Result<(Lease, bool), UpstreamError> {
        let mut guard = None;
        if alpn != Alpn::Http1 {
            let waiting = {
                let mut idle = self.idle.borrow_mut();
                let slot = Self::slot(&mut idle, ep);
                match &slot.h2.connecting {
                    Some(done) => Some(Rc::clone(done)),
                    None => {
                        let done = Rc::new(Notify::new());
                        slot.h2.connecting = Some(Rc::clone(&done));
                        guard = Some(Connecting {
                            pool: self,
                            endpoint: ep.id,
                            done,
                        });
                        None
                    }
                }
            };
            if let Some(done) = waiting {
                let _ = timeout(limit, done.notified()).await;
                if let Some(lease) = self.checkout(ep, Instant::now(), alpn) {
                    return Ok((lease, false));
                }
            }
        }
        let lease = match self.connect(target, ep, limit, alpn, upgrade).await? {
            Opened::Http1(sender) => Lease::Http1(sender),
            Opened::Http2(sender) => {
                let mut idle = self.idle.borrow_mut();
                Lease::Http2(Self::slot(&mut idle, ep).h2.add(sender))
            }
        };
        drop(guard);
        Ok((lease, true))
    }

    async fn connect(
        &self,
        target: &Target,
        ep: &Endpoint,
        limit: Duration,
        alpn: Alpn,
        upgrade: bool,
    ) -> Result<Opened, UpstreamError> {
        let tcp = match timeout(limit, connect_tcp(ep.addr)).await {
            Err(_) => {
                return Err(UpstreamError::ConnectTimeout {
                    target: Arc::clone(&target.url),
                });
            }
            Ok(Err(reason)) => {
                return Err(UpstreamError::Connect {
                    target: Arc::clone(&target.url),
                    reason,
                });
            }
            Ok(Ok(tcp)) => tcp,
        };
        let connect_err = |reason: String| UpstreamError::Connect {
            target: Arc::clone(&target.url),
            reason,
        };
        let Some(name) = &target.server_name else {
            return if alpn == Alpn::Http2 {
                let sender = h2::handshake(&self.h2, tcp)
                    .await
                    .map_err(|e| connect_err(e.to_string()))?;
                Ok(Opened::Http2(sender))
            } else {
                http1_handshake(tcp, upgrade)
                    .await
                    .map_err(|e| connect_err(e.to_string()))
            };
        };
        let tls = match alpn {
            Alpn::Http1 => &self.tls.http1,
            Alpn::Http2 => &self.tls.http2,
            Alpn::Either => &self.tls.either,
        };
        let tls = timeout(limit, tls.connect(name.clone(), tcp))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout {
                target: Arc::clone(&target.url),
            })?
            .map_err(|e| connect_err(format!("TLS: {e}")))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        match (alpn, h2) {
            (Alpn::Http2, false) => Err(connect_err(
                "TLS: the target did not agree to h2 over ALPN (its cell's protocol is http2)"
                    .to_owned(),
            )),
            (Alpn::Http2 | Alpn::Either, true) => {
                let sender = h2::handshake(&self.h2, tls)
                    .await
                    .map_err(|e| connect_err(e.to_string()))?;
                Ok(Opened::Http2(sender))
            }
            (Alpn::Http1 | Alpn::Either, _) => http1_handshake(tls, upgrade)
                .await
                .map_err(|e| connect_err(e.to_string())),
        }
    }
}

/// A connection just opened, as ALPN settled it.
enum Opened {
    Http1(http1::SendRequest<RequestBody>),
    Http2(hyper::client::conn::http2::SendRequest<RequestBody>),
}

async fn http1_handshake<T>(io: T, upgrade: bool) -> Result<Opened, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder.writev(false);
    let (sender, conn) = builder.handshake(TokioIo::new(io)).await?;
    spawn_conn(conn, upgrade);
    Ok(Opened::Http1(sender))
}

fn spawn_conn<T>(conn: http1::Connection<T, RequestBody>, upgrade: bool)
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // Connection errors surface through the request that hit them; nothing to report here.
    if upgrade {
        tokio::task::spawn_local(async move { drop(conn.with_upgrades().await) });
    } else {
        tokio::task::spawn_local(async move { drop(conn.await) });
    }
}

fn timeout_failure(target: &Target) -> SendFailure {
    SendFailure {
        error: UpstreamError::ResponseTimeout {
            target: Arc::clone(&target.url),
        },
        request: None,
    }
}

async fn connect_tcp(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    // Requests are small and latency matters more than packet count.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}
