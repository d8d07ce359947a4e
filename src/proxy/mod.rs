//! The engine adapter: hyper server and per-worker upstream pool, wired through the stages.
//!
//! ```text
//!  client ──► hygiene ──► identify ──► place+route ──► admit ─────► rewrite ──► forward ───► respond ──► log
//!             proxy::      tenant::     routing::       ratelimit::  proxy::     upstream::   proxy::     metrics +
//!             hygiene      identify     route_with      Limiter      headers     select +     headers     accesslog
//!                          (auth::      (one snapshot   (cell cap,   (strip,     Pool::send   (hop-by-
//!                          Verifier:    load, issuer    tier rate,   set trusted, (an address hop, id;
//!                          cached JWT,  binding, arm:   in-flight;   claims)      in rotation, moves::
//!                          host, header) forced > pin   Permit held               retries in  Watch on
//!                                       > weights)      by the body)              the arm,    long-lived)
//!                                                                                 budgeted)
//!  any stage may refuse ──► error::ProxyError::response ──► JSON body + status ──► log
//! ```
//!
//! Each stage is a plain function over request parts; this module only calls them in order and
//! turns their refusals into answers. Engine specifics (threads, sockets, TLS, shutdown) live in
//! [`server`]; the listener certificates, chosen by SNI and reloaded from disk, in [`certs`].

pub mod accept;
mod body;
pub mod caps;

pub mod client_addr;
pub mod conn;
mod forward;
pub mod rewrite;

pub mod moves;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

pub use body::ProxyBody;
use forward::{Failed, Forwarded, forward};

use crate::accesslog::{AccessLog, PendingLog, Record};
use crate::auth::{TokenMemo, Verifier};
use crate::config::Config;
use crate::error::{ProxyError, error_body};
use crate::headers::{RATELIMIT, RATELIMIT_POLICY, X_REQUEST_ID};
use crate::hygiene;
use crate::identify::{identify, request_host_value};
use crate::metrics::{CellMetrics, Metrics, Outcome};
use crate::placement::lookup::{Lookup, LookupOutcome};
use crate::placement::{Cell, SnapshotHandle};
use crate::ratelimit::{Ask, CellCap, Limited, Limiter, LocalStore, MonotonicClock};
use crate::routing::{arm_hint, route_with};
use crate::tenant::TenantId;
use crate::upstream::{Pool, RequestBody, Reuse, Timeouts, UpstreamBody, Upstreams};

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
    /// Open client connections, against `server.max_connections[_per_ip]`.
    pub caps: Arc<caps::ConnectionCaps>,
    /// Set when the proxy stops (a signal, or a takeover by a new process): HTTP/1 answers
    /// carry `Connection: close`.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    pub timeouts: Timeouts,
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
        let store = LocalStore::with_counters(
            config.limits.max_tenants,
            metrics.ratelimit_idle_evictions.clone(),
            metrics.ratelimit_forced_evictions.clone(),
        );
        let limiter = Limiter::new(
            &config.limits,
            Arc::new(store),
            Arc::new(MonotonicClock::new()),
        );
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
            config,
            snapshot,
            metrics,
            access_log,
            strip,
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
        xff: bool,
        conn: Arc<conn::ConnState>,
    ) -> Self {
        Self {
            peer,
            addr,
            tls,
            xff,
            forwarded_for: rewrite::ip_header(addr),
            token: TokenMemo::default(),
            conn,
        }
    }
}

/// What the request looked like when it arrived, for refusals and logs.
struct Arrival {
    start: Instant,
    request_id: HeaderValue,
    method: http::Method,
    uri: Uri,
}

