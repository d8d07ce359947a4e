//! The engine adapter: hyper server and per-worker upstream pool, wired through the stages.
//!
//! ```text
//!  client ──► guard ──► hygiene ──► identify ──► entitle ──► place+route ──► admit ────────► rewrite ──► forward ───► respond ──► log
//!             guard::   hygiene::   identify::   entitle::   routing::       ratelimit::     proxy::     proxy::      proxy::     metrics +
//!             Guard     screen      identify     Routes::    Placer::place   Limiter::admit  rewrite::   forward      respond     accesslog +
//!             (desync::             (auth::      required,   (one snapshot   (tenant         request     (upstream::  (hop-by-    the worker's
//!             Tracker               Verifier:    within_     load, issuer    in-flight and   (strip,     select +     hop, id;    metering::
//!             over raw              cached JWT,  scopes      binding, the    rate, route     set trusted, Pool::send, moves::    Meter (both
//!             HTTP/1                host, header, (key and   tenant's        classes, then   claims,     retries in   Watch on    finished by
//!             bytes                 API key via  token       entitlement,    the cell cap)   origin-form) the arm,    long-lived) ProxyBody when
//!             before                Placer)      scopes)     arm: forced >                                budgeted)               the body ends)
//!             hyper)                                         pin > weights)
//!  any stage may refuse ──► proxy::refuse (error::ProxyError::response: status, JSON body or gRPC
//!                           status) ──► metrics + accesslog + the tenant's usage
//! ```
//!
//! With `[tracing]`, [`traced`] first decides the request's trace (`otel::Tracer::begin`:
//! continue a trusted `traceparent` or start one, sample), and a sampled request's stages run
//! with a child-span collector (`tracecontext::children`); rewrite gives the cell `traceparent`,
//! and the log step (or `refuse`) finishes the server span from the access-log record.
//!
//! Each stage is a plain function over request parts, owned by its module; [`handle`] calls
//! them in order, one call a stage, and turns their refusals into answers. The threads,
//! sockets, TLS and shutdown are the composition root's ([`crate::server`]); a listener's
//! connections, from accept to hyper, are [`accept`]'s.

pub mod accept;
mod arrival;
mod body;
pub mod caps;
pub mod client_addr;
pub mod conn;
mod forward;
pub mod grpc;
mod guard;
pub mod moves;
mod refuse;
mod respond;
pub mod rewrite;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;

use arrival::Arrival;
pub use body::ProxyBody;
use forward::{Upstream, forward};
pub use refuse::Ledger;
use refuse::refuse;
use respond::{Routed, respond, unforwarded};

use crate::accesslog::AccessLog;
use crate::auth::{TokenMemo, Verifier};
use crate::config::Config;
use crate::entitle::{self, Routes};
use crate::hygiene;
use crate::identify::{self, identify};
use crate::metering::Meter;
use crate::metrics::{CellMetrics, Metrics};
use crate::otel::{self, Tracer};
use crate::placement::SnapshotHandle;
use crate::placement::lookup::Lookup;
use crate::ratelimit::Limiter;
use crate::routing::Placer;
use crate::tracecontext::children;
use crate::upstream::{Pool, RequestBody, Timeouts, Upstreams};

/// Marks a request the desync guard forwarded as ambiguous: its answer closes the client
/// connection, and the upstream connection it used is not reused.
#[derive(Debug, Clone, Copy)]
pub struct CloseAfter;

/// State shared by every worker.
#[derive(Debug)]
pub struct Shared {
    pub config: Arc<Config>,
    pub snapshot: Arc<SnapshotHandle>,
    pub verifier: Verifier,
    /// On-demand registry lookups and forced re-reads.
    pub lookup: Arc<Lookup>,
    pub metrics: Arc<Metrics>,
    pub access_log: Arc<AccessLog>,
    /// The admit stage: tenant limits and cell caps.
    pub limiter: Limiter,
    /// Target addresses, their health, and the cells' retry budgets.
    pub upstreams: Arc<Upstreams>,
    /// Client headers removed on top of the built-in internal ones.
    pub strip: Vec<HeaderName>,
    /// The entitlement each route needs (`[[entitlements.routes]]`).
    pub entitlements: Routes,
    /// Open client connections, against `server.max_connections[_per_ip]`.
    pub caps: Arc<caps::ConnectionCaps>,
    /// Set when the proxy stops (a signal, or a takeover by a new process): HTTP/1 answers
    /// carry `Connection: close`.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    pub timeouts: Timeouts,
    /// One usage meter per worker (`[metering]`; `None`: off).
    pub meters: Option<crate::metering::service::Meters>,
    /// Spans to the OTLP endpoint (`[tracing]`; `None`: off, and no tracing work at all).
    pub tracer: Option<Arc<Tracer>>,
    none_cell: Arc<CellMetrics>,
}

