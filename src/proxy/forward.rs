//! The *forward* stage: from a route decision to a response head from one address of the
//! tenant's arm of its cell.
//!
//! It picks an address in rotation ([`crate::upstream::select`]), sends over the worker's pool,
//! feeds every exchange to passive outlier detection, and retries on another address of the
//! same arm when that is safe (a connect failure; for a bodiless idempotent request with
//! `upstream.retry.idempotent`, a reset or a 502/503/504), within `max_attempts` and the cell's
//! retry budget. It never leaves the arm or the cell: with no address in rotation the answer is
//! an immediate `no_healthy_target`.

use std::sync::Arc;

use http::Request;
use http::header;
use tokio::time::Instant;

use crate::config::RetryConfig;
use crate::headers::TRACEPARENT;
use crate::metrics::{CellMetrics, Metrics};
use crate::placement::Cell;
use crate::tracecontext::{
    self,
    children::{self, ATTEMPT, Child, Kind, Value},
};
use crate::upstream::checks;
use crate::upstream::pool::{Exchange, SendFailure};
use crate::upstream::{
    Endpoint, Pick, Pool, RequestBody, Timeouts, Tried, UpstreamError, Upstreams, select,
};

/// What the forward stage works with: this worker's pool, the address table, the retry rules
/// and timeouts, and the metrics it feeds.
pub struct Upstream<'a> {
    pub pool: &'a Pool,
    pub upstreams: &'a Upstreams,
    pub retry: &'a RetryConfig,
    pub timeouts: &'a Timeouts,
    pub metrics: &'a Metrics,
}

/// A response head from one endpoint of the cell.
pub struct Forwarded {
    pub exchange: Exchange,
    /// Index into `cell.targets`.
    pub target: usize,
    pub endpoint: Arc<Endpoint>,
}

/// Why forwarding failed, and the target of the last attempt (none when nothing was tried).
pub struct Failed {
    pub error: UpstreamError,
    pub target: Option<usize>,
}

/// The head of a bodiless idempotent request, kept so it can be sent again after it was sent
/// once (a reset, or a 502/503/504 from the target).
struct Replay(http::request::Parts);

impl Replay {
    fn of(req: &Request<RequestBody>) -> Self {
        let mut head = Request::new(());
        *head.method_mut() = req.method().clone();
        *head.uri_mut() = req.uri().clone();
        *head.version_mut() = req.version();
        *head.headers_mut() = req.headers().clone();
        Self(head.into_parts().0)
    }

    fn request(&self) -> Request<RequestBody> {
        let mut r = Request::new(RequestBody::Empty);
        *r.method_mut() = self.0.method.clone();
        *r.uri_mut() = self.0.uri.clone();
        *r.version_mut() = self.0.version;
        *r.headers_mut() = self.0.headers.clone();
        r
    }
}