/// Serves one request through all stages.
pub async fn handle(
    w: Rc<Worker>,
    req: Request<Incoming>,
    client: Rc<Client>,
) -> Result<Response<ProxyBody>, Infallible> {
    let s = &*w.shared;
    let (mut parts, body) = req.into_parts();
    let arrival = Arrival {
        start: Instant::now(),
        request_id: rewrite::request_id(&parts.headers),
        method: parts.method.clone(),
        uri: parts.uri.clone(),
    };

    // hygiene: ambiguous framing or addressing is refused, and an HTTP/1 connection closed.
    let underscores = s.config.server.underscores;
    if let Err(v) = hygiene::check(&parts, underscores)
        .and_then(|()| hygiene::limits(&parts, &s.config.server.limits))
    {
        tracing::debug!(client = %client.addr, reason = v.reason(), "request refused: {v}");
        s.metrics.request_rejected(v.reason());
        let mut resp = refuse(s, &arrival, v.into(), None, None);
        if parts.version < Version::HTTP_2 {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return Ok(resp);
    }
    if underscores == crate::config::HeaderUnderscores::Drop {
        hygiene::drop_underscored(&mut parts.headers);
    }

    // who: the socket's peer, or what a trusted hop says of the client.
    let forwarded = if client.xff {
        client_addr::forwarded_client(&parts.headers, &s.config.server.trusted_hops)
    } else {
        None
    };
    let forwarded_for = forwarded.map(rewrite::ip_header);

    // identify
    let identity = match identify(
        &parts,
        forwarded.unwrap_or(client.addr),
        &s.config.tenant,
        &s.verifier,
        &client.token,
    )
    .await
    {
        Ok(i) => i,
        Err(e) => return Ok(refuse(s, &arrival, e.into(), None, None)),
    };
    let tenant = identity.tenant;

    // place + route: one snapshot generation for the whole decision.
    let decision = place(s, &tenant, &parts, identity.token.as_deref()).await;
    let decision = match decision {
        Ok(d) => d,
        Err(e) => return Ok(refuse(s, &arrival, e.into(), Some(tenant), None)),
    };
    let cell = &decision.cell;
    let cm = cell.metrics(&s.metrics);

    // admit: tenant limits by tier and route class, the cell's in-flight cap.
    let ask = Ask {
        tenant: tenant.as_str(),
        tier: &decision.tier,
        overrides: decision.limits,
        method: &parts.method,
        path: parts.uri.path(),
    };
    let cap = CellCap {
        id: &cell.id,
        max_in_flight: cell.max_in_flight,
    };
    let permit = match s.limiter.admit(&ask, &cap, cm) {
        Ok(p) => p,
        Err(e) => return Ok(refuse(s, &arrival, e.into(), Some(tenant), Some(cell))),
    };

    // rewrite
    let host = request_host_value(&parts);
    let upgrade = if parts.version == Version::HTTP_11 {
        rewrite::upgrade_requested(&parts.headers)
    } else {
        None
    };
    // An upgrade opens a two-way channel that outlives the request: for a MIGRATING tenant
    // (writes frozen) it counts as a write, and is refused like one.
    if upgrade.is_some() && decision.migrating {
        let err = crate::routing::RouteError::Migrating.into();
        return Ok(refuse(s, &arrival, err, Some(tenant), Some(cell)));
    }
    let on_upgrade = if upgrade.is_some() {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    };
    rewrite::rewrite_request(
        &mut parts.headers,
        &s.strip,
        &decision.tenant_header,
        &cell.id_header,
        &arrival.request_id,
        forwarded_for.as_ref().unwrap_or(&client.forwarded_for),
        client.tls,
        host,
        upgrade.clone(),
    );
    if let Some(token) = &identity.token {
        for (name, value) in &*token.forward {
            parts.headers.insert(name.clone(), value.clone());
        }
    }
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(pq);
    }
    parts.version = Version::HTTP_11;

    // forward
    let deadline = arrival.start + s.timeouts.total;
    let sent_at = Instant::now();
    let group = &cell.groups[decision.group];
    let gm = group.metrics(&cell.id, &s.metrics.upstream);
    let Forwarded {
        exchange,
        target: target_idx,
        endpoint,
    } = match forward(
        &w,
        cell,
        cm,
        (decision.group, decision.target),
        Request::from_parts(
            parts,
            RequestBody::client(
                body,
                s.config.server.limits.max_body_bytes,
                arrival.start + s.config.server.limits.request_timeout,
            ),
        ),
        (arrival.start, sent_at, deadline),
        upgrade.is_some(),
    )
    .await
    {
        Ok(ok) => ok,
        Err(Failed { error, target }) => {
            let target = target.map(|i| &*cell.targets[i].url);
            let err = ProxyError::from_exchange(error);
            if let ProxyError::BodyLimit(l) = &err {
                tracing::debug!(tenant.id = %tenant, request.id = ?arrival.request_id, "request body refused: {l}");
                s.metrics.request_rejected(l.reason());
            } else {
                tracing::warn!(
                    tenant.id = %tenant, cell.id = %cell.id, group = %group.name, target = ?target,
                    request.id = ?arrival.request_id, error = %err, "upstream request failed"
                );
            }
            let status = err.response().status.as_u16();
            s.metrics
                .upstream
                .group_request(gm, status, arrival.start.elapsed());
            return Ok(refuse(s, &arrival, err, Some(tenant), Some(cell)));
        }
    };
    let answered = Instant::now();
    let upstream_time = answered.saturating_duration_since(sent_at);
    cm.upstream_response.observe(upstream_time);
    if exchange.connected {
        cm.upstream_connects.inc();
    }

    // respond
    let (mut rparts, rbody) = exchange.response.into_parts();
    let status = rparts.status.as_u16();
    let switching = rparts.status == StatusCode::SWITCHING_PROTOCOLS && upgrade.is_some();
    rewrite::rewrite_response(&mut rparts.headers, &arrival.request_id, switching);
    let elapsed = answered.saturating_duration_since(arrival.start);
    s.metrics
        .record_request(cm, status, Outcome::routed, elapsed);
    s.metrics.upstream.group_request(gm, status, elapsed);
    let target = &cell.targets[target_idx];
    let log = s
        .access_log
        .wants(Outcome::routed, status)
        .then(|| PendingLog {
            log: Arc::clone(&s.access_log),
            record: record(
                &arrival,
                Some(tenant),
                Some(&cell.id),
                Some(&target.url),
                status,
                Some(upstream_time),
                Outcome::routed,
            ),
            start: arrival.start,
        });
    let body = if switching {
        drop(rbody);
        client.conn.upgraded();
        if let (Some(client_upgrade), Some(upstream_upgrade)) =
            (on_upgrade, rparts.extensions.remove::<OnUpgrade>())
        {
            // The tunnel holds the permit: a WebSocket counts as in flight (against its
            // tenant's concurrency and its cell's cap) for as long as it is open.
            let watch = w
                .long_lived
                .register(tenant, &cell.id, decision.migrating, &s.snapshot);
            tokio::task::spawn_local(tunnel(client_upgrade, upstream_upgrade, permit, watch));
        }
        if let Some(l) = log {
            l.finish(0, true);
        }
        ProxyBody::empty()
    } else {
        let reuse = exchange.sender.map(|sender| Reuse {
            pool: Rc::clone(&w.pool),
            endpoint,
            sender,
        });
        // A body streamed without a length (SSE, long polls, gRPC streams) may outlive a
        // tenant's move; it is watched. A sized body is over in moments.
        let streamed = !rparts.headers.contains_key(header::CONTENT_LENGTH)
            && arrival.method != http::Method::HEAD
            && !matches!(status, 204 | 304);
        let watch = streamed.then(|| {
            w.long_lived
                .register(tenant, &cell.id, decision.migrating, &s.snapshot)
        });
        ProxyBody::upstream(
            UpstreamBody::new(rbody, s.timeouts.read, deadline, reuse, log),
            permit,
            watch,
        )
    };
    Ok(Response::from_parts(rparts, body))
}