impl Shared {
    #[must_use]
    pub fn new(
        config: Arc<Config>,
        snapshot: Arc<SnapshotHandle>,
        verifier: Verifier,
        lookup: Arc<Lookup>,
        metrics: Arc<Metrics>,
        access_log: Arc<AccessLog>,
        limiter: Limiter,
    ) -> Self {
        let mut strip = config.strip_headers.clone();
        if let Some(h) = &config.tenant.header {
            strip.push(h.name.clone());
        }
        // Claim headers are ours to set: a client's copy never reaches the cell.
        strip.extend(verifier.forward_headers().cloned());
        // The forced-arm header speaks to the proxy only.
        if let Some(f) = &config.canary.force {
            strip.push(f.header.clone());
        }
        // So does an API key: the cell gets its id (`x-api-key-id`), never its secret.
        if let Some(k) = &config.tenant.api_key {
            strip.push(k.header.clone());
        }
        let entitlements = Routes::new(&config.entitlements);
        let upstreams = Arc::new(Upstreams::new(
            config.upstream.outlier,
            metrics.upstream.clone(),
        ));
        Self {
            limiter,
            upstreams,
            verifier,
            lookup,
            timeouts: Timeouts::from(&config.upstream),
            none_cell: metrics.unrouted(),
            caps: Arc::new(caps::ConnectionCaps::new(config.server.connections)),
            draining: Arc::default(),
            meters: None,
            tracer: None,
            config,
            snapshot,
            metrics,
            access_log,
            strip,
            entitlements,
        }
    }

    /// The place stage over this state: snapshot, on-demand lookups, the route policy and
    /// `[canary]`.
    #[must_use]
    pub fn placer(&self) -> Placer<'_> {
        Placer {
            snapshot: &self.snapshot,
            lookup: &self.lookup,
            policy: self.config.tenant.route_policy,
            lookup_unknown: self.config.lookup.unknown,
            canary: &self.config.canary,
        }
    }

    /// Where answers are recorded.
    #[must_use]
    pub fn ledger(&self) -> Ledger<'_> {
        Ledger {
            metrics: &self.metrics,
            access_log: &self.access_log,
            none_cell: &self.none_cell,
            meter: None,
            tracer: self.tracer.as_deref(),
        }
    }

    /// Worker `id`'s usage meter, when metering is on.
    #[must_use]
    pub fn meter(&self, id: usize) -> Option<Arc<Meter>> {
        let meters = self.meters.as_ref()?;
        meters.get(id % meters.len().max(1)).cloned()
    }

    /// What the forward stage uses, with `pool` this worker's.
    #[must_use]
    pub fn upstream<'a>(&'a self, pool: &'a Pool) -> Upstream<'a> {
        Upstream {
            pool,
            upstreams: &self.upstreams,
            retry: &self.config.upstream.retry,
            timeouts: &self.timeouts,
            metrics: &self.metrics,
        }
    }
}

/// One worker thread's view: shared state plus its own connection pool.
#[derive(Debug)]
pub struct Worker {
    pub shared: Arc<Shared>,
    pub pool: Rc<Pool>,
    /// This worker's open WebSockets and streamed responses, closed if their tenant moves.
    pub long_lived: Rc<moves::LongLived>,
    /// This worker's usage meter (`[metering]`).
    pub meter: Option<Arc<Meter>>,
}

impl Worker {
    /// Where this worker records answers: the shared ledger and its own meter.
    #[must_use]
    pub fn ledger(&self) -> Ledger<'_> {
        Ledger {
            meter: self.meter.as_deref(),
            ..self.shared.ledger()
        }
    }
}