/// Sends the request to a usable endpoint of the tenant's arm (its group) of its cell, and
/// retries on another endpoint of the same arm when that is safe: after a connect failure
/// (the request was never sent), or, for a bodiless idempotent request, after a reset or a
/// 502/503/504 (`upstream.retry.idempotent`). Retries stop at `max_attempts` and when the
/// cell's retry budget is spent. Never to another arm, never to another cell. Every exchange
/// feeds passive outlier detection.
pub(super) async fn forward(
    u: &Upstream<'_>,
    cell: &Cell,
    cm: &CellMetrics,
    (group, first): (usize, usize),
    mut req: Request<RequestBody>,
    (arrived, sent, deadline): (Instant, Instant, Instant),
    upgrade: bool,
) -> Result<Forwarded, Failed> {
    let up = u.upstreams;
    let group = &cell.groups[group];
    let arm = group.arm(cell);
    let retry = u.retry;
    let budget = cell.retry_budget(up);
    budget.deposit(arrived.into_std());
    let replay = (retry.idempotent
        && retry.max_attempts > 1
        && !upgrade
        && req.method().is_idempotent()
        && http_body::Body::is_end_stream(req.body()))
    .then(|| Replay::of(&req));
    let mut tried = Tried::default();
    let mut pick = select(&arm, first, up, &tried);
    let mut waited = false;
    // The time this attempt starts (one clock read per attempt).
    let mut now = sent;
    loop {
        let (idx, ep) = match pick {
            Pick::Endpoint(i, ep) => (i, ep),
            Pick::Unresolved(i) if !waited => {
                // A target named by DNS that was never resolved (new in this generation).
                waited = true;
                let state = Arc::clone(cell.targets[i].state(up));
                let _ = tokio::time::timeout(u.timeouts.connect, state.wait_resolved()).await;
                now = Instant::now();
                pick = select(&arm, first, up, &tried);
                continue;
            }
            Pick::Unresolved(_) | Pick::None => {
                return Err(Failed {
                    error: UpstreamError::NoHealthyTarget {
                        cell: Arc::clone(&cell.id),
                    },
                    target: None,
                });
            }
        };
        tried.push(ep.id);
        let target = &cell.targets[idx];
        if !cell.preserve_host {
            req.headers_mut()
                .insert(header::HOST, target.authority.clone());
        }
        // A sampled request: each attempt is a child span, and the cell's parent.
        let attempt = children::recording().map(|trace| {
            let id = tracecontext::new_span_id();
            req.headers_mut()
                .insert(TRACEPARENT, tracecontext::traceparent(trace, id, true));
            (id, std::time::Instant::now())
        });
        let sent = u
            .pool
            .send(target, &ep, req, u.timeouts, (now, deadline), upgrade)
            .await;
        if let Some((id, started)) = attempt {
            children::record(attempt_span(
                id,
                started,
                &target.url,
                &ep,
                tried.len(),
                &sent,
            ));
        }
        let (again, result) = match sent {
            Ok(exchange) if !checks::gateway_failure(exchange.response.status().as_u16()) => {
                ep.health.success();
                return Ok(Forwarded {
                    exchange,
                    target: idx,
                    endpoint: ep,
                });
            }
            Ok(exchange) => {
                checks::gateway_failed(up, &arm, target, &ep);
                (replay.as_ref().map(Replay::request), Ok(exchange))
            }
            Err(SendFailure { error, request }) => {
                // The target is to blame for a refused connection or a reset, not for the
                // client's own body failing, nor for a slow answer (one tenant's heavy requests
                // could cause that; active checks catch a hung target).
                let client_side =
                    matches!(&error, UpstreamError::Protocol { source, .. } if source.is_user());
                let timeout = matches!(error, UpstreamError::ResponseTimeout { .. });
                if !client_side && !timeout {
                    checks::gateway_failed(up, &arm, target, &ep);
                }
                let reset = matches!(error, UpstreamError::Protocol { .. }) && !client_side;
                let again =
                    request.or_else(|| replay.as_ref().filter(|_| reset).map(Replay::request));
                (again, Err(error))
            }
        };
        let next = again
            .filter(|_| (tried.len() as u32) < retry.max_attempts)
            .and_then(|r| {
                now = Instant::now();
                (now < deadline).then_some(r)
            })
            .and_then(|r| match select(&arm, arm.after(idx), up, &tried) {
                Pick::Endpoint(i, e) => Some((r, i, e)),
                _ => None,
            });
        let Some((r, i, e)) = next else {
            return settle(result, idx, ep);
        };
        if !budget.withdraw(retry, now.into_std()) {
            u.metrics.upstream.retry(&cell.id, false);
            tracing::debug!(cell.id = %cell.id, "retry budget spent; not retrying");
            return settle(result, idx, ep);
        }
        u.metrics.upstream.retry(&cell.id, true);
        match &result {
            Ok(exchange) => {
                tracing::debug!(cell.id = %cell.id, target = %target.url, address = %ep.addr,
                status = exchange.response.status().as_u16(), "gateway error; retrying on another target")
            }
            Err(error) => {
                if let Some(kind) = error.metric_kind() {
                    u.metrics.record_upstream_error(cm, kind);
                }
                tracing::debug!(cell.id = %cell.id, target = %target.url, address = %ep.addr,
                    error = %error, "upstream failure; retrying on another target");
            }
        }
        drop(result);
        req = r;
        pick = Pick::Endpoint(i, e);
    }
}

/// The child span of one attempt: the target and address, which try it was, and its answer.
fn attempt_span(
    id: tracecontext::SpanId,
    started: std::time::Instant,
    target: &Arc<str>,
    ep: &Endpoint,
    tries: usize,
    sent: &Result<Exchange, SendFailure>,
) -> Child {
    let mut child = Child::ended(ATTEMPT, Kind::Client, started);
    child.span_id = id;
    let mut child = child
        .with("url.full", Value::Str(Arc::clone(target)))
        .peer(ep.addr);
    if tries > 1 {
        let resent = i64::try_from(tries - 1).unwrap_or(i64::MAX);
        child = child.with("http.request.resend_count", Value::Int(resent));
    }
    match sent {
        Ok(exchange) => {
            let status = exchange.response.status().as_u16();
            child = child.with("http.response.status_code", Value::Int(i64::from(status)));
            if status >= 500 {
                child.error = Some("gateway_error");
            }
        }
        Err(f) => {
            let kind = f
                .error
                .metric_kind()
                .map_or("upstream_error", |k| k.as_str());
            child = child.with("error.type", Value::Static(kind));
            child.error = Some(kind);
        }
    }
    child
}

/// The last attempt's result is the answer: a response head (even a 5xx) or its failure.
fn settle(
    result: Result<Exchange, UpstreamError>,
    target: usize,
    endpoint: Arc<Endpoint>,
) -> Result<Forwarded, Failed> {
    match result {
        Ok(exchange) => Ok(Forwarded {
            exchange,
            target,
            endpoint,
        }),
        Err(error) => Err(Failed {
            error,
            target: Some(target),
        }),
    }
}