/// The place stage: the snapshot's decision, or, for a tenant the snapshot does not hold, one
/// coalesced and rate-capped registry lookup first (never a default cell). The verified token
/// names the issuer to check and, under `[canary]`, the arm hint (its `sub`, and whether the
/// request's force header is honoured).
async fn place(
    s: &Shared,
    tenant: &TenantId,
    parts: &http::request::Parts,
    token: Option<&crate::auth::VerifiedToken>,
) -> Result<crate::routing::RouteDecision, crate::routing::RouteError> {
    use crate::routing::RouteError;
    let policy = s.config.tenant.route_policy;
    let (method, issuer) = (&parts.method, token.map(|t| &*t.issuer.iss));
    let hint = arm_hint(&s.config.canary, &parts.headers, token);
    if let Some(arm) = hint.forced {
        tracing::debug!(tenant.id = %tenant, canary.arm = arm, "arm forced by header");
    }
    {
        let snap = s.snapshot.load();
        match route_with(tenant, method, issuer, &snap, policy, hint) {
            Err(RouteError::UnknownTenant)
                if s.config.lookup.unknown && snap.tenant(tenant.as_str()).is_none() => {}
            decided => return decided,
        }
    }
    match s.lookup.resolve(tenant.as_str()).await {
        LookupOutcome::Found => {
            route_with(tenant, method, issuer, &s.snapshot.load(), policy, hint)
        }
        LookupOutcome::Absent => Err(RouteError::UnknownTenant),
        LookupOutcome::Unavailable => Err(RouteError::RegistryUnavailable),
    }
}