/// A client connection, as known when it was accepted (shared by its requests).
#[derive(Debug)]
pub struct Client {
    /// The socket's peer.
    pub peer: SocketAddr,
    /// The client's address: the peer's, or the one a trusted hop's PROXY header gave.
    pub addr: IpAddr,
    pub tls: bool,
    /// The client is a trusted hop, and `server.trust_x_forwarded_for` is on: each request's
    /// `X-Forwarded-For` names the client.
    pub xff: bool,
    /// The client that sent the HTTP requests (`addr`: the PROXY header's address behind an
    /// L4 hop, else the socket's peer) is one of `server.trusted_hops`: its `X-Forwarded-For`
    /// and (`tracing.trust_incoming = "trusted_hops"`) its `traceparent` are believed. An NLB
    /// in front speaks no HTTP, so it is never the hop that counts.
    pub hop: bool,
    /// `x-forwarded-for` for `addr`, formatted once per connection rather than per request.
    pub forwarded_for: HeaderValue,
    /// The last bearer token this connection presented, and its verification.
    pub token: TokenMemo,
    /// What the connection's clocks ([`conn::ConnIo`]) know of its requests.
    pub conn: Arc<conn::ConnState>,
}

impl Client {
    #[must_use]
    pub fn new(
        peer: SocketAddr,
        addr: IpAddr,
        tls: bool,
        (hop, xff): (bool, bool),
        conn: Arc<conn::ConnState>,
    ) -> Self {
        Self {
            peer,
            addr,
            tls,
            hop,
            xff,
            forwarded_for: rewrite::ip_header(addr),
            token: TokenMemo::default(),
            conn,
        }
    }

    /// The client's address, and its `x-forwarded-for` value, for this request: the
    /// connection's, or what a trusted hop's `X-Forwarded-For` says (`server.trust_x_forwarded_for`).
    fn address(
        &self,
        headers: &http::HeaderMap,
        hops: &[ipnet::IpNet],
    ) -> (IpAddr, Option<HeaderValue>) {
        let forwarded = if self.xff {
            client_addr::forwarded_client(headers, hops)
        } else {
            None
        };
        (
            forwarded.unwrap_or(self.addr),
            forwarded.map(rewrite::ip_header),
        )
    }
}

/// The request's trace, decided before any stage (`[tracing]`; `None`: off), and the future
/// that serves it, polled with its child-span collector when it is sampled.
///
/// The engine calls it inside its own service future (`accept`), not before: the handler's
/// future is several kilobytes, and one captured by the service future would be kept twice
/// and moved whole.
pub fn traced(
    w: Rc<Worker>,
    req: Request<Incoming>,
    client: Rc<Client>,
) -> children::Collect<impl Future<Output = Result<Response<ProxyBody>, Infallible>>> {
    let trace = w.shared.tracer.as_deref().map(|t| begin(t, &req, &client));
    let collector = trace.as_ref().and_then(|t| t.collector.clone());
    children::Collect::new(collector, handle(w, req, client, trace))
}

/// The trace decision for a request from `client`.
fn begin(tracer: &Tracer, req: &Request<Incoming>, client: &Client) -> otel::Trace {
    let at = otel::Arrived {
        version: req.version(),
        client: client.addr,
        tls: client.tls,
    };
    tracer.begin(req.headers(), client.hop, at)
}

