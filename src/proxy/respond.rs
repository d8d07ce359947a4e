//! The *respond* stage: a cell's answer on its way back to the client, and the answer when
//! forwarding failed.
//!
//! The response loses its hop-by-hop headers and gets the request id; the request is counted
//! (per cell and per canary arm) and its access-log line and usage count are finished when
//! its body ends. A
//! body streamed without a length may outlive a tenant's move, so it is watched; an agreed
//! upgrade becomes a tunnel that holds the request's in-flight places for as long as it is
//! open.

use std::rc::Rc;
use std::sync::Arc;

use http::header;
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::arrival::Arrival;
use super::body::BodyLog;
use super::forward::{Failed, Forwarded};
use super::refuse::{Ledger, refuse};
use super::{Client, ProxyBody, Worker, grpc, moves, rewrite};
use crate::accesslog::PendingLog;
use crate::error::ProxyError;
use crate::metering::answer::Pending;
use crate::metrics::Outcome;
use crate::otel::PendingSpan;
use crate::placement::Cell;
use crate::ratelimit::Permit;
use crate::routing::RouteDecision;
use crate::tenant::TenantId;
use crate::upstream::pool::Lease;
use crate::upstream::{Reuse, UpstreamBody};

/// A request the cell is answering: who it was for, where it went, what it holds.
pub struct Routed {
    pub tenant: TenantId,
    pub decision: RouteDecision,
    /// Its in-flight places, given back when the answer (or the tunnel) ends.
    pub permit: Permit,
    /// The client side of an upgrade it asked for.
    pub upgrade: Option<OnUpgrade>,
    pub upgrading: bool,
    pub sent_at: Instant,
    pub deadline: Instant,
}

/// Turns the cell's response head into the client's answer.
pub fn respond(
    w: &Rc<Worker>,
    client: &Client,
    arrival: &Arrival,
    routed: Routed,
    forwarded: Forwarded,
) -> Response<ProxyBody> {
    let s = &*w.shared;
    let Routed {
        tenant,
        decision,
        permit,
        upgrade,
        upgrading,
        sent_at,
        deadline,
    } = routed;
    let cell = &decision.cell;
    let cm = cell.metrics(&s.metrics);
    let gm = cell.groups[decision.group].metrics(&cell.id, &s.metrics.upstream);
    let answered = Instant::now();
    let upstream_time = answered.saturating_duration_since(sent_at);
    cm.upstream_response.observe(upstream_time);
    if forwarded.exchange.connected {
        cm.connected(matches!(forwarded.exchange.lease, Some(Lease::Http2(_))));
    }

    let (mut rparts, rbody) = forwarded.exchange.response.into_parts();
    let status = rparts.status.as_u16();
    let switching = rparts.status == StatusCode::SWITCHING_PROTOCOLS && upgrading;
    rewrite::rewrite_response(&mut rparts.headers, &arrival.request_id, switching);
    let elapsed = answered.saturating_duration_since(arrival.start);
    s.metrics
        .record_request(cm, status, Outcome::routed, elapsed);
    s.metrics.upstream.group_request(gm, status, elapsed);
    let target = &cell.targets[forwarded.target];
    let record = || {
        arrival.record(
            Some(tenant),
            Some(&cell.id),
            Some(&target.url),
            status,
            Some(upstream_time),
            Outcome::routed,
        )
    };
    let log = s
        .access_log
        .wants(Outcome::routed, status)
        .then(|| PendingLog {
            log: Arc::clone(&s.access_log),
            record: record(),
            start: arrival.start,
        });
    let span = s
        .tracer
        .as_ref()
        .filter(|_| arrival.traced())
        .and_then(|tracer| {
            let trace = arrival.trace.as_ref()?;
            let span = trace.span(record(), arrival.extra(None, Some("admitted")))?;
            Some(PendingSpan {
                tracer: Arc::clone(tracer),
                span: Box::new(span),
            })
        });
    let meter = w.meter.as_ref().map(|m| Pending {
        meter: Arc::clone(m),
        tenant,
        cell: Arc::clone(&cell.id),
        route: arrival.route,
        status,
        upstream: upstream_time,
        bytes_in: arrival.bytes_in.clone(),
    });
    let body = if switching {
        drop(rbody);
        client.conn.upgraded();
        if let (Some(client_upgrade), Some(upstream_upgrade)) =
            (upgrade, rparts.extensions.remove::<OnUpgrade>())
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
        if let Some(sp) = span {
            sp.finish(0, true, None);
        }
        if let Some(m) = meter {
            m.finish(0);
        }
        ProxyBody::empty()
    } else {
        let reuse = forwarded.exchange.lease.map(|lease| Reuse {
            pool: Rc::clone(&w.pool),
            endpoint: forwarded.endpoint,
            lease,
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
        let grpc = arrival
            .grpc
            .then(|| grpc::Call::new(Arc::clone(cm), &rparts.headers));
        let log = BodyLog {
            pending: log,
            meter,
            grpc,
            span,
            bytes: 0,
        };
        ProxyBody::upstream(
            UpstreamBody::new(rbody, s.timeouts.read, deadline, reuse),
            permit,
            watch,
            log,
        )
    };
    Response::from_parts(rparts, body)
}

/// The answer when no cell's response came: logged (a body refused for its size at debug,
/// anything else as an upstream failure), counted for the arm, and refused.
pub fn unforwarded(
    ledger: Ledger<'_>,
    a: &Arrival,
    tenant: TenantId,
    cell: &Cell,
    group: usize,
    Failed { error, target }: Failed,
) -> Response<ProxyBody> {
    let group = &cell.groups[group];
    let target = target.map(|i| &*cell.targets[i].url);
    let err = ProxyError::from_exchange(error);
    if let ProxyError::BodyLimit(l) = &err {
        tracing::debug!(tenant.id = %tenant, request.id = ?a.request_id, "request body refused: {l}");
        ledger.metrics.request_rejected(l.reason());
    } else {
        tracing::warn!(
            tenant.id = %tenant, cell.id = %cell.id, group = %group.name, target = ?target,
            request.id = ?a.request_id, error = %err, "upstream request failed"
        );
    }
    let status = err.response().status.as_u16();
    let gm = group.metrics(&cell.id, &ledger.metrics.upstream);
    ledger
        .metrics
        .upstream
        .group_request(gm, status, a.start.elapsed());
    refuse(ledger, a, err, Some(tenant), Some(cell))
}

/// Copies an upgraded connection both ways until either side closes or the tenant leaves the
/// cell (then both sides are shut down).
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, _permit: Permit, watch: moves::Watch) {
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