/// Copies an upgraded connection both ways until either side closes or the tenant leaves the
/// cell (then both sides are shut down).
async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    _permit: crate::ratelimit::Permit,
    watch: moves::Watch,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "upgraded connection ended with an error");
            }
        }
        () = watch.closed() => {
            use tokio::io::AsyncWriteExt;
            let _ = tokio::join!(client.shutdown(), upstream.shutdown());
            tracing::debug!("upgraded connection closed: its tenant left the cell");
        }
    }
}

fn record(
    a: &Arrival,
    tenant: Option<TenantId>,
    cell: Option<&Arc<str>>,
    target: Option<&Arc<str>>,
    status: u16,
    upstream: Option<std::time::Duration>,
    outcome: Outcome,
) -> Record {
    Record {
        time: std::time::SystemTime::now()
            .checked_sub(a.start.elapsed())
            .unwrap_or_else(std::time::SystemTime::now),
        request_id: a.request_id.clone(),
        tenant,
        cell: cell.cloned(),
        target: target.cloned(),
        method: a.method.clone(),
        uri: a.uri.clone(),
        status,
        bytes: 0,
        upstream,
        total: a.start.elapsed(),
        outcome,
        incomplete: false,
    }
}

/// Answers a request the proxy refuses or could not forward: status, JSON body, metrics, log.
fn refuse(
    s: &Shared,
    a: &Arrival,
    err: ProxyError,
    tenant: Option<TenantId>,
    cell: Option<&Cell>,
) -> Response<ProxyBody> {
    let r = err.response();
    if let Some(reason) = err.auth_label() {
        s.metrics.auth_rejection(reason);
    }
    let cell_id = cell.map(|c| &c.id).or_else(|| match &err {
        ProxyError::Route(e) => e.cell(),
        _ => None,
    });
    // A tenant's own limit is not about its cell: the body does not name the cell.
    let tenant_limit = matches!(
        &err,
        ProxyError::Limit(Limited::Rate { .. } | Limited::Concurrency { .. })
    );
    let body = error_body(
        r.code,
        a.request_id.to_str().unwrap_or(""),
        cell_id.filter(|_| !tenant_limit).map(|c| &**c),
    );
    let len = body.len() as u64;
    let mut resp = Response::new(ProxyBody::full(Bytes::from(body)));
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(X_REQUEST_ID, a.request_id.clone());
    if let Some(v) = r.www_authenticate {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
    }
    if let Some(d) = r.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(d.as_secs()));
    }
    let cm = match cell {
        Some(c) => c.metrics(&s.metrics),
        None => &s.none_cell,
    };
    if let ProxyError::Limit(l) = &err {
        if let Limited::Rate { policy, wait, .. } = l {
            h.insert(RATELIMIT_POLICY, policy.policy_header());
            h.insert(RATELIMIT, policy.state_header(*wait));
        }
        if let Some((tier, kind)) = l.tier() {
            s.metrics.rate_limited(cm, tier.index, &tier.name, kind);
        }
    }
    if let Some(kind) = r.upstream_kind {
        s.metrics.record_upstream_error(cm, kind);
    }
    let status = r.status.as_u16();
    s.metrics
        .record_request(cm, status, r.outcome, a.start.elapsed());
    if s.access_log.wants(r.outcome, status) {
        let mut rec = record(a, tenant, cell_id, None, status, None, r.outcome);
        rec.bytes = len;
        s.access_log.log(rec);
    }
    resp
}