/// Serves one request through all stages.
pub async fn handle(
    w: Rc<Worker>,
    req: Request<Incoming>,
    client: Rc<Client>,
    trace: Option<otel::Trace>,
) -> Result<Response<ProxyBody>, Infallible> {
    let s = &*w.shared;
    let (mut parts, body) = req.into_parts();
    let mut arrival = Arrival::of(&parts);
    arrival.trace = trace;

    // hygiene: ambiguous framing or addressing is refused, and an HTTP/1 connection closed.
    if let Err(v) = hygiene::screen(&mut parts, &s.config.server) {
        let version = parts.version;
        return Ok(refuse::hygiene(
            w.ledger(),
            &arrival,
            v,
            client.addr,
            version,
        ));
    }

    // identify: who the client is (its own address, or what a trusted hop says), which tenant.
    let (addr, forwarded_for) = client.address(&parts.headers, &s.config.server.trusted_hops);
    if let Some(t) = &mut arrival.trace {
        t.client(addr);
    }
    let (cfg, placer) = (&s.config.tenant, s.placer());
    let identity = match identify(&parts, addr, cfg, &s.verifier, &client.token, &placer).await {
        Ok(i) => i,
        Err(e) => return Ok(refuse(w.ledger(), &arrival, e.into(), None, None)),
    };
    let (tenant, token) = (identity.tenant, identity.token.as_deref());
    arrival.api_key = identity.key.as_ref().map(|k| k.id);
    arrival.source = Some(identity.source);
    if w.meter.is_some() {
        arrival.route = s.limiter.route_class(&parts.method, parts.uri.path());
    }

    // entitle: the entitlement the route needs, within the key's and the token's scopes (the
    // tenant's own list is checked with its placement).
    let need = s.entitlements.required(&parts.method, parts.uri.path());
    if let Some(need) = need {
        let key_scopes = identity.key.as_ref().and_then(|k| k.scopes.as_deref());
        let token_scopes = token.and_then(|t| t.scopes.as_deref());
        if let Err(e) = entitle::within_scopes(need, key_scopes, token_scopes) {
            return Ok(refuse(w.ledger(), &arrival, e.into(), Some(tenant), None));
        }
    }

    // place + route: one snapshot generation for the whole decision.
    let upgrade = rewrite::upgrade_of(&parts);
    let decision = match placer.place(&tenant, &parts, token, need).await {
        Ok(d) => d,
        Err(e) => return Ok(refuse(w.ledger(), &arrival, e.into(), Some(tenant), None)),
    };
    let cell = &decision.cell;
    let cm = cell.metrics(&s.metrics);
    if arrival.traced() {
        arrival.group = Some(Arc::clone(&cell.groups[decision.group].name));
    }
    if let Err(e) = decision.admits_upgrade(upgrade.is_some()) {
        let cell = Some(&**cell);
        return Ok(refuse(w.ledger(), &arrival, e.into(), Some(tenant), cell));
    }

    // admit: the tenant's limits by tier and route class, then the cell's in-flight cap.
    let permit = match s
        .limiter
        .admit(&decision.ask(&tenant, &parts), &cell.cap(), cm)
    {
        Ok(p) => p,
        Err(e) => {
            return Ok(refuse(
                w.ledger(),
                &arrival,
                e.into(),
                Some(tenant),
                Some(cell),
            ));
        }
    };

    // rewrite: what the cell may believe, set by the proxy alone.
    let upgrading = upgrade.is_some();
    let trusted = rewrite::Trusted {
        strip: &s.strip,
        tenant: &decision.tenant_header,
        cell: &cell.id_header,
        request_id: &arrival.request_id,
        forwarded_for: forwarded_for.as_ref().unwrap_or(&client.forwarded_for),
        tls: client.tls,
        claims: token.map_or(&[], |t| &t.forward),
        drop_key_authorization: cfg.api_key.is_some(),
        api_key_id: identity.key.as_ref().map(identify::KeyGrant::id),
        keep_te_trailers: cell.protocol != crate::upstream::Protocol::Http1,
    };
    let on_upgrade = rewrite::request(&mut parts, &trusted, upgrade);
    if let Some(t) = &arrival.trace {
        t.propagate(&mut parts.headers);
    }
    // An ambiguous request (desync guard, `defensive`): the cell is told, and its HTTP/1.1
    // connection is not reused, so nothing it might have read as a second request is answered.
    let close_after = parts.extensions.get::<CloseAfter>().is_some();
    if close_after && !upgrading {
        parts
            .headers
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }

    // forward: one address of the tenant's arm, retried within the arm when safe.
    let sent_at = tokio::time::Instant::now();
    let mut deadline = arrival.start + s.timeouts.total;
    if arrival.grpc {
        deadline = grpc::bound(&mut parts.headers, arrival.start, sent_at, deadline);
    }
    let limits = &s.config.server.limits;
    if w.meter.is_some() && !http_body::Body::is_end_stream(&body) {
        arrival.bytes_in = Some(Rc::default());
    }
    let body = RequestBody::client(
        body,
        limits.max_body_bytes,
        arrival.start + limits.request_timeout,
        arrival.bytes_in.clone(),
    );
    let mut forwarded = match forward(
        &s.upstream(&w.pool),
        cell,
        cm,
        (decision.group, decision.target),
        Request::from_parts(parts, body),
        (arrival.start, sent_at, deadline),
        upgrading,
    )
    .await
    {
        Ok(f) => f,
        Err(failed) => {
            let group = decision.group;
            return Ok(unforwarded(
                w.ledger(),
                &arrival,
                tenant,
                cell,
                group,
                failed,
            ));
        }
    };

    if close_after
        && matches!(
            forwarded.exchange.lease,
            Some(crate::upstream::pool::Lease::Http1(_))
        )
    {
        forwarded.exchange.lease = None;
    }

    // respond (the access-log line is finished when the body ends).
    let routed = Routed {
        tenant,
        decision,
        permit,
        upgrade: on_upgrade,
        upgrading,
        sent_at,
        deadline,
    };
    Ok(respond(&w, &client, &arrival, routed, forwarded))
}
