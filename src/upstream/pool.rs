//! A per-worker pool of HTTP/1.1 upstream connections.
//!
//! Each worker thread owns one `Pool` (shared by `Rc`), so checking a connection out or in is a
//! `RefCell` borrow and a `Vec` push/pop: no lock, no atomic. A connection returns to the pool
//! only after its response body was read to the end (see [`super::UpstreamBody`]); before reuse
//! it must be younger than the idle timeout and ready, and a request that a stale connection
//! could not even start sending is moved to the next connection without being lost.

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

use super::{Target, UpstreamError};
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
    sender: SendRequest<Incoming>,
    since: Instant,
}

/// One worker's idle upstream connections, keyed by target URL.
pub struct Pool {
    idle: RefCell<HashMap<Arc<str>, Vec<Idle>>>,
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
    pub sender: Option<SendRequest<Incoming>>,
    /// Whether a new connection was opened for this exchange.
    pub connected: bool,
}

/// A failed exchange; `request` is handed back when it was never sent, so it can go to
/// another target.
pub struct SendFailure {
    pub error: UpstreamError,
    pub request: Option<Request<Incoming>>,
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

    fn checkout(&self, key: &str) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < self.idle_timeout && !c.sender.is_closed() {
                return Some(c.sender);
            }
        }
        None
    }

    /// Returns a connection whose last response was fully read.
    pub fn checkin(&self, key: &Arc<str>, sender: SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        if let Some(list) = idle.get_mut(&**key) {
            if list.len() < self.max_idle_per_target {
                list.push(Idle {
                    sender,
                    since: Instant::now(),
                });
            }
        } else if self.max_idle_per_target > 0 {
            idle.insert(
                Arc::clone(key),
                vec![Idle {
                    sender,
                    since: Instant::now(),
                }],
            );
        }
    }

    /// Drops expired and closed connections, and targets with none left.
    pub fn sweep(&self) {
        let ttl = self.idle_timeout;
        self.idle.borrow_mut().retain(|_, list| {
            list.retain(|c| c.since.elapsed() < ttl && !c.sender.is_closed());
            !list.is_empty()
        });
    }

    /// Sends `req` to `target` on a pooled or new connection and waits for the response head.
    /// `upgrade` asks for a fresh connection that may switch protocols (never pooled).
    pub async fn send(
        &self,
        target: &Target,
        mut req: Request<Incoming>,
        t: &Timeouts,
        deadline: Instant,
        upgrade: bool,
    ) -> Result<Exchange, SendFailure> {
        let head_deadline = deadline.min(Instant::now() + t.read);
        if !upgrade {
            while let Some(mut sender) = self.checkout(&target.url) {
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
        let mut sender = match self.connect(target, t.connect, upgrade).await {
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
        limit: Duration,
        upgrade: bool,
    ) -> Result<SendRequest<Incoming>, UpstreamError> {
        let tcp = match timeout(limit, connect_tcp(target)).await {
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

fn spawn_conn<T>(conn: http1::Connection<T, Incoming>, upgrade: bool)
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

async fn connect_tcp(target: &Target) -> Result<TcpStream, String> {
    let stream = if let Some(ip) = target.ip {
        TcpStream::connect(SocketAddr::new(ip, target.port))
            .await
            .map_err(|e| e.to_string())?
    } else {
        let addrs = tokio::net::lookup_host((&*target.host, target.port))
            .await
            .map_err(|e| format!("resolving {}: {e}", target.host))?;
        let mut last = format!("{} resolved to no address", target.host);
        let mut found = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    found = Some(s);
                    break;
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        found.ok_or(last)?
    };
    // Requests are small and latency matters more than packet count.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}
