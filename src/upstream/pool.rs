//! A per-worker pool of HTTP/1.1 upstream connections, keyed by endpoint (one address of a
//! target).
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

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;

use super::{Endpoint, RequestBody, Target, UpstreamError};
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
    sender: SendRequest<RequestBody>,
    since: Instant,
}

/// Idle connections to one endpoint.
struct Slot {
    endpoint: Arc<Endpoint>,
    idle: Vec<Idle>,
}

/// One worker's idle upstream connections, keyed by endpoint id.
pub struct Pool {
    idle: RefCell<HashMap<u64, Slot>>,
    max_idle_per_target: usize,
    idle_timeout: Duration,
    tls: TlsConnector,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("targets", &self.idle.borrow().len())
            .finish_non_exhaustive()
    }
}

/// A response head and, when the connection may be reused, its sender.
pub struct Exchange {
    pub response: Response<Incoming>,
    pub sender: Option<SendRequest<RequestBody>>,
    /// Whether a new connection was opened for this exchange.
    pub connected: bool,
}

/// A failed exchange; `request` is handed back when it was never sent, so it can go to
/// another target.
pub struct SendFailure {
    pub error: UpstreamError,
    pub request: Option<Request<RequestBody>>,
}

impl Pool {
    #[must_use]
    pub fn new(cfg: &UpstreamConfig, tls: Arc<rustls::ClientConfig>) -> Rc<Self> {
        Rc::new(Self {
            idle: RefCell::new(HashMap::new()),
            max_idle_per_target: cfg.pool_max_idle_per_target,
            idle_timeout: cfg.pool_idle_timeout,
            tls: TlsConnector::from(tls),
        })
    }

    /// The pool's idle timeout (the sweep interval derives from it).
    #[must_use]
    pub const fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    fn checkout(&self, ep: &Endpoint, now: Instant) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.borrow_mut();
        let slot = idle.get_mut(&ep.id)?;
        if ep.retired() {
            idle.remove(&ep.id);
            return None;
        }
        while let Some(c) = slot.idle.pop() {
            if now.saturating_duration_since(c.since) < self.idle_timeout && !c.sender.is_closed() {
                return Some(c.sender);
            }
        }
        None
    }

    /// Returns a connection whose last response was fully read (dropped instead when its
    /// endpoint was retired meanwhile).
    pub fn checkin(&self, ep: &Arc<Endpoint>, sender: SendRequest<RequestBody>) {
        if sender.is_closed() || ep.retired() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let idle_conn = Idle {
            sender,
            since: Instant::now(),
        };
        if let Some(slot) = idle.get_mut(&ep.id) {
            if slot.idle.len() < self.max_idle_per_target {
                slot.idle.push(idle_conn);
            }
        } else if self.max_idle_per_target > 0 {
            idle.insert(
                ep.id,
                Slot {
                    endpoint: Arc::clone(ep),
                    idle: vec![idle_conn],
                },
            );
        }
    }

    /// Drops expired and closed connections, every connection to a retired endpoint, and
    /// endpoints with none left.
    pub fn sweep(&self) {
        let ttl = self.idle_timeout;
        self.idle.borrow_mut().retain(|_, slot| {
            if slot.endpoint.retired() {
                return false;
            }
            slot.idle
                .retain(|c| c.since.elapsed() < ttl && !c.sender.is_closed());
            !slot.idle.is_empty()
        });
    }

    /// Idle connections held now, in all (tests and the admin API).
    #[must_use]
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(|s| s.idle.len()).sum()
    }

    /// Sends `req` to endpoint `ep` of `target` on a pooled or new connection and waits for the
    /// response head, for at most the read timeout from `now` and never past `deadline`.
    /// `upgrade` asks for a fresh connection that may switch protocols (never pooled).
    pub async fn send(
        &self,
        target: &Target,
        ep: &Endpoint,
        mut req: Request<RequestBody>,
        t: &Timeouts,
        (now, deadline): (Instant, Instant),
        upgrade: bool,
    ) -> Result<Exchange, SendFailure> {
        let head_deadline = deadline.min(now + t.read);
        if !upgrade {
            while let Some(mut sender) = self.checkout(ep, now) {
                if sender.ready().await.is_err() {
                    continue;
                }
                match timeout_at(head_deadline, sender.try_send_request(req)).await {
                    Err(_) => return Err(timeout_failure(target)),
                    Ok(Ok(response)) => {
                        return Ok(Exchange {
                            response,
                            sender: Some(sender),
                            connected: false,
                        });
                    }
                    Ok(Err(mut e)) => match e.take_message() {
                        // Never written: the connection died while idle; try the next one.
                        Some(r) => req = r,
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
        let mut sender = match self.connect(target, ep, t.connect, upgrade).await {
            Ok(s) => s,
            Err(error) => {
                return Err(SendFailure {
                    error,
                    request: Some(req),
                });
            }
        };
        match timeout_at(head_deadline, sender.send_request(req)).await {
            Err(_) => Err(timeout_failure(target)),
            Ok(Ok(response)) => Ok(Exchange {
                response,
                sender: if upgrade { None } else { Some(sender) },
                connected: true,
            }),
            Ok(Err(source)) => Err(SendFailure {
                error: UpstreamError::Protocol {
                    target: Arc::clone(&target.url),
                    source,
                },
                request: None,
            }),
        }
    }

    async fn connect(
        &self,
        target: &Target,
        ep: &Endpoint,
        limit: Duration,
        upgrade: bool,
    ) -> Result<SendRequest<RequestBody>, UpstreamError> {
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
        let mut builder = http1::Builder::new();
        builder.writev(false);
        match &target.server_name {
            None => {
                let (sender, conn) = builder
                    .handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| connect_err(e.to_string()))?;
                spawn_conn(conn, upgrade);
                Ok(sender)
            }
            Some(name) => {
                let tls = timeout(limit, self.tls.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| UpstreamError::ConnectTimeout {
                        target: Arc::clone(&target.url),
                    })?
                    .map_err(|e| connect_err(format!("TLS: {e}")))?;
                let (sender, conn) = builder
                    .handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| connect_err(e.to_string()))?;
                spawn_conn(conn, upgrade);
                Ok(sender)
            }
        }
    }
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
