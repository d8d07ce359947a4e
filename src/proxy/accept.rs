//! A listener's connections, from accept to hyper: the connection caps, the PROXY protocol
//! header from trusted hops, the TLS handshake, the connection's clocks ([`ConnIo`]), the
//! desync guard ([`Guard`]) and the hyper connection with the ingress limits it enforces
//! itself ([`http_builder`]).

use std::cell::Cell;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use super::caps::{Refused, Slot};
use super::conn::{Clocks, ConnIo, ConnState, Tracked};
use super::guard::{Answers, Guard};
use super::{Client, CloseAfter, Shared, Worker, client_addr, traced};

use crate::desync::{self, tracker::Tracker};
use crate::shutdown::{Stop, stopped};
use crate::upstream::LocalExec;

/// Longest time a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The hyper server settings: the ingress limits hyper enforces itself (HTTP/1 head size and
/// field count, HTTP/2 streams, windows and reset budgets). The head deadline and the idle
/// timeout are [`ConnIo`]'s, so hyper's own header timer is off.
pub fn http_builder(cfg: &crate::config::ServerConfig) -> auto::Builder<LocalExec> {
    let (limits, h2) = (&cfg.limits, &cfg.http2);
    let mut builder = auto::Builder::new(LocalExec);
    let mut h1 = builder.http1();
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        // The head must fit in hyper's read buffer (8 KiB at least): beyond, 431 and close.
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true)
        .writev(false);
    // hyper keeps up to 100 fields on the stack; any other count costs a heap buffer per head.
    if limits.max_headers != 100 {
        h1.max_headers(limits.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(h2.max_concurrent_streams)
        .initial_stream_window_size(h2.stream_window)
        .initial_connection_window_size(h2.connection_window)
        .max_pending_accept_reset_streams(h2.max_pending_resets)
        .max_local_error_reset_streams(h2.max_local_resets)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// What every connection of one listener shares.
pub struct ListenerCtx {
    pub index: usize,
    pub tls: Option<TlsAcceptor>,
    /// Connections from trusted hops start with a PROXY protocol header.
    pub proxy_protocol: bool,
    pub worker: Rc<Worker>,
    pub builder: Rc<auto::Builder<LocalExec>>,
    pub tracker: Rc<ConnTracker>,
    /// Set when the worker stops: open connections drain.
    pub stop: Stop,
}

/// The worker's open connections, so a stopping worker can wait for the last one.
#[derive(Debug, Default)]
pub struct ConnTracker {
    open: Cell<usize>,
    idle: Notify,
}

impl ConnTracker {
    fn opened(&self) {
        self.open.set(self.open.get() + 1);
    }

    fn closed(&self) {
        let n = self.open.get().saturating_sub(1);
        self.open.set(n);
        if n == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Resolves when no connection is open.
    pub async fn all_closed(&self) {
        while self.open.get() > 0 {
            let wait = self.idle.notified();
            if self.open.get() == 0 {
                return;
            }
            wait.await;
        }
    }
}

/// How long an HTTP/1 connection must be quiet (nothing read, nothing in flight) before a
/// drain closes it. Closing one at once could cut a request the client has just sent (it
/// would meet a reset); a busy connection is closed after its next answer instead, which
/// carries `Connection: close`.
const DRAIN_QUIET: Duration = Duration::from_secs(1);
const DRAIN_TICK: Duration = Duration::from_millis(250);

/// Accepts until stopped. A plain connection from anyone but a trusted hop is served at once
/// (the fast path); a PROXY header or a TLS handshake is awaited in the connection's own task.
pub async fn accept_loop(listener: TcpListener, ctx: ListenerCtx) {
    let mut stop = ctx.stop.clone();
    let ctx = Rc::new(ctx);
    let shared = &ctx.worker.shared;
    let accepted = shared.metrics.listener_connections(ctx.index);
    let hops = &shared.config.server.trusted_hops;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        accepted.inc();
        let Some(slot) = admitted(shared, shared.caps.admit(), peer) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let from_hop = client_addr::trusted(hops, peer.ip());
        let read_header = ctx.proxy_protocol && from_hop;
        if !read_header && ctx.tls.is_none() {
            if let Some(slot) = admitted(shared, claim(slot, peer.ip()), peer) {
                serve_conn(stream, peer, peer.ip(), slot, &ctx);
            }
            continue;
        }
        let ctx = Rc::clone(&ctx);
        tokio::task::spawn_local(async move {
            let shared = &ctx.worker.shared;
            let client = if read_header {
                let Some(client) = proxied_client(&stream, peer, shared).await else {
                    return;
                };
                client
            } else {
                peer.ip()
            };
            let Some(slot) = admitted(shared, claim(slot, client), peer) else {
                return;
            };
            let Some(acceptor) = &ctx.tls else {
                serve_conn(stream, peer, client, slot, &ctx);
                return;
            };
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => serve_conn(tls_stream, peer, client, slot, &ctx),
                Ok(Err(e)) => tracing::debug!(client = %client, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(client = %client, "TLS handshake timed out"),
            }
        });
    }
}

/// Reads the PROXY protocol header a trusted hop's connection must start with (within
/// `server.header_timeout`): the client it names, the hop's own address for `LOCAL` and
/// `UNKNOWN`; or `None` once the refusal is counted and logged (the caller drops the stream,
/// closing it). The admin listener reads its hops' headers with it too.
pub async fn proxied_client(
    stream: &TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<IpAddr> {
    let limit = shared.config.server.limits.header_timeout;
    match client_addr::read_proxy_header(stream, limit).await {
        Ok(source) => Some(source.map_or(peer.ip(), |s| s.ip())),
        Err(e) => {
            shared.metrics.connection_refused("proxy_protocol");
            tracing::debug!(hop = %peer, error = %e, "connection refused: {e}");
            None
        }
    }
}

fn claim(mut slot: Slot, ip: IpAddr) -> Result<Slot, Refused> {
    slot.claim_ip(ip)?;
    Ok(slot)
}

/// The slot, or `None` after counting and logging the refusal (the stream is dropped by the
/// caller, closing it).
fn admitted(shared: &Shared, r: Result<Slot, Refused>, peer: SocketAddr) -> Option<Slot> {
    match r {
        Ok(slot) => Some(slot),
        Err(refused) => {
            shared.metrics.connection_refused(refused.reason());
            tracing::debug!(client = %peer, reason = refused.reason(), "connection refused: {refused}");
            None
        }
    }
}

/// Serves one connection: its clocks around the byte stream, its [`Client`], hyper.
fn serve_conn<I>(io: I, peer: SocketAddr, client: IpAddr, slot: Slot, ctx: &ListenerCtx)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let worker = Rc::clone(&ctx.worker);
    let server = &worker.shared.config.server;
    let metrics = Arc::clone(&worker.shared.metrics);
    let state = Arc::new(ConnState::default());
    let clocks = Clocks {
        header: server.limits.header_timeout,
        idle: server.limits.idle_timeout,
    };
    let io = ConnIo::new(io, Arc::clone(&state), clocks, Arc::clone(&metrics));
    let limits = &server.limits;
    let tracker = Tracker::new(
        server.desync,
        desync::head::Limits {
            max_head: limits.max_header_bytes,
            max_headers: limits.max_headers,
            max_uri: limits.max_uri_bytes.min(desync::head::MAX_TARGET),
        },
    );
    let answers = Answers {
        shared: Arc::clone(&worker.shared),
        meter: worker.meter.clone(),
        client,
    };
    let io = TokioIo::new(Guard::new(io, tracker, Arc::clone(&state), answers));
    let hop = client_addr::trusted(&server.trusted_hops, client);
    let xff = server.trust_x_forwarded_for && hop;
    let client = Rc::new(Client::new(
        peer,
        client,
        ctx.tls.is_some(),
        (hop, xff),
        Arc::clone(&state),
    ));
    let svc = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let active = client.conn.begin();
        // A draining proxy closes each HTTP/1 connection after the answer to a request that
        // arrived while it drains (one that arrived before is followed by a quiet close); so
        // does the answer to a request the desync guard found ambiguous.
        let h1 = req.version() < http::Version::HTTP_2;
        let desync = h1 && client.conn.closes_after(active.seq());
        if desync {
            req.extensions_mut().insert(CloseAfter);
        }
        let close = desync || (h1 && worker.shared.draining.load(Ordering::Relaxed));
        let (worker, client) = (Rc::clone(&worker), Rc::clone(&client));
        // The handler's future is built inside this one, not captured by it: a captured future
        // keeps its storage beside the one it is awaited in, doubling this future's size (and
        // every move of it).
        async move {
            let mut resp = traced(worker, req, client).await?;
            if close {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, active)))
        }
    });
    let conn = ctx
        .builder
        .serve_connection_with_upgrades(io, svc)
        .into_owned();
    let tracker = Rc::clone(&ctx.tracker);
    let mut stop = ctx.stop.clone();
    tracker.opened();
    metrics.connections_open.inc();
    tokio::task::spawn_local(async move {
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = stopped(&mut stop) => tokio::select! {
                r = conn.as_mut() => r,
                () = drained(&state) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            },
        };
        if let Err(e) = result {
            // A head hyper could not parse (obs-fold, CR/LF/NUL in a header, a bad or
            // conflicting Content-Length, an oversized head) never became a request: it is
            // counted here, and hyper answered 400/431 and closed.
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                if h.is_parse_too_large() {
                    metrics.request_rejected("header_too_large");
                } else if h.is_parse() {
                    metrics.request_rejected("malformed");
                }
            }
            tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
        }
        metrics.connections_open.dec();
        drop(slot);
        tracker.closed();
    });
}

/// When a draining connection may be shut down without cutting a request: HTTP/2 at once
/// (GOAWAY lets in-flight streams finish, and the client retries the rest elsewhere); HTTP/1
/// once quiet for [`DRAIN_QUIET`] (meanwhile its next answer carries `Connection: close`).
async fn drained(state: &ConnState) {
    if state.is_h2() {
        return;
    }
    let (mut reads, mut quiet) = (state.reads(), Duration::ZERO);
    while quiet < DRAIN_QUIET {
        tokio::time::sleep(DRAIN_TICK).await;
        let now = state.reads();
        if now == reads && !state.busy() {
            quiet += DRAIN_TICK;
        } else {
            (reads, quiet) = (now, Duration::ZERO);
        }
    }
}
